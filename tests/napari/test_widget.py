"""The dock widget on a small synthetic volume: same labels as `mediar3d.segment`, cancel, user mistakes."""

from pathlib import Path

import numpy as np
import pytest

import mediar3d
from mediar3d.data.synthetic import make_nuclei_volume
from mediar3d.napari._widget import CHECKPOINT, SegmentWidget

pytestmark = pytest.mark.napari

# The bundled model was trained on nuclei about 20 px across; a volume of such nuclei at
# anisotropy 2 stays small on the network grid (24 x 32 x 48), so a run takes a few seconds.
SHAPE, DIAMETER, ANISOTROPY = (12, 32, 48), 20.0, 2.0


@pytest.fixture(scope="module")
def volume():
    image, _ = make_nuclei_volume(SHAPE, radius_range=(8.0, 11.0), anisotropy=ANISOTROPY, seed=5)
    return image


def _widget(make_napari_viewer, data, **layer_kwargs):
    viewer = make_napari_viewer()
    viewer.add_image(data, name="cells", **layer_kwargs)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)


def test_widget_labels_match_segment(make_napari_viewer, qtbot, volume):
    viewer, widget = _widget(make_napari_viewer, volume, scale=(ANISOTROPY, 0.5, 0.5), translate=(3.0, 0.0, 0.0))
    assert widget._image.value is viewer.layers["cells"]
    assert widget._anisotropy.value == pytest.approx(ANISOTROPY * 2)  # z 2.0 over xy 0.5 -> 4
    widget._anisotropy.value = ANISOTROPY
    widget._diameter.value = DIAMETER
    # the greyed-out fields show what runs: the bundled model's stored thresholds
    from mediar3d.inference.loader import resolve_model

    bundled = resolve_model("default")
    assert (widget._cellprob.value, widget._flow.value) == (bundled.cellprob_threshold, bundled.flow_threshold)
    assert widget._min_size.value == round(bundled.min_size) and not widget._cellprob.enabled
    widget._model_thresholds.value = False
    widget._cellprob.value = -0.5
    widget._min_size.value = 400  # well above the default 15: drops the smallest objects
    widget._add_flows.value = True
    widget._add_prob.value = True
    widget.run()
    assert widget.running and not widget._run.enabled and widget._cancel.enabled
    _wait(qtbot, widget)

    expected = mediar3d.segment(volume, "default", diameter=DIAMETER, anisotropy=ANISOTROPY, cellprob_threshold=-0.5,
                                min_size=400, progress=False)
    unfiltered = mediar3d.segment(volume, "default", diameter=DIAMETER, anisotropy=ANISOTROPY, cellprob_threshold=-0.5,
                                  progress=False)
    labels = viewer.layers["cells_labels"]
    assert expected.max() >= 2 and unfiltered.max() > expected.max()  # min size reached the post-processing
    np.testing.assert_array_equal(labels.data, expected)
    assert tuple(labels.scale) == (ANISOTROPY, 0.5, 0.5) and tuple(labels.translate) == (3.0, 0.0, 0.0)
    assert labels.metadata["mediar3d"]["cellprob_threshold"] == -0.5
    assert labels.metadata["mediar3d"]["min_size"] == 400
    # the per-object table of `mediar3d.measure` is on the layer, in the layer's units
    table = mediar3d.measure(expected, volume, voxel_size=(ANISOTROPY, 0.5, 0.5))
    features = labels.features
    assert list(features["index"]) == list(np.unique(expected[expected > 0]))
    np.testing.assert_array_equal(features["volume_um3"], table["volume_um3"])
    np.testing.assert_allclose(features["intensity_mean"], table["intensity_mean"])
    first = int(features["index"][0])
    assert features["voxels"][0] == (expected == first).sum()
    flows, prob = viewer.layers["cells_flows"], viewer.layers["cells_prob"]
    assert flows.rgb and flows.data.shape == SHAPE + (3,) and tuple(flows.scale) == (ANISOTROPY, 0.5, 0.5)
    assert prob.data.shape == SHAPE and 0.0 <= prob.data.min() and prob.data.max() <= 1.0
    total = sum(labels.metadata["mediar3d"]["network_shape"])  # slices along z, y and x of the network grid
    assert widget._progress.max == total and widget._progress.value == total
    assert widget._run.enabled and not widget._cancel.enabled


def test_cancel_stops_at_the_next_network_call(make_napari_viewer, qtbot, volume, notifications):
    viewer, widget = _widget(make_napari_viewer, volume)
    widget._diameter.value = DIAMETER
    reports = []

    def on_progress(done, total):
        reports.append((done, total))
        widget.cancel()

    widget._relay.progress.connect(on_progress)
    widget.run()
    _wait(qtbot, widget)
    qtbot.wait(50)
    assert [layer.name for layer in viewer.layers] == ["cells"]
    total = reports[0][1]
    assert total > 2 and len(reports) < total
    assert widget._status.value == "cancelled"
    assert any("cancelled" in str(n.message) for n in notifications)
    assert widget._run.enabled and not widget._cancel.enabled


def test_user_mistakes_are_notifications_and_add_no_layer(make_napari_viewer, qtbot, volume, notifications, tmp_path):
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.run()  # no image layer yet
    assert not widget.running and "no image layer" in str(notifications[-1].message)

    viewer.add_image(np.stack([volume, volume]), name="two_channels")  # the widget follows the layer list
    assert widget._image.value is viewer.layers["two_channels"]
    assert not widget._channel.native.isHidden() and widget._channel.choices == ("none", "0", "1")

    widget.run()  # 4D layer, no channel chosen
    assert not widget.running
    assert "choose the channel" in str(notifications[-1].message)
    assert notifications[-1].severity == "error"

    widget._channel.value = "1"
    widget._model.value = CHECKPOINT
    assert not widget._checkpoint.native.isHidden()
    widget._checkpoint.value = tmp_path / "missing.pt"
    widget.run()
    assert not widget.running and "missing.pt" in str(notifications[-1].message)

    viewer.add_image(np.zeros((2, 3, 8, 16, 16), dtype=np.float32), name="five_d")
    widget._image.value = viewer.layers["five_d"]
    widget._model.value = "default"
    widget.run()
    assert not widget.running and "expected (z, y, x)" in str(notifications[-1].message)

    # a mistake only the pipeline finds (NaN values) still arrives as a notification from the worker
    bad = volume.astype(np.float32)
    bad[0, 0, 0] = np.nan
    viewer.add_image(bad, name="with_nan")
    widget._image.value = viewer.layers["with_nan"]
    widget.run()
    _wait(qtbot, widget)
    qtbot.wait(50)
    assert "NaN" in str(notifications[-1].message) and notifications[-1].severity == "error"
    assert not any(layer.name.endswith("_labels") for layer in viewer.layers)


def test_two_dimensional_layer_runs_in_2d(make_napari_viewer, qtbot, volume):
    viewer, widget = _widget(make_napari_viewer, volume[6])
    assert widget._mode.choices == ("2d",) and not widget._anisotropy.enabled
    widget._diameter.value = DIAMETER
    widget.run()
    _wait(qtbot, widget)
    expected = mediar3d.segment(volume[6], "default", diameter=DIAMETER, do_3d=False, progress=False)
    assert expected.max() >= 1
    np.testing.assert_array_equal(viewer.layers["cells_labels"].data, expected)
    assert widget._channel.native.isHidden()

    # a second run replaces the layer's data instead of adding "cells_labels [1]"
    widget._model_thresholds.value = False
    widget._cellprob.value = 12.0
    widget.run()
    _wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["cells", "cells_labels"]
    assert viewer.layers["cells_labels"].data.max() == 0


def test_threshold_fields_follow_the_chosen_checkpoint(make_napari_viewer, tmp_path):
    from mediar3d.models import create_model, save_checkpoint

    tuned = save_checkpoint(tmp_path / "tuned.pt", create_model("unet-small", channels=[8, 16]),
                            thresholds={"cellprob_threshold": 1.5, "flow_threshold": 0.25, "min_size": 40})
    bare = save_checkpoint(tmp_path / "bare.pt", create_model("unet-small", channels=[8, 16]))
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget._model.value = CHECKPOINT
    widget._checkpoint.value = tuned
    assert (widget._cellprob.value, widget._flow.value, widget._min_size.value) == (1.5, 0.25, 40)
    widget._checkpoint.value = bare  # no stored thresholds: the library defaults
    assert (widget._cellprob.value, widget._flow.value, widget._min_size.value) == (0.0, 0.4, 15)
    widget._checkpoint.value = tmp_path / "missing.pt"  # nothing to read: the fields stay
    assert widget._cellprob.value == 0.0


TINY_FINETUNE = {"epochs": 1, "samples_per_epoch": 2, "batch_size": 2, "crop_size": 64, "device": "cpu"}


@pytest.fixture
def tiny_replay(monkeypatch):
    """The fine-tuning's replay data (on by default) as one small volume, so the tests stay quick."""
    monkeypatch.setattr("mediar3d.training.replay.REPLAY_VOLUMES", 1)
    monkeypatch.setattr("mediar3d.training.replay.REPLAY_SHAPE", (8, 32, 32))


def _annotated(make_napari_viewer, tmp_path, keep=2):
    from mediar3d.data.partial import simulate_partial

    image, labels = make_nuclei_volume(SHAPE, radius_range=(8.0, 11.0), anisotropy=ANISOTROPY, seed=5)
    viewer, widget = _widget(make_napari_viewer, image, scale=(ANISOTROPY, 1.0, 1.0))
    viewer.add_labels(simulate_partial(labels, count=keep, seed=0), name="some nuclei")
    widget._ft_folder.value = tmp_path / "ft"
    widget._diameter.value = DIAMETER
    return viewer, widget


def test_finetune_on_a_labels_layer_then_segment_with_it(make_napari_viewer, qtbot, tmp_path, tiny_replay):
    from mediar3d.models import read_checkpoint
    from mediar3d.models.sources import resolve_source
    from mediar3d.training.fewshot_plan import KEEP_START

    viewer, widget = _annotated(make_napari_viewer, tmp_path)
    assert widget._ft_labels.value is viewer.layers["some nuclei"] and widget._ft_supervision.value == "dilate"
    widget.finetune_overrides = dict(TINY_FINETUNE)
    steps = []
    widget._relay.steps.connect(lambda done, total, eta: steps.append((done, total)))
    widget.finetune()
    assert widget.running and not widget._ft_run.enabled
    qtbot.waitUntil(lambda: "cells_labels" in viewer.layers and not widget.running, timeout=300_000)
    model = tmp_path / "ft" / "model_best.pt"
    assert steps and steps[-1] == (1, 1)
    assert widget._model.value == CHECKPOINT and Path(str(widget._checkpoint.value)) == model
    saved = read_checkpoint(model)[0]
    assert saved.metadata["keep_start"] == KEEP_START  # the small-data plan's blend with the start model
    start = read_checkpoint(resolve_source("default"))[0].thresholds  # 2 objects: too few to re-tune
    assert saved.thresholds["cellprob_threshold"] == start["cellprob_threshold"]
    expected = mediar3d.segment(viewer.layers["cells"].data, str(model), diameter=DIAMETER, anisotropy=ANISOTROPY,
                                progress=False)
    np.testing.assert_array_equal(viewer.layers["cells_labels"].data, expected)


def test_finetune_cancel_keeps_the_weights_and_segments_nothing(make_napari_viewer, qtbot, tmp_path, notifications,
                                                                tiny_replay):
    viewer, widget = _annotated(make_napari_viewer, tmp_path)
    widget.finetune_overrides = {**TINY_FINETUNE, "epochs": 3}
    widget._relay.steps.connect(lambda done, total, eta: widget.cancel())
    widget.finetune()
    qtbot.waitUntil(lambda: not widget.running, timeout=300_000)
    qtbot.wait(50)
    assert widget._status.value == "cancelled" and "cells_labels" not in viewer.layers
    assert (tmp_path / "ft" / "model_best.pt").is_file()
    assert any("cancelled" in str(n.message) for n in notifications)
    assert widget._model.value == "default"

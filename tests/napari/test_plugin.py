"""npe2 manifest, reader of `mediar3d segment` outputs, sample data, flow colours, progress counting."""

import importlib
import json
import threading

import numpy as np
import pytest
import torch
from helpers import hide_matplotlib

from mediar3d.io import write_image, write_labels
from mediar3d.napari._job import SegmentationCancelled, SegmentRequest, run_job
from mediar3d.napari._layers import flows_to_rgb
from mediar3d.napari._reader import napari_get_reader, split_output_name
from mediar3d.napari._widget import anisotropy_from_scale

pytestmark = pytest.mark.napari


def test_manifest_is_valid_and_installed():
    import npe2
    from importlib import resources

    manifest = npe2.PluginManifest.from_file(resources.files("mediar3d.napari") / "napari.yaml")
    assert manifest.name == "mediar3d"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Segment"}
    installed = npe2.PluginManager.instance()
    installed.discover()
    assert installed.get_manifest("mediar3d").contributions.sample_data[0].key == "nuclei"


@pytest.mark.parametrize("name, expected", [
    ("out/cells_labels.tif", ("out/cells", "labels")),
    ("out/cells_labels.ome.zarr", ("out/cells", "labels")),
    ("out/cells_LABELS.TIFF", ("out/cells", "labels")),
    ("a_flows.tif", ("a", "flows")),
    ("a_prob.tif", ("a", "prob")),
    ("a_flows_labels.zarr/", ("a_flows", "labels")),
    ("cells.tif", None),
    ("cells_labels.png", None),
    ("cells_probability.tif", None),
])
def test_output_names(name, expected):
    assert split_output_name(name) == expected


@pytest.mark.parametrize("side", ["cells", "cells_labels"])  # `segment -o folder/` or `-o cells_labels.tif`
def test_reader_opens_labels_with_flows_probability_and_params(make_napari_viewer, tmp_path, side):
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 20, 24), dtype=np.int32)
    labels[1:4, 2:9, 3:10], labels[2:5, 10:18, 12:20] = 1, 40000
    flows = rng.normal(size=(3, 6, 20, 24)).astype(np.float32)
    prob = rng.random((6, 20, 24)).astype(np.float32)
    voxel = (2.0, 0.5, 0.5)
    write_labels(tmp_path / "cells_labels.tif", labels, voxel_size=voxel)
    write_image(tmp_path / f"{side}_flows.tif", flows, voxel_size=voxel)
    write_image(tmp_path / f"{side}_prob.tif", prob, voxel_size=voxel)
    (tmp_path / f"{side}_params.json").write_text(json.dumps({"anisotropy": 4.0, "n_objects": 2}))
    write_image(tmp_path / "raw.tif", prob, voxel_size=voxel)
    assert napari_get_reader(str(tmp_path / "raw.tif")) is None

    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "cells_labels.tif"), plugin="mediar3d")
    assert [layer.name for layer in viewer.layers] == [f"{side}_prob", f"{side}_flows", "cells_labels"]
    layer = viewer.layers["cells_labels"]
    np.testing.assert_array_equal(layer.data, labels)
    assert tuple(layer.scale) == voxel and layer.metadata["mediar3d"]["n_objects"] == 2
    np.testing.assert_array_equal(viewer.layers[f"{side}_flows"].data, flows_to_rgb(flows))
    np.testing.assert_allclose(viewer.layers[f"{side}_prob"].data, prob)
    assert tuple(viewer.layers[f"{side}_flows"].scale) == voxel


def test_sample_data_has_the_voxel_size(make_napari_viewer):
    from mediar3d.sample import VOXEL_SIZE, load_sample

    viewer = make_napari_viewer()
    viewer.open_sample("mediar3d", "nuclei")
    image, truth = load_sample()
    assert [layer.name for layer in viewer.layers] == ["nuclei_sample", "nuclei_sample_truth"]
    np.testing.assert_array_equal(viewer.layers["nuclei_sample"].data, image.data)
    np.testing.assert_array_equal(viewer.layers["nuclei_sample_truth"].data, truth)
    assert tuple(viewer.layers["nuclei_sample"].scale) == VOXEL_SIZE
    assert not viewer.layers["nuclei_sample_truth"].visible


def test_flow_colours():
    flows = np.zeros((3, 1, 1, 4), dtype=np.float32)
    flows[:, 0, 0, 1] = (0, 0, 1)     # +dx: blue
    flows[:, 0, 0, 2] = (-1, 0, 0)    # -dz: no red, half green and blue
    flows[:, 0, 0, 3] = (0, 0.5, 0)   # half-length +dy: dimmer green
    rgb = flows_to_rgb(flows)[0, 0]
    np.testing.assert_array_equal(rgb[0], (0, 0, 0))
    np.testing.assert_array_equal(rgb[1], (128, 128, 255))
    np.testing.assert_array_equal(rgb[2], (0, 128, 128))
    np.testing.assert_array_equal(rgb[3], (64, 128, 64))
    wheel = flows_to_rgb(np.array([[[0.0, 1.0]], [[1.0, 0.0]]], dtype=np.float32))  # (dy, dx): +x, then +y
    assert wheel.shape == (1, 2, 3) and not np.array_equal(wheel[0, 0], wheel[0, 1]) and wheel.max() == 255


def test_flow_colour_wheel_needs_no_matplotlib_and_matches_its_hsv(monkeypatch):
    colors = pytest.importorskip("matplotlib.colors")
    flows = np.random.default_rng(0).normal(0, 0.7, size=(2, 30, 40)).astype(np.float32)
    flows[:, 0, 0] = (0.0, -1.0)  # hue exactly 1 (angle pi): red, as hue 0
    length = np.sqrt((flows ** 2).sum(axis=0))
    hue = (np.arctan2(flows[0], flows[1]) + np.pi) / (2.0 * np.pi)
    hsv = np.stack([hue, np.ones_like(hue), np.clip(length, 0.0, 1.0)], axis=-1)
    expected = np.round(np.clip(colors.hsv_to_rgb(hsv), 0.0, 1.0) * 255).astype(int)
    hide_matplotlib(monkeypatch)
    layers = importlib.import_module("mediar3d.napari._layers")  # imported afresh, matplotlib hidden
    got = layers.flows_to_rgb(flows).astype(int)
    assert np.abs(got - expected).max() <= 1 and (got == expected).mean() > 0.999  # float rounding at most
    np.testing.assert_array_equal(got[0, 0], expected[0, 0])


def test_anisotropy_from_scale():
    assert anisotropy_from_scale((3.0, 0.5, 1.0)) == pytest.approx(4.0)
    assert anisotropy_from_scale((1.0, 5.0, 0.25, 0.25)) == pytest.approx(20.0)
    assert anisotropy_from_scale((0.5, 0.5)) == 1.0


class _Echo(torch.nn.Module):
    """Stand-in 2D network, (B, 1, H, W) -> (B, 3, H, W); counts its calls."""

    stride = 16

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.cat([torch.zeros_like(x), torch.zeros_like(x), x - 0.5], dim=1)


@pytest.mark.parametrize("mode, shape, diameter, tta", [
    ("3d", (5, 40, 70), 10.0, False),
    ("3d", (9, 300, 20), 10.0, True),       # z- and x-slices tiled (300 > 256)
    ("z-only", (3, 290, 290), 10.0, False),  # tiled z-slices
    ("2d", (70, 30), 5.0, False),            # zoomed by 2
])
def test_progress_reports_every_slice_of_the_network_grid(monkeypatch, mode, shape, diameter, tta):
    from mediar3d.inference.loader import InferenceModel

    net = _Echo()
    model = InferenceModel(net=net, name="echo", diameter=10.0, divisor=16)
    monkeypatch.setattr("mediar3d.napari._job.resolve_model", lambda name: model)
    reports = []
    image = np.random.default_rng(1).random(shape).astype(np.float32)
    request = SegmentRequest(image, model="echo", mode=mode, anisotropy=1.5, diameter=diameter, tta=tta)
    result = run_job(request, threading.Event(), lambda done, total: reports.append((done, total)))
    grid = result.params["network_shape"]
    total = {"3d": sum(grid), "z-only": grid[0], "2d": 1}[mode]
    done = [d for d, _ in reports]
    assert {t for _, t in reports} == {total} and done[-1] == total and done == sorted(set(done))
    assert net.calls >= len(reports) and result.labels.shape == shape


def test_run_job_respects_a_cancel_set_before_it_starts(monkeypatch):
    from mediar3d.inference.loader import InferenceModel

    net = _Echo()
    monkeypatch.setattr("mediar3d.napari._job.resolve_model", lambda name: InferenceModel(net=net, name="echo"))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SegmentationCancelled):
        run_job(SegmentRequest(np.ones((4, 32, 32), dtype=np.float32), diameter=10.0), cancel)
    assert net.calls == 0


def test_labels_written_into_an_ome_zarr_open_with_the_image(make_napari_viewer, tmp_path):
    """`segment IMG.ome.zarr -o IMG.ome.zarr/labels/nuclei` -> napari opens the image and the labels together."""
    from mediar3d.io.ngff_labels import write_ngff_labels

    image = np.random.default_rng(0).random((6, 140, 150)).astype(np.float32)
    store = tmp_path / "cells.ome.zarr"
    write_image(store, image, voxel_size=(2.0, 0.5, 0.5))
    assert napari_get_reader(str(store)) is None  # no labels yet: left to other readers
    labels = np.zeros(image.shape, np.int32)
    labels[1:4, 2:90, 3:100], labels[2:5, 100:130, 110:140] = 1, 2
    write_ngff_labels(store, "nuclei", labels)

    viewer = make_napari_viewer()
    viewer.open(str(store), plugin="mediar3d")
    assert [layer.name for layer in viewer.layers] == ["cells", "cells_nuclei"]
    np.testing.assert_array_equal(viewer.layers["cells"].data, image)
    layer = viewer.layers["cells_nuclei"]
    np.testing.assert_array_equal(np.asarray(layer.data), labels)
    assert tuple(layer.scale) == (2.0, 0.5, 0.5) == tuple(viewer.layers["cells"].scale)

"""`mediar3d segment` in-process: outputs, parameters JSON, preview, flows and bad input."""

import json

import numpy as np
import pytest

from mediar3d.cli.main import main
from mediar3d.io import read_image, read_labels, write_image
from mediar3d.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A randomly initialised small network saved as a checkpoint (quality irrelevant here)."""
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    return path


@pytest.fixture()
def volume_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "vol.tif"
    write_image(path, rng.integers(0, 200, size=(8, 32, 40)).astype(np.uint8), voxel_size=(2.0, 0.5, 0.5))
    return path


def test_segment_writes_labels_params_flows_and_preview(tmp_path, volume_file, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(volume_file), "-o", str(out), "--model", str(tiny_checkpoint), "--diameter", "10",
                 "--save-flows", "--preview", "--no-progress", "--min-size", "3"])
    assert code == 0
    labels = read_labels(out / "vol_labels.tif")
    assert labels.shape == (8, 32, 40)
    params = json.loads((out / "vol_params.json").read_text())
    assert params["anisotropy"] == 4.0  # from the voxel size 2.0 / 0.5
    assert params["diameter"] == 10.0 and params["min_size"] == 3 and params["n_objects"] == int(labels.max())
    assert read_image(out / "vol_flows.tif").data.shape == (3, 8, 32, 40)
    prob = read_image(out / "vol_prob.tif").data
    assert prob.shape == (8, 32, 40) and 0.0 <= prob.min() and prob.max() <= 1.0
    assert (out / "vol_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert f"found {params['n_objects']} cell" in printed and str(out / "vol_labels.tif") in printed


def test_explicit_labels_path_and_anisotropy_flag(tmp_path, volume_file, tiny_checkpoint):
    target = tmp_path / "seg" / "mine.tif"
    assert main(["segment", str(volume_file), "-o", str(target), "--model", str(tiny_checkpoint), "--diameter", "10",
                 "--anisotropy", "1.5", "--no-progress"]) == 0
    assert target.is_file()
    assert json.loads((tmp_path / "seg" / "mine_params.json").read_text())["anisotropy"] == 1.5


def _assert_fails_cleanly(argv, capsys, out_dir, words):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "error" in err and all(w in err for w in words), err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_2d_image_in_3d_mode_fails(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "flat.tif"
    write_image(path, np.ones((32, 32), np.uint8))
    out = tmp_path / "out"
    _assert_fails_cleanly(["segment", str(path), "-o", str(out), "--mode", "3d", "--model", str(tiny_checkpoint)],
                          capsys, out, ["flat.tif", "2D"])


def test_multichannel_without_channel_and_bad_channel_fail(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "two.tif"
    write_image(path, np.stack([np.ones((6, 32, 32), np.uint8), np.full((6, 32, 32), 3, np.uint8)]), axes="CZYX")
    out = tmp_path / "out"
    _assert_fails_cleanly(["segment", str(path), "-o", str(out), "--model", str(tiny_checkpoint)],
                          capsys, out, ["--channel"])
    _assert_fails_cleanly(["segment", str(path), "-o", str(out), "--channel", "5", "--model", str(tiny_checkpoint)],
                          capsys, out, ["two.tif"])


def test_nan_volume_fails(tmp_path, tiny_checkpoint, capsys):
    path = tmp_path / "nan.tif"
    data = np.ones((6, 32, 32), np.float32)
    import tifffile

    data[2, 3, 4] = np.nan
    tifffile.imwrite(path, data)
    out = tmp_path / "out"
    _assert_fails_cleanly(["segment", str(path), "-o", str(out), "--model", str(tiny_checkpoint)], capsys, out, ["NaN"])


def test_unknown_model_and_missing_input_fail(tmp_path, volume_file, capsys):
    out = tmp_path / "out"
    _assert_fails_cleanly(["segment", str(volume_file), "-o", str(out), "--model", "no-such-model"],
                          capsys, out, ["no-such-model"])
    _assert_fails_cleanly(["segment", str(tmp_path / "absent.tif"), "-o", str(out)], capsys, out, ["absent.tif"])
    _assert_fails_cleanly(["segment", "-o", str(out)], capsys, out, ["--sample"])


# ---- ensembles: --model A --model B ---------------------------------------------------
FLOW_RUN = ["--diameter", "10", "--no-progress", "--save-flows", "--niter", "20"]


@pytest.fixture(scope="module")
def nuclei_file(tmp_path_factory):
    """A crop of the bundled sample volume, on which the bundled model finds about twenty nuclei."""
    from mediar3d.sample import sample_path

    path = tmp_path_factory.mktemp("nuclei") / "nuclei.tif"
    image = read_image(sample_path())
    write_image(path, image.data[10:22, 48:112, 48:112], voxel_size=image.voxel_size)
    return path


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory):
    """Another random network of the same kind and training diameter (different weights)."""
    import torch

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model2") / "other.pt"
    save_checkpoint(path, create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    return path


def _segment(source, out, models, flags):
    argv = ["segment", str(source), "-o", str(out)]
    for model in models:
        argv += ["--model", str(model)]
    assert main([*argv, *flags]) == 0
    params = json.loads(next(out.glob("*_params.json")).read_text())
    flows = [read_image(path).data for path in out.glob("*_flows.tif")]
    return read_labels(next(out.glob("*_labels.tif"))), (flows[0] if flows else None), params


#: Rounding of flows kept in float16 (relative to the largest flow): a few units in the last place.
F16_ROUNDING = 2.0**-9


def test_ensemble_of_a_model_with_itself_gives_the_same_labels(tmp_path, nuclei_file):
    flags = ["--diameter", "14", "--niter", "30", "--no-progress"]
    labels, _, _ = _segment(nuclei_file, tmp_path / "one", ["default"], flags)
    both, _, params = _segment(nuclei_file, tmp_path / "two", ["default", "default"], flags)
    assert labels.max() >= 10  # real objects to compare
    np.testing.assert_array_equal(both, labels)
    assert params["model"] == "default+default"


def test_ensemble_of_two_checkpoints_averages_their_flows(tmp_path, volume_file, tiny_checkpoint, second_checkpoint):
    _, flows_a, _ = _segment(volume_file, tmp_path / "a", [tiny_checkpoint], FLOW_RUN)
    _, flows_b, _ = _segment(volume_file, tmp_path / "b", [second_checkpoint], FLOW_RUN)
    _, flows_ab, params = _segment(volume_file, tmp_path / "ab", [tiny_checkpoint, second_checkpoint], FLOW_RUN)
    assert np.abs(flows_a - flows_b).mean() > 1e-3  # the members disagree, so the mean is a real test
    # flows are kept in float16 on the network grid: equal up to its rounding
    np.testing.assert_allclose(flows_ab, (flows_a + flows_b) / 2, rtol=0, atol=F16_ROUNDING * np.abs(flows_a).max())
    assert params["model"] == f"{tiny_checkpoint}+{second_checkpoint}"


def test_ensemble_in_python_takes_a_list(volume_file, tiny_checkpoint, second_checkpoint):
    from mediar3d.inference import run_segmentation

    volume = read_image(volume_file).data
    options = {"diameter": 10.0, "progress": False, "keep_flows": True, "niter": 20}
    pair = run_segmentation(volume, [tiny_checkpoint, second_checkpoint], **options)
    single = [run_segmentation(volume, model, **options) for model in (tiny_checkpoint, second_checkpoint)]
    np.testing.assert_allclose(pair.flows, (single[0].flows + single[1].flows) / 2, rtol=0,
                               atol=F16_ROUNDING * np.abs(single[0].flows).max())


def test_ensemble_members_must_share_diameter_and_normalisation(tmp_path, volume_file, tiny_checkpoint, capsys):
    wide = save_checkpoint(tmp_path / "wide.pt", create_model("unet-small", channels=(4, 8)), train_diameter=30.0)
    other = save_checkpoint(tmp_path / "other_norm.pt", create_model("unet-small", channels=(4, 8)),
                            train_diameter=10.0, normalization={"percentiles": [1.0, 99.0]})
    out = tmp_path / "out"
    for bad, words in ((wide, ["diameters", "wide.pt", "30"]), (other, ["percentiles", "other_norm.pt"])):
        _assert_fails_cleanly(["segment", str(volume_file), "-o", str(out), "--model", str(tiny_checkpoint),
                               "--model", str(bad), "--no-progress"], capsys, out, words)


# ---- tuned thresholds in the checkpoint are segment's defaults --------------------------
TUNED = {"cellprob_threshold": 2.0, "flow_threshold": 0.0, "min_size": 200.0}
#: The bundled model's own thresholds (tuned when it was trained; see weights/MODEL_CARD.md).
BUNDLED = {"cellprob_threshold": -0.5, "flow_threshold": 0.4, "min_size": 50}


def test_tuned_thresholds_are_the_defaults_and_flags_win(tmp_path, nuclei_file):
    from mediar3d.tuning import TuneResult, write_tuned_checkpoint

    # written the way `mediar3d tune` writes its result
    result = TuneResult(best=dict(TUNED), score=0.9, start=dict(BUNDLED), start_score=0.5, metric="ap", iou=0.5,
                        rows=[], profiles={})
    tuned = write_tuned_checkpoint("default", tmp_path / "tuned.pt", result, {"data": "test"})
    flags = ["--diameter", "14", "--niter", "30", "--no-progress"]
    plain_labels, _, plain = _segment(nuclei_file, tmp_path / "plain", ["default"], flags)
    tuned_labels, _, with_tuned = _segment(nuclei_file, tmp_path / "tuned", [tuned], flags)
    assert {k: plain[k] for k in TUNED} == BUNDLED
    assert {k: with_tuned[k] for k in TUNED} == TUNED
    assert tuned_labels.max() != plain_labels.max()  # the tuned values changed the result
    explicit = [f"--{k.replace('_', '-')}={v}" for k, v in BUNDLED.items()]
    flags_labels, _, with_flags = _segment(nuclei_file, tmp_path / "flags", [tuned], flags + explicit)
    assert {k: with_flags[k] for k in TUNED} == BUNDLED
    np.testing.assert_array_equal(flags_labels, plain_labels)


def test_sample_flag_picks_the_sample_that_fits_the_model(tmp_path):
    import argparse

    from mediar3d.cli.segment_batch import _sources
    from mediar3d.sample import sample_path

    def picked(sample, model):
        args = argparse.Namespace(sample=sample, inputs=[], model=model, preview=None)
        return _sources(args)[0]

    assert picked("auto", None) == [sample_path("nuclei")]
    assert picked("auto", ["cells"]) == picked("auto", ["membrane"]) == [sample_path("cells")]
    assert picked("auto", ["cells", "nuclei"]) == [sample_path("nuclei")]
    assert picked("cells", None) == [sample_path("cells")] and picked("nuclei", ["cells"]) == [sample_path("nuclei")]
    with pytest.raises(SystemExit):
        main(["segment", "--sample", "cyto", "-o", str(tmp_path / "out")])

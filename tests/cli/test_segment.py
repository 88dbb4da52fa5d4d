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
    write_image(path, np.ones((2, 6, 32, 32), np.uint8), axes="CZYX")
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

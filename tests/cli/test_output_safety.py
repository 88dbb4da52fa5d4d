"""No command destroys its inputs, leaves temp files or half an output set, or fails only after the work."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from mediar3d.cli.main import main
from mediar3d.io import write_image, write_labels
from mediar3d.io.atomic import TEMP_MARK
from mediar3d.models import create_model, save_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    return path


@pytest.fixture()
def volume(tmp_path):
    path = tmp_path / "vol.tif"
    rng = np.random.default_rng(0)
    write_image(path, rng.integers(0, 200, size=(6, 24, 24)).astype(np.uint8))
    return path


def _segment(volume, out, model, *extra):
    """Run segment with --overwrite: the checks here must hold even when replacing outputs is allowed."""
    return main(["segment", str(volume), "-o", str(out), "--model", str(model), "--diameter", "10",
                 "--no-progress", "--niter", "20", "--overwrite", *extra])


def _messages(err: str) -> list[str]:
    """stderr lines other than the timed status lines ("[ 0.2 s] loading model ...")."""
    return [line for line in err.strip().splitlines() if not line.lstrip().startswith("[")]


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_MARK in p.name]


@pytest.fixture()
def no_network(monkeypatch):
    """Fail the test if segmentation starts: the checks must come before the work."""
    import mediar3d.inference

    def boom(*args, **kwargs):
        raise AssertionError("segmentation ran before the output was checked")

    monkeypatch.setattr(mediar3d.inference, "run_segmentation", boom)


@pytest.mark.parametrize("extra", [[], ["--preview", "{input}"]])
def test_segment_refuses_to_write_over_its_input(tmp_path, volume, tiny_checkpoint, capsys, no_network, extra):
    before = volume.read_bytes()
    out = volume if not extra else tmp_path / "out"
    code = _segment(volume, out, tiny_checkpoint, *[e.format(input=volume) for e in extra])
    err = capsys.readouterr().err
    assert code == 1 and "would overwrite the input" in err and len(_messages(err)) == 1
    assert volume.read_bytes() == before


def test_block_wise_segment_refuses_to_write_into_its_input_zarr(tmp_path, tiny_checkpoint, capsys):
    source = tmp_path / "in.zarr"
    write_image(source, np.ones((6, 24, 24), np.uint8))
    files = sorted(p.relative_to(source) for p in source.rglob("*"))
    code = _segment(source, source, tiny_checkpoint, "--blocks", "on")
    assert code == 1 and "would overwrite the input" in capsys.readouterr().err
    assert sorted(p.relative_to(source) for p in source.rglob("*")) == files


def test_an_unwritable_output_fails_before_the_work(tmp_path, volume, tiny_checkpoint, capsys, no_network):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert _segment(volume, blocker / "sub" / "labels.tif", tiny_checkpoint) == 1
    assert "is a file" in capsys.readouterr().err


def test_an_interrupted_write_leaves_the_previous_outputs_and_no_temp_files(tmp_path, volume, tiny_checkpoint,
                                                                            capsys, monkeypatch):
    out = tmp_path / "out"
    assert _segment(volume, out, tiny_checkpoint) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(old) == {"vol_labels.tif", "vol_params.json"}

    import mediar3d.inference.preview

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mediar3d.inference.preview, "render_preview", ctrl_c)
    capsys.readouterr()
    code = _segment(volume, out, tiny_checkpoint, "--preview", "--min-size", "0")
    err = capsys.readouterr().err
    assert code == 130 and len(_messages(err)) == 1 and "interrupted" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # labels written in this run were rolled back


def test_sigterm_removes_temp_files_and_writes_nothing(tmp_path, volume, tiny_checkpoint, capsys, monkeypatch):
    import mediar3d.io.image

    real = mediar3d.io.image.write_tiff

    def write_then_get_killed(path, *args, **kwargs):
        real(path, *args, **kwargs)   # the temporary file exists now
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(mediar3d.io.image, "write_tiff", write_then_get_killed)
    out = tmp_path / "out"
    code = _segment(volume, out, tiny_checkpoint)
    assert code == 128 + signal.SIGTERM and "terminated" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    assert _temp_files(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_tune_refuses_to_write_its_checkpoint_over_the_labels(tmp_path, tiny_checkpoint, capsys):
    image, labels = tmp_path / "img.tif", tmp_path / "gt.tif"
    write_image(image, np.ones((6, 16, 16), np.float32))
    write_labels(labels, np.ones((6, 16, 16), np.int32))
    before = labels.read_bytes()
    code = main(["tune", "--model", str(tiny_checkpoint), "--image", str(image), "--labels", str(labels),
                 "-o", str(labels)])
    assert code == 1 and "would overwrite the input" in capsys.readouterr().err
    assert labels.read_bytes() == before


def test_map_dataset_refuses_to_write_over_an_image(tmp_path, capsys):
    for i in range(2):
        write_image(tmp_path / "img" / f"a{i}.tif", np.ones((8, 8), np.uint8))
        write_labels(tmp_path / "gt" / f"a{i}.tif", np.ones((8, 8), np.int32))
    target = tmp_path / "img" / "a0.tif"
    before = target.read_bytes()
    code = main(["map-dataset", "--dataset", "d", str(tmp_path / "img" / "*.tif"), str(tmp_path / "gt" / "*.tif"),
                 "-o", str(target)])
    assert code == 1 and "would overwrite the input" in capsys.readouterr().err
    assert target.read_bytes() == before


@pytest.mark.parametrize("name", ["../escaped", "/tmp/abs", "a/b", "..", ""])
def test_slice_volumes_refuses_dataset_names_that_are_not_folder_names(tmp_path, name, capsys):
    write_image(tmp_path / "vol.tif", np.ones((4, 8, 8), np.float32))
    labels = np.zeros((4, 8, 8), np.int32)
    labels[1:3, 2:5, 2:5] = 1
    write_labels(tmp_path / "gt.tif", labels)
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    code = main(["slice-volumes", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "gt.tif"),
                 "--name", name, "-o", str(out)])
    assert code == 1 and "plain folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["gt.tif", "out", "vol.tif", "work"]


def test_slice_volumes_refuses_a_mapping_dataset_name_with_a_path(tmp_path, capsys):
    write_image(tmp_path / "vol.tif", np.ones((4, 8, 8), np.float32))
    write_labels(tmp_path / "gt.tif", np.ones((4, 8, 8), np.int32))
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps({"datasets": [{"name": "../../x", "pairs": [
        {"image": "vol.tif", "label": "gt.tif", "split": "train"}]}]}))
    assert main(["slice-volumes", "--data", str(spec), "-o", str(tmp_path / "out")]) == 1
    assert "plain folder name" in capsys.readouterr().err


def test_an_implausible_voxel_size_is_refused_with_the_value_and_the_way_out(tmp_path, tiny_checkpoint, capsys,
                                                                              no_network, monkeypatch):
    path = tmp_path / "um_as_m.tif"
    write_image(path, np.ones((6, 24, 24), np.uint8), voxel_size=(1e6, 1.0, 1.0))
    assert _segment(path, tmp_path / "out", tiny_checkpoint) == 1
    err = capsys.readouterr().err
    assert "voxel size" in err and "1e+06" in err and "--skip-size-checks" in err
    import mediar3d.io.memory

    monkeypatch.setattr(mediar3d.io.memory, "physical_memory", lambda: 2**20)   # 1 MiB of RAM
    assert _segment(path, tmp_path / "out", tiny_checkpoint, "--anisotropy", "50") == 1
    err = capsys.readouterr().err
    assert "GiB of memory" in err and "--skip-size-checks" in err
    assert not (tmp_path / "out").exists()


def test_slice_volumes_refuses_an_anisotropy_that_would_fill_the_disk(tmp_path, capsys):
    write_image(tmp_path / "vol.tif", np.ones((4, 8, 8), np.float32))
    write_labels(tmp_path / "gt.tif", np.ones((4, 8, 8), np.int32))
    out = tmp_path / "out"
    code = main(["slice-volumes", "--image", str(tmp_path / "vol.tif"), "--labels", str(tmp_path / "gt.tif"),
                 "--anisotropy", "1e5", "-o", str(out)])
    assert code == 1 and "--anisotropy 100000 is implausible" in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.tif"))


def test_a_nan_threshold_is_a_one_line_error_and_writes_nothing(tmp_path, volume, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert _segment(volume, out, tiny_checkpoint, "--cellprob-threshold", "nan") == 1
    err = capsys.readouterr().err.strip()
    assert len(_messages(err)) == 1 and "cellprob_threshold nan" in err
    assert not out.exists() or not any(out.iterdir())


def test_block_wise_segment_refuses_an_implausible_ngff_scale(tmp_path, tiny_checkpoint, capsys):
    source = tmp_path / "in.ome.zarr"
    write_image(source, np.ones((6, 24, 24), np.uint8), voxel_size=(1e6, 1.0, 1.0))
    assert _segment(source, tmp_path / "out.zarr", tiny_checkpoint, "--blocks", "on") == 1
    err = capsys.readouterr().err
    assert "voxel size" in err and "--skip-size-checks" in err
    assert not (tmp_path / "out.zarr").exists()


def test_tune_refuses_a_nan_candidate(tmp_path, tiny_checkpoint, capsys):
    image, labels = tmp_path / "img.tif", tmp_path / "gt.tif"
    write_image(image, np.ones((6, 16, 16), np.float32))
    write_labels(labels, np.ones((6, 16, 16), np.int32))
    code = main(["tune", "--model", str(tiny_checkpoint), "--image", str(image), "--labels", str(labels),
                 "--cellprob-thresholds", "0", "nan", "--no-write"])
    assert code == 1 and "--cellprob-thresholds nan" in capsys.readouterr().err

"""`mediar3d segment` on many inputs: one model load, skip / --overwrite, summary.csv, failures, provenance."""

import csv
import hashlib
import json
import re

import numpy as np
import pytest
import tifffile

import mediar3d.models
from mediar3d.cli.main import main
from mediar3d.io import read_labels, write_image
from mediar3d.models import create_model, save_checkpoint

RUN = ["--diameter", "10", "--niter", "20", "--no-progress", "--min-size", "3"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    return path


@pytest.fixture()
def folder(tmp_path):
    """Three tiny volumes of different sizes, plus an earlier labels file that must not be segmented."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for i, shape in enumerate([(6, 32, 32), (5, 32, 40), (7, 40, 32)]):
        write_image(data / f"vol{i}.tif", rng.integers(0, 200, size=shape).astype(np.uint8), voxel_size=(2.0, 1.0, 1.0))
    write_image(data / "old_labels.tif", np.zeros((4, 8, 8), np.uint16))
    return data


@pytest.fixture()
def loads(monkeypatch):
    """Counts checkpoint loads (the loader every model name / path goes through)."""
    calls = []
    real = mediar3d.models.load_model

    def counting(path, *a, **k):
        calls.append(path)
        return real(path, *a, **k)

    monkeypatch.setattr(mediar3d.models, "load_model", counting)
    return calls


def _summary(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture()
def nuclei_folder(tmp_path):
    """Three crops of the bundled sample volume, on which the bundled model finds real nuclei."""
    from mediar3d.io import read_image
    from mediar3d.sample import sample_path

    image = read_image(sample_path())
    data = tmp_path / "nuclei"
    for i, (z, y, x) in enumerate([(10, 48, 48), (4, 0, 64), (14, 80, 16)]):
        write_image(data / f"crop{i}.tif", image.data[z:z + 10, y:y + 56, x:x + 56], voxel_size=image.voxel_size)
    return data


def test_folder_of_three_volumes_loads_the_model_once_and_writes_a_summary(tmp_path, nuclei_folder, loads):
    out = tmp_path / "out"
    assert main(["segment", str(nuclei_folder), "-o", str(out), "--diameter", "14", "--niter", "30",
                 "--no-progress"]) == 0
    assert len(loads) == 1
    rows = _summary(out / "summary.csv")
    assert [r["file"] for r in rows] == [str(nuclei_folder / f"crop{i}.tif") for i in range(3)]
    for i, row in enumerate(rows):
        labels = read_labels(out / f"crop{i}_labels.tif")
        assert row["status"] == "ok" and row["labels"] == str(out / f"crop{i}_labels.tif")
        assert int(row["objects"]) == len(np.unique(labels[labels > 0])) >= 3
        assert float(row["diameter"]) == 14.0 and float(row["time_total_s"]) > 0
    # our own outputs in a folder are not inputs: a second run into the same folder finds only the crops
    assert main(["segment", str(out), "-o", str(out), "--no-progress"]) == 1  # out/ holds no images


def test_folder_listing_leaves_out_earlier_outputs(folder):
    from mediar3d.cli.segment_batch import expand_inputs

    files, batch = expand_inputs([str(folder)])
    assert batch and [f.name for f in files] == ["vol0.tif", "vol1.tif", "vol2.tif"]
    files, batch = expand_inputs([str(folder / "vol1.tif")])
    assert not batch and files == [folder / "vol1.tif"]


def test_done_files_are_skipped_unless_overwrite(tmp_path, folder, checkpoint, loads):
    out = tmp_path / "out"
    out.mkdir()
    write_image(out / "vol1_labels.tif", np.full((5, 32, 40), 7, np.uint16))  # "done" by an earlier run
    assert main(["segment", str(folder / "vol*.tif"), "-o", str(out), "--model", str(checkpoint), *RUN]) == 0
    assert [r["status"] for r in _summary(out / "summary.csv")] == ["ok", "skipped", "ok"]
    assert (read_labels(out / "vol1_labels.tif") == 7).all()  # untouched
    loads.clear()
    assert main(["segment", str(folder), "-o", str(out), "--model", str(checkpoint), *RUN]) == 0
    assert loads == []  # nothing to do: no model load
    assert [r["status"] for r in _summary(out / "summary.csv")] == ["skipped"] * 3
    assert main(["segment", str(folder), "-o", str(out), "--model", str(checkpoint), "--overwrite", *RUN]) == 0
    assert [r["status"] for r in _summary(out / "summary.csv")] == ["ok"] * 3
    assert not (read_labels(out / "vol1_labels.tif") == 7).all()


def test_a_failing_file_is_reported_after_the_others(tmp_path, folder, checkpoint, capsys):
    bad = np.ones((6, 32, 32), np.float32)
    bad[1, 2, 3] = np.nan
    tifffile.imwrite(folder / "vol1.tif", bad)
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(checkpoint), *RUN]) == 1
    rows = _summary(out / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "NaN" in rows[1]["error"]
    assert (out / "vol2_labels.tif").is_file() and not (out / "vol1_labels.tif").exists()
    err = capsys.readouterr().err
    assert "1 of 3 inputs failed" in err and "vol1.tif" in err


def test_single_input_with_existing_labels_is_refused_without_overwrite(tmp_path, folder, checkpoint, capsys):
    target = tmp_path / "mine.tif"
    write_image(target, np.full((6, 32, 32), 3, np.uint16))
    argv = ["segment", str(folder / "vol0.tif"), "-o", str(target), "--model", str(checkpoint), *RUN]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "mine.tif" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (read_labels(target) == 3).all()
    assert main([*argv, "--overwrite"]) == 0
    assert not (read_labels(target) == 3).all()


@pytest.mark.parametrize("output", ["labels.png", "labels.npy", "labels.h5"])
def test_unknown_output_suffix_is_refused(tmp_path, folder, checkpoint, capsys, output):
    out = tmp_path / output
    assert main(["segment", str(folder / "vol0.tif"), "-o", str(out), "--model", str(checkpoint), *RUN]) == 1
    assert output in capsys.readouterr().err
    assert not out.exists()


def test_several_inputs_need_a_folder_and_distinct_names(tmp_path, folder, checkpoint, capsys):
    assert main(["segment", str(folder / "vol0.tif"), str(folder / "vol1.tif"), "-o", str(tmp_path / "x.tif"),
                 "--model", str(checkpoint), *RUN]) == 1
    assert "output folder" in capsys.readouterr().err
    other = tmp_path / "other"
    write_image(other / "vol0.tif", np.ones((4, 32, 32), np.uint8))
    assert main(["segment", str(folder / "vol0.tif"), str(other / "vol0.tif"), "-o", str(tmp_path / "o"),
                 "--model", str(checkpoint), *RUN]) == 1
    assert "both would write" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "nothing*.tif"), "-o", str(tmp_path / "o"), *RUN]) == 1
    assert "matches no file" in capsys.readouterr().err


def test_params_record_provenance(tmp_path, folder, checkpoint):
    import torch

    import mediar3d

    out = tmp_path / "out"
    argv = ["segment", str(folder / "vol0.tif"), "-o", str(out), "--model", str(checkpoint), *RUN]
    assert main(argv) == 0
    params = json.loads((out / "vol0_params.json").read_text())
    assert params["mediar3d_version"] == mediar3d.__version__ and params["torch_version"] == torch.__version__
    assert params["models"] == [{"name": str(checkpoint), "file": "tiny.pt",
                                 "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest()}]
    assert params["command_line"].startswith("mediar3d segment ") and str(checkpoint) in params["command_line"]
    assert params["device"] == "cpu"


def test_status_lines_and_quiet_after_the_subcommand(tmp_path, folder, checkpoint, capsys):
    """Timed lines as each phase starts (the diameter estimate, the network, post-processing), in order; -q: none."""
    argv = ["segment", str(folder / "vol0.tif"), "--model", str(checkpoint), "--niter", "20", "--no-progress",
            "--min-size", "3"]  # no --diameter: the estimate runs
    assert main([*argv, "-o", str(tmp_path / "a"), "-v"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[")]
    assert all(re.match(r"\[ *\d+\.\d s\] ", line) for line in lines), lines
    phases = ("loading model", "read vol0.tif", "vol0.tif: estimating the object diameter", "vol0.tif: network on",
              "vol0.tif: post-processing", "segmented vol0.tif", "wrote")
    found = [next((i for i, line in enumerate(lines) if phase in line), None) for phase in phases]
    assert None not in found and found == sorted(found), lines
    seconds = [float(line[1:].split()[0]) for line in lines]
    assert seconds == sorted(seconds)
    assert main([*argv, "-o", str(tmp_path / "b"), "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert (tmp_path / "b" / "vol0_labels.tif").is_file()


def test_measure_writes_an_objects_table_in_micrometres(tmp_path, nuclei_folder):
    from mediar3d.io import read_image

    out = tmp_path / "out"
    source = nuclei_folder / "crop0.tif"
    assert main(["segment", str(source), "-o", str(out), "--diameter", "14", "--niter", "30", "--no-progress",
                 "--measure"]) == 0
    labels = read_labels(out / "crop0_labels.tif")
    voxel = read_image(source).voxel_size
    rows = _summary(out / "crop0_objects.csv")
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    assert len(ids) >= 3 and [int(r["label"]) for r in rows] == list(ids)
    assert [float(r["volume_um3"]) for r in rows] == list(counts * float(np.prod(voxel)))
    image = read_image(source).data
    first = labels == ids[0]
    assert float(rows[0]["intensity_max"]) == image[first].max()


def test_timepoints_are_segmented_one_by_one(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(1)
    movie = rng.integers(0, 200, size=(3, 6, 32, 32)).astype(np.uint8)
    source = tmp_path / "movie.tif"
    tifffile.imwrite(source, movie, imagej=True, metadata={"axes": "TZYX"})
    out = tmp_path / "out"
    assert main(["segment", str(source), "-o", str(out), "--model", str(checkpoint), *RUN]) == 1
    err = capsys.readouterr().err
    assert "3 time points" in err and "--timepoints" in err  # the message names the option that does it
    assert main(["segment", str(source), "-o", str(out), "--model", str(checkpoint), "--timepoints",
                 "--save-flows", *RUN]) == 0
    rows = _summary(out / "summary.csv")
    assert [(r["timepoint"], r["status"]) for r in rows] == [("0", "ok"), ("1", "ok"), ("2", "ok")]
    # time point 1 alone, as its own file, gives the same flows
    write_image(tmp_path / "one.tif", movie[1])
    assert main(["segment", str(tmp_path / "one.tif"), "-o", str(tmp_path / "one"), "--model", str(checkpoint),
                 "--save-flows", *RUN]) == 0
    from mediar3d.io import read_image

    np.testing.assert_array_equal(read_image(out / "movie_t0001_flows.tif").data,
                                  read_image(tmp_path / "one" / "one_flows.tif").data)
    assert not np.array_equal(read_image(out / "movie_t0000_flows.tif").data,
                              read_image(out / "movie_t0001_flows.tif").data)

"""`mediar3d evaluate` end to end, in-process, on generated label volumes."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mediar3d.cli.main import main

REPORT = ("metrics.csv", "metrics.json", "ap_vs_iou.png")


def cells(shape=(24, 60, 60), spacing=12, seed=0) -> np.ndarray:
    """50 non-touching random ellipsoids on a jittered grid, (z, y, x) uint16."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    zz, yy, xx = np.indices(shape)
    centres = [(z, y, x) for z in range(spacing // 2, shape[0], spacing)
               for y in range(spacing // 2, shape[1], spacing) for x in range(spacing // 2, shape[2], spacing)]
    for label, centre in zip(rng.permutation(len(centres)) + 1, centres):
        r = rng.uniform(2.5, spacing / 2 - 1, size=3)
        c = np.array(centre) + rng.integers(-1, 2, size=3)
        labels[((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1] = label
    return labels


def write(path: Path, labels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, labels, photometric="minisblack")
    return path


def run_ok(argv, capsys):
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def run_fails(argv, capsys, message):
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mediar3d evaluate: error:"), err
    assert message in lines[0], lines[0]
    return lines[0]


def test_volume_against_itself_gives_ap_one_everywhere(tmp_path, capsys):
    gt = write(tmp_path / "gt.tif", cells())
    out_dir = tmp_path / "report"
    out = run_ok(["--gt", gt, "--pred", gt, "-o", out_dir], capsys)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(REPORT)
    report = json.loads((out_dir / "metrics.json").read_text())
    assert report["thresholds"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert report["pooled"]["ap"] == [1.0] * 10
    assert report["pooled"]["n_gt"] == 50 and report["pooled"]["seg"] == 1.0
    assert "0.95      50       0       0     1.0000" in out
    rows = list(csv.DictReader((out_dir / "metrics.csv").open()))
    assert len(rows) == 3 * 10 and {float(r["ap"]) for r in rows} == {1.0}
    assert (out_dir / "ap_vs_iou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ten_percent_of_cells_removed_gives_recall_090(tmp_path, capsys):
    labels = cells(seed=3)
    removed = np.random.default_rng(1).choice(np.arange(1, 51), size=5, replace=False)
    write(tmp_path / "gt" / "vol.tif", labels)
    write(tmp_path / "pred" / "vol_labels.tif", np.where(np.isin(labels, removed), 0, labels))
    run_ok(["--gt", tmp_path / "gt", "--pred", tmp_path / "pred"], capsys)
    report = json.loads((tmp_path / "pred" / "metrics.json").read_text())  # default: the prediction folder
    pooled = report["pooled"]
    assert (pooled["n_gt"], pooled["n_pred"]) == (50, 45)
    assert pooled["recall"] == [0.9] * 10 and pooled["precision"] == [1.0] * 10
    assert pooled["ap"] == [0.9] * 10 and pooled["fn"] == [5] * 10


def test_touching_synthetic_nuclei(tmp_path, capsys):
    from mediar3d.data.synthetic import make_nuclei_volume

    _, labels = make_nuclei_volume((24, 64, 64), n_nuclei=20, seed=2)
    ids = np.unique(labels)[1:]
    assert ids.size == 20
    write(tmp_path / "gt.tif", labels)
    write(tmp_path / "pred.tif", np.where(np.isin(labels, ids[::10]), 0, labels))  # 2 of 20 removed
    run_ok(["--gt", tmp_path / "gt.tif", "--pred", tmp_path / "gt.tif", "-o", tmp_path / "self"], capsys)
    run_ok(["--gt", tmp_path / "gt.tif", "--pred", tmp_path / "pred.tif", "-o", tmp_path / "missing"], capsys)
    same = json.loads((tmp_path / "self" / "metrics.json").read_text())["pooled"]
    missing = json.loads((tmp_path / "missing" / "metrics.json").read_text())["pooled"]
    assert same["ap"] == [1.0] * 10
    assert missing["recall"] == [0.9] * 10 and missing["precision"] == [1.0] * 10


def test_custom_thresholds_and_several_images(tmp_path, capsys):
    a, b = cells(seed=4), cells(seed=5)
    write(tmp_path / "gt" / "a.tif", a)
    write(tmp_path / "gt" / "b.tif", b)
    write(tmp_path / "pred" / "a.tif", a)
    write(tmp_path / "pred" / "b.tif", np.zeros_like(b))
    out = run_ok(["--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-o", tmp_path / "r",
                  "--thresholds", "0.3", "0.6:0.8:0.1", "--per-image"], capsys)
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["thresholds"] == [0.3, 0.6, 0.7, 0.8]
    assert report["pooled"]["ap"] == [0.5] * 4
    assert report["mean_over_images"]["ap"] == [0.5] * 4
    assert [im["name"] for im in report["images"]] == ["a", "b"]
    assert "b: GT 50  pred 0  AP@0.30 0.0000" in out


def test_ctc_slice_annotations_with_sparse_flag(tmp_path, capsys):
    vol = cells(seed=6)
    write(tmp_path / "01_RES" / "mask000.tif", vol)
    annotated = np.where(np.isin(vol[6], np.unique(vol[6])[1:4]), vol[6], 0)  # 3 cells of slice 6
    write(tmp_path / "01_GT" / "SEG" / "man_seg_000_006.tif", annotated)
    run_ok(["--gt", tmp_path / "01_GT", "--pred", tmp_path / "01_RES", "--sparse"], capsys)
    report = json.loads((tmp_path / "01_RES" / "metrics.json").read_text())
    image = report["images"][0]
    assert image["z_slice"] == 6 and image["n_gt"] == 3 and image["n_pred"] == 3
    assert image["ap"] == [1.0] * 10 and image["n_pred_ignored"] > 0
    run_ok(["--gt", tmp_path / "01_GT", "--pred", tmp_path / "01_RES", "-o", tmp_path / "dense"], capsys)
    dense = json.loads((tmp_path / "dense" / "metrics.json").read_text())
    assert dense["pooled"]["fp"][0] == image["n_pred_ignored"]


def test_gt_annotated_on_a_few_slices(tmp_path, capsys):
    pred = cells(seed=7)
    gt = np.zeros_like(pred)
    gt[[5, 17]] = pred[[5, 17]]
    noisy = pred.copy()
    noisy[9:14] = 0  # wrong only away from the annotated slices
    write(tmp_path / "gt.tif", gt)
    write(tmp_path / "pred.tif", noisy)
    args = ["--gt", tmp_path / "gt.tif", "--pred", tmp_path / "pred.tif", "--sparse"]
    run_ok([*args, "-o", tmp_path / "whole"], capsys)
    run_ok([*args, "-o", tmp_path / "slices", "--annotated-slices"], capsys)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    slices = json.loads((tmp_path / "slices" / "metrics.json").read_text())
    assert slices["images"][0]["z_slices"] == [5, 17]
    assert slices["pooled"]["ap"] == [1.0] * 10
    assert whole["pooled"]["ap"][0] < 0.5


def _shape_mismatch(d):
    write(d / "gt" / "a.tif", np.ones((4, 8, 8), np.uint8))
    write(d / "pred" / "a.tif", np.ones((4, 8, 9), np.uint8))


def _missing_prediction(d):
    write(d / "gt" / "a.tif", np.ones((4, 8, 8), np.uint8))
    write(d / "gt" / "b.tif", np.ones((4, 8, 8), np.uint8))
    write(d / "pred" / "a.tif", np.ones((4, 8, 8), np.uint8))


def _no_pairs(d):
    (d / "gt").mkdir()
    (d / "gt" / "notes.txt").write_text("no labels here")
    write(d / "pred" / "a.tif", np.ones((4, 8, 8), np.uint8))


def _missing_gt(d):
    write(d / "pred" / "a.tif", np.ones((4, 8, 8), np.uint8))


def _corrupt_file(d):
    write(d / "gt" / "a.tif", np.ones((4, 8, 8), np.uint8))
    (d / "pred").mkdir()
    (d / "pred" / "a.tif").write_bytes(b"not a tiff at all")


def _float_labels(d):
    write(d / "gt" / "a.tif", np.ones((4, 8, 8), np.uint8))
    write(d / "pred" / "a.tif", np.full((4, 8, 8), 0.5, np.float32))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (_shape_mismatch, "shape mismatch"),
        (_missing_prediction, "no prediction for b.tif"),
        (_no_pairs, "no label files"),
        (_missing_gt, "does not exist"),
        (_corrupt_file, "pred/a.tif"),
        (_float_labels, "pred/a.tif"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_output(tmp_path, capsys, setup, message):
    setup(tmp_path)
    before = {p for p in tmp_path.rglob("*")}
    run_fails(["--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-o", tmp_path / "report"], capsys, message)
    assert not (tmp_path / "report").exists()
    assert {p for p in tmp_path.rglob("*")} == before


def test_bad_input_leaves_nothing_in_default_output_folder(tmp_path, capsys):
    _shape_mismatch(tmp_path)
    run_fails(["--gt", tmp_path / "gt", "--pred", tmp_path / "pred"], capsys, "shape mismatch")
    assert [p.name for p in (tmp_path / "pred").iterdir()] == ["a.tif"]


def test_bad_thresholds_are_rejected(tmp_path, capsys):
    gt = write(tmp_path / "gt.tif", cells())
    run_fails(["--gt", gt, "--pred", gt, "-o", tmp_path / "r", "--thresholds", "0.5", "1.5"], capsys, "1.5")
    run_fails(["--gt", gt, "--pred", gt, "-o", tmp_path / "r", "--thresholds", "high"], capsys, "'high'")
    assert not (tmp_path / "r").exists()


def test_unwritable_output_is_an_error_without_leftovers(tmp_path, capsys):
    gt = write(tmp_path / "gt.tif", cells())
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the report folder should go")
    run_fails(["--gt", gt, "--pred", gt, "-o", blocker / "sub"], capsys, "cannot write the report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.tif", "taken"]


def test_without_matplotlib_the_scores_are_written_and_the_plot_left_out(tmp_path, capsys, caplog, no_matplotlib):
    gt = write(tmp_path / "gt.tif", cells())
    out_dir = tmp_path / "report"
    out_dir.mkdir()
    (out_dir / "ap_vs_iou.png").write_bytes(b"the plot of an earlier evaluation")
    with caplog.at_level(logging.WARNING):
        out = run_ok(["--gt", gt, "--pred", gt, "-o", out_dir], capsys)
    assert sorted(p.name for p in out_dir.iterdir()) == ["metrics.csv", "metrics.json"]  # no stale plot either
    assert json.loads((out_dir / "metrics.json").read_text())["pooled"]["ap"] == [1.0] * 10
    assert "ap_vs_iou.png" not in out
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and not any("\n" in w for w in warnings), warnings
    assert "pip install 'mediar3d[plots]'" in warnings[0] and "ap_vs_iou.png left out" in warnings[0]
    assert "removed the ap_vs_iou.png of an earlier evaluation" in warnings[1]


def test_report_says_how_much_larger_the_masks_are(tmp_path, capsys):
    from skimage.segmentation import expand_labels

    a = cells(seed=6)
    grown = expand_labels(a, 1)
    write(tmp_path / "gt" / "a.tif", a)
    write(tmp_path / "gt" / "b.tif", a)
    write(tmp_path / "pred" / "a.tif", grown)
    write(tmp_path / "pred" / "b.tif", np.zeros_like(a))
    run_ok(["--gt", tmp_path / "gt", "--pred", tmp_path / "pred", "-o", tmp_path / "r", "--thresholds", "0.3"], capsys)
    ids = np.arange(1, 51)
    expected = float(np.exp(np.mean(np.log(np.bincount(grown.ravel())[ids] / np.bincount(a.ravel())[ids]))))
    assert expected > 1.5
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert report["pooled"]["size_ratio"][0] == pytest.approx(expected, rel=1e-5)
    assert report["mean_over_images"]["size_ratio"][0] == pytest.approx(expected, rel=1e-5)  # b has no match
    assert [im["size_ratio"] for im in report["images"]] == [report["pooled"]["size_ratio"], [None]]
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "r" / "metrics.csv").open())}
    assert float(rows["a"]["size_ratio"]) == pytest.approx(expected, rel=1e-5) and rows["b"]["size_ratio"] == ""

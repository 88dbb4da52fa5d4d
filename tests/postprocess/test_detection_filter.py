"""Detection-guided filtering: exactly the masks without a centre are removed."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from mediar3d.errors import InputError
from mediar3d.postprocess.detection_filter import (
    filter_by_markers,
    filter_by_points,
    filter_by_points_reference,
    labels_at_points,
    read_points_csv,
)


def random_labels(shape=(10, 30, 30), n=25, seed=0) -> np.ndarray:
    """Touching boxes with ids 1..n written over each other (some ids vanish, some split)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for k in range(1, n + 1):
        lo = [rng.integers(0, s - 3) for s in shape]
        size = [rng.integers(2, 7) for _ in shape]
        labels[tuple(slice(a, a + b) for a, b in zip(lo, size))] = k
    return labels


def centres(labels: np.ndarray, ids) -> np.ndarray:
    """One voxel of each given mask (its first voxel in C order), as float (z, y, x) points."""
    flat = labels.ravel()
    return np.array([np.unravel_index(int(np.flatnonzero(flat == k)[0]), labels.shape) for k in ids], dtype=float)


def test_filter_removes_exactly_the_masks_without_a_centre():
    labels = random_labels()
    present = np.unique(labels)[1:]
    keep = present[::3]
    points = centres(labels, keep) + 0.3  # rounding brings them back onto the voxel
    background = np.argwhere(labels == 0)[:4]
    filtered = filter_by_points(labels, np.vstack([points, background]))
    assert filtered.dtype == labels.dtype
    np.testing.assert_array_equal(np.unique(filtered)[1:], np.sort(keep))
    kept = np.isin(labels, keep)
    np.testing.assert_array_equal(filtered[kept], labels[kept])
    assert not filtered[~kept].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_filter_agrees_with_the_loop(seed):
    labels = random_labels(seed=seed)
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, np.array(labels.shape) - 1, size=(15, 3))
    np.testing.assert_array_equal(filter_by_points(labels, points), filter_by_points_reference(labels, points))


def test_markers_and_renumbering():
    labels = random_labels(seed=4)
    ids = np.unique(labels)[1:]
    markers = np.zeros_like(labels, dtype=np.uint8)
    for z, y, x in centres(labels, ids[:5]).astype(int):
        markers[z, y, x] = 1
    out = filter_by_markers(labels, markers, renumber=True)
    assert out.max() == 5 and np.unique(out).size == 6
    np.testing.assert_array_equal(out > 0, np.isin(labels, ids[:5]))


def test_2d_labels_and_point_lookup():
    labels = np.zeros((8, 8), np.int32)
    labels[1:3, 1:3], labels[5:7, 5:7] = 4, 9
    np.testing.assert_array_equal(labels_at_points(labels, [[1.4, 2.2], [0, 7]]), [4, 0])
    np.testing.assert_array_equal(np.unique(filter_by_points(labels, [[6, 6]])), [0, 9])


def test_bad_points_and_labels():
    labels = random_labels()
    with pytest.raises(InputError, match="outside"):
        filter_by_points(labels, [[0, 0, 40]])
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        filter_by_points(labels, [[1, 2]])
    with pytest.raises(InputError, match="integer"):
        filter_by_points(labels.astype(np.float32), [[1, 2, 3]])
    with pytest.raises(InputError, match="do not match"):
        filter_by_markers(labels, labels[:-1])


@pytest.mark.parametrize("text", ["z,y,x\n1,2,3\n4.5,5,6\n", "index,axis-0,axis-1,axis-2\n0,1,2,3\n1,4.5,5,6\n",
                                  "1;2;3\n4.5;5;6\n", "x,y,z,id\n3,2,1,7\n6,5,4.5,8\n"])
def test_read_points_csv_layouts(tmp_path, text):
    path = tmp_path / "p.csv"
    path.write_text(text)
    np.testing.assert_allclose(read_points_csv(path), [[1, 2, 3], [4.5, 5, 6]])


def test_read_points_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="no columns"):
        read_points_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("z,y,x\n1,two,3\n")
    with pytest.raises(InputError, match="non-numeric"):
        read_points_csv(tmp_path / "b.csv")
    with pytest.raises(InputError, match="cannot be read"):
        read_points_csv(tmp_path / "missing.csv")


def _cli(argv: list[str]) -> int:
    from mediar3d.cli import filter_masks

    parser = argparse.ArgumentParser()
    filter_masks.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_filter_masks_command(tmp_path: Path, capsys):
    from mediar3d.io import read_labels, write_labels

    labels = random_labels(seed=5)
    ids = np.unique(labels)[1:]
    write_labels(tmp_path / "pred.tif", labels)
    pts = centres(labels, ids[:3])
    (tmp_path / "c.csv").write_text("z,y,x\n" + "".join(f"{z},{y},{x}\n" for z, y, x in pts))
    assert _cli(["filter-masks", str(tmp_path / "pred.tif"), "--points", str(tmp_path / "c.csv"),
                 "-o", str(tmp_path / "out.tif")]) == 0
    np.testing.assert_array_equal(np.unique(read_labels(tmp_path / "out.tif"))[1:], ids[:3])
    assert f"kept 3 of {ids.size} masks" in capsys.readouterr().out
    write_labels(tmp_path / "markers.tif", (read_labels(tmp_path / "out.tif") > 0).astype(np.int32))
    assert _cli(["filter-masks", str(tmp_path / "pred.tif"), "--markers", str(tmp_path / "markers.tif"),
                 "--renumber", "-o", str(tmp_path / "out2.tif")]) == 0
    assert read_labels(tmp_path / "out2.tif").max() == 3
    with pytest.raises(InputError, match="is the input"):
        _cli(["filter-masks", str(tmp_path / "pred.tif"), "--points", str(tmp_path / "c.csv"),
              "-o", str(tmp_path / "pred.tif")])

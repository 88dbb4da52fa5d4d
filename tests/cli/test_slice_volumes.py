"""`mediar3d slice-volumes` in-process: slices, mapping with orientations and splits, slice table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mediar3d.cli.main import main


def _volume(seed: int, shape=(6, 10, 12)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    labels[1:3, 2:5, 3:7] = 1  # z 1-2, y 2-4, x 3-6 hold labels
    labels[4, 6:9, 8:11] = 2   # z 4, y 6-8, x 8-10
    return image, labels


@pytest.fixture
def volumes(tmp_path: Path) -> Path:
    from mediar3d.io import write_image, write_labels

    pairs = []
    for i, split in enumerate(("train", "val")):
        image, labels = _volume(i)
        write_image(tmp_path / "src" / f"vol{i}.tif", image)
        write_labels(tmp_path / "src" / f"vol{i}_gt.tif", labels)
        pairs.append({"image": f"src/vol{i}.tif", "label": f"src/vol{i}_gt.tif", "split": split})
    path = tmp_path / "map3d.json"
    path.write_text(json.dumps({"datasets": [{"name": "emb", "probability": 1.0, "pairs": pairs}]}))
    return path


def test_slice_volumes_writes_annotated_slices_and_mapping(tmp_path, volumes, capsys):
    from mediar3d.data.mapping import load_mapping
    from mediar3d.io import read_image, read_labels

    out = tmp_path / "slices"
    assert main(["slice-volumes", "--data", str(volumes), "-o", str(out)]) == 0
    mapping = load_mapping(out / "mapping.json")
    by_name = {d.name: d for d in mapping.datasets}
    assert sorted(by_name) == ["emb-x", "emb-y", "emb-z"]
    # annotated slices per volume: z {1, 2, 4}, y {2, 3, 4, 6, 7, 8}, x {3..6, 8..10}
    assert {k: len(d.pairs) for k, d in by_name.items()} == {"emb-z": 6, "emb-y": 12, "emb-x": 14}
    assert sum(d.probability for d in mapping.datasets) == pytest.approx(1.0)
    for d in mapping.datasets:
        assert {p.split for p in d.pairs if "vol0" in p.image.name} == {"train"}
        assert {p.split for p in d.pairs if "vol1" in p.image.name} == {"val"}
    with open(out / "slices.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 32
    image, labels = _volume(1)
    row = next(r for r in rows if r["orientation"] == "y" and r["index"] == "7" and "vol1" in r["source_image"])
    np.testing.assert_allclose(read_image(out / row["image"]).data, image[:, 7, :])
    np.testing.assert_array_equal(read_labels(out / row["label"]), labels[:, 7, :])
    assert all(read_labels(out / r["label"]).any() for r in rows)


def test_slice_volumes_from_files_with_anisotropy(tmp_path, volumes, capsys):
    from mediar3d.data.mapping import load_mapping
    from mediar3d.io import read_labels

    src = tmp_path / "src"
    out = tmp_path / "aniso"
    assert main(["slice-volumes", "--image", str(src / "vol0.tif"), "--labels", str(src / "vol0_gt.tif"),
                 "--anisotropy", "2", "--orientations", "x", "--keep-empty", "-o", str(out)]) == 0
    mapping = load_mapping(out / "mapping.json")
    assert [d.name for d in mapping.datasets] == ["volumes-x"]
    pairs = mapping.datasets[0].pairs
    assert len(pairs) == 12 and {p.split for p in pairs} == {"train"}
    assert read_labels(pairs[0].label).shape == (12, 10)  # z stretched 6 -> 12


def test_slice_volumes_errors(tmp_path, volumes, capsys):
    assert main(["slice-volumes", "-o", str(tmp_path / "o")]) == 1
    assert "nothing to slice" in capsys.readouterr().err
    assert main(["slice-volumes", "--data", str(volumes), "--orientations", "q", "-o", str(tmp_path / "o")]) == 1
    assert "orientation" in capsys.readouterr().err


def test_slices_keep_their_volume_diameter_for_fine_tuning(tmp_path, volumes):
    """Each slice's pair records its volume's 3D diameter, and fine-tuning zooms by it, not by the slice."""
    from mediar3d.data.mapping import load_mapping
    from mediar3d.training.dataset import build_index, diameter_scales

    out = tmp_path / "slices"
    assert main(["slice-volumes", "--data", str(volumes), "-o", str(out), "--orientations", "z"]) == 0
    mapping = load_mapping(out / "mapping.json")
    _, labels = _volume(0)
    sizes = np.bincount(labels.ravel())[1:]                       # 24 and 9 voxels
    by_hand = float(np.median(np.repeat(np.cbrt(6.0 * sizes / np.pi), sizes)))   # voxel-weighted median
    train = [p for d in mapping.datasets for p in d.pairs if "vol0" in p.image.name]
    assert train and all(p.diameter == pytest.approx(by_hand) for p in train)
    index = build_index(mapping, "train")
    scales = diameter_scales(index, 2.0 * by_hand)
    assert scales == pytest.approx([2.0] * len(index.items))      # a slice's own 2D diameter would differ per slice
    saved = json.loads((out / "mapping.json").read_text())
    assert all("diameter" in p for d in saved["datasets"] for p in d["pairs"])


def test_slices_are_normalised_as_their_volume_not_one_by_one(tmp_path):
    """A slice through a dim region stays dim in training, as inference normalises the whole volume."""
    from mediar3d.data.mapping import load_mapping
    from mediar3d.io import write_image, write_labels
    from mediar3d.training.dataset import SliceDataset, build_index

    image = np.zeros((4, 16, 16), np.float32)
    labels = np.zeros((4, 16, 16), np.int32)
    image[0, 4:10, 4:10], labels[0, 4:10, 4:10] = 1000.0, 1   # bright nucleus in slice 0
    image[3, 4:10, 4:10], labels[3, 4:10, 4:10] = 100.0, 2    # dim nucleus in slice 3
    write_image(tmp_path / "v.tif", image)
    write_labels(tmp_path / "v_gt.tif", labels)
    (tmp_path / "m.json").write_text(json.dumps({"datasets": [{"name": "d", "pairs": [
        {"image": "v.tif", "label": "v_gt.tif", "split": "train"}]}]}))
    out = tmp_path / "slices"
    assert main(["slice-volumes", "--data", str(tmp_path / "m.json"), "-o", str(out), "--orientations", "z"]) == 0
    mapping = load_mapping(out / "mapping.json")
    pairs = [p for d in mapping.datasets for p in d.pairs]
    assert pairs and all(p.intensity_range == pytest.approx((0.0, 1000.0)) for p in pairs)
    dataset = SliceDataset(build_index(mapping, "train"))
    peaks = {}
    for number, ref in enumerate(dataset.index.samples):
        sample = dataset.raw_sample(number)
        peaks[dataset.index.items[ref.item].pair.image.name] = float(sample["image"].max())
    dim = next(v for k, v in peaks.items() if k.endswith("z3.tif"))
    bright = next(v for k, v in peaks.items() if k.endswith("z0.tif"))
    assert bright == pytest.approx(1.0) and dim == pytest.approx(0.1, abs=0.02)   # per-slice: both 1.0
    saved = json.loads((out / "mapping.json").read_text())
    assert all(p["intensity_range"] == pytest.approx([0.0, 1000.0]) for d in saved["datasets"] for p in d["pairs"])

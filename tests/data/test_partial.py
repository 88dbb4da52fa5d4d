"""Simulated partial annotation: a seeded subset of instances, kept voxel for voxel."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from mediar3d.data.partial import choose_instances, pair_seed, simulate_partial
from mediar3d.errors import ConfigError, InputError


def grid_labels(n_side=4, shape=(8, 32, 32)) -> np.ndarray:
    """n_side**2 boxes with ids 3, 6, 9, ... (not consecutive)."""
    labels = np.zeros(shape, np.int32)
    step = shape[1] // n_side
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            labels[2:6, i * step + 1:(i + 1) * step - 1, j * step + 1:(j + 1) * step - 1] = 3 * k
    return labels


@pytest.mark.parametrize("fraction, expected", [(0.25, 4), (0.5, 8), (0.01, 1), (0.0, 0), (1.0, 16)])
def test_fraction_keeps_that_many_whole_instances(fraction, expected):
    labels = grid_labels()
    out = simulate_partial(labels, fraction=fraction, seed=7)
    kept = np.unique(out)[1:]
    assert kept.size == expected and set(kept) <= set(np.unique(labels)[1:])
    mask = np.isin(labels, kept)
    np.testing.assert_array_equal(out[mask], labels[mask])
    assert not out[~mask].any()
    assert out.dtype == labels.dtype


def test_draw_is_seeded():
    labels = grid_labels()
    a = simulate_partial(labels, fraction=0.5, seed=1)
    np.testing.assert_array_equal(a, simulate_partial(labels, fraction=0.5, seed=1))
    draws = {tuple(np.unique(simulate_partial(labels, fraction=0.5, seed=s))) for s in range(5)}
    assert len(draws) > 1


def test_count_and_bad_arguments():
    labels = grid_labels()
    assert np.unique(simulate_partial(labels, count=3)).size == 4
    assert np.unique(simulate_partial(labels, count=100)).size == 17
    np.testing.assert_array_equal(choose_instances(np.array([0, 5, 5, 2]), count=5), [2, 5])
    with pytest.raises(ConfigError, match="exactly one"):
        simulate_partial(labels)
    with pytest.raises(ConfigError, match="exactly one"):
        simulate_partial(labels, fraction=0.5, count=2)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        simulate_partial(labels, fraction=1.5)
    with pytest.raises(InputError, match="integer"):
        simulate_partial(labels.astype(float), fraction=0.5)
    assert pair_seed(0, "a.tif") != pair_seed(0, "b.tif") and pair_seed(3, "a.tif") == pair_seed(3, "a.tif")


def _cli(argv: list[str]) -> int:
    from mediar3d.cli import simulate_partial as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_simulate_partial_command(tmp_path: Path, capsys):
    from mediar3d.data.mapping import load_mapping
    from mediar3d.io import read_labels, write_image, write_labels

    labels = grid_labels()
    pairs = []
    for i, split in enumerate(("train", "train", "val")):
        write_image(tmp_path / "img" / f"v{i}.tif", labels.astype(np.float32))
        write_labels(tmp_path / "gt" / f"v{i}.tif", labels)
        pairs.append({"image": f"img/v{i}.tif", "label": f"gt/v{i}.tif", "split": split})
    (tmp_path / "map.json").write_text(json.dumps({"datasets": [{"name": "d", "pairs": pairs}]}))
    assert _cli(["simulate-partial", "--data", str(tmp_path / "map.json"), "--count", "5",
                 "-o", str(tmp_path / "out")]) == 0
    mapping = load_mapping(tmp_path / "out" / "mapping.json")
    dataset = mapping.datasets[0]
    assert dataset.supervision.mode == "dilate"
    counts = {p.split: [] for p in dataset.pairs}
    for p in dataset.pairs:
        counts[p.split].append(np.unique(read_labels(p.label)).size - 1)
    assert counts == {"train": [5, 5], "val": [16]}
    assert dataset.pairs[2].label == (tmp_path / "gt" / "v2.tif").resolve()
    assert "kept 10 of 32" in capsys.readouterr().out
    assert _cli(["simulate-partial", "--labels", str(tmp_path / "gt" / "v0.tif"), "--fraction", "0.25",
                 "-o", str(tmp_path / "one.tif")]) == 0
    assert np.unique(read_labels(tmp_path / "one.tif")).size == 5

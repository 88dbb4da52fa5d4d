"""Sampling probabilities, the epoch sampler, and config layering."""

import json
from pathlib import Path

import numpy as np
import pytest

from mediar3d.data.mapping import DatasetEntry, Pair
from mediar3d.errors import ConfigError
from mediar3d.training.config import load_config
from mediar3d.training.dataset import Item, SampleIndex, SampleRef
from mediar3d.training.sampling import EpochSampler, sample_probabilities


def _index(sizes, probs, weights=None):
    items, samples = [], []
    for d, (n, p) in enumerate(zip(sizes, probs)):
        entry = DatasetEntry(f"d{d}", [], probability=p)
        for i in range(n):
            w = 1.0 if weights is None else weights[d][i]
            items.append(Item(entry, Pair(Path(f"{d}_{i}"), Path("l"), "train", w), (8, 8)))
            samples.append(SampleRef(len(items) - 1, None, 0))
    return SampleIndex(items, samples)


def test_dataset_mode_gives_each_dataset_its_share():
    p = sample_probabilities(_index([10, 2], [0.25, 0.75]), "dataset")
    assert np.isclose(p[:10].sum(), 0.25) and np.isclose(p[10:].sum(), 0.75)


def test_sample_mode_scales_with_dataset_size():
    p = sample_probabilities(_index([10, 2], [0.5, 0.5]), "sample")
    assert np.isclose(p[:10].sum(), 10 / 12)


def test_pair_weights_and_uniform_default():
    p = sample_probabilities(_index([2, 2], [None, None], [[1, 3], [0, 0]]))
    assert np.allclose(p, [0.25, 0.75, 0, 0])
    assert np.allclose(sample_probabilities(_index([3], [None])), 1 / 3)
    with pytest.raises(ConfigError):
        sample_probabilities(_index([2], [None], [[0, 0]]))


def test_sampler_is_a_function_of_seed_and_epoch_and_ranks_partition_it():
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    a = EpochSampler(probs, 10, seed=1)
    a.set_epoch(3)
    first = list(a)
    a.set_epoch(4)
    assert list(a) != first
    a.set_epoch(3)
    assert list(a) == first
    ranks = [EpochSampler(probs, 10, seed=1, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(3)
    shards = [list(r) for r in ranks]
    assert len(shards[0]) == len(shards[1]) == 5 == len(ranks[0])
    merged = [shards[i % 2][i // 2] for i in range(10)]
    assert merged == first
    # weighted draws follow the probabilities
    big = EpochSampler(probs, 20000, seed=0)
    counts = np.bincount([i for i, _ in big], minlength=4) / 20000
    assert np.allclose(counts, probs, atol=0.02)


def test_uniform_sampler_visits_every_sample_once():
    s = EpochSampler(None, None, n=7, seed=0)
    assert sorted(i for i, _ in s) == list(range(7))


def test_config_layers_file_then_flags(tmp_path):
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "train.json"
    path.write_text(json.dumps({"data": "map.json", "epochs": 7, "lr": 1e-3, "augment": {"noise_prob": 0.5}}))
    config = load_config(path, {"epochs": 3, "save_dir": "out"})
    assert config.epochs == 3 and config.lr == 1e-3 and config.augment.noise_prob == 0.5
    assert config.augment.zoom_prob == 0.5                                   # default kept
    assert Path(config.data) == tmp_path / "cfg" / "map.json"                # relative to the file
    assert config.save_dir == "out"                                          # flags: relative to cwd


@pytest.mark.parametrize("values, match", [
    ({"data": "m.json", "epoch": 3}, "epoch"),
    ({"data": "m.json", "augment": {"zoom": 1}}, "zoom"),
    ({"data": "m.json", "batch_size": 0}, "batch_size"),
    ({"data": "m.json", "amp": "yes"}, "amp"),
    ({"epochs": 2}, "no dataset mapping"),
])
def test_bad_configs(tmp_path, values, match):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ConfigError, match=match):
        load_config(path)

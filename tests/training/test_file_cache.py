"""The training file cache: LRU, capped by entries and by MiB; the datasets and the trainer use it."""

import numpy as np
import pytest

from mediar3d.data.mapping import load_mapping
from mediar3d.errors import ConfigError
from mediar3d.training import dataset as dataset_module
from mediar3d.training.config import load_config
from mediar3d.training.dataset import SliceDataset, build_index
from mediar3d.training.file_cache import FileCache

from training_helpers import blobs2d, tiny_config  # noqa: F401 (fixture)

MIB = 2**20


def arrays(mib: float) -> tuple[np.ndarray, np.ndarray]:
    half = int(mib * MIB) // 2
    return np.zeros(half, np.uint8), np.zeros(int(mib * MIB) - half, np.uint8)


def test_least_recently_used_entry_goes_first_when_over_the_count():
    cache = FileCache(max_items=2, max_mb=100)
    cache.put("a", arrays(1))
    cache.put("b", arrays(1))
    assert cache.get("a") is not None        # "a" is now the most recent
    cache.put("c", arrays(1))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2 and cache.nbytes == 2 * MIB


def test_memory_cap_evicts_before_the_count_cap_and_keeps_the_newest():
    cache = FileCache(max_items=100, max_mb=2.5)
    for key in "abc":
        cache.put(key, arrays(1))
    assert len(cache) == 2 and cache.get("a") is None and cache.nbytes == 2 * MIB
    cache.put("big", arrays(4))              # alone over the cap: kept, everything older goes
    assert len(cache) == 1 and cache.get("big") is not None and cache.nbytes == 4 * MIB
    cache.put("big", arrays(1))              # replacing an entry recounts its bytes
    assert len(cache) == 1 and cache.nbytes == MIB


def test_slice_dataset_reads_each_file_once_with_the_default_cache(blobs2d, monkeypatch):  # noqa: F811
    reads = []
    real = dataset_module.read_pair_channels

    def counting(dataset, pair, channels):
        reads.append(pair)
        return real(dataset, pair, channels)

    index = build_index(load_mapping(blobs2d), "train")
    monkeypatch.setattr(dataset_module, "read_pair_channels", counting)
    data = SliceDataset(index)
    for _ in range(3):
        for number in range(len(data)):
            data.raw_sample(number)
    assert len(reads) == len(index.items) == 6
    reads.clear()
    tight = SliceDataset(index, cache_mb=1e-6)  # smaller than any file: only the newest stays
    for _ in range(2):
        for number in range(len(tight)):
            tight.raw_sample(number)
    assert len(reads) == 2 * len(index.items)


def test_trainer_passes_the_config_caps_to_its_datasets(blobs2d, tmp_path):  # noqa: F811
    from mediar3d.training import Trainer

    trainer = Trainer(tiny_config(blobs2d, tmp_path / "run", cache_size=3, cache_mb=7.5))
    for data in (trainer.train_set, trainer.val_set):
        assert data._cache.max_items == 3 and data._cache.max_bytes == 7.5 * MIB


@pytest.mark.parametrize("value", [0, -1, float("nan"), "big", True])
def test_bad_cache_mb_is_a_config_error(blobs2d, value):  # noqa: F811
    with pytest.raises(ConfigError, match="cache_mb"):
        load_config(None, {"data": str(blobs2d), "cache_mb": value})

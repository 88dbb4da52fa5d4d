"""Loader workers run numba and torch on one thread each, whatever the defaults of the machine."""

import pytest
import torch

from mediar3d.training import Trainer
from mediar3d.training.loader import make_loader

from training_helpers import ThreadProbe, tiny_config


@pytest.mark.timeout(300)
def test_workers_use_one_numba_and_one_torch_thread(monkeypatch):
    # spawned workers read these at import: without the worker init they would run 2 threads each
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    loader = make_loader(ThreadProbe(), batch_size=1, num_workers=2, context="spawn")
    seen = torch.cat([batch for batch in loader])
    assert seen.tolist() == [[1, 1]] * 4


def test_the_trainer_loader_initialises_its_workers(blobs2d, tmp_path):
    from mediar3d.training.loader import init_worker

    trainer = Trainer(tiny_config(blobs2d, tmp_path / "run", num_workers=2, val_every=0))
    loader = trainer._loader(0)                      # built, no worker started yet
    assert loader.worker_init_fn is init_worker and loader.multiprocessing_context is not None
    assert loader.persistent_workers and loader.sampler is trainer.sampler


@pytest.mark.parametrize("cores, expected", [(1, 0), (2, 0), (3, 1), (4, 2), (16, 8), (64, 8)])
def test_automatic_workers_none_on_two_cores_then_half_the_cores(cores, expected):
    from mediar3d.training.loader import resolve_workers

    assert resolve_workers(None, cores=cores) == expected
    assert resolve_workers(3, cores=cores) == 3  # a number given is kept


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # the loader is built, no worker started
@pytest.mark.parametrize("cores, expected", [(2, 0), (8, 4)])
def test_the_trainer_chooses_its_workers_from_the_cores(blobs2d, tmp_path, monkeypatch, cores, expected):
    import mediar3d.training.loader as loader_module

    monkeypatch.setattr(loader_module, "usable_cores", lambda: cores)
    trainer = Trainer(tiny_config(blobs2d, tmp_path / "run", num_workers=None, val_every=0))
    assert trainer._loader(0).num_workers == expected  # built, no worker started yet


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True])
def test_bad_num_workers_is_a_config_error(blobs2d, tmp_path, bad):
    from mediar3d.errors import ConfigError

    with pytest.raises(ConfigError, match="num_workers"):
        tiny_config(blobs2d, tmp_path / "run", num_workers=bad).validate()

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

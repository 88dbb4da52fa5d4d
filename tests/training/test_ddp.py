"""Distributed training on CPU: 2 processes, gloo backend, gradients averaged by DDP."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from training_helpers import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, mapping: str, out: str) -> None:
    import numba
    import torch.distributed as dist

    from mediar3d.training import Trainer

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    config = tiny_config(mapping, os.path.join(out, "run"), epochs=2, samples_per_epoch=8, batch_size=2, val_every=0,
                         device="cpu")
    trainer = Trainer(config)
    seen = []
    for epoch in range(2):
        trainer.sampler.set_epoch(epoch)
        seen.append([i for i, _ in trainer.sampler])
    trainer.fit()
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save({"state": params, "seen": seen, "dist": trainer.dist.world_size},
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def _init_params():
    from mediar3d.models import create_model

    torch.manual_seed(0)
    return dict(create_model("unet-small", channels=[8, 16]).named_parameters())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_process_gloo_training(blobs2d, tmp_path):
    from mediar3d.models import read_checkpoint

    mp.spawn(_worker, args=(2, _free_port(), str(blobs2d), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["dist"] == r1["dist"] == 2
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key           # parameters stay identical (BN stats are per rank)
    for epoch in range(2):
        assert len(r0["seen"][epoch]) == len(r1["seen"][epoch]) == 4   # each rank half of the 8 draws
    saved = read_checkpoint(tmp_path / "run" / "model_last.pt")[1]
    assert all(torch.equal(saved[k], v) for k, v in r0["state"].items())
    assert any(not torch.equal(saved[k], v) for k, v in _init_params().items())      # it trained
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3      # header + 2 epochs, rank 0 only

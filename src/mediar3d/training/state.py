"""Saving and restoring a training run: model checkpoints and the full resumable state.

Two kinds of files live in a run's folder:

- ``model_last.pt`` / ``model_best.pt``: model checkpoints written with
  :func:`mediar3d.models.save_checkpoint` (architecture + kwargs, normalisation,
  thresholds, training diameter, training metadata), loadable with :func:`mediar3d.models.load_model` and
  usable by ``mediar3d segment --model``.
- ``train_state.pt``: everything needed to continue exactly where an epoch ended: model,
  optimiser, scheduler and grad-scaler states, the epoch, the best score so far and the
  Python, NumPy and torch random states. The sampler needs no state of its own: its draw
  is a function of (seed, epoch).

Files are written to a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mediar3d.errors import ConfigError
from mediar3d.models.checkpoint import unwrap_model

STATE_FILE = "train_state.pt"
LAST_MODEL = "model_last.pt"
BEST_MODEL = "model_best.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / DataParallel / torch.compile: :func:`mediar3d.models.unwrap_model`."""
    return unwrap_model(model)


def capture_rng() -> dict[str, Any]:
    """Random states of Python, NumPy, torch (CPU and every CUDA device)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_train_state(path: str | Path, *, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: Any, scaler: Any, best: dict[str, Any], config: dict[str, Any]) -> None:
    """Write the resumable state after ``epoch`` (number of completed epochs)."""
    _atomic_torch_save({
        "epoch": int(epoch),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "best": dict(best),
        "rng": capture_rng(),
        "config": config,
    }, Path(path))


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_train_state`.

    Raises:
        ConfigError: if the file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} does not exist (the run never finished an epoch?)")
    try:
        # RNG states hold NumPy objects, so this is not a weights-only file; only load your own runs.
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as err:
        raise ConfigError(f"cannot resume: {path} is unreadable ({err})") from None


def save_model(path: str | Path, model: nn.Module, info: dict[str, Any]) -> None:
    """Write a model checkpoint with :func:`mediar3d.models.save_checkpoint` (atomic).

    Args:
        path: Output file.
        model: A network built by ``create_model`` or ``load_model`` (DDP is unwrapped).
        info: Keyword arguments of ``save_checkpoint``: ``normalization``, ``thresholds``,
            ``train_diameter``, ``metadata`` and optionally ``config`` (the ``ModelConfig``
            of a fine-tuned checkpoint).
    """
    from mediar3d.models import save_checkpoint

    save_checkpoint(Path(path), unwrap(model), **info)

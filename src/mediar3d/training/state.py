"""Saving and restoring a training run: model checkpoints and the full resumable state.

Two kinds of files live in a run's folder:

- ``model_last.pt`` / ``model_best.pt``: model checkpoints written with
  :func:`mediar3d.models.save_checkpoint` (architecture + kwargs, normalisation,
  thresholds, training diameter, training metadata), loadable with :func:`mediar3d.models.load_model` and
  usable by ``mediar3d segment --model``.
- ``train_state.pt``: everything needed to continue exactly where an epoch ended: model,
  optimiser, scheduler and grad-scaler states, the epoch, the best score so far and the
  Python, NumPy and torch random states. The sampler needs no state of its own: its draw
  is a function of (seed, epoch). Everything in it is a tensor or a plain type (dict,
  list, tuple, str, number, None), so it is read back with ``torch.load(weights_only=True)``:
  a crafted file cannot run code.

Files are written to a temporary name and renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mediar3d.errors import ConfigError
from mediar3d.models.checkpoint import unwrap_model
from mediar3d.models.weights import UNREADABLE, describe_load_error

STATE_FILE = "train_state.pt"
LAST_MODEL = "model_last.pt"
BEST_MODEL = "model_best.pt"
STATE_KEYS = ("epoch", "model", "optimizer", "scheduler", "best", "rng")


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / DataParallel / torch.compile: :func:`mediar3d.models.unwrap_model`."""
    return unwrap_model(model)


def capture_rng() -> dict[str, Any]:
    """Random states of Python, NumPy, torch (CPU and every CUDA device), as tensors and plain types.

    NumPy's state is stored as ``{"name", "key" (int64 tensor of 624 words), "pos", "has_gauss",
    "cached_gaussian"}`` rather than the tuple with an ndarray that ``np.random.get_state`` returns,
    so the whole training state loads with ``weights_only=True``.
    """
    name, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(),
                             "numpy": {"name": str(name), "key": torch.from_numpy(key.astype(np.int64)),
                                       "pos": int(pos), "has_gauss": int(has_gauss),
                                       "cached_gaussian": float(cached)},
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng` returned."""
    version, words, gauss = state["python"]
    random.setstate((int(version), tuple(int(w) for w in words), gauss))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["key"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
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

    The file is read with ``weights_only=True``: tensors and plain types only, never pickled
    code (a file that needs more, such as one written by mediar3d 0.x before RNG states were
    stored as tensors, is refused).

    Raises:
        ConfigError: if the file is missing, unreadable, holds anything but tensors and
            plain types, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} does not exist (the run never finished an epoch?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err) and "Unsupported global" not in str(err):
            raise ConfigError(f"cannot resume: {path} is not a torch file ({str(err).splitlines()[0]})") from None
        raise ConfigError(f"cannot resume: {path} holds objects other than tensors and plain values, which are "
                          "never unpickled (a crafted file, or one from an older mediar3d); start again with "
                          "--overwrite") from None
    except UNREADABLE as err:
        raise ConfigError(f"cannot resume: {path} is unreadable ({describe_load_error(err)})") from None
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ConfigError(f"cannot resume: {path} is not a training state (no {', '.join(missing)})")
    return state


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

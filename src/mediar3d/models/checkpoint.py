"""Self-describing checkpoints: one file with architecture, weights, normalisation and thresholds.

Layout (a dict written by `torch.save`, read back with `weights_only=True`)::

    format          "mediar3d-model"
    format_version  1
    arch            registry name, e.g. "unet-small"
    kwargs          keyword arguments for create_model (lists, numbers, strings)
    state_dict      the weights (no `module.` / `_orig_mod.` prefixes)
    normalization   {"percentiles": [low, high]}  (per-image percentile scaling to [0, 1])
    thresholds      {"cellprob_threshold": float, "flow_threshold": float, ...}
    train_diameter  median object diameter (pixels) of the training data, or None
    input_channels  channels the network takes (e.g. 2 = nuclei + membrane), checked on
                    load and by segment; absent in files written before it existed
    metadata        free-form JSON-serialisable dict (dataset, epochs, metrics, ...)
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mediar3d.errors import ModelError
from mediar3d.models.registry import ARCH_ATTR, INIT_ONLY_KWARGS, KWARGS_ATTR, create_model, get_model_entry
from mediar3d.models.sources import resolve_source
from mediar3d.models.weights import load_strict, read_weights_file, strip_prefixes

logger = logging.getLogger(__name__)

FORMAT = "mediar3d-model"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "kwargs", "state_dict")


def _default_normalization() -> dict[str, Any]:
    return {"percentiles": [0.0, 99.5]}


def _default_thresholds() -> dict[str, float]:
    return {"cellprob_threshold": 0.0, "flow_threshold": 0.4}


@dataclass
class ModelConfig:
    """Everything besides the weights that `load_model` restores.

    Attributes:
        arch: Registry name of the architecture.
        kwargs: Keyword arguments for `create_model(arch, **kwargs)`.
        normalization: Input normalisation; ``percentiles`` = (low, high) mapped to [0, 1].
        thresholds: Post-processing thresholds tuned for this model (``cellprob_threshold``
            on the logit scale, ``flow_threshold``, optionally others such as ``min_size``).
        train_diameter: Median object diameter (pixels) in the training data, or None.
        metadata: Free-form, JSON-serialisable information (data, epochs, scores).
        input_channels: Number of input channels of the network (set when saving); None
            for files written before it was stored.
    """

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=_default_normalization)
    thresholds: dict[str, float] = field(default_factory=_default_thresholds)
    train_diameter: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    input_channels: int | None = None

    @property
    def percentiles(self) -> tuple[float, float]:
        """The (low, high) normalisation percentiles."""
        low, high = self.normalization["percentiles"]
        return float(low), float(high)

    def validate(self, source: str = "<config>") -> ModelConfig:
        """Check types and ranges; raise ModelError naming `source` and the bad value. Returns self."""
        get_model_entry(self.arch)
        if not isinstance(self.kwargs, dict):
            raise ModelError(f"{source}: kwargs must be a dict, got {type(self.kwargs).__name__}")
        percentiles = self.normalization.get("percentiles") if isinstance(self.normalization, dict) else None
        if (not isinstance(percentiles, (list, tuple)) or len(percentiles) != 2
                or not all(isinstance(p, (int, float)) for p in percentiles)
                or not 0 <= percentiles[0] < percentiles[1] <= 100):
            raise ModelError(f"{source}: normalization percentiles {percentiles!r} must be two numbers "
                             "0 <= low < high <= 100")
        if not isinstance(self.thresholds, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for k, v in self.thresholds.items()):
            raise ModelError(f"{source}: thresholds {self.thresholds!r} must map names to finite numbers")
        if self.train_diameter is not None and (not isinstance(self.train_diameter, (int, float))
                                                or not self.train_diameter > 0):
            raise ModelError(f"{source}: train_diameter {self.train_diameter!r} must be a positive number or None")
        if self.input_channels is not None and (isinstance(self.input_channels, bool)
                                                or not isinstance(self.input_channels, int)
                                                or not 1 <= self.input_channels <= MAX_INT_OPTION):
            raise ModelError(f"{source}: input_channels {self.input_channels!r} must be a positive whole number")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as error:
            raise ModelError(f"{source}: metadata must be JSON-serialisable ({error})") from error
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) of the configuration."""
        return {"arch": self.arch, "kwargs": copy.deepcopy(self.kwargs),
                "normalization": copy.deepcopy(self.normalization), "thresholds": dict(self.thresholds),
                "train_diameter": self.train_diameter, "metadata": copy.deepcopy(self.metadata),
                "input_channels": self.input_channels}


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside DistributedDataParallel / DataParallel (`.module`) or torch.compile (`._orig_mod`)."""
    while True:
        if isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *,
                    normalization: dict[str, Any] | None = None, thresholds: dict[str, float] | None = None,
                    train_diameter: float | None = None, metadata: dict[str, Any] | None = None,
                    config: ModelConfig | None = None) -> Path:
    """Write a model and its configuration to one file, atomically (temp file + rename).

    Args:
        path: Output file (conventionally ``.pt``); parent folders are created.
        model: A network from `create_model` (possibly wrapped by DDP or torch.compile).
        normalization: Overrides the default ``{"percentiles": [0.0, 99.5]}``.
        thresholds: Overrides the default ``{"cellprob_threshold": 0.0, "flow_threshold": 0.4}``.
        train_diameter: Median object diameter (pixels) of the training data.
        metadata: Free-form JSON-serialisable information.
        config: A full `ModelConfig` to start from (e.g. from `load_model`); the other
            keyword arguments override its fields.

    Returns:
        The path written.
    """
    net = unwrap_model(model)
    arch = getattr(net, ARCH_ATTR, None)
    if arch is None and config is None:
        raise ModelError(f"cannot save a {type(net).__name__} that was not built by create_model; "
                         "pass config=ModelConfig(...)")
    base = copy.deepcopy(config) if config is not None else ModelConfig(arch=arch)
    if arch is not None:
        base.arch = arch
        base.kwargs = copy.deepcopy(getattr(net, KWARGS_ATTR, {}))
    base.kwargs = {k: v for k, v in base.kwargs.items() if k not in INIT_ONLY_KWARGS}
    channels = getattr(net, "in_channels", None) or base.kwargs.get("in_channels") or base.input_channels
    base.input_channels = int(channels) if isinstance(channels, int) else None
    if normalization is not None:
        base.normalization = dict(normalization)
    if thresholds is not None:
        base.thresholds = {**base.thresholds, **thresholds}
    if train_diameter is not None:
        base.train_diameter = float(train_diameter)
    if metadata is not None:
        base.metadata = {**base.metadata, **metadata}
    base.validate(str(path))
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **base.to_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in strip_prefixes(net.state_dict()).items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    logger.info("saved %s checkpoint to %s", base.arch, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Read and validate a checkpoint without building the network.

    Returns:
        (config, state_dict) with wrapper prefixes stripped.

    Raises:
        ModelError: Missing, truncated or corrupt file; missing keys; unknown arch or version.
    """
    obj = read_weights_file(path)
    if obj.get("format") != FORMAT:
        if "state_dict" in obj or all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ModelError(f"{path} holds bare weights, not a mediar3d model; build the network with create_model "
                             "and load them, then save_checkpoint")
        raise ModelError(f"{path} is not a mediar3d model file (no format={FORMAT!r} entry)")
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ModelError(f"{path} lacks checkpoint key(s) {', '.join(missing)}; re-save it with save_checkpoint")
    if not isinstance(obj["format_version"], int) or obj["format_version"] > FORMAT_VERSION:
        raise ModelError(f"{path} has format version {obj['format_version']!r}; this mediar3d reads up to "
                         f"{FORMAT_VERSION}; upgrade mediar3d")
    if not isinstance(obj["state_dict"], dict):
        raise ModelError(f"{path}: state_dict is a {type(obj['state_dict']).__name__}, not a dict")
    defaults = ModelConfig(arch=obj["arch"])
    config = ModelConfig(arch=obj["arch"], kwargs=obj["kwargs"],
                         normalization=obj.get("normalization", defaults.normalization),
                         thresholds=obj.get("thresholds", defaults.thresholds),
                         train_diameter=obj.get("train_diameter"), metadata=obj.get("metadata") or {},
                         input_channels=obj.get("input_channels"))
    config.validate(str(path))
    return config, strip_prefixes(obj["state_dict"])


#: No option of any architecture is an integer above this (channel counts are at most a few thousand).
MAX_INT_OPTION = 65536
#: Values a network built from stored kwargs may hold beyond twice the stored weights before it is refused unbuilt.
SIZE_SLACK = 10_000_000


def _ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [i for v in value.values() for i in _ints(v)]
    if isinstance(value, (list, tuple)):
        return [i for v in value for i in _ints(v)]
    return []


def check_kwargs_fit_weights(config: ModelConfig, state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse stored kwargs that describe another (e.g. a vastly larger) network than the stored weights.

    The network is first built on PyTorch's ``meta`` device, which allocates nothing, and its
    number of values compared with the weights in the file (strict loading needs them equal;
    a network far larger than the file is refused here, a smaller mismatch is left to
    :func:`load_strict`, which names the keys and shapes).
    Where an architecture cannot be built on ``meta``, every integer option must instead be at
    most the largest dimension of a stored tensor. Either way a tiny file whose kwargs ask for
    ``channels=[..., 200000]`` is refused before a byte of the network is allocated.

    Raises:
        ModelError: naming ``source``, the options and the sizes.
    """
    stored = sum(int(t.numel()) for t in state.values() if isinstance(t, torch.Tensor))
    ints = _ints(config.kwargs)
    if any(i > MAX_INT_OPTION or i < 0 for i in ints):
        raise ModelError(f"{source}: kwargs {config.kwargs} hold a value outside 0..{MAX_INT_OPTION}; "
                         "the file is damaged or was edited")
    try:
        with torch.device("meta"):
            skeleton = create_model(config.arch, **config.kwargs)
        needed = sum(int(t.numel()) for t in skeleton.state_dict().values())
    except (RuntimeError, NotImplementedError):  # e.g. `.item()` on a meta tensor while building
        largest = max((max(t.shape, default=1) for t in state.values() if isinstance(t, torch.Tensor)), default=0)
        if ints and max(ints) > max(largest, 64):
            raise ModelError(f"{source}: kwargs {config.kwargs} ask for {max(ints)} where the stored weights are "
                             f"at most {largest} wide; the file is damaged or was edited") from None
        return
    except (TypeError, ValueError) as error:
        raise ModelError(f"{source}: cannot build {config.arch!r} from kwargs {config.kwargs}: {error}") from None
    if needed > 2 * stored + SIZE_SLACK:  # smaller mismatches: load_strict names the keys and shapes
        raise ModelError(f"{source}: kwargs {config.kwargs} describe a {config.arch} of {needed:,} values but the "
                         f"file stores {stored:,}; the file is damaged or its kwargs were edited")


def load_model(path: str | os.PathLike | None, *,
               device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelConfig]:
    """Build the network stored in a checkpoint and load its weights strictly.

    Args:
        path: File written by `save_checkpoint`, or any source `mediar3d.models.sources.resolve_source`
            takes: a bundled name (``"default"``), a bioimage.io package, an https URL with its sha256.
        device: Where to put the network.

    Returns:
        (model in eval mode, its `ModelConfig`).

    Raises:
        ModelError: Bad file (see `read_checkpoint`), or weights that do not fit the architecture.
    """
    path = resolve_source(path)
    config, state = read_checkpoint(path)
    check_kwargs_fit_weights(config, state, str(path))
    try:
        model = create_model(config.arch, **config.kwargs)
    except (TypeError, ValueError) as error:
        if isinstance(error, ModelError):
            raise ModelError(f"{path}: {error}") from error
        raise ModelError(f"{path}: cannot build {config.arch!r} from kwargs {config.kwargs}: {error}") from error
    built = getattr(model, "in_channels", None)
    if config.input_channels is not None and isinstance(built, int) and built != config.input_channels:
        raise ModelError(f"{path}: stores input_channels {config.input_channels} but its kwargs build a network "
                         f"with {built}; the file is damaged or was edited")
    load_strict(model, state, str(path))
    return model.to(device).eval(), config

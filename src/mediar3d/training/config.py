"""Training configuration: dataclass defaults <- JSON file <- command-line flags.

Unknown keys are an error (with the list of valid ones); relative paths in a config
file are relative to that file; the resolved config is written as ``config.json`` in the
run's save folder, so every run records exactly how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediar3d.errors import ConfigError
from mediar3d.training.interpolation import check_keep_start
from mediar3d.training.transforms import AugmentConfig

#: Config keys holding file paths (made relative to the config file's folder on load).
PATH_KEYS = ("data", "save_dir", "init_from")

#: Mixed precision per architecture when ``amp`` is not set (thesis table 4.3: only the light
#: decoder trains under autocast; the MA-Net ones, ``mediar`` and ``mediar-sam``, in float32).
AMP_BY_MODEL = {"mediar-sam-light": True}


def resolve_amp(amp: bool | None, arch: str) -> bool:
    """``amp`` as set, else the architecture's recipe (:data:`AMP_BY_MODEL`, False for others)."""
    return bool(amp) if amp is not None else AMP_BY_MODEL.get(arch, False)


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults follow thesis tables 4.3 and 4.4.

    Attributes:
        data: Dataset mapping JSON (see :mod:`mediar3d.data.mapping`). Required.
        save_dir: Output folder (checkpoints, metrics.csv, TensorBoard logs, config.json).
        model: Registered architecture name (``mediar3d info`` lists them).
        model_kwargs: Keyword arguments for the architecture.
        init_from: Checkpoint to start from (fine-tuning); its architecture wins over ``model``.
        epochs: Number of epochs.
        batch_size: Samples per step and process.
        samples_per_epoch: Draws per epoch over all processes; None = number of training samples.
        crop_size: Side of the square training crops (thesis: 512).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        cosine_period: Epochs of one cosine decay (thesis: 100, no restarts); None = epochs.
        min_lr: Learning rate at the end of the cosine.
        amp: Mixed precision with torch autocast (CUDA: float16 + grad scaling; CPU: bfloat16);
            None: the model's recipe (:data:`AMP_BY_MODEL`: on for ``mediar-sam-light`` only).
        grad_clip: Clip the gradient norm to this value; None = no clipping.
        keep_start: Share of the start model (``init_from``) blended into the saved model
            files: ``keep_start * start + (1 - keep_start) * trained``, weight by weight
            (:mod:`mediar3d.training.interpolation`); keeps more of what the start model knew
            about data unlike the training data. 0 = the trained weights as they are.
        val_every: Validate every this many epochs (and after the last); 0 = never.
        val_max_samples: Validation samples (whole images/slices) used, spread over the val split.
        val_iou: IoU threshold of the validation AP.
        cellprob_threshold, flow_threshold, min_size, niter: Post-processing for validation,
            stored in the checkpoints as the model's default thresholds.
        checkpoint_at_objects: Counts of annotated objects seen in training (e.g. [10, 100,
            1000]) at which ``mediar3d train`` saves ``learning_curve/objects_<N>.pt``
            (a :class:`mediar3d.tuning.ObjectCountCheckpointer`; in Python pass it as a
            callback to the Trainer); None = none.
        use_pair_weights: Use per-pair sampling weights of the mapping (``mediar3d cluster``).
        train_diameter: Zoom the training (and validation) files so that their objects have
            this median diameter in pixels, and record it as the model's ``train_diameter``
            (the size inference zooms images to); None: the start model's when fine-tuning
            one that has it, else the data's own median (no zoom).
        num_workers: DataLoader worker processes; None chooses from the CPU cores
            (:func:`mediar3d.training.loader.resolve_workers`: none on 2 cores).
        cache_size: Most normalised files each process keeps in memory.
        cache_mb: Most MiB of normalised files each process keeps in memory (whichever
            of the two caps is reached first; the newest file is always kept).
        seed: Seed of sampling, augmentation and initialisation.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        log_every: Steps between progress-bar/TensorBoard updates.
        tensorboard: Write TensorBoard logs (if tensorboard is installed).
        wandb: Log to Weights & Biases (only if installed).
        wandb_project: W&B project name.
        progress: Show a tqdm progress bar (rank 0 only).
        percentiles: Intensity normalisation percentiles (low, high).
        augment: Augmentation settings (:class:`AugmentConfig`).
    """

    data: str | None = None
    save_dir: str = "runs/train"
    model: str = "unet-small"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    epochs: int = 100
    batch_size: int = 8
    samples_per_epoch: int | None = None
    crop_size: int = 512
    lr: float = 5e-5
    weight_decay: float = 1e-4
    cosine_period: int | None = None
    min_lr: float = 0.0
    amp: bool | None = None
    grad_clip: float | None = None
    keep_start: float = 0.0
    val_every: int = 1
    val_max_samples: int = 32
    val_iou: float = 0.5
    cellprob_threshold: float = 0.0
    flow_threshold: float = 0.4
    min_size: int = 15
    niter: int = 200
    checkpoint_at_objects: list[int] | None = None
    use_pair_weights: bool = True
    train_diameter: float | None = None
    num_workers: int | None = None
    cache_size: int = 512
    cache_mb: float = 1024.0
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "mediar3d"
    progress: bool = True
    percentiles: tuple[float, float] = (0.0, 99.5)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def validate(self) -> TrainConfig:
        """Check values; raises ConfigError naming the bad key. Returns self."""
        if not self.data:
            raise ConfigError("no dataset mapping: set 'data' in the config or pass --data MAP.json "
                              "(write one with `mediar3d map-dataset`)")
        if not self.save_dir:
            raise ConfigError("save_dir must not be empty")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "crop_size": self.crop_size,
                    "val_max_samples": self.val_max_samples, "log_every": self.log_every, "cache_size": self.cache_size,
                    "niter": self.niter}
        for key, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if (not isinstance(self.cache_mb, (int, float)) or isinstance(self.cache_mb, bool)
                or not math.isfinite(self.cache_mb) or self.cache_mb <= 0):
            raise ConfigError(f"cache_mb must be a number > 0, got {self.cache_mb!r}")
        for key in ("samples_per_epoch", "cosine_period"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer or null, got {value!r}")
        counts = self.checkpoint_at_objects
        if counts is not None:
            if (not isinstance(counts, (list, tuple)) or not counts
                    or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in counts)):
                raise ConfigError(f"checkpoint_at_objects must be a list of positive whole numbers (e.g. [10, 100, "
                                  f"1000]) or null, got {counts!r}")
            self.checkpoint_at_objects = sorted(set(counts))
        if self.crop_size < 16:
            raise ConfigError(f"crop_size must be >= 16, got {self.crop_size}")
        if not self.lr > 0 or self.weight_decay < 0 or self.min_lr < 0:
            raise ConfigError(f"lr must be > 0 and weight_decay, min_lr >= 0 (got {self.lr}, {self.weight_decay}, "
                              f"{self.min_lr})")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true, false or null (the model's recipe), got {self.amp!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        check_keep_start(self.keep_start)
        if self.train_diameter is not None and (isinstance(self.train_diameter, bool)
                                                or not isinstance(self.train_diameter, (int, float))
                                                or not 1 <= self.train_diameter <= 1000):
            raise ConfigError(f"train_diameter must be a number of pixels in [1, 1000] or null, "
                              f"got {self.train_diameter!r}")
        if self.val_every < 0:
            raise ConfigError(f"val_every must be >= 0, got {self.val_every}")
        workers = self.num_workers
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 0):
            raise ConfigError(f"num_workers must be a whole number >= 0 or null (chosen from the CPU cores), "
                              f"got {workers!r}")
        if not 0 < self.val_iou <= 1:
            raise ConfigError(f"val_iou must be in (0, 1], got {self.val_iou}")
        low, high = (float(v) for v in self.percentiles)
        if not 0 <= low < high <= 100:
            raise ConfigError(f"percentiles must be [low, high] with 0 <= low < high <= 100, got {list(self.percentiles)}")
        self.percentiles = (low, high)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (nested augment settings included)."""
        out = dataclasses.asdict(self)
        return json.loads(json.dumps(out))


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_AUG_FIELDS = {f.name for f in dataclasses.fields(AugmentConfig)}


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Light type check/conversion of one value against the default's type."""
    if value is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if default is not None and not isinstance(value, type(default)) and not (isinstance(default, tuple)):
        raise ConfigError(f"{key} must be of type {type(default).__name__}, got {value!r}")
    return value


def config_from_dict(values: dict[str, Any], *, base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """Apply a dict of settings on top of ``base`` (defaults if None).

    Raises:
        ConfigError: unknown keys (the message lists the valid ones) or values of the wrong type.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: a training config must be a JSON object")
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_FIELDS)}")
    config = dataclasses.replace(base) if base is not None else TrainConfig()
    config.augment = dataclasses.replace(config.augment)
    defaults = TrainConfig()
    for key, value in values.items():
        if key == "augment":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: augment must be an object")
            bad = sorted(set(value) - _AUG_FIELDS)
            if bad:
                raise ConfigError(f"{source}: unknown augment key(s) {', '.join(bad)}; valid: {', '.join(sorted(_AUG_FIELDS))}")
            aug_default = AugmentConfig()
            merged = {k: _coerce(f"augment.{k}", v, getattr(aug_default, k)) for k, v in value.items()}
            config.augment = dataclasses.replace(config.augment, **merged)
            continue
        if key == "model_kwargs" and not isinstance(value, dict):
            raise ConfigError(f"{source}: model_kwargs must be an object")
        setattr(config, key, _coerce(key, value, getattr(defaults, key)))
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw key/value pairs of a JSON training config file (not yet checked or resolved)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path} does not exist")
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys")
    return values


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the JSON file at ``path``, then ``overrides`` (e.g. command-line flags).

    Relative paths in the file are resolved against the file's folder; those in
    ``overrides`` against the working directory.

    Returns:
        The validated config.
    """
    config = TrainConfig()
    if path is not None:
        path = Path(path)
        values = read_config_file(path)
        config = config_from_dict(values, source=str(path))
        for key in PATH_KEYS:
            value = getattr(config, key)
            if key in values and value and not Path(value).is_absolute():
                setattr(config, key, str(path.parent / value))
    if overrides:
        config = config_from_dict({k: v for k, v in overrides.items() if v is not None}, base=config,
                                  source="command line")
    return config.validate()


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    return path

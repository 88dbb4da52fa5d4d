"""Network outputs of validation volumes, computed once and reused for every threshold setting.

Tuning post-processing thresholds only needs the flows and cell-probability logits of
each validation volume; the network runs once per volume through
`mediar3d.inference.predict` (the same normalisation, diameter scaling, anisotropy
resampling, tiling and TTA as `mediar3d segment`), whose outputs are kept as they are, on
the network grid, and each threshold setting then costs one `mediar3d.inference.labels`
(post-processing on the network grid, labels mapped back to the input grid), exactly as
`segment` does. Outputs can be kept on disk as ``.npz`` files (:func:`save_outputs` /
:func:`load_outputs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

__all__ = ["NetworkOutputs", "load_outputs", "model_fingerprint", "outputs_key", "predict_outputs", "save_outputs"]


@dataclasses.dataclass
class NetworkOutputs:
    """Cached outputs of one validation image and its ground truth.

    Attributes:
        name: Image name for reports.
        flows: float32 (3, Z, Y, X) (dz, dy, dx) or (2, Y, X) (dy, dx) on the network grid,
            unit scale (as `compute_masks` takes them).
        logits: float32 cell-probability logits on the network grid, (Z, Y, X) or (Y, X).
        gt: Integer ground-truth labels on the input grid.
        voxel_factor: Network voxels per input voxel (scales ``min_size`` as `segment` does).
        defaults: Thresholds the model would use (``cellprob_threshold``, ``flow_threshold``,
            ``min_size``).
        diameter: Object diameter (pixels) the image was run at; None if not rescaled.
        diameter_estimated: Whether that diameter was estimated (with the fixed thresholds of
            `mediar3d.inference.diameter.ESTIMATE_THRESHOLDS`, as `segment` estimates it
            whatever thresholds the model is tuned to).
        staged: The :class:`~mediar3d.postprocess.staged.StagedMasks` that :meth:`labels`
            post-processes with (made if not given): the flow following of the last
            ``cellprob_threshold`` is kept, so settings that change only the other
            thresholds cost only the filters.
    """

    name: str
    flows: np.ndarray
    logits: np.ndarray
    gt: np.ndarray
    voxel_factor: float = 1.0
    defaults: dict[str, float] = dataclasses.field(default_factory=dict)
    diameter: float | None = None
    diameter_estimated: bool = False
    staged: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        from mediar3d.postprocess.staged import StagedMasks

        if self.staged is None:
            self.staged = StagedMasks()
        if self.flows.shape != (self.logits.ndim,) + self.logits.shape:
            raise InputError(f"{self.name}: flows {self.flows.shape} do not fit logits {self.logits.shape}")
        if self.gt.ndim != self.logits.ndim:
            raise InputError(f"{self.name}: ground truth of shape {self.gt.shape} is not "
                             f"{self.logits.ndim}D like the network outputs")

    def labels(self, *, cellprob_threshold: float, flow_threshold: float, min_size: float,
               **options: Any) -> np.ndarray:
        """Instance labels (input grid) for one setting; ``min_size`` in input voxels, as in `segment`."""
        from mediar3d.inference import Prediction, labels

        outputs = Prediction(flows=self.flows, logits=self.logits, input_shape=tuple(self.gt.shape),
                             mode="2d" if self.logits.ndim == 2 else "3d", voxel_factor=self.voxel_factor)
        return labels(outputs, cellprob_threshold=float(cellprob_threshold), flow_threshold=float(flow_threshold),
                      min_size=float(min_size), staged=self.staged, **options)


def predict_outputs(image: Any, gt: np.ndarray, model: Any, *, name: str = "", **options: Any) -> NetworkOutputs:
    """Run the network on one image as `segment` would and keep its outputs (network grid).

    Args:
        image: Volume (z, y, x) or image (y, x): array or `mediar3d.io.Image`.
        gt: Ground-truth labels of the same shape.
        model: Anything `segment` takes as ``model`` (name, path, module, InferenceModel);
            a volumetric network (``spatial_dims = 3``) runs on 3D windows (``tta`` then
            averages its eight 3D flips).
        name: Name for reports.
        **options: `mediar3d.inference.predict` options (diameter, anisotropy, tta, device,
            tile, batch_size, ...); ``do_3d`` follows the image's dimensions.

    Raises:
        InputError: shapes that differ, or z-only mode (its per-slice masks cannot be tuned here).
    """
    from mediar3d.inference import predict

    data = np.asarray(getattr(image, "data", image))
    gt = np.asarray(gt)
    if gt.shape != data.shape:
        raise InputError(f"{name or 'image'}: labels of shape {gt.shape} do not match the image of shape {data.shape}")
    if options.get("z_only"):
        raise ConfigError("threshold tuning needs the full 3D (or 2D) mode, not z-only")
    options = {"progress": False, **options, "do_3d": data.ndim == 3}
    outputs = predict(image, model, **options)
    logger.info("%s: network outputs on grid %s (input %s)", name, outputs.logits.shape, data.shape)
    diameter = outputs.params.get("diameter")
    return NetworkOutputs(name=name, flows=outputs.flows, logits=outputs.logits, gt=gt,
                          voxel_factor=outputs.voxel_factor, defaults={k: float(v) for k, v in outputs.thresholds.items()},
                          diameter=None if diameter is None else float(diameter),
                          diameter_estimated=bool(outputs.params.get("diameter_estimated", False)))


def model_fingerprint(model: str | os.PathLike) -> str:
    """Hash of what a checkpoint's network outputs depend on: architecture, weights, normalisation,
    training diameter; not its thresholds (so tuning in place keeps cached outputs valid)."""
    from mediar3d.models import read_checkpoint
    from mediar3d.models.sources import resolve_source

    path = resolve_source(model)
    config, state = read_checkpoint(path)
    digest = hashlib.sha1(json.dumps([config.arch, config.kwargs, config.normalization, config.train_diameter],
                                     sort_keys=True, default=str).encode())
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def outputs_key(**facts: Any) -> str:
    """A short hash of what the outputs depend on (files by path, size and time; other values as they are)."""
    def describe(value: Any) -> Any:
        if isinstance(value, (str, Path)) and Path(value).is_file():
            stat = Path(value).stat()
            return [str(Path(value).resolve()), stat.st_size, stat.st_mtime_ns]
        return value if isinstance(value, (int, float, str, bool, type(None), list, tuple)) else repr(value)

    blob = json.dumps({k: describe(v) for k, v in sorted(facts.items())}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def save_outputs(path: str | os.PathLike, outputs: NetworkOutputs, key: str = "") -> Path:
    """Write outputs to an ``.npz`` file atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(temp, flows=outputs.flows, logits=outputs.logits, gt=outputs.gt,
             voxel_factor=np.float64(outputs.voxel_factor), name=np.str_(outputs.name),
             defaults=np.str_(json.dumps(outputs.defaults)), key=np.str_(key),
             diameter=np.str_(json.dumps([outputs.diameter, outputs.diameter_estimated])))
    os.replace(temp, path)
    return path


def load_outputs(path: str | os.PathLike, key: str | None = None) -> NetworkOutputs | None:
    """Read outputs written by :func:`save_outputs`; None if missing, unreadable or of another ``key``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if key is not None and str(data["key"]) != key:
                return None
            diameter, estimated = json.loads(str(data["diameter"]))
            return NetworkOutputs(name=str(data["name"]), flows=data["flows"], logits=data["logits"], gt=data["gt"],
                                  voxel_factor=float(data["voxel_factor"]), defaults=json.loads(str(data["defaults"])),
                                  diameter=diameter, diameter_estimated=bool(estimated))
    except (OSError, ValueError, KeyError) as err:
        logger.warning("ignoring the unreadable cache file %s (%s)", path, err)
        return None

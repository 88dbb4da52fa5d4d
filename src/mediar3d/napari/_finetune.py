"""The widget's "Fine-tune on these labels": the few-shot workflow on layer arrays, in a worker thread.

The image and the labels layer are written as TIFF files into the run folder (with the
anisotropy as voxel size), then :func:`mediar3d.training.fewshot.finetune_small` runs as
``mediar3d finetune --image ... --labels ... --supervision ... --minutes ...`` would, with
progress reported per step and cancellation checked before every step.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.errors import InputError


@dataclasses.dataclass
class FineTuneRequest:
    """What to fine-tune on.

    Attributes:
        image: (z, y, x) or (y, x) image.
        labels: Integer labels of the same shape; 0 = not annotated.
        model: Start model (bundled name or checkpoint path).
        save_dir: Run folder (overwritten).
        supervision: ``full``, ``dilate`` or ``roi``.
        anisotropy: z / xy voxel size of a volume.
        minutes: Time budget, or None.
        overrides: Further TrainConfig values (they win over the small-data plan).
    """

    image: Any
    labels: Any
    model: str | Path
    save_dir: Path
    supervision: str = "dilate"
    anisotropy: float = 1.0
    minutes: float | None = 5.0
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_finetune_job(request: FineTuneRequest, cancel: threading.Event,
                     report: Callable[[int, int, float | None, float], None]) -> Any:
    """Fine-tune on the request's arrays; returns the :class:`~mediar3d.training.fewshot.FewShotResult`.

    Raises:
        InputError: labels that do not match the image or hold no object.
    """
    from mediar3d.data.mapping import Supervision
    from mediar3d.io.tiff import write_tiff
    from mediar3d.training import load_config
    from mediar3d.training.fewshot import finetune_small, pairs_mapping, write_pairs_mapping
    from mediar3d.training.fewshot_plan import apply_plan, plan_for

    image = np.asarray(request.image)
    labels = np.asarray(request.labels)
    if labels.shape != image.shape:
        raise InputError(f"labels of shape {labels.shape} do not match the image of shape {image.shape}")
    if not labels.any():
        raise InputError("the labels layer holds no object: paint some objects (distinct ids) first")
    save_dir = Path(request.save_dir)
    data_dir = save_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    axes = "ZYX" if image.ndim == 3 else "YX"
    voxel = (float(request.anisotropy), 1.0, 1.0) if image.ndim == 3 else None
    write_tiff(data_dir / "image.tif", image.astype(np.float32), axes, voxel)
    write_tiff(data_dir / "labels.tif", labels.astype(np.uint32 if labels.max() > 65535 else np.uint16), axes, voxel)
    mapping = pairs_mapping([data_dir / "image.tif"], [data_dir / "labels.tif"],
                            supervision=Supervision(request.supervision), name="layer")
    values = {"data": str(write_pairs_mapping(mapping, save_dir)), "save_dir": str(save_dir),
              "init_from": str(request.model), "num_workers": 0, "tensorboard": False, **request.overrides}
    config = load_config(None, values)
    plan = plan_for(config, mapping)
    config = apply_plan(config, plan, set(request.overrides))
    return finetune_small(config, minutes=request.minutes, should_stop=cancel.is_set, on_progress=report,
                          progress=False, overwrite=True, plan=plan)

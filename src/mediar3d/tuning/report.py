"""Tuning outputs: the table (CSV + JSON), metric-vs-parameter plots, and the tuned checkpoint.

The plots need matplotlib (the ``plots`` extra); without it `write_tuning_report` writes
the table and leaves the plot out with a warning.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from mediar3d.errors import ConfigError, InputError
from mediar3d.io import atomic_output
from mediar3d.optional import require
from mediar3d.tuning.search import PARAMETERS, TuneResult

logger = logging.getLogger(__name__)

__all__ = ["plot_profiles", "write_table", "write_tuned_checkpoint", "write_tuning_report"]

_COLUMNS = (*PARAMETERS, "ap", "f1", "precision", "recall", "seg", "dice", "n_pred", "n_gt", "tp", "size_ratio")


def write_table(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Write every evaluated setting and its scores as CSV (one row per setting), atomically."""
    path = Path(path)
    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in _COLUMNS})
    return path


def plot_profiles(path: str | os.PathLike, result: TuneResult) -> Path:
    """One panel per parameter: the metric against its value, the others at their best (PNG).

    Raises:
        ConfigError: matplotlib (the ``plots`` extra) is not installed.
    """
    figure = require("matplotlib.figure", "plots", "the tuning plot (tuning.png)")
    path = Path(path)
    label = f"{result.metric.upper()}@{result.iou:g}" if result.metric in ("ap", "f1") else result.metric.upper()
    fig = figure.Figure(figsize=(4.2 * len(PARAMETERS), 3.4))
    axes = fig.subplots(1, len(PARAMETERS), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, PARAMETERS):
        rows = result.profiles[name]
        ax.plot([r[name] for r in rows], [r[result.metric] for r in rows], "o-", color="tab:blue")
        ax.axvline(result.best[name], color="tab:red", linestyle="--", linewidth=1, label=f"best {result.best[name]:g}")
        ax.axvline(result.start[name], color="grey", linestyle=":", linewidth=1, label=f"start {result.start[name]:g}")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel(label)
    fig.suptitle(f"{label}: {result.start_score:.3f} -> {result.score:.3f} (others at their best)")
    fig.tight_layout()
    with atomic_output(path) as temp:
        fig.savefig(temp, dpi=110, format="png")
    return path


def write_tuning_report(out_dir: str | os.PathLike, result: TuneResult, settings: dict[str, Any]) -> list[Path]:
    """Write ``tuning.csv``, ``tuning.json`` (best values, scores, settings) and ``tuning.png`` to ``out_dir``.

    Without matplotlib (the ``plots`` extra) ``tuning.png`` is left out with a logged warning:
    the tuned thresholds and their table are the result, the plot only shows them.

    Returns:
        The written paths.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the report folder {out}: {err.strerror or err}") from None
    summary = {"metric": result.metric, "iou": result.iou, "best": result.best, "score": result.score,
               "start": result.start, "start_score": result.start_score, "n_settings": len(result.rows),
               "settings": settings}
    json_path = out / "tuning.json"
    with atomic_output(json_path) as temp:
        Path(temp).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    written = [write_table(out / "tuning.csv", result.rows), json_path]
    try:
        written.append(plot_profiles(out / "tuning.png", result))
    except ConfigError as error:
        logger.warning("%s; tuning.png left out", error)
    return written


def write_tuned_checkpoint(model: str | os.PathLike, output: str | os.PathLike, result: TuneResult,
                           settings: dict[str, Any] | None = None, *, train_diameter: float | None = None) -> Path:
    """Copy a checkpoint with the tuned thresholds (atomic; ``output`` may be ``model`` itself).

    ``cellprob_threshold``, ``flow_threshold`` and ``min_size`` go into the checkpoint's
    ``thresholds`` (which `segment` reads as its defaults); the scores and search settings
    go into ``metadata["tuning"]``.

    Args:
        model: Checkpoint path, or a bundled model name.
        output: File to write.
        result: The search result.
        settings: Extra facts to record (data, metric, ...).
        train_diameter: A tuned model diameter (pixels) to store as the checkpoint's
            ``train_diameter`` (the object size inputs are zoomed to); None keeps the model's.

    Returns:
        The path written.
    """
    from mediar3d.models import load_model, save_checkpoint
    from mediar3d.models.sources import resolve_source

    source = resolve_source(model)
    net, config = load_model(source)
    tuning = {"metric": result.metric, "iou": result.iou, "score": result.score, "start": result.start,
              "start_score": result.start_score, "source": str(source), **(settings or {})}
    path = save_checkpoint(output, net, config=config, thresholds={k: float(v) for k, v in result.best.items()},
                           train_diameter=train_diameter,
                           metadata={"tuning": json.loads(json.dumps(tuning, default=str))})
    logger.info("wrote tuned thresholds %s to %s", result.best, path)
    return path

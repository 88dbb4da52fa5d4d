"""Reports of an evaluation: a text table, metrics.csv, metrics.json and ap_vs_iou.png.

Everything is rendered in memory first and then written file by file with a
temporary name and a rename, so a failure leaves no partial or stray output.
The plot needs matplotlib (the ``plots`` extra); without it the scores are written
and the plot is left out with a warning.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mediar3d.errors import ConfigError
from mediar3d.evaluation.aggregate import PER_THRESHOLD, Summary
from mediar3d.evaluation.metrics import ImageMetrics
from mediar3d.optional import require

logger = logging.getLogger(__name__)

REPORT_FILES = ("metrics.csv", "metrics.json", "ap_vs_iou.png")
CSV_COLUMNS = (
    "image", "threshold", "n_gt", "n_pred", "tp", "fp", "fn",
    "precision", "recall", "f1", "ap", "mean_matched_iou", "size_ratio", "dice", "seg", "gt", "pred", "z_slice",
)


def _num(value: float) -> float | None:
    """A float for JSON: NaN becomes None (null)."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def format_table(summary: Summary) -> str:
    """Return a plain-text table of the pooled scores per IoU threshold (and per-image mean AP)."""
    p = summary.pooled
    many = len(summary.images) > 1
    seg = "n/a" if math.isnan(p.seg) else f"{p.seg:.4f}"
    lines = [
        f"images: {len(summary.images)}   GT objects: {p.n_gt}   predicted objects: {p.n_pred}"
        + (f" (+{p.n_pred_ignored} outside the annotation, ignored)" if p.n_pred_ignored else ""),
        f"Dice (foreground): {p.dice:.4f}   SEG (CTC): {seg}",
        " IoU      TP      FP      FN  precision  recall      F1      AP  mean IoU" + ("  AP/image" if many else ""),
    ]
    for k, t in enumerate(p.thresholds):
        row = (
            f"{t:<4.3g} {p.tp[k]:7d} {p.fp[k]:7d} {p.fn[k]:7d}  {p.precision[k]:9.4f}  {p.recall[k]:6.4f}"
            f"  {p.f1[k]:6.4f}  {p.ap[k]:6.4f}  {p.mean_matched_iou[k]:8.4f}"
        )
        if many:
            row += f"  {summary.mean['ap'][k]:8.4f}"
        lines.append(row)
    lines.append(f"mean AP over thresholds: {float(np.mean(p.ap)):.4f}")
    return "\n".join(lines)


def _csv_rows(result: ImageMetrics, name: str, counts: bool = True, scores: Mapping | None = None) -> list[list]:
    scores = scores if scores is not None else {key: getattr(result, key) for key in PER_THRESHOLD + ("dice", "seg")}
    info = result.info
    rows = []
    for k, t in enumerate(result.thresholds):
        count = [result.n_gt, result.n_pred, result.tp[k], result.fp[k], result.fn[k]] if counts else [""] * 5
        values = [scores[key][k] for key in PER_THRESHOLD] + [scores["dice"], scores["seg"]]
        rows.append(
            [name, f"{t:g}", *[str(c) for c in count], *[("" if _num(v) is None else f"{_num(v):.6f}") for v in values],
             info.get("gt", ""), info.get("pred", ""), "" if info.get("z_slice") is None else info["z_slice"]]
        )
    return rows


def render_csv(summary: Summary) -> str:
    """One row per image and threshold, then the pooled rows and the per-image mean rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in summary.images:
        writer.writerows(_csv_rows(r, r.name))
    writer.writerows(_csv_rows(summary.pooled, "ALL (pooled)"))
    writer.writerows(_csv_rows(summary.pooled, "ALL (mean over images)", counts=False, scores=summary.mean))
    return buffer.getvalue()


def _metrics_dict(result: ImageMetrics) -> dict:
    out = {
        "name": result.name,
        **{k: v for k, v in result.info.items()},
        "n_gt": result.n_gt,
        "n_pred": result.n_pred,
        "n_pred_ignored": result.n_pred_ignored,
        "dice": _num(result.dice),
        "seg": _num(result.seg),
        "tp": result.tp.tolist(),
        "fp": result.fp.tolist(),
        "fn": result.fn.tolist(),
    }
    for key in PER_THRESHOLD:
        out[key] = [_num(v) for v in getattr(result, key)]
    return out


def render_json(summary: Summary, settings: Mapping | None = None) -> str:
    """JSON with the settings, thresholds, pooled and per-image-mean scores and every image."""
    mean = {k: ([_num(x) for x in v] if np.ndim(v) else _num(v)) for k, v in summary.mean.items()}
    pooled = _metrics_dict(summary.pooled)
    pooled["mean_ap"] = _num(np.mean(summary.pooled.ap))
    doc = {
        "settings": dict(settings or {}),
        "thresholds": [round(float(t), 6) for t in summary.thresholds],
        "n_images": len(summary.images),
        "pooled": pooled,
        "mean_over_images": mean,
        "images": [_metrics_dict(r) for r in summary.images],
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def render_plot(summary: Summary) -> bytes:
    """PNG of AP (pooled, and mean over images when there are several) against IoU threshold.

    Raises:
        ConfigError: matplotlib (the ``plots`` extra) is not installed.
    """
    figure = require("matplotlib.figure", "plots", "the AP-vs-IoU plot (ap_vs_iou.png)")
    fig = figure.Figure(figsize=(5, 3.6), dpi=100)
    ax = fig.add_subplot()
    t = summary.thresholds
    ax.plot(t, summary.pooled.ap, marker="o", label="AP (pooled)")
    if len(summary.images) > 1:
        ax.plot(t, summary.mean["ap"], marker="s", linestyle="--", label="AP (mean over images)")
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("AP = TP / (TP + FP + FN)")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(f"{len(summary.images)} image(s), {summary.pooled.n_gt} GT objects")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(out_dir: str | Path, summary: Summary, settings: Mapping | None = None) -> list[Path]:
    """Write metrics.csv, metrics.json and ap_vs_iou.png into ``out_dir`` (created if missing).

    Without matplotlib (the ``plots`` extra) ap_vs_iou.png is left out with a logged
    warning: the scores are the report, the plot only shows them. A plot of an earlier
    report in ``out_dir`` is then removed, so no plot stands beside scores it does not show.

    Returns:
        The written paths. On failure nothing new is left in ``out_dir``.
    """
    contents = {
        "metrics.csv": render_csv(summary).encode(),
        "metrics.json": render_json(summary, settings).encode(),
    }
    try:
        contents["ap_vs_iou.png"] = render_plot(summary)
    except ConfigError as error:
        logger.warning("%s; ap_vs_iou.png left out", error)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    temps = {name: out / f".{name}.tmp-{uuid.uuid4().hex[:8]}" for name in contents}
    try:
        for name, data in contents.items():
            temps[name].write_bytes(data)
        for name, temp in temps.items():
            os.replace(temp, out / name)
    except OSError:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    if "ap_vs_iou.png" not in contents and (out / "ap_vs_iou.png").is_file():
        (out / "ap_vs_iou.png").unlink()
        logger.warning("%s: removed the ap_vs_iou.png of an earlier evaluation (it showed other scores)", out)
    return [out / name for name in contents]

"""Training logs a person can plot: ``metrics.csv`` (one row per epoch), TensorBoard, W&B.

TensorBoard and Weights & Biases are optional: each is used only when asked for and
installed (a missing package is logged once, not an error).
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.csv"
COLUMNS = ("epoch", "lr", "loss", "flow_z", "flow_y", "flow_x", "cellprob", "val_loss", "val_flow_z", "val_flow_y",
           "val_flow_x", "val_cellprob", "val_ap", "best", "seconds")


class MetricsLogger:
    """Writes epoch rows to ``metrics.csv`` and scalars to TensorBoard / W&B.

    Args:
        save_dir: Run folder.
        tensorboard: Write TensorBoard event files under ``save_dir/tensorboard``.
        wandb: Log to Weights & Biases.
        wandb_project: W&B project.
        config: Resolved config (sent to W&B).
        start_epoch: Rows of later epochs already in ``metrics.csv`` (from a killed run
            being resumed) are dropped.
    """

    def __init__(self, save_dir: str | Path, *, tensorboard: bool = True, wandb: bool = False,
                 wandb_project: str = "mediar3d", config: dict[str, Any] | None = None, start_epoch: int = 0) -> None:
        self.path = Path(save_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._truncate(start_epoch)
        self._tb = None
        self._wandb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(save_dir) / "tensorboard"), purge_step=start_epoch or None)
            except ImportError:
                log.warning("tensorboard is not installed; logging to %s only", self.path)
        if wandb:
            try:
                import wandb as wandb_module

                self._wandb = wandb_module.init(project=wandb_project, config=config or {}, dir=str(save_dir),
                                                resume="allow")
            except ImportError:
                log.warning("wandb is not installed; logging to %s only", self.path)

    def _truncate(self, start_epoch: int) -> None:
        if not self.path.exists():
            return
        with self.path.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("epoch") and int(r["epoch"]) <= start_epoch]
        self._write_rows(rows)

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def log_step(self, step: int, values: dict[str, float]) -> None:
        """Scalars of one optimiser step (TensorBoard / W&B only)."""
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"step/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"step/{k}": v for k, v in values.items()}, step=step)

    def log_epoch(self, epoch: int, values: dict[str, Any]) -> None:
        """Append one row to ``metrics.csv`` and send the scalars to TensorBoard / W&B."""
        row = {"epoch": epoch, **values}
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        numbers = {k: float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
        if self._tb is not None:
            for key, value in numbers.items():
                self._tb.add_scalar(f"epoch/{key}", value, epoch)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({f"epoch/{k}": v for k, v in numbers.items()})

    def close(self) -> None:
        """Flush and close the writers."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def read_metrics(save_dir: str | Path) -> list[dict[str, str]]:
    """Rows of a run's ``metrics.csv`` (strings, as written)."""
    with (Path(save_dir) / METRICS_FILE).open(newline="") as fh:
        return list(csv.DictReader(fh))

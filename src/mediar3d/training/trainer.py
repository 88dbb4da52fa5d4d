"""The training loop: AdamW + cosine schedule, masked eq. 3.6 loss, validation, checkpoints, resume.

Typical use::

    from mediar3d.training import TrainConfig, Trainer
    config = load_config("cfg.json", {"epochs": 20})
    result = Trainer(config).fit()          # or Trainer(config, resume=True).fit()

Every epoch ends with ``model_last.pt`` and ``train_state.pt`` in ``save_dir`` (and
``model_best.pt`` whenever the validation AP, or the training loss without a val split,
improves on the best of *all* previous epochs, including those before a resume), a row in
``metrics.csv`` and TensorBoard scalars. A run killed at any point resumes from the last
completed epoch and ends with exactly the weights an uninterrupted run would have.

With ``num_workers > 0`` the data workers are started with ``forkserver`` / ``spawn``, so a
script that trains must guard its entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mediar3d.data.mapping import load_mapping
from mediar3d.errors import ConfigError
from mediar3d.io.paths import check_writable
from mediar3d.training import distributed
from mediar3d.models.registry import ARCH_ATTR
from mediar3d.training.config import TrainConfig, resolve_amp, save_config
from mediar3d.training.dataset import SliceDataset, build_index, diameter_scales, training_diameter
from mediar3d.training.interpolation import StartWeights
from mediar3d.training.loader import make_loader, resolve_workers, shutdown_workers
from mediar3d.training.losses import TERMS, flow_loss_terms
from mediar3d.training.metrics_log import MetricsLogger
from mediar3d.training.sampling import EpochSampler, sample_probabilities
from mediar3d.training.state import (
    BEST_MODEL,
    LAST_MODEL,
    STATE_FILE,
    load_train_state,
    restore_rng,
    save_model,
    save_train_state,
    unwrap,
)
from mediar3d.training.transforms import build_train_transforms
from mediar3d.training.validation import match_channels, pick_validation_samples, validate

log = logging.getLogger(__name__)

#: Called after every epoch with (trainer, epoch, metrics); may raise to stop the run.
EpochCallback = Callable[["Trainer", int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    save_dir: Path
    epochs: int
    best_metric: str
    best_value: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains a flow network on the datasets of a mapping.

    Args:
        config: Resolved training config.
        model: A network to train instead of building ``config.model``; it must come from
            ``mediar3d.models.create_model`` (checkpoints record its architecture) and map
            (B, C_in, H, W) -> (B, 3, H, W).
        resume: Continue the run in ``config.save_dir`` from its ``train_state.pt``.
        overwrite: Start afresh even if ``save_dir`` already holds a run.
        callbacks: Functions called after every epoch.
    """

    #: Loss terms (besides their sum ``loss``) that :meth:`_loss_terms` returns and the logs record.
    TERM_NAMES: tuple[str, ...] = TERMS

    def __init__(self, config: TrainConfig, *, model: nn.Module | None = None, resume: bool = False,
                 overwrite: bool = False, callbacks: Sequence[EpochCallback] = ()) -> None:
        self.config = config.validate()
        self.save_dir = Path(config.save_dir)
        check_writable(self.save_dir, directory=True)
        self.resume = resume
        self.callbacks = list(callbacks)
        if not resume and not overwrite and (self.save_dir / STATE_FILE).exists():
            raise ConfigError(f"{self.save_dir} already holds a training run; pass --resume to continue it, "
                              "--overwrite to start again, or choose another --save-dir")
        self.device = distributed.select_device(config.device, _env_local_rank())
        self.dist = distributed.init_from_env(self.device)
        _seed_everything(config.seed)
        self.mapping = load_mapping(config.data)
        self.start_config: Any = None  # ModelConfig of the checkpoint fine-tuned from (config.init_from)
        if config.keep_start and model is None and not config.init_from:
            raise ConfigError("keep_start blends the trained weights with the start model's: set init_from too")
        self.model = self._build_model(model).to(self.device)
        # weights of the start model, blended into every saved model file (None: keep_start is 0)
        self.start_weights = StartWeights(self.model, config.keep_start) if config.keep_start else None
        self.in_channels = int(getattr(unwrap(self.model), "in_channels", 1))
        self.train_index = build_index(self.mapping, "train", self.in_channels)
        self.val_index = build_index(self.mapping, "val", self.in_channels)
        if not self.train_index.samples:
            raise ConfigError(f"{config.data}: the train split holds no usable samples")
        self.model_info = self._model_info()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.cosine_period or config.epochs, eta_min=config.min_lr)
        self.amp = resolve_amp(config.amp, str(getattr(unwrap(self.model), ARCH_ATTR, config.model)))
        use_scaler = self.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None
        self.autocast_dtype = (torch.float16 if self.device.type == "cuda" else torch.bfloat16) if self.amp else None
        self._prepare_data()
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model: nn.Module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        else:
            self.ddp_model = self.model
        self._train_loader: DataLoader | None = None
        self.start_epoch = 0
        self.best: dict[str, Any] = {"metric": "val_ap" if self._validates() else "loss", "value": None, "epoch": 0}
        if resume:
            self._load_state()

    # ----------------------------------------------------------------- setup
    def _validates(self) -> bool:
        return self.config.val_every > 0 and bool(self.val_index.samples)

    def _model_info(self) -> dict[str, Any]:
        """What the checkpoints record besides the weights.

        The training diameter is ``config.train_diameter`` when set, else the start model's
        when fine-tuning a checkpoint that has one; the training and validation data are
        then zoomed so that their objects have it (:meth:`_rescale_data`). Otherwise it is
        the data's median object diameter (no zoom).
        """
        cfg = self.config
        diameter = cfg.train_diameter or getattr(self.start_config, "train_diameter", None)
        if diameter:
            diameter = float(diameter)
            self._rescale_data(diameter)
        else:
            diameter = training_diameter(self.train_index) if self.dist.is_main else None
            diameter = distributed.broadcast(diameter)
        start = dict(getattr(self.start_config, "thresholds", None) or {})  # keeps e.g. its min_size_fraction
        info = {"normalization": {"percentiles": list(cfg.percentiles)}, "train_diameter": diameter,
                "thresholds": {**start, "cellprob_threshold": cfg.cellprob_threshold,
                               "flow_threshold": cfg.flow_threshold, "min_size": float(cfg.min_size)}}
        if self.start_config is not None:
            # the start model's architecture and settings, not its metadata: its training and tuning
            # records describe another run (this run's record is `_checkpoint_info`'s, with init_from)
            info["config"] = replace(self.start_config, metadata={})
        return info

    def _rescale_data(self, diameter: float) -> None:
        """Set every item's zoom so its objects have the median diameter ``diameter`` (measured on rank 0)."""
        indices = (self.train_index, self.val_index)
        scales = [diameter_scales(index, diameter) for index in indices] if self.dist.is_main else None
        scales = distributed.broadcast(scales)
        for index, values in zip(indices, scales):
            for item, scale in zip(index.items, values):
                item.scale = float(scale)
        if scales[0]:
            log.info("training at the model diameter %.1f px: training files zoomed by %.2f to %.2f",
                     diameter, min(scales[0]), max(scales[0]))

    def _prepare_data(self) -> None:
        """Set ``train_set``, ``val_set`` and ``sampler`` from the indexes (the model exists by now).

        Subclasses for other sample kinds override this (:class:`~mediar3d.training.trainer3d.Trainer3D`).
        """
        cfg = self.config
        self.train_set = SliceDataset(self.train_index, build_train_transforms(cfg.crop_size, cfg.augment),
                                      percentiles=cfg.percentiles, cache_size=cfg.cache_size, cache_mb=cfg.cache_mb,
                                      in_channels=self.in_channels)
        self.val_set = SliceDataset(self.val_index, None, percentiles=cfg.percentiles, cache_size=cfg.cache_size,
                                    cache_mb=cfg.cache_mb, in_channels=self.in_channels)
        self.sampler = self._make_sampler()

    def _make_sampler(self) -> EpochSampler:
        """The epoch sampler over ``train_index`` (per-dataset probabilities, this rank's share)."""
        cfg = self.config
        probabilities = sample_probabilities(self.train_index, self.mapping.probability_mode,
                                             use_pair_weights=cfg.use_pair_weights)
        return EpochSampler(probabilities, cfg.samples_per_epoch, seed=cfg.seed, rank=self.dist.rank,
                            world_size=self.dist.world_size)

    def _build_model(self, model: nn.Module | None) -> nn.Module:
        cfg = self.config
        if model is not None:
            return model
        if cfg.init_from:
            from mediar3d.models.sources import resolve_source
            from mediar3d.models import load_model

            net, saved = load_model(resolve_source(cfg.init_from))
            self.start_config = saved
            log.info("fine-tuning %s from %s", saved.arch, cfg.init_from)
            return net.train()
        from mediar3d.models import create_model

        return create_model(cfg.model, **cfg.model_kwargs)

    def _load_state(self) -> None:
        path = self.save_dir / STATE_FILE
        state = load_train_state(path)
        done = int(state["epoch"])
        if done >= self.config.epochs:
            raise ConfigError(f"cannot resume: {path} has already finished {done} epochs and --epochs is "
                              f"{self.config.epochs}; pass --epochs N with N > {done} to train further")
        try:
            unwrap(self.model).load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot resume: {path} holds the state of another network than "
                              f"{self.config.model!r} with these options; resume with the run's own config.json "
                              f"({str(err).splitlines()[0][:120]})") from None
        self.scheduler.load_state_dict(state["scheduler"])
        period = self.config.cosine_period or self.config.epochs
        if period != self.scheduler.T_max:
            self._reschedule(period)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best = dict(state["best"])
        self.start_epoch = int(state["epoch"])
        restore_rng(state["rng"])
        log.info("resumed %s after epoch %d (best %s = %s)", self.save_dir, self.start_epoch, self.best["metric"],
                 self.best["value"])

    def _reschedule(self, period: int) -> None:
        """Continue a resumed run on a cosine of ``period`` epochs (``--epochs`` extended or shortened).

        The learning rate is set to where the new cosine is after the epochs done, as if the
        run had been planned that long from the start: resuming a finished 10-epoch run with
        ``--epochs 20`` continues at half the initial rate, not at 0 (the end of the old cosine).
        """
        sched = self.scheduler
        sched.T_max = period
        done = sched.last_epoch
        for group, base in zip(self.optimizer.param_groups, sched.base_lrs):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * (1 + math.cos(math.pi * done / period)) / 2
        sched._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        log.info("cosine schedule re-planned over %d epochs: learning rate %.3g after %d epochs", period,
                 self.optimizer.param_groups[0]["lr"], done)

    # ----------------------------------------------------------------- loop
    def _loader(self, epoch: int) -> DataLoader:
        """The training loader, built once (:func:`~mediar3d.training.loader.make_loader`).

        Workers persist across epochs, start with ``forkserver`` (never ``fork``) and use
        one numba and one torch thread each.
        """
        self.sampler.set_epoch(epoch)
        if self._train_loader is None:
            self._train_loader = make_loader(self.train_set, batch_size=self.config.batch_size, sampler=self.sampler,
                                             num_workers=resolve_workers(self.config.num_workers),
                                             pin_memory=self.device.type == "cuda", drop_last=False)
        return self._train_loader

    def _train_epoch(self, epoch: int, logger: MetricsLogger | None) -> dict[str, float]:
        from tqdm.auto import tqdm

        cfg = self.config
        self.ddp_model.train()
        totals = {k: 0.0 for k in (*self.TERM_NAMES, "loss")}
        steps = 0
        loader = self._loader(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and self.dist.is_main))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        for batch in bar:
            image = match_channels(batch["image"].to(self.device, non_blocking=True), self.in_channels)
            target = batch["target"].to(self.device, non_blocking=True)
            weight = batch["weight"].to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                enabled=self.autocast_dtype is not None):
                prediction = self.ddp_model(image)
            terms = self._loss_terms(prediction, target, weight)
            values = self._optimizer_step(terms, epoch, trainable)
            for k in totals:
                totals[k] += values[k]
            steps += 1
            for callback in self.callbacks:
                if hasattr(callback, "on_step"):  # e.g. learning-curve checkpoints by annotated objects
                    callback.on_step(self, epoch, steps)
            if self.dist.is_main and steps % cfg.log_every == 0:
                bar.set_postfix(loss=f"{values['loss']:.4f}")
                if logger is not None:
                    logger.log_step(epoch * len(loader) + steps, values)
        bar.close()
        means = {k: v / max(steps, 1) for k, v in totals.items()}
        return distributed.all_reduce_mean(means, self.device)

    def _loss_terms(self, prediction: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of one batch: :func:`flow_loss_terms` (B, 3, H, W); keys ``TERM_NAMES`` and ``loss``."""
        return flow_loss_terms(prediction, target, weight)

    def _optimizer_step(self, terms: dict[str, torch.Tensor], epoch: int, params: Any) -> dict[str, float]:
        """Backward on ``terms["loss"]`` (scaled under amp), clip ``params``, step; returns the terms as floats."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(terms["loss"]).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            terms["loss"].backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"epoch {epoch + 1}: the loss became {values['loss']}; lower the lr, "
                                     "set grad_clip or turn amp off")
        return values

    def _validate(self) -> dict[str, float]:
        cfg = self.config
        values: dict[str, float] = {}
        if self.dist.is_main:
            samples = pick_validation_samples(len(self.val_set), cfg.val_max_samples)
            values = validate(unwrap(self.model), self.val_set, self.device, samples=samples,
                              in_channels=self.in_channels, iou=cfg.val_iou,
                              cellprob_threshold=cfg.cellprob_threshold, flow_threshold=cfg.flow_threshold,
                              min_size=cfg.min_size, niter=cfg.niter, autocast_dtype=self.autocast_dtype)
        return distributed.broadcast(values)

    def _improved(self, metrics: dict[str, Any]) -> bool:
        value = metrics.get(self.best["metric"])
        if value is None or not math.isfinite(value):
            return False
        best = self.best["value"]
        better = best is None or (value > best if self.best["metric"] == "val_ap" else value < best)
        if better:
            self.best["value"] = float(value)
        return better

    def saved_model(self) -> nn.Module:
        """The network as the model files hold it: blended with the start model when ``keep_start`` > 0.

        ``train_state.pt`` keeps the trained weights themselves, so ``--resume`` goes on from them.
        """
        net = unwrap(self.model)
        return self.start_weights.blended(net) if self.start_weights is not None else net

    def _checkpoint_info(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        info = dict(self.model_info)
        scores = {k: float(metrics[k]) for k in ("loss", "val_ap") if isinstance(metrics.get(k), float)
                  and math.isfinite(metrics[k])}
        info["metadata"] = {"epoch": epoch, "epochs": self.config.epochs, "data": str(self.config.data),
                            "init_from": self.config.init_from, **scores}
        if self.start_weights is not None:
            info["metadata"]["keep_start"] = self.start_weights.keep_start
        return info

    def fit(self) -> TrainResult:
        """Train from ``start_epoch`` to ``config.epochs``; returns the run summary."""
        cfg = self.config
        logger = None
        if self.dist.is_main:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.save_dir / "config.json")
            logger = MetricsLogger(self.save_dir, tensorboard=cfg.tensorboard, wandb=cfg.wandb,
                                   wandb_project=cfg.wandb_project, config=cfg.to_dict(), start_epoch=self.start_epoch)
        history: list[dict[str, Any]] = []
        try:
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.perf_counter()
                lr = self.optimizer.param_groups[0]["lr"]
                metrics: dict[str, Any] = {"lr": lr, **self._train_epoch(epoch, logger)}
                self.scheduler.step()
                due = self._validates() and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)
                if due:
                    metrics.update(self._validate())
                improved = self._improved(metrics)
                if improved:
                    self.best["epoch"] = epoch + 1
                metrics["best"] = self.best["value"]
                metrics["seconds"] = round(time.perf_counter() - started, 3)
                if self.dist.is_main:
                    info = self._checkpoint_info(epoch + 1, metrics)
                    saved = self.saved_model()
                    if improved:
                        save_model(self.save_dir / BEST_MODEL, saved, info)
                    save_model(self.save_dir / LAST_MODEL, saved, info)
                    # The row goes first: a kill between the two leaves a row that resuming drops
                    # and writes again, never a saved epoch without its row.
                    logger.log_epoch(epoch + 1, metrics)
                    save_train_state(self.save_dir / STATE_FILE, epoch=epoch + 1, model=self.model,
                                     optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
                                     best=self.best, config=cfg.to_dict())
                    log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                             ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float)))
                distributed.barrier()
                history.append({"epoch": epoch + 1, **metrics})
                for callback in self.callbacks:
                    callback(self, epoch + 1, metrics)
        finally:
            shutdown_workers(self._train_loader)  # no worker may outlive the run (Ctrl-C, SIGTERM, errors)
            if logger is not None:
                logger.close()
        return TrainResult(self.save_dir, cfg.epochs, self.best["metric"],
                           float("nan") if self.best["value"] is None else self.best["value"],
                           int(self.best["epoch"]), history)


def _env_local_rank() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", "0"))


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` for ``config`` and run it (keyword arguments go to the Trainer)."""
    return Trainer(config, **kwargs).fit()

"""`mediar3d train` and `mediar3d finetune`: train or fine-tune a flow network.

Settings come from the defaults, then ``--config FILE.json``, then the flags below, then
``--set key=value`` pairs (any config key, JSON values). The resolved config is saved as
``config.json`` in the save folder. Multi-GPU: ``torchrun --nproc_per_node=N -m mediar3d train ...``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mediar3d.errors import ConfigError

# flag name -> config key
_FLAGS = {
    "data": "data", "save_dir": "save_dir", "model": "model", "epochs": "epochs", "batch_size": "batch_size",
    "lr": "lr", "crop_size": "crop_size", "samples_per_epoch": "samples_per_epoch", "device": "device",
    "num_workers": "num_workers", "val_every": "val_every", "seed": "seed", "init_from": "init_from",
    "grad_clip": "grad_clip", "crop_depth": "crop_depth", "checkpoint_at_objects": "checkpoint_at_objects",
}


def _add_common(parser: argparse.ArgumentParser, *, finetune: bool) -> None:
    parser.add_argument("--config", metavar="JSON", help="training config file (see mediar3d/configs/*.json)")
    parser.add_argument("--data", metavar="MAP.json", required=finetune,
                        help="dataset mapping written by `mediar3d map-dataset`")
    parser.add_argument("--save-dir", metavar="DIR", help="output folder (default: runs/train)")
    if finetune:
        parser.add_argument("--from", dest="init_from", metavar="CKPT", required=True,
                            help="checkpoint to start from (its architecture is used)")
    else:
        parser.add_argument("--model", metavar="NAME", help="architecture (default: unet-small; see `mediar3d info`)")
        parser.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's weights")
    parser.add_argument("--epochs", type=int, help="number of epochs (default: 100)")
    parser.add_argument("--batch-size", type=int, help="samples per step and process (default: 8)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default: 5e-5)")
    parser.add_argument("--crop-size", type=int, help="square training crop side (default: 512; 128 for 3D networks)")
    parser.add_argument("--crop-depth", type=int,
                        help="z size of the training crops of a 3D network such as feature3d (default: 32)")
    parser.add_argument("--samples-per-epoch", type=int, help="draws per epoch (default: number of training samples)")
    parser.add_argument("--grad-clip", type=float, help="clip the gradient norm to this value")
    parser.add_argument("--val-every", type=int, help="validate every N epochs, 0 = never (default: 1)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--num-workers", type=int, help="data loader processes (default: 2)")
    parser.add_argument("--seed", type=int, help="seed of sampling, augmentation and initialisation (default: 0)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (autocast)")
    parser.add_argument("--checkpoint-at-objects", type=_counts, metavar="N,N,...",
                        help="save learning_curve/objects_<N>.pt in the save folder when the annotated objects seen "
                             "in training cross each count (e.g. 10,100,1000), for `mediar3d evaluate --checkpoints`")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, value as JSON (e.g. --set augment='{\"noise_prob\": 0.5}'); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue the run in --save-dir from its last epoch")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --save-dir holds a run")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` and `finetune` subcommands."""
    train = subparsers.add_parser(
        "train", help="train a flow network on a dataset mapping",
        description="Train a flow network (eq. 3.6 loss, AdamW, cosine schedule) on the datasets of a mapping JSON. "
                    "Writes model_best.pt, model_last.pt, train_state.pt, metrics.csv, TensorBoard logs and "
                    "config.json to the save folder.")
    _add_common(train, finetune=False)
    train.set_defaults(func=run)
    finetune = subparsers.add_parser(
        "finetune", help="fine-tune a trained checkpoint on your data",
        description="Fine-tune a checkpoint on the datasets of a mapping JSON (partial annotations: set a "
                    "supervision mode per dataset in the mapping). Same options as `train`.")
    _add_common(finetune, finetune=True)
    finetune.set_defaults(func=run)


def _counts(text: str) -> list[int]:
    """``"10,100,1000"`` (commas or spaces) -> [10, 100, 1000]."""
    try:
        values = [int(part) for part in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers such as 10,100,1000")
    return values


def _parse_set(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Config overrides given on the command line (flags, then --set)."""
    values = {key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag, None) is not None}
    if args.amp is not None:
        values["amp"] = args.amp
    values.update(_parse_set(args.set))
    return values


def _architecture(args: argparse.Namespace, overrides: dict[str, Any]) -> str | None:
    """The architecture this run trains: the checkpoint's, else the flag's, else the config file's."""
    init_from = overrides.get("init_from")
    if init_from:
        from mediar3d.models import read_checkpoint

        return read_checkpoint(init_from)[0].arch
    if overrides.get("model"):
        return str(overrides["model"])
    if args.config:
        from mediar3d.training.config import read_config_file

        return read_config_file(args.config).get("model")
    return None


def run(args: argparse.Namespace) -> int:
    """Train; returns 0. Volumetric networks (e.g. feature3d) train on 3D crops with Trainer3D."""
    import logging

    from mediar3d.models import list_models

    overrides = overrides_from_args(args)
    if _architecture(args, overrides) in list_models(spatial_dims=3):
        from mediar3d.training.trainer3d import Trainer3D as trainer_class
        from mediar3d.training.trainer3d import load_config3d as load
    else:
        from mediar3d.training import Trainer as trainer_class
        from mediar3d.training import load_config as load
    config = load(args.config, overrides)
    callbacks = []
    if config.checkpoint_at_objects:
        from mediar3d.tuning.learning_curve import ObjectCountCheckpointer

        callbacks.append(ObjectCountCheckpointer(config.checkpoint_at_objects))
    result = trainer_class(config, resume=args.resume, overwrite=args.overwrite, callbacks=callbacks).fit()
    logging.getLogger(__name__).info("done: best %s = %.4f at epoch %d", result.best_metric, result.best_value,
                                     result.best_epoch)
    print(f"trained {result.epochs} epochs; best {result.best_metric} {result.best_value:.4f} "
          f"(epoch {result.best_epoch}); outputs in {result.save_dir}")
    return 0

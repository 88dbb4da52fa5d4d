"""`mediar3d train` and `mediar3d finetune`: train or fine-tune a flow network.

Settings come from the defaults, then ``--config FILE.json``, then the flags below, then
``--set key=value`` pairs (any config key, JSON values). The resolved config is saved as
``config.json`` in the save folder. Multi-GPU: ``torchrun --nproc_per_node=N -m mediar3d train ...``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mediar3d.errors import ConfigError, InputError

# flag name -> config key
_FLAGS = {
    "data": "data", "save_dir": "save_dir", "model": "model", "epochs": "epochs", "batch_size": "batch_size",
    "lr": "lr", "crop_size": "crop_size", "samples_per_epoch": "samples_per_epoch", "device": "device",
    "num_workers": "num_workers", "val_every": "val_every", "seed": "seed", "init_from": "init_from",
    "grad_clip": "grad_clip", "crop_depth": "crop_depth", "checkpoint_at_objects": "checkpoint_at_objects",
    "keep_start": "keep_start",
}


def _add_common(parser: argparse.ArgumentParser, *, finetune: bool) -> None:
    parser.add_argument("--config", metavar="JSON", help="training config file (see mediar3d/configs/*.json)")
    parser.add_argument("--data", metavar="MAP.json",
                        help="dataset mapping written by `mediar3d map-dataset`"
                             + (" (or give --image and --labels)" if finetune else ""))
    parser.add_argument("--save-dir", metavar="DIR",
                        help=f"output folder (default: runs/{'finetune' if finetune else 'train'})")
    if finetune:
        parser.add_argument("--from", dest="init_from", metavar="MODEL", required=True,
                            help="model to start from: a bundled name as for `segment` (default, nuclei, ...) or a "
                                 "checkpoint file (its architecture is used)")
        _add_fewshot(parser)
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
    parser.add_argument("--keep-start", type=float, metavar="SHARE",
                        help="blend this share of the start model's weights into the saved models (0-1; keeps the "
                             "model good on data unlike yours; default: 0.6 in the small-data mode, else 0)")
    parser.add_argument("--minutes", type=float, metavar="N",
                        help="time budget of the training: the learning rate follows a cosine over the epochs that "
                             "fit (re-planned after every epoch; --epochs is the most it trains) and the run stops "
                             "cleanly with model_last.pt written"
                             + ("; in the small-data mode the budget also covers re-tuning the thresholds"
                                if finetune else ""))
    parser.add_argument("--val-every", type=int, help="validate every N epochs, 0 = never (default: 1)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--num-workers", type=int, help="data loader processes (default: chosen from the CPU cores, none on 2 cores)")
    parser.add_argument("--seed", type=int, help="seed of sampling, augmentation and initialisation (default: 0)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision (autocast); default: the model's thesis recipe (on for "
                             "mediar-sam-light only)")
    parser.add_argument("--checkpoint-at-objects", type=_counts, metavar="N,N,...",
                        help="save learning_curve/objects_<N>.pt in the save folder when the annotated objects seen "
                             "in training cross each count (e.g. 10,100,1000), for `mediar3d evaluate --checkpoints`")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, value as JSON (e.g. --set augment='{\"noise_prob\": 0.5}'); repeatable")
    parser.add_argument("--resume", action="store_true", help="continue the run in --save-dir from its last epoch")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --save-dir holds a run")


def _add_fewshot(parser: argparse.ArgumentParser) -> None:
    """Options of `finetune` for one annotated image or volume and the small-data mode."""
    group = parser.add_argument_group(
        "annotated files instead of a mapping, and the small-data mode",
        "Give --image and --labels (repeatable, same order) instead of --data: the mapping is built for you and "
        "saved as mapping.json in the save folder. Volumes train on slices along z, y and x, made isotropic "
        "and zoomed to the start model's object diameter, as `segment` sees them.")
    group.add_argument("--image", action="append", default=[], metavar="IMG", help="annotated image or volume")
    group.add_argument("--labels", action="append", default=[], metavar="LAB",
                       help="its instance labels (0 = not annotated where --supervision is dilate or roi)")
    group.add_argument("--supervision", metavar="MODE", default=None,
                       help="full (unlabelled = background; the default), dilate (only around the labelled objects: "
                            "for a few objects labelled in a crowded image) or roi (only inside the box around them); "
                            "or a JSON object such as '{\"mode\": \"dilate\", \"iterations\": 8}'")
    group.add_argument("--anisotropy", type=float, metavar="Z/XY",
                       help="z voxel size / xy voxel size of the volumes (default: from the file's voxel size, else 1)")
    group.add_argument("--channel", type=int, help="channel of multi-channel images")
    group.add_argument("--replay", type=float, metavar="SHARE",
                       help="small-data mode: share of the training draws from synthetic volumes like the bundled "
                            "model's training data, which keeps the model good on other data (default: 0.5 from the "
                            "bundled model, 0 from other checkpoints; 0: train on your data only)")
    group.add_argument("--small-data", action=argparse.BooleanOptionalAction, default=None,
                       help="pick crop size, steps, batch and learning rate from the data, show one progress bar "
                            "with ETA and re-tune the thresholds on the annotated data at the end (default: on when "
                            f"the data has at most 10 files and 500 annotated objects); flags you give win")


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
        description="Fine-tune a model on your annotated data: a mapping JSON (--data; partial annotations: set a "
                    "supervision mode per dataset in the mapping) or annotated files (--image/--labels "
                    "[--supervision dilate]). On small data the settings are picked from the data and the run ends "
                    "with thresholds re-tuned on the annotated data, written into model_best.pt (ready for "
                    "`segment --model`). Same options as `train`.",
        epilog="example:\n  mediar3d finetune --from default --image vol.tif --labels vol_10_nuclei.tif "
               "--supervision dilate --minutes 15",
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
        from mediar3d.models.sources import resolve_source
        from mediar3d.models import read_checkpoint

        return read_checkpoint(resolve_source(init_from))[0].arch
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

    minutes = getattr(args, "minutes", None)
    if minutes is not None and not 0 < minutes < float("inf"):
        raise ConfigError(f"--minutes must be a number of minutes > 0, got {minutes}")
    overrides = overrides_from_args(args)
    volumetric = _architecture(args, overrides) in list_models(spatial_dims=3)
    if getattr(args, "init_from", None) and not overrides.get("save_dir"):
        overrides["save_dir"] = _config_save_dir(args) or "runs/finetune"
    if getattr(args, "image", None) or getattr(args, "labels", None):
        overrides["data"] = _files_mapping(args, overrides)
    elif getattr(args, "supervision", None) or getattr(args, "anisotropy", None) or getattr(args, "channel", None):
        raise ConfigError("--supervision, --anisotropy and --channel go with --image/--labels; with --data set them "
                          "per dataset in the mapping")
    if getattr(args, "init_from", None) and not volumetric and hasattr(args, "small_data"):  # `finetune` only
        from mediar3d.cli import finetune_small

        if finetune_small.wanted(args, overrides):
            return finetune_small.run(args, overrides)
    if getattr(args, "replay", None) is not None:
        raise ConfigError("--replay needs the small-data mode (leave out --no-small-data; 2D networks only)")
    if getattr(args, "init_from", None):
        _keep_start_thresholds(args, overrides)
    if volumetric:
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
    if minutes is None:
        result = trainer_class(config, resume=args.resume, overwrite=args.overwrite, callbacks=callbacks).fit()
        done = f"trained {result.epochs} epochs"
    else:
        from mediar3d.training.budget import budgeted

        trainer = budgeted(trainer_class)(config, seconds=60.0 * minutes, progress=config.progress,
                                          resume=args.resume, overwrite=args.overwrite, callbacks=callbacks)
        result = trainer.fit()
        done = f"trained {trainer.steps_done} steps" + (
            f", stopped at the {minutes:g}-minute budget" if trainer.stopped_by == "budget" else
            f" of {result.epochs} planned epochs within the {minutes:g}-minute budget")
    logging.getLogger(__name__).info("done: best %s = %.4f at epoch %d", result.best_metric, result.best_value,
                                     result.best_epoch)
    print(f"{done}; best {result.best_metric} {result.best_value:.4f} (epoch {result.best_epoch}); "
          f"outputs in {result.save_dir}")
    return 0


def _keep_start_thresholds(args: argparse.Namespace, overrides: dict[str, Any]) -> None:
    """Fine-tuning: the start model's thresholds go into ``overrides``, except those the user set.

    They are the fine-tuned model's thresholds (stored in its checkpoints) and validate it.
    """
    from mediar3d.cli.finetune_small import given_keys
    from mediar3d.training.fewshot_plan import start_thresholds, threshold_values

    given = given_keys(args, overrides)
    for key, value in threshold_values(start_thresholds(args.init_from)).items():
        if key not in given:
            overrides[key] = value


def _files_mapping(args: argparse.Namespace, overrides: dict[str, Any]) -> str:
    """Write the mapping of --image/--labels into the save folder; returns its path."""
    from pathlib import Path

    from mediar3d.data.mapping import parse_supervision
    from mediar3d.training.fewshot import pairs_mapping, run_exists, write_pairs_mapping

    if overrides.get("data"):
        raise ConfigError("give the training data either with --data MAP.json or with --image/--labels, not both")
    text = args.supervision or "full"
    try:
        supervision = json.loads(text) if text.lstrip().startswith("{") else text
    except json.JSONDecodeError as err:
        raise ConfigError(f"--supervision {text!r}: not a mode name nor valid JSON ({err})") from None
    mapping = pairs_mapping(args.image, args.labels, supervision=parse_supervision(supervision, "--supervision"),
                            anisotropy=args.anisotropy, channel=args.channel)
    for _, pair in mapping.pairs(None):
        for path in (pair.image, pair.label):
            if not Path(path).exists():
                raise InputError(f"{path}: file does not exist")
    save_dir = overrides["save_dir"]
    if run_exists(save_dir) and not (args.resume or args.overwrite):
        raise ConfigError(f"{save_dir} already holds a training run; pass --resume to continue it, --overwrite to "
                          "start again, or choose another --save-dir")
    return str(write_pairs_mapping(mapping, save_dir))


def _config_save_dir(args: argparse.Namespace) -> str | None:
    """The save folder a --config file names, if any."""
    if not args.config:
        return None
    from pathlib import Path

    from mediar3d.training.config import read_config_file

    value = read_config_file(args.config).get("save_dir")
    return None if not value else str(Path(args.config).parent / value)

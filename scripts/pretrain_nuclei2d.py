#!/usr/bin/env python
"""Pretrain a flow network on a 2D nuclei corpus with the mediar3d trainer.

The corpus is read where it lies (never copied): either one source folder
``<source>/images/*.tif`` + ``<source>/masks/*.tif``, or a root folder holding several such
sources (each becomes one dataset of the mapping). The script writes the dataset mapping
into the run folder, then trains with :class:`mediar3d.training.Trainer` (all of its
outputs: model_best.pt, model_last.pt, train_state.pt, metrics.csv, TensorBoard logs,
config.json). Re-run with ``--resume`` after an interruption.

Usage::

    python scripts/pretrain_nuclei2d.py /path/to/nuclei2d --save-dir runs/nuclei2d \
        --model unet-small --epochs 50 --crop-size 256 --batch-size 16 --samples-per-epoch 2000
    torchrun --nproc_per_node=4 scripts/pretrain_nuclei2d.py /path/to/nuclei2d --model mediar ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mediar3d.data.mapping import mapping_from_dict, save_mapping
from mediar3d.errors import Mediar3DError
from mediar3d.training import Trainer, load_config

log = logging.getLogger("pretrain_nuclei2d")


def find_sources(root: Path) -> list[Path]:
    """Source folders (with images/ and masks/) at ``root`` or directly below it."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return [root]
    sources = sorted(p for p in root.iterdir() if (p / "images").is_dir() and (p / "masks").is_dir())
    if not sources:
        raise SystemExit(f"{root}: no images/ + masks/ folders here or one level below")
    return sources


def build_mapping(root: Path, out: Path, *, val_fraction: float, seed: int, probabilities: dict[str, float]) -> Path:
    """Write the mapping of every source under ``root`` to ``out`` (paths relative to it)."""
    datasets = []
    for source in find_sources(root):
        entry = {"name": source.name, "images": str(source.resolve() / "images" / "*.tif"),
                 "labels": str(source.resolve() / "masks" / "*.tif")}
        if probabilities:
            entry["probability"] = probabilities.get(source.name, 0.0)
        datasets.append(entry)
    mapping = mapping_from_dict({"seed": seed, "val_fraction": val_fraction, "datasets": datasets}, root,
                                source=str(root))
    for d in mapping.datasets:
        log.info("%s: %d pairs", d.name, len(d.pairs))
    return save_mapping(mapping, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="nuclei2d root or one source folder (images/, masks/)")
    parser.add_argument("--save-dir", default="runs/pretrain-nuclei2d", help="run folder")
    parser.add_argument("--config", help="training config JSON (the flags below override it)")
    parser.add_argument("--model", default="unet-small")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--samples-per-epoch", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=5e-4, help="higher than the fine-tuning default 5e-5: from scratch")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--val-every", type=int, default=5)
    parser.add_argument("--val-max-samples", type=int, default=16, help="validation images per validation")
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probability", action="append", default=[], metavar="SOURCE=P",
                        help="sampling probability per source (default: proportional to size)")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    save_dir = Path(args.save_dir)
    mapping_path = save_dir / "mapping.json"
    try:
        if not args.resume and int(os.environ.get("RANK", "0")) == 0:
            probabilities = {k: float(v) for k, _, v in (p.partition("=") for p in args.probability)}
            build_mapping(args.source, mapping_path, val_fraction=args.val_fraction, seed=args.seed,
                          probabilities=probabilities)
        else:
            _wait_for(mapping_path)
        overrides = {"data": str(mapping_path), "save_dir": str(save_dir), "model": args.model, "epochs": args.epochs,
                     "batch_size": args.batch_size, "crop_size": args.crop_size,
                     "samples_per_epoch": args.samples_per_epoch, "lr": args.lr, "val_every": args.val_every,
                     "val_max_samples": args.val_max_samples,
                     "num_workers": args.num_workers, "device": args.device, "amp": args.amp, "seed": args.seed}
        config = load_config(args.config, overrides)
        result = Trainer(config, resume=args.resume).fit()
    except Mediar3DError as err:
        print(f"pretrain_nuclei2d: error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"save_dir": str(result.save_dir), "best_metric": result.best_metric,
                      "best_value": result.best_value, "best_epoch": result.best_epoch}))
    return 0


def _wait_for(path: Path, timeout: float = 600.0) -> None:
    """Other ranks wait for rank 0's mapping file."""
    import time

    start = time.monotonic()
    while not path.is_file():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"{path} did not appear")
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())

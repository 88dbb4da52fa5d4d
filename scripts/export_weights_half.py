#!/usr/bin/env python
"""Copy a checkpoint with its float32 weights stored as float16 (half the file size).

Used to ship the bundled model: ``load_model`` copies the weights back into the float32
network, so inference is unchanged apart from float16 rounding of the weights. Everything
else in the checkpoint (architecture, normalisation, training diameter, tuned thresholds,
metadata) is kept, except that absolute file paths in the metadata (the training and
tuning records name the files of the machine that made them) become their file names, and
``--drop-metadata KEY`` removes a top-level metadata entry.

Usage::

    python scripts/export_weights_half.py runs/default-model/model_tuned.pt src/mediar3d/weights/unet-small-nuclei.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def without_machine_paths(value):
    """``value`` (JSON-like) with every absolute path string replaced by its file name."""
    if isinstance(value, dict):
        return {k: without_machine_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_machine_paths(v) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        return Path(value).name
    return value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.add_argument("--drop-metadata", action="append", default=[], metavar="KEY",
                   help="remove this top-level metadata entry (repeatable)")
    args = p.parse_args()
    from mediar3d.io import atomic_output
    from mediar3d.models import read_checkpoint

    read_checkpoint(args.source)  # refuses anything that is not a valid mediar3d checkpoint
    payload = torch.load(args.source, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in payload["state_dict"].items()}
    metadata = {k: v for k, v in payload.get("metadata", {}).items() if k not in args.drop_metadata}
    payload["metadata"] = {**without_machine_paths(metadata), "weights_stored_as": "float16"}
    args.target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.target) as tmp:
        torch.save(payload, tmp)
    print(f"wrote {args.target} ({args.target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Copy a checkpoint with its float32 weights stored as float16 (half the file size).

Used to ship the bundled model: ``load_model`` copies the weights back into the float32
network, so inference is unchanged apart from float16 rounding of the weights. Everything
else in the checkpoint (architecture, normalisation, training diameter, tuned thresholds,
metadata) is kept.

Usage::

    python scripts/export_weights_half.py runs/default-model/model_tuned.pt src/mediar3d/weights/unet-small-nuclei.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    args = p.parse_args()
    from mediar3d.io import atomic_output
    from mediar3d.models import read_checkpoint

    read_checkpoint(args.source)  # refuses anything that is not a valid mediar3d checkpoint
    payload = torch.load(args.source, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in payload["state_dict"].items()}
    payload.setdefault("metadata", {})["weights_stored_as"] = "float16"
    args.target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.target) as tmp:
        torch.save(payload, tmp)
    print(f"wrote {args.target} ({args.target.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

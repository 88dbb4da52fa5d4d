#!/usr/bin/env python3
"""Benchmark: AP@0.5 after few-shot fine-tuning with N annotated objects and M minutes.

For each N (and each volume kind), the script keeps N seeded objects of a fully annotated
volume (``mediar3d.data.partial.simulate_partial``, the rest set to 0), runs exactly what
a user runs::

    mediar3d finetune --from default --image IMG --labels LAB_N --supervision dilate --minutes M

and scores the bundled model and the fine-tuned ``model_best.pt`` (``mediar3d.segment``
with each model's own thresholds, diameter estimated, voxel size from the file) on:

- every object of the same volume (the N trained ones included), and
- a volume of another kind that was not trained on (the other kind of the pair below),

so a row says how much the annotated volume gains and whether another kind loses.

Kinds: ``real`` is the volume given with ``--volume DIR`` (``image.tif`` + ``labels.tif``);
``synthetic`` is ``mediar3d.data.synthetic.make_nuclei_volume`` (96 x 128 x 128, seed 7,
anisotropy 2, 12-bit-like noise). With ``--kinds real synthetic`` each is fine-tuned and
the other is the unseen volume. ``N = all`` keeps every object.

Usage (from the repository root):
    nice -n 5 .venv/bin/python benchmarks/fewshot.py --volume DIR --n 5 10 20 all --minutes 3
    nice -n 5 .venv/bin/python benchmarks/fewshot.py --volume DIR --n 10 --minutes 15 --kinds real

Prints one JSON line per run, then a Markdown table (append it to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile


def _synthetic(folder: Path) -> Path:
    """Write the synthetic volume (image.tif, labels.tif, anisotropy 2 in the ImageJ spacing) into folder."""
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.io.tiff import write_tiff

    image, labels = make_nuclei_volume((48, 128, 128), radius_range=(7.0, 11.0), anisotropy=2.0, seed=7, bit_depth=16)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiff(folder / "image.tif", image.astype(np.uint16), "ZYX", (2.0, 1.0, 1.0))
    write_tiff(folder / "labels.tif", labels.astype(np.uint16), "ZYX", (2.0, 1.0, 1.0))
    return folder


def _ap(model: str, folder: Path) -> dict[str, Any]:
    """AP@0.5 of a model on every object of a volume folder, as `mediar3d segment` would run it."""
    from mediar3d import segment
    from mediar3d.evaluation import evaluate_instances
    from mediar3d.io import read_image, read_labels

    image = read_image(folder / "image.tif")
    gt = np.asarray(read_labels(folder / "labels.tif"))
    started = time.perf_counter()
    pred = segment(image, model=model, progress=False)
    result = evaluate_instances(gt, pred, [0.5])
    return {"ap": round(float(result.ap[0]), 3), "n_pred": int(pred.max()), "n_gt": int(len(np.unique(gt)) - 1),
            "seconds": round(time.perf_counter() - started, 1)}


def _finetune(folder: Path, n: str, minutes: float, work: Path, seed: int) -> tuple[Path, float, str]:
    """Run `mediar3d finetune` on the volume with n objects kept; returns (model, seconds, summary line)."""
    from mediar3d.data.partial import simulate_partial
    from mediar3d.io import read_labels

    labels = np.asarray(read_labels(folder / "labels.tif"))
    kept = labels if n == "all" else simulate_partial(labels, count=int(n), seed=seed)
    partial = work / f"labels_{n}.tif"
    tifffile.imwrite(partial, kept.astype(np.uint16))
    run = work / f"run_{n}"
    command = [sys.executable, "-m", "mediar3d", "finetune", "--from", "default", "--image", str(folder / "image.tif"),
               "--labels", str(partial), "--supervision", "dilate", "--minutes", str(minutes),
               "--save-dir", str(run), "--overwrite"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"finetune failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = [line for line in done.stdout.splitlines() if line.startswith("fine-tuned")]
    return run / "model_best.pt", seconds, summary[-1] if summary else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volume", type=Path, help="folder with image.tif and labels.tif (the real kind)")
    parser.add_argument("--n", nargs="+", default=["5", "10", "20", "all"], help="objects kept (numbers or all)")
    parser.add_argument("--minutes", type=float, default=3.0, help="--minutes of each finetune run")
    parser.add_argument("--kinds", nargs="+", default=["real", "synthetic"], choices=("real", "synthetic"),
                        help="kinds to fine-tune on (the other kind is the unseen volume)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kept objects")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--baseline", type=json.loads, metavar="JSON",
                        help='bundled-model AP@0.5 per kind measured before by this script, e.g. \'{"real": 0.611, '
                             '"synthetic": 0.877}\' (skips measuring it again)')
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fewshot-bench-"))
    folders = {"synthetic": _synthetic(work / "synthetic")}
    if args.volume is not None:
        folders["real"] = args.volume
    elif "real" in args.kinds:
        raise SystemExit("--volume DIR is needed for the real kind (or use --kinds synthetic)")
    if args.baseline:
        baseline = {kind: {"ap": float(args.baseline[kind])} for kind in folders}
    else:
        baseline = {kind: _ap("default", folder) for kind, folder in folders.items()}
    print(json.dumps({"baseline": baseline}), flush=True)
    rows = []
    for kind in args.kinds:
        other = "synthetic" if kind == "real" else ("real" if "real" in folders else None)
        for n in args.n:
            run_dir = work / kind
            run_dir.mkdir(parents=True, exist_ok=True)
            model, seconds, summary = _finetune(folders[kind], n, args.minutes, run_dir, args.seed)
            row = {"kind": kind, "n": n, "minutes": args.minutes, "run_seconds": round(seconds, 1),
                   "before": baseline[kind]["ap"], "after": _ap(str(model), folders[kind])["ap"],
                   "load1": round(os.getloadavg()[0], 2), "summary": summary}
            if other is not None:
                row.update(other=other, other_before=baseline[other]["ap"], other_after=_ap(str(model),
                                                                                           folders[other])["ap"])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, `{' '.join(sys.argv)}`\n")
    print("| trained on | N annotated | minutes | run (s) | AP@0.5 all objects before -> after "
          "| unseen kind | its AP@0.5 before -> after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        other = (f"{r['other']} | {r['other_before']:.3f} -> {r['other_after']:.3f}" if "other" in r else "- | -")
        print(f"| {r['kind']} | {r['n']} | {r['minutes']:g} | {r['run_seconds']:.0f} | "
              f"{r['before']:.3f} -> {r['after']:.3f} | {other} |")


if __name__ == "__main__":
    main()

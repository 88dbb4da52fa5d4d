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
``synthetic`` is ``mediar3d.data.synthetic.make_nuclei_volume`` (48 x 128 x 128, seed 7,
anisotropy 2, 16-bit), the generator the bundled model was trained on (and the replay data
of the small-data mode comes from); ``tissue`` is ``mediar3d.data.synthetic_tissue.
make_tissue_volume`` (32 x 96 x 96, anisotropy 2, its default settings, seed
``--tissue-seed``; repeatable), the second, independent generator. Each kind fine-tuned on
(``--kinds``) is scored on the ``--unseen`` kinds. ``N = all`` keeps every object.
``--finetune-args`` adds flags to the finetune command (e.g. ``"--replay 0"``) and
``--label`` names the setting in the table.

Usage (from the repository root):
    nice -n 5 .venv/bin/python benchmarks/fewshot.py --volume DIR --n 5 10 20 all --minutes 3
    nice -n 5 .venv/bin/python benchmarks/fewshot.py --volume DIR --n 10 --minutes 15 --kinds real
    nice -n 5 .venv/bin/python benchmarks/fewshot.py --volume DIR --n 10 --minutes 8 --kinds real \
        --unseen tissue --tissue-seed 1 2 --finetune-args "--replay 0" --label "no replay"

Prints one JSON line per run, then a Markdown table (append it to benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
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


def _tissue(folder: Path, seed: int) -> Path:
    """Write a second-generator volume (32 x 96 x 96, anisotropy 2, seed) as image.tif / labels.tif into folder."""
    from mediar3d.data.synthetic_tissue import make_tissue_volume
    from mediar3d.io.tiff import write_tiff

    image, labels = make_tissue_volume((32, 96, 96), anisotropy=2.0, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiff(folder / "image.tif", image, "ZYX", (2.0, 1.0, 1.0))
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


def _finetune(folder: Path, n: str, minutes: float, work: Path, seed: int,
              extra: list[str]) -> tuple[Path, float, str]:
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
               "--save-dir", str(run), "--overwrite", *extra]
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
                        help="kinds to fine-tune on")
    parser.add_argument("--unseen", nargs="+", choices=("real", "synthetic", "tissue"),
                        help="kinds scored as unseen (default: real and synthetic, less the one trained on)")
    parser.add_argument("--tissue-seed", nargs="+", type=int, default=[1], help="seeds of the tissue volumes")
    parser.add_argument("--finetune-args", default="", help="more flags for `mediar3d finetune`, as one string")
    parser.add_argument("--label", default="", help="name of the setting in the table")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kept objects")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--baseline", type=json.loads, metavar="JSON",
                        help='bundled-model AP@0.5 per kind measured before by this script, e.g. \'{"real": 0.611, '
                             '"synthetic": 0.877}\' (skips measuring it again)')
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="fewshot-bench-"))
    unseen = args.unseen or ["real", "synthetic"]
    folders = {"synthetic": _synthetic(work / "synthetic")} if "synthetic" in {*unseen, *args.kinds} else {}
    if "tissue" in unseen:
        folders.update({f"tissue-{seed}": _tissue(work / f"tissue-{seed}", seed) for seed in args.tissue_seed})
    if args.volume is not None:
        folders["real"] = args.volume
    elif "real" in args.kinds:
        raise SystemExit("--volume DIR is needed for the real kind (or use --kinds synthetic)")
    if args.baseline:
        baseline = {kind: ({"ap": float(args.baseline[kind])} if kind in args.baseline else _ap("default", folder))
                    for kind, folder in folders.items()}
    else:
        baseline = {kind: _ap("default", folder) for kind, folder in folders.items()}
    print(json.dumps({"baseline": baseline}), flush=True)
    rows = []
    extra = shlex.split(args.finetune_args)
    for kind in args.kinds:
        others = [k for k in folders if k != kind and k.split("-")[0] in unseen]
        for n in args.n:
            run_dir = work / kind
            run_dir.mkdir(parents=True, exist_ok=True)
            model, seconds, summary = _finetune(folders[kind], n, args.minutes, run_dir, args.seed, extra)
            row = {"label": args.label, "kind": kind, "n": n, "minutes": args.minutes, "run_seconds": round(seconds, 1),
                   "before": baseline[kind]["ap"], "after": _ap(str(model), folders[kind])["ap"],
                   "load1": round(os.getloadavg()[0], 2), "summary": summary,
                   "unseen": {k: [baseline[k]["ap"], _ap(str(model), folders[k])["ap"]] for k in others}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{datetime.date.today().isoformat()}, {os.cpu_count()} CPU cores, `{' '.join(sys.argv)}`\n")
    print("| setting | trained on | N annotated | minutes | run (s) | AP@0.5 all objects before -> after "
          "| unseen kinds: AP@0.5 before -> after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        others = "; ".join(f"{k} {a:.3f} -> {b:.3f}" for k, (a, b) in r["unseen"].items()) or "-"
        print(f"| {r['label'] or '-'} | {r['kind']} | {r['n']} | {r['minutes']:g} | {r['run_seconds']:.0f} | "
              f"{r['before']:.3f} -> {r['after']:.3f} | {others} |")


if __name__ == "__main__":
    main()

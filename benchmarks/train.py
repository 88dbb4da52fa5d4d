#!/usr/bin/env python3
"""Benchmark: training throughput on CPU, model step and data pipeline measured apart.

1. Model step: for each registered 2D model (default configuration, random weights), on
   (B, 1, S, S) crops that come from the real data pipeline: forward, the project's loss
   (``mediar3d.training.losses.flow_loss_terms``, thesis eq. 3.6, with the supervision
   weights), backward and an AdamW step (the trainer's default lr and weight decay), the
   same sequence as ``Trainer._train_epoch``. One warm-up step, then ``--steps`` timed ones
   (``--large-steps`` / ``--large-batch`` for the three Mediar networks, which take seconds
   per sample on a CPU).
2. Data pipeline alone: synthetic 2D nuclei images (``make_nuclei_image``) written as TIFF
   pairs to a temporary folder with a two-dataset mapping JSON (one fully annotated, one
   with ``dilate`` partial-annotation supervision); a :class:`mediar3d.training.Trainer` is
   built on it and its own training ``DataLoader`` is iterated (mapping -> index ->
   ``SliceDataset`` -> thesis table 4.4 MONAI augmentations -> run-time flow targets and
   weights -> collation), with 0 and 2 loader workers. The first epoch warms up (worker
   start, numba compilation, file cache); the second is timed.

Reported per row: samples/s by wall clock and by CPU time (CPU seconds of this process,
all its threads, plus those of the loader workers; on a shared, overloaded machine the CPU
rate is the steadier figure: it is roughly what one idle core would do), and the load
average (1 min) at the end of the row. Prints one JSON line per row, then a Markdown table.

Usage (from the repository root):
    .venv/bin/python benchmarks/train.py                                  # all 2D models + data
    .venv/bin/python benchmarks/train.py --models unet-small --steps 20 --workers 0 2
    .venv/bin/python benchmarks/train.py --models unet-small --no-data --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mediar3d.models import count_parameters, create_model, list_models

LARGE_MODELS = ("mediar", "mediar-sam", "mediar-sam-light")


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc), 0 if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def write_synthetic_data(folder: Path, count: int, size: int, seed: int = 0) -> Path:
    """Write ``count`` (size x size) nuclei images + labels as TIFF and a mapping JSON; returns its path."""
    from mediar3d.data.synthetic import make_nuclei_image
    from mediar3d.io import write_image, write_labels

    datasets = []
    for d, supervision in enumerate(("full", "dilate")):
        name = f"synthetic_{supervision}"
        (folder / name / "images").mkdir(parents=True, exist_ok=True)
        (folder / name / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, labels = make_nuclei_image((size, size), seed=seed + 1000 * d + i)
            if supervision == "dilate":  # partly annotated: drop the labels of every other cell
                labels = np.where(labels % 2 == 0, labels, 0).astype(np.int32)
            write_image(folder / name / "images" / f"img_{i:03d}.tif", image)
            write_labels(folder / name / "labels" / f"img_{i:03d}_masks.tif", labels)
        datasets.append({"name": name, "images": f"{name}/images/*.tif", "labels": f"{name}/labels/*.tif",
                         "probability": 0.5, "supervision": {"mode": supervision}})
    path = folder / "mapping.json"
    path.write_text(json.dumps({"format": "mediar3d-dataset-mapping", "version": 1, "seed": 0,
                                "val_fraction": 0.1, "datasets": datasets}, indent=1))
    return path


def make_trainer(mapping: Path, save_dir: Path, *, crop: int, batch: int, samples: int, workers: int) -> Any:
    """A real Trainer (tiny unet; its model is not used here) whose data loader is benchmarked."""
    from mediar3d.training import TrainConfig, Trainer

    config = TrainConfig(data=str(mapping), save_dir=str(save_dir), model="unet-small",
                         model_kwargs={"channels": [8, 16]}, epochs=2, batch_size=batch, samples_per_epoch=samples,
                         crop_size=crop, num_workers=workers, val_every=0, tensorboard=False, progress=False, seed=0)
    return Trainer(config, overwrite=True)


def bench_data(mapping: Path, tmp: Path, *, crop: int, batch: int, samples: int, workers: int) -> dict[str, Any]:
    """Samples/s of the trainer's own DataLoader (augmentation + targets), epoch 1 warm-up, epoch 2 timed."""
    trainer = make_trainer(mapping, tmp / f"run_w{workers}", crop=crop, batch=batch, samples=samples,
                           workers=workers)
    loader = trainer._loader(0)
    for _ in loader:  # warm-up: worker start, numba compilation, file cache
        pass
    loader = trainer._loader(1)
    iterator = iter(loader)  # persistent workers: the same processes as the warm-up epoch
    pids = [w.pid for w in getattr(iterator, "_workers", [])]
    cpu0 = time.process_time() + sum(_proc_cpu_seconds(p) for p in pids)
    start = time.perf_counter()
    n = 0
    for b in iterator:
        n += int(b["image"].shape[0])
    wall = time.perf_counter() - start
    cpu = time.process_time() + sum(_proc_cpu_seconds(p) for p in pids) - cpu0
    shape = tuple(b["image"].shape[1:])
    del iterator, loader, trainer
    return {"kind": "data", "name": f"data pipeline, {workers} workers", "workers": workers, "batch": batch,
            "samples": n, "sample_shape": list(shape), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "samples_per_s_wall": round(n / wall, 2), "samples_per_s_cpu": round(n / max(cpu, 1e-9), 2),
            "cpu_ms_per_sample": round(1e3 * cpu / n, 1), "load_average": _load1()}


def real_batch(mapping: Path, tmp: Path, *, crop: int, batch: int) -> dict[str, torch.Tensor]:
    """One collated training batch from the real pipeline (image, target, weight at crop x crop)."""
    trainer = make_trainer(mapping, tmp / "run_batch", crop=crop, batch=batch, samples=batch, workers=0)
    return next(iter(trainer._loader(0)))


def bench_model(name: str, data: dict[str, torch.Tensor], *, batch: int, steps: int) -> dict[str, Any]:
    """Samples/s of forward + eq. 3.6 loss + backward + AdamW step of one model."""
    from mediar3d.training import TrainConfig, flow_loss_terms
    from mediar3d.training.validation import match_channels

    defaults = TrainConfig()
    torch.manual_seed(0)
    net = create_model(name).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
    in_channels = int(getattr(net, "in_channels", 1))
    image = match_channels(data["image"][:batch], in_channels)
    target, weight = data["target"][:batch], data["weight"][:batch]

    def step() -> float:
        prediction = net(image)
        terms = flow_loss_terms(prediction, target, weight)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        return float(terms["loss"].detach())

    step()  # warm-up (allocations, optimizer state)
    walls, cpus, losses = [], [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        losses.append(step())
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    n = batch * steps
    row = {"kind": "model", "name": name, "params_m": round(count_parameters(net) / 1e6, 2), "batch": batch,
           "steps": steps, "samples": n, "sample_shape": list(image.shape[1:]), "wall_s": round(sum(walls), 3),
           "cpu_s": round(sum(cpus), 3), "samples_per_s_wall": round(n / sum(walls), 3),
           "samples_per_s_cpu": round(n / sum(cpus), 3), "cpu_ms_per_sample": round(1e3 * sum(cpus) / n, 1),
           "min_step_wall_s": round(min(walls), 3), "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
           "load_average": _load1()}
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| what | batch | samples timed | samples/s (wall) | samples/s (CPU time) | CPU ms / sample | load avg |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = f"`{r['name']}` step" if r["kind"] == "model" else r["name"]
        lines.append(f"| {name} | {r['batch']} | {r['samples']} | {r['samples_per_s_wall']} | "
                     f"{r['samples_per_s_cpu']} | {r['cpu_ms_per_sample']} | {r['load_average']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list_models(spatial_dims=2),
                        help="registered 2D model names (default: all; none with --models and no names)")
    parser.add_argument("--crop", type=int, default=256, help="square crop side S (S x S)")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the small models' steps and the loader")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per small model (after one warm-up)")
    parser.add_argument("--large-batch", type=int, default=1, help="batch size for mediar / mediar-sam(-light)")
    parser.add_argument("--large-steps", type=int, default=2, help="timed steps for the large models")
    parser.add_argument("--workers", nargs="*", type=int, default=[0, 2], help="loader worker counts to measure")
    parser.add_argument("--data-samples", type=int, default=48, help="samples per data-pipeline epoch (one timed)")
    parser.add_argument("--images", type=int, default=8, help="synthetic images per dataset (two datasets)")
    parser.add_argument("--image-size", type=int, default=384, help="side of the synthetic images")
    parser.add_argument("--no-data", action="store_true", help="skip the data-pipeline measurement")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch and numba threads of this process (default: theirs); workers use their own")
    parser.add_argument("--json", type=Path, default=None, help="also write all rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    header = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()
              or platform.machine(), "cores": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
              "crop": args.crop}
    print(json.dumps(header), flush=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mediar3d-bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        mapping = write_synthetic_data(tmp / "data", args.images, args.image_size)
        if not args.no_data:
            for workers in args.workers:
                rows.append(bench_data(mapping, tmp, crop=args.crop, batch=args.batch, samples=args.data_samples,
                                       workers=workers))
                print(json.dumps(rows[-1]), flush=True)
        if args.models:
            data = real_batch(mapping, tmp, crop=args.crop, batch=max(args.batch, args.large_batch))
            for name in args.models:
                large = name in LARGE_MODELS
                rows.append(bench_model(name, data, batch=args.large_batch if large else args.batch,
                                        steps=args.large_steps if large else args.steps))
                print(json.dumps(rows[-1]), flush=True)
    print()
    print(markdown(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

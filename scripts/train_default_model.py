#!/usr/bin/env python
"""Train the bundled default model (``mediar3d.models.DEFAULT_MODEL``) on CPU.

Data:
- synthetic volumes from ``mediar3d.data.synthetic.make_nuclei_volume`` with varied
  anisotropy (1-4), object size, density, signal-to-noise, 8/16-bit ranges, dim and bright
  nuclei, uneven background and nuclei cut by the border. Each volume is resampled to
  isotropic voxels (as inference does), scaled so its nuclei have the model diameter, and
  cut into 2D slices along z, y and x;
- optionally the real 2D nuclei corpus (``<root>/<source>/images/*.tif`` +
  ``<root>/<source>/masks/*.tif``), every 10th image (sorted by name) held out.

Every sample is scaled so its median object diameter is ``--diameter`` (times a random
zoom of 0.75-1.33), cropped to ``--crop``; per step it gets a random flip / rot90 and
intensity augmentation, and its flows are computed from the transformed labels with
``mediar3d.flows.masks_to_flows``. Loss (eq. 3.6): MSE(y0, 5 Fy) + MSE(y1, 5 Fx) + BCE.
AdamW with a time-based cosine schedule; checkpoints are written as training goes.

Usage::

    python scripts/train_default_model.py --real-data /path/to/nuclei2d --minutes 35 \
        --out src/mediar3d/weights/unet-small-nuclei.pt --log train.log
    python scripts/train_default_model.py --evaluate src/mediar3d/weights/unet-small-nuclei.pt \
        --real-data /path/to/nuclei2d
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

logger = logging.getLogger("train_default_model")

FLOW_SCALE = 5.0


# ----------------------------------------------------------------------------- helpers
def median_diameter(labels: np.ndarray) -> float | None:
    """Median equivalent diameter of the 2D masks of a label image (y, x) or of z-slices of a volume."""
    planes = labels if labels.ndim == 3 else labels[None]
    found = []
    for plane in planes[:: max(1, len(planes) // 16)]:
        counts = np.bincount(plane.ravel().astype(np.int64))[1:]
        counts = counts[counts >= 4]
        found.append(np.sqrt(4 * counts / np.pi))
    values = np.concatenate(found) if found else np.zeros(0)
    return float(np.median(values)) if values.size >= 3 else None


def zoom_pair(image: np.ndarray, labels: np.ndarray, factors) -> tuple[np.ndarray, np.ndarray]:
    """Zoom image (linear) and labels (nearest) by per-axis factors."""
    from mediar3d.inference.anisotropy import resample_image, resample_labels, target_shape

    shape = target_shape(image.shape, factors)
    return resample_image(image, shape), resample_labels(labels, shape)


def normalise(image: np.ndarray) -> np.ndarray:
    from mediar3d.inference.normalize import normalize_percentile

    return normalize_percentile(image, (0.0, 99.5))


def random_crop(image: np.ndarray, labels: np.ndarray, crop: int, rng: np.random.Generator):
    """Random crop (crop, crop) of a 2D pair, zero-padded where the image is smaller."""
    out_i = np.zeros((crop, crop), np.float16)
    out_l = np.zeros((crop, crop), np.uint16)
    h, w = image.shape
    y0 = rng.integers(0, max(1, h - crop + 1))
    x0 = rng.integers(0, max(1, w - crop + 1))
    ci, cl = image[y0:y0 + crop, x0:x0 + crop], labels[y0:y0 + crop, x0:x0 + crop]
    out_i[: ci.shape[0], : ci.shape[1]] = ci
    out_l[: cl.shape[0], : cl.shape[1]] = cl
    return out_i, out_l


# ----------------------------------------------------------------------------- synthetic data
def synthetic_volume(rng: np.random.Generator, isotropic: bool = True):
    """One diverse synthetic volume on an isotropic grid: (image float32 in [0, 1], labels, anisotropy).

    Settings come from ``mediar3d.data.synthetic.sample_nuclei_params`` (SNR, anisotropy 1-4,
    radius 4-30, density, dim/bright, 8/16-bit, uneven background, border cuts); the volume
    side grows with the nucleus size so that each volume holds enough nuclei.
    """
    from mediar3d.data.synthetic import make_nuclei_volume, sample_nuclei_params

    params = sample_nuclei_params(rng)
    radius = float(np.mean(params["radius_range"]))
    anisotropy = float(params["anisotropy"])
    side = int(np.clip(6 * radius + 64, 96, 224))
    depth = max(8, int(round(side * rng.uniform(0.5, 1.0) / anisotropy)))
    params["seed"] = int(rng.integers(0, 2**31 - 1))
    image, labels = make_nuclei_volume((depth, side, side), **params)
    image, labels = np.asarray(image, np.float32), np.asarray(labels)
    if not isotropic:
        return image, labels, anisotropy
    if anisotropy != 1.0:  # to isotropic voxels, as inference does
        image, labels = zoom_pair(image, labels, (anisotropy, 1.0, 1.0))
    return normalise(image), labels, anisotropy


def synthetic_crops(n_volumes: int, diameter: float, crop: int, per_axis: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    crops = []
    for k in range(n_volumes):
        image, labels, aniso = synthetic_volume(rng)
        d = median_diameter(labels)
        if d is None:
            continue
        s = diameter / d * float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
        image, labels = zoom_pair(image, labels, (s, s, s))
        for axis in range(3):
            moved_i, moved_l = np.moveaxis(image, axis, 0), np.moveaxis(labels, axis, 0)
            index = rng.choice(moved_i.shape[0], size=min(per_axis, moved_i.shape[0]), replace=False)
            for i in index:
                if moved_l[i].max() == 0 and rng.random() < 0.8:
                    continue
                crops.append(random_crop(moved_i[i], moved_l[i], crop, rng))
        logger.info("synthetic volume %d/%d: anisotropy %.1f, diameter %.1f -> %d crops", k + 1, n_volumes, aniso, d, len(crops))
    return crops


# ----------------------------------------------------------------------------- real 2D data
def real_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """Image/mask pairs of the 2D corpus; every 10th (sorted) is 'val', the rest 'train'."""
    pairs = []
    for source in sorted(p for p in root.iterdir() if (p / "images").is_dir()):
        images = sorted((source / "images").glob("*.tif"))
        for k, image in enumerate(images):
            mask = source / "masks" / image.name
            if mask.is_file() and ((k % 10 == 0) == (split == "val")):
                pairs.append((image, mask))
    return pairs


def real_crops(root: Path, diameter: float, crop: int, seed: int) -> list:
    import tifffile

    rng = np.random.default_rng(seed + 7)
    crops = []
    for image_path, mask_path in real_pairs(root, "train"):
        image = tifffile.imread(image_path).astype(np.float32)
        labels = tifffile.imread(mask_path).astype(np.int32)
        if image.ndim != 2:
            continue
        d = median_diameter(labels)
        if d is None:
            continue
        s = diameter / d * float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
        image, labels = zoom_pair(normalise(image), labels, (s, s))
        n = int(np.clip(round(image.size / crop**2), 1, 4))
        for _ in range(n):
            crops.append(random_crop(image, labels, crop, rng))
    logger.info("real 2D corpus: %d crops", len(crops))
    return crops


# ----------------------------------------------------------------------------- batches
def augment(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Dihedral transform (image and labels together) and intensity augmentation."""
    k = int(rng.integers(0, 4))
    image, labels = np.rot90(image, k), np.rot90(labels, k)
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[:, ::-1]
    image = np.ascontiguousarray(image, dtype=np.float32)
    labels = np.ascontiguousarray(labels).astype(np.int32)
    if labels.max() > 0 and rng.random() < 0.4:  # intensity diversification of ~40% of cells
        ids = np.unique(labels[labels > 0])
        chosen = ids[rng.random(ids.size) < 0.4]
        if chosen.size:
            gain = np.ones(int(labels.max()) + 1, np.float32)
            gain[chosen] = rng.uniform(0.1, 0.7, chosen.size)
            image = image * gain[labels]
    if rng.random() < 0.3:
        image = ndimage.gaussian_filter(image, rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        image = np.clip(image, 0, None) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.5:
        image = image * rng.uniform(0.5, 1.3) + rng.uniform(-0.05, 0.1)
    if rng.random() < 0.4:
        image = image + rng.normal(0, rng.uniform(0.01, 0.1), image.shape)
    return image.astype(np.float32), labels


def make_batch(pool: list, size: int, rng: np.random.Generator):
    from mediar3d.flows import masks_to_flows

    images, targets = [], []
    for k in rng.integers(0, len(pool), size):
        image, labels = augment(pool[k][0].astype(np.float32), pool[k][1], rng)
        flows = masks_to_flows(labels) if labels.max() > 0 else np.zeros((2,) + labels.shape, np.float32)
        images.append(image[None])
        targets.append(np.concatenate([FLOW_SCALE * flows, (labels > 0)[None].astype(np.float32)]))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))


def loss_terms(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Eq. 3.6: MSE on both flow channels (x5 scale) + BCE on the cell probability."""
    mse = torch.nn.functional.mse_loss
    return {"flow_y": mse(pred[:, 0], target[:, 0]), "flow_x": mse(pred[:, 1], target[:, 1]),
            "cellprob": torch.nn.functional.binary_cross_entropy_with_logits(pred[:, 2], target[:, 2])}


# ----------------------------------------------------------------------------- checkpoints
def save(path: Path, model: torch.nn.Module, meta: dict) -> None:
    from mediar3d.models import save_checkpoint

    save_checkpoint(path, model, normalization={"percentiles": [0.0, 99.5]}, train_diameter=meta["diameter"],
                    metadata={"training": meta["training"]})


def export_half(source: Path, target: Path) -> None:
    """Copy a checkpoint with its float32 weights stored as float16 (half the file size).

    ``load_model`` copies them back into the float32 network, so inference is unchanged
    apart from float16 rounding of the weights.
    """
    payload = torch.load(source, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: (v.half() if v.dtype == torch.float32 else v) for k, v in payload["state_dict"].items()}
    payload.setdefault("metadata", {})["weights_stored_as"] = "float16"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, target)


# ----------------------------------------------------------------------------- evaluation
def evaluate(checkpoint: Path, real_root: Path | None, n_volumes: int, seed: int) -> dict:
    """AP@0.5 of the checkpoint on held-out synthetic volumes and held-out real 2D images."""
    import tifffile

    from mediar3d.evaluation import average_precision
    from mediar3d.inference import segment

    def ap50(gt, pred) -> float:
        return float(average_precision(gt, pred, thresholds=(0.5,))[0])

    rng = np.random.default_rng(10_000 + seed)  # held out: training draws from default_rng(seed)
    report: dict = {"synthetic": [], "real": []}
    for k in range(n_volumes):
        image, labels, aniso = synthetic_volume(rng, isotropic=False)
        start = time.perf_counter()
        pred = segment(image, str(checkpoint), anisotropy=aniso, progress=False)
        report["synthetic"].append({"shape": list(labels.shape), "anisotropy": aniso, "ap50": ap50(labels, pred),
                                    "n_true": int(labels.max()), "n_pred": int(pred.max()),
                                    "seconds": round(time.perf_counter() - start, 1)})
        logger.info("val synthetic %d: %s", k, report["synthetic"][-1])
    if real_root is not None:
        for image_path, mask_path in real_pairs(real_root, "val"):
            image = tifffile.imread(image_path)
            labels = tifffile.imread(mask_path).astype(np.int32)
            pred = segment(image, str(checkpoint), do_3d=False, progress=False)
            report["real"].append({"name": f"{image_path.parent.parent.name}/{image_path.name}", "ap50": ap50(labels, pred)})
    for key in ("synthetic", "real"):
        values = [r["ap50"] for r in report[key]]
        report[f"{key}_mean_ap50"] = float(np.mean(values)) if values else None
        report[f"{key}_count"] = len(values)
    return report


# ----------------------------------------------------------------------------- main
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real-data", type=Path, default=None, help="root of the real 2D corpus (optional)")
    p.add_argument("--out", type=Path, default=Path("src/mediar3d/weights/unet-small-nuclei.pt"))
    p.add_argument("--minutes", type=float, default=35.0, help="training time budget")
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--batch-size", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--diameter", type=float, default=20.0, help="object diameter (pixels) the model is trained at")
    p.add_argument("--n-volumes", type=int, default=28, help="synthetic training volumes")
    p.add_argument("--per-axis", type=int, default=14, help="slices per orientation and volume")
    p.add_argument("--val-volumes", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints")
    p.add_argument("--evaluate", type=Path, default=None, help="only evaluate this checkpoint")
    p.add_argument("--export-half", type=Path, nargs=2, default=None, metavar=("SRC", "DST"),
                   help="only copy checkpoint SRC to DST with float16 weights")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (continue training)")
    p.add_argument("--log", type=Path, default=None)
    args = p.parse_args()
    handlers = [logging.StreamHandler()] + ([logging.FileHandler(args.log)] if args.log else [])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", handlers=handlers)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.export_half is not None:
        export_half(*args.export_half)
        return 0
    if args.evaluate is not None:
        report = evaluate(args.evaluate, args.real_data, args.val_volumes, args.seed)
        print(json.dumps(report, indent=1))
        return 0

    from mediar3d.models import DEFAULT_MODEL, create_model

    t0 = time.perf_counter()
    pool = synthetic_crops(args.n_volumes, args.diameter, args.crop, args.per_axis, args.seed)
    n_synthetic = len(pool)
    if args.real_data is not None:
        pool += real_crops(args.real_data, args.diameter, args.crop, args.seed)
    logger.info("pool: %d crops (%d synthetic) built in %.0f s", len(pool), n_synthetic, time.perf_counter() - t0)

    if args.init is not None:
        from mediar3d.models import load_model

        model, init_config = load_model(args.init)
        previous_steps = int(init_config.metadata.get("training", {}).get("steps", 0))
        logger.info("continuing from %s (%d steps)", args.init, previous_steps)
    else:
        model, previous_steps = create_model(DEFAULT_MODEL), 0
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng = np.random.default_rng(args.seed)
    budget = args.minutes * 60.0
    start = last_save = time.perf_counter()
    step = 0
    meta = {"diameter": args.diameter, "percentiles": [0.0, 99.5], "training": {
        "script": "scripts/train_default_model.py", "crop": args.crop, "batch_size": args.batch_size,
        "lr": args.lr, "n_volumes": args.n_volumes, "real_data": args.real_data is not None,
        "pool": len(pool), "pool_synthetic": n_synthetic, "seed": args.seed,
        "init": str(args.init) if args.init else None, "previous_steps": previous_steps}}
    model.train()
    running: dict[str, float] = {}
    while True:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            break
        lr = 1e-5 + 0.5 * (args.lr - 1e-5) * (1 + math.cos(math.pi * elapsed / budget))
        warm = 1.0 if args.init is not None else min(1.0, (step + 1) / 50)
        for group in optimiser.param_groups:
            group["lr"] = lr * warm
        images, targets = make_batch(pool, args.batch_size, rng)
        terms = loss_terms(model(images), targets)
        loss = sum(terms.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        for key, value in terms.items():
            running[key] = running.get(key, 0.0) + float(value.detach())
        if step % 25 == 0:
            logger.info("step %d  %.0f s  lr %.2e  " % (step, elapsed, lr) +
                        "  ".join(f"{k} {v / 25:.4f}" for k, v in running.items()))
            running = {}
        if time.perf_counter() - last_save > args.save_every * 60:
            meta["training"]["steps"] = step
            save(args.out, model.eval(), meta)
            model.train()
            last_save = time.perf_counter()
            logger.info("checkpoint %s at step %d", args.out, step)
    meta["training"]["steps"] = step
    meta["training"]["minutes"] = round((time.perf_counter() - start) / 60, 1)
    save(args.out, model.eval(), meta)
    logger.info("done: %d steps, saved %s", step, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

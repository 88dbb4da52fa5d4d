"""Make the pictures and numbers of docs/tutorial.md from a real annotated volume.

    python scripts/make_tutorial.py --volume DIR --out docs/
    python scripts/make_tutorial.py --volume DIR --out docs/ --work run/ --reuse   # keep / reuse the run

DIR holds `image.tif` (a 3D nuclei volume with its voxel size) and `labels.tif` (its
ground-truth instance labels). The script runs what the page shows, as a user would:

    mediar3d segment DIR/image.tif -o out/ --measure --overwrite --no-progress
    mediar3d evaluate --pred out/image_labels.tif --gt DIR/labels.tif -o eval/

then draws `docs/images/tutorial/*.png` (z-slices with ground truth and prediction,
orthogonal sections, the per-object measurements) and rewrites every block of
docs/tutorial.md between `<!-- make_tutorial:NAME -->` and `<!-- /make_tutorial:NAME -->`
(command output, tables and the sentences that hold numbers). Machine paths are replaced
by `DIR` and relative names. Rerun it whenever the bundled weights change.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

import mediar3d  # noqa: E402
from mediar3d.evaluation import match_instances  # noqa: E402
from mediar3d.io import read_image, read_labels  # noqa: E402

MAX_PNG_BYTES = 150_000
UNMATCHED = (1.0, 0.15, 0.15)
CONVERT = """```python
import h5py
from mediar3d.io import write_image, write_labels

voxel_size = ({voxel})  # (z, y, x) in um
with h5py.File("1135_mini.h5") as f:
    write_image("DIR/image.tif", f["raw"][:], voxel_size=voxel_size)
    write_labels("DIR/labels.tif", f["label"][:], voxel_size=voxel_size)
```"""


def run_cli(args: list[str], cwd: Path, volume: Path) -> str:
    """Run `python -m mediar3d ARGS` in `cwd`; return stdout + stderr with `volume` shown as DIR."""
    done = subprocess.run([sys.executable, "-m", "mediar3d", *args], cwd=cwd, capture_output=True, text=True)
    text = (done.stderr + done.stdout).replace(str(volume), "DIR").replace(str(cwd) + os.sep, "")
    if done.returncode != 0:
        sys.exit(f"mediar3d {' '.join(args)} failed:\n{text}")
    return text


def replace_blocks(page: str, blocks: dict[str, str]) -> str:
    """Put each block's text between its markers in `page`; every block must have markers."""
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- make_tutorial:{name} -->\n).*?(<!-- /make_tutorial:{name} -->)", re.S)
        if not pattern.search(page):
            sys.exit(f"docs/tutorial.md: no <!-- make_tutorial:{name} --> ... <!-- /make_tutorial:{name} --> block")
        page = pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), page)
    return page


def normalise(image: np.ndarray) -> np.ndarray:
    """Scale to 0..1 between the 1st and 99.8th percentiles, for display."""
    lo, hi = np.percentile(image, (1.0, 99.8))
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def pair_colours(gt: np.ndarray, pred: np.ndarray) -> tuple[dict[int, tuple], dict[int, tuple], object]:
    """One colour per matched pair at IoU 0.5 (the same in both label images); unmatched objects red."""
    matching = match_instances(gt, pred, threshold=0.5)
    palette = [c for c in plt.get_cmap("tab20").colors if not (c[0] > 0.8 and c[1] < 0.5)]  # no reds
    gt_col = {int(i): UNMATCHED for i in np.unique(gt) if i}
    pred_col = {int(i): UNMATCHED for i in np.unique(pred) if i}
    for k, (g, p) in enumerate(zip(matching.matched_gt_ids, matching.matched_pred_ids)):
        gt_col[int(g)] = pred_col[int(p)] = palette[k % len(palette)]
    return gt_col, pred_col, matching


def overlay(gray: np.ndarray, labels: np.ndarray, colours: dict[int, tuple]) -> np.ndarray:
    """(y, x) display image + labels -> (y, x, 3) RGB: matched objects filled, unmatched outlined only."""
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    edges = find_boundaries(labels, mode="inner")
    for value in np.unique(labels[labels > 0]):
        colour = np.asarray(colours[int(value)])
        mask = labels == value
        if tuple(colour) != UNMATCHED:
            rgb[mask] = 0.55 * rgb[mask] + 0.45 * colour
        rgb[mask & edges] = colour
    return rgb


def outlines(gray: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(y, x) display image with the label outlines drawn in yellow, as (y, x, 3) RGB."""
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.85, 0.0)
    return rgb


def save_png(fig, path: Path) -> int:
    """Save a figure as a 256-colour PNG (small for the docs); return its size in bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    buffer.seek(0)
    PILImage.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)
    size = path.stat().st_size
    if size > MAX_PNG_BYTES:
        print(f"warning: {path.name} is {size // 1000} kB (over {MAX_PNG_BYTES // 1000} kB)", file=sys.stderr)
    return size


def slices_figure(image, gt, pred, gt_col, pred_col, z_planes, voxel, path: Path) -> int:
    """Rows: z-planes; columns: raw, ground truth, prediction (matched pairs share a colour)."""
    extent = (0, image.shape[2] * voxel[2], image.shape[1] * voxel[1], 0)
    fig, axes = plt.subplots(len(z_planes), 3, figsize=(6.6, 2.25 * len(z_planes)), layout="constrained")
    for row, z in zip(axes, z_planes):
        gray = normalise(image)[z]
        panels = (np.repeat(gray[..., None], 3, -1), overlay(gray, gt[z], gt_col), overlay(gray, pred[z], pred_col))
        for ax, panel, title in zip(row, panels, ("raw", "ground truth", "mediar3d")):
            ax.imshow(panel, extent=extent, interpolation="nearest")
            ax.set_title(f"{title}, z = {z}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    axes[-1, 0].set_xlabel(f"{extent[1]:.1f} um", fontsize=8)
    return save_png(fig, path)


def orthogonal_figure(image, pred, voxel, path: Path) -> int:
    """Sections through the middle: xy, xz and yz, raw and with the predicted outlines, in micrometres."""
    z, y, x = (s // 2 for s in image.shape)
    gray = normalise(image)
    cuts = [("xy", gray[z], pred[z], (voxel[2], voxel[1])),
            ("xz", gray[:, y, :], pred[:, y, :], (voxel[2], voxel[0])),
            ("yz", gray[:, :, x], pred[:, :, x], (voxel[1], voxel[0]))]
    fig, axes = plt.subplots(2, 3, figsize=(6.6, 6.4), layout="constrained")
    for col, (name, img, lab, (sx, sy)) in enumerate(cuts):
        extent = (0, img.shape[1] * sx, img.shape[0] * sy, 0)
        for row, panel in enumerate((np.repeat(img[..., None], 3, -1), outlines(img, lab))):
            ax = axes[row, col]
            ax.imshow(panel, extent=extent, interpolation="nearest")
            ax.set_title(f"{name} section" + (", outlines" if row else ", raw"), fontsize=8)
            ax.tick_params(labelsize=7)
        axes[1, col].set_xlabel(f"{name[0]} (um)", fontsize=8)
        axes[0, col].set_ylabel(f"{name[1]} (um)", fontsize=8)
    return save_png(fig, path)


def read_objects(path: Path) -> dict[str, np.ndarray]:
    """The `<name>_objects.csv` written by `segment --measure`, as columns."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([r[key] == "True" if key == "touches_border" else float(r[key]) for r in rows])
            for key in rows[0]}


def measurements_figure(pred_table, gt_table, path: Path) -> int:
    """Volume histogram (prediction vs ground truth, border objects apart) and volume vs mean intensity."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.2, 3.0), layout="constrained")
    bins = np.linspace(0, max(pred_table["volume_um3"].max(), gt_table["volume_um3"].max()) * 1.02, 16)
    border = pred_table["touches_border"]
    left.hist([pred_table["volume_um3"][~border], pred_table["volume_um3"][border]], bins=bins, stacked=True,
              color=("tab:blue", "lightsteelblue"), label=("mediar3d, inside", "mediar3d, touching the border"))
    left.hist(gt_table["volume_um3"], bins=bins, histtype="step", color="k", label="ground truth, all")
    left.set_xlabel("object volume (um$^3$)", fontsize=8)
    left.set_ylabel("objects", fontsize=8)
    left.legend(fontsize=7)
    for keep, style in ((~border, dict(color="tab:blue", label="inside")),
                        (border, dict(facecolors="none", edgecolors="tab:blue", label="touching the border"))):
        right.scatter(pred_table["volume_um3"][keep], pred_table["intensity_mean"][keep], s=18, **style)
    right.set_xlabel("object volume (um$^3$)", fontsize=8)
    right.set_ylabel("mean intensity (8-bit raw)", fontsize=8)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    return save_png(fig, path)


def markdown_table(table: dict[str, np.ndarray], columns: list[str], rows: list[int]) -> str:
    """The given rows of a measurement table as Markdown, with rounded numbers."""
    lines = ["| " + " | ".join(f"`{c}`" for c in columns) + " |", "|" + "---|" * len(columns)]
    for i in rows:
        cells = []
        for c in columns:
            v = table[c][i]
            cells.append(str(bool(v)) if c == "touches_border" else f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volume", type=Path, required=True, help="folder with image.tif and labels.tif")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="docs folder (tutorial.md, images/)")
    parser.add_argument("--work", type=Path, help="folder for the run's outputs (default: a temporary one)")
    parser.add_argument("--reuse", action="store_true", help="reuse a segmentation already in --work")
    args = parser.parse_args(argv)
    volume = args.volume.resolve()
    page_path = args.out / "tutorial.md"
    images = args.out / "images" / "tutorial"
    images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        work = (args.work or Path(temp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        log_path = work / "segment.log"
        if not (args.reuse and log_path.exists() and (work / "out" / "image_labels.tif").exists()):
            log_path.write_text(run_cli(["segment", str(volume / "image.tif"), "-o", "out/", "--measure",
                                         "--overwrite", "--no-progress"], work, volume))
        segment_log = log_path.read_text()
        evaluate_out = run_cli(["evaluate", "--pred", "out/image_labels.tif", "--gt", str(volume / "labels.tif"),
                                "-o", "eval/"], work, volume)
        scores = json.loads((work / "eval" / "metrics.json").read_text())
        params = json.loads((work / "out" / "image_params.json").read_text())
        pred_table = read_objects(work / "out" / "image_objects.csv")
        pred = read_labels(work / "out" / "image_labels.tif")

    image = read_image(volume / "image.tif")
    gt = read_labels(volume / "labels.tif")
    voxel = image.voxel_size
    gt_table = mediar3d.measure(gt, image.data, voxel_size=voxel)
    gt_col, pred_col, matching = pair_colours(gt, pred)
    z_planes = [int(round(f * (gt.shape[0] - 1))) for f in (0.25, 0.5, 0.75)]
    sizes = {
        "slices.png": slices_figure(image.data, gt, pred, gt_col, pred_col, z_planes, voxel, images / "slices.png"),
        "orthogonal.png": orthogonal_figure(image.data, pred, voxel, images / "orthogonal.png"),
        "measurements.png": measurements_figure(pred_table, gt_table, images / "measurements.png"),
    }

    pooled = scores["pooled"]
    inside = ~pred_table["touches_border"]
    gt_inside = ~gt_table["touches_border"]
    model = params["models"][0]
    shown_rows = sorted([0, 1, 2] + [int(i) for i in np.flatnonzero(inside)[:3]])  # some cut off, some whole
    z, y, x = gt.shape
    blocks = {
        "data": (f"{z} x {y} x {x} voxels of {voxel[0]:.3f} x {voxel[1]:.3f} x {voxel[2]:.3f} um (z, y, x), "
                 f"{image.data.dtype}, with {len(gt_table['label'])} expert-labelled nuclei, "
                 f"{int(gt_table['touches_border'].sum())} of them cut by the crop's border."),
        "convert": CONVERT.format(voxel=", ".join(f"{v:.6g}" for v in voxel)),
        "segment-log": "```text\n" + segment_log.strip() + "\n```",
        "segment-summary": (
            f"The bundled model (`{model['name']}`, file `{model['file']}`, sha256 `{model['sha256'][:12]}...`) "
            f"estimated a diameter of {params['diameter']:.1f} px, read the anisotropy "
            f"{params['anisotropy']:.2f} from the file, zoomed the volume to isotropic voxels at the model's "
            f"training diameter ({' x '.join(map(str, params['network_shape']))} voxels) "
            f"and found {int(params['n_objects'])} objects; the run took {params['time_total_s']:.0f} s on "
            f"`{params['device']}` ({os.cpu_count()} cores), {params['time_diameter_s']:.0f} s of it for the "
            f"diameter estimate."),
        "objects-table": markdown_table(pred_table, ["label", "voxels", "volume_um3", "equivalent_diameter_um",
                                                     "intensity_mean", "touches_border"], shown_rows),
        "objects-summary": (
            f"{int(inside.sum())} of the {inside.size} objects lie inside the crop (ground truth: "
            f"{int(gt_inside.sum())} of {gt_inside.size}); their median volume is "
            f"{np.median(pred_table['volume_um3'][inside]):.1f} um^3 (ground truth "
            f"{np.median(gt_table['volume_um3'][gt_inside]):.1f} um^3), a median equivalent diameter of "
            f"{np.median(pred_table['equivalent_diameter_um'][inside]):.2f} um (ground truth "
            f"{np.median(gt_table['equivalent_diameter_um'][gt_inside]):.2f} um)."),
        "evaluate-out": "```text\n" + evaluate_out.strip() + "\n```",
        "score-summary": (
            f"At IoU 0.5, {matching.tp} of the {matching.n_gt} true nuclei are found ({matching.fn} missed) and "
            f"{matching.fp} of the {matching.n_pred} predicted objects have no partner: AP@0.5 "
            f"{pooled['ap'][0]:.2f}, F1 {pooled['f1'][0]:.2f}; at IoU 0.75 AP falls to "
            f"{pooled['ap'][scores['thresholds'].index(0.75)]:.2f}."),
    }
    page_path.write_text(replace_blocks(page_path.read_text(), blocks))
    print(json.dumps({"images": sizes, "z_planes": z_planes, "tp": matching.tp, "fp": matching.fp,
                      "fn": matching.fn}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

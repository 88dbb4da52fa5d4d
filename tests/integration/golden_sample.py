"""The golden run: the bundled model on a fixed crop of the bundled sample volume.

`run()` segments the crop with fixed settings (diameter given, so no estimate; anisotropy
2 as stored in the sample) and returns what the golden test compares: labels, flows and
probability averaged over 8 x 8 x 8 blocks of the input grid, and AP@0.5 against the
sample's ground truth. Running this file rewrites ``golden_sample.npz`` next to it:

    PYTHONPATH=src python tests/integration/golden_sample.py

Only do that on purpose (a new bundled model, or an intended change of the outputs), and
say so in the commit message: the golden file is what shows that a refactor changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("golden_sample.npz")
#: Crop (z, y, x) of the sample volume (32, 160, 160): 16 x 96 x 96 voxels.
CROP = (slice(8, 24), slice(32, 128), slice(32, 128))
#: Settings of the golden run: the model's training diameter (scale 1) and the sample's anisotropy.
SETTINGS = dict(diameter=20.0, model_diameter=20.0, anisotropy=2.0, device="cpu", progress=False)
BLOCK = 8


def block_means(array: np.ndarray) -> np.ndarray:
    """Mean over BLOCK^3 blocks of the last three axes (sides are multiples of BLOCK)."""
    *lead, z, y, x = array.shape
    shaped = array.reshape(*lead, z // BLOCK, BLOCK, y // BLOCK, BLOCK, x // BLOCK, BLOCK)
    return shaped.mean(axis=(-5, -3, -1)).astype(np.float32)


def run() -> dict[str, np.ndarray]:
    """Segment the crop with the bundled model; the arrays the golden file holds."""
    from mediar3d.evaluation import average_precision
    from mediar3d.inference import run_segmentation
    from mediar3d.sample import load_sample

    image, truth = load_sample()
    crop = np.asarray(image.data)[CROP]
    truth = np.asarray(truth)[CROP]
    result = run_segmentation(crop, keep_flows=True, **SETTINGS)
    ap = float(average_precision(truth, result.labels, thresholds=(0.5,))[0])
    return {
        "labels": result.labels.astype(np.uint16),
        "flows": block_means(result.flows),
        "probability": block_means(result.probability),
        "ap_truth": np.float64(ap),
    }


if __name__ == "__main__":
    values = run()
    np.savez_compressed(GOLDEN, **values)
    print(f"wrote {GOLDEN.name}: {int(values['labels'].max())} labels, AP@0.5 vs truth {float(values['ap_truth']):.3f}")

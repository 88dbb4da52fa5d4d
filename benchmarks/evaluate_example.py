#!/usr/bin/env python3
"""The example of docs/evaluation.md: the bundled model on the held-out synthetic volume, then `evaluate`.

The volume is the one of tests/integration/test_bundled_model.py (24 x 96 x 96, 16-bit,
anisotropy 2 stored in the TIFF, seed 987). Runs, in a temporary folder:

    mediar3d segment vol0.tif -o out/                      # diameter estimated
    mediar3d evaluate --pred out/vol0_labels.tif --gt labels/vol0.tif -o eval/

and prints what `evaluate` prints, then `average_precision(gt, pred, thresholds=(0.5, 0.75))`.
The numbers change with the bundled weights: rerun it when they change.

Usage (from the repository root):
    python benchmarks/evaluate_example.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from mediar3d.cli.main import main as cli
from mediar3d.data.synthetic import make_nuclei_volume
from mediar3d.evaluation import average_precision
from mediar3d.io import read_labels, write_image, write_labels


def main() -> None:
    image, labels = make_nuclei_volume((24, 96, 96), radius_range=(6.0, 9.0), anisotropy=2.0, seed=987,
                                       bit_depth=16, snr=10.0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_image(root / "vol0.tif", image.astype(np.uint16), voxel_size=(1.0, 0.5, 0.5))
        write_labels(root / "labels" / "vol0.tif", labels, voxel_size=(1.0, 0.5, 0.5))
        assert cli(["-q", "segment", str(root / "vol0.tif"), "-o", str(root / "out")]) == 0
        assert cli(["evaluate", "--pred", str(root / "out" / "vol0_labels.tif"),
                    "--gt", str(root / "labels" / "vol0.tif"), "-o", str(root / "eval")]) == 0
        pred = read_labels(root / "out" / "vol0_labels.tif")
        print("average_precision(gt, pred, thresholds=(0.5, 0.75)):",
              average_precision(labels, pred, thresholds=(0.5, 0.75)))


if __name__ == "__main__":
    main()

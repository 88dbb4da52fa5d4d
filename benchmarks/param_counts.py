#!/usr/bin/env python3
"""Parameter counts behind docs/models.md: the Hiera trunks, the neck, and the networks per trunk size.

Built on the meta device (no memory, no initialisation), so it runs in seconds. Needs the
`models` extra (timm, segmentation-models-pytorch). Prints one line per count, in millions:

- the Hiera trunk and FPN neck of each SAM2 size (tiny, small, base_plus, large);
- `mediar-sam` and `mediar-sam-light` with each trunk size (our decoder widths), and their
  difference to the thesis counts (table 4.3) for the large trunk;
- `mediar-sam` with MEDIAR's own decoder widths (1024, 512, 256, 128, 64) instead;
- `unet-small`. (`mediar`'s count is in `benchmarks/models.py`: smp's MiT cannot be built on
  the meta device, and building it for real takes minutes on a loaded CPU.)

Usage (from the repository root):
    python benchmarks/param_counts.py
"""

from __future__ import annotations

import torch

from mediar3d.models import count_parameters, create_model, get_model_entry

SIZES = ("tiny", "small", "base_plus", "large")


def _millions(name: str, **kwargs) -> float:
    with torch.device("meta"):
        net = create_model(name, **kwargs)
    return count_parameters(net) / 1e6


def main() -> None:
    for size in SIZES:
        with torch.device("meta"):
            encoder = create_model("mediar-sam-light", encoder=size).encoder
        print(f"Hiera {size}: trunk {count_parameters(encoder.trunk) / 1e6:.2f} M, "
              f"FPN neck {count_parameters(encoder.neck) / 1e6:.2f} M")
    for name in ("mediar-sam", "mediar-sam-light"):
        thesis = get_model_entry(name).thesis_params_m
        for size in SIZES:
            count = _millions(name, encoder=size)
            versus = f" (thesis {thesis} M: {100 * (count - thesis) / thesis:+.1f} %)" if size == "large" else ""
            print(f"{name}, encoder {size}: {count:.2f} M{versus}")
    print(f"mediar-sam with MEDIAR's decoder widths (1024, 512, 256, 128, 64): "
          f"{_millions('mediar-sam', decoder_channels=(1024, 512, 256, 128, 64)):.2f} M")
    print(f"unet-small: {_millions('unet-small'):.2f} M")


if __name__ == "__main__":
    main()

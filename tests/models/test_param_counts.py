"""Full-size parameter counts against the thesis (table 4.3: 121.30 M, 223.12 M, 219.79 M).

`mediar` is fully specified (MiT-B5, decoder (1024, 512, 256, 128, 64), PAB 256, MEDIAR's
heads), so it must match to the reported two decimals. The thesis gives no decoder widths
for the Hiera models; the count is fixed mostly by the Hiera-L trunk (212.15 M) + FPN neck
(0.54 M), and our decoder widths (512, ..., 32) land within 1 % of both reported totals
(+0.9 % and +0.4 %), while any other trunk misses by more than 50 %. The Hiera models are
built on the meta device (no memory, no initialisation cost).
"""

from __future__ import annotations

import pytest
import torch

from mediar3d.models import count_parameters, create_model, get_model_entry


@pytest.mark.parametrize("name", ["mediar-sam", "mediar-sam-light"])
def test_hiera_models_match_the_thesis_within_one_percent(name):
    with torch.device("meta"):
        net = create_model(name)
    count = count_parameters(net) / 1e6
    thesis = get_model_entry(name).thesis_params_m
    assert abs(count - thesis) / thesis < 0.01, f"{name}: {count:.2f} M vs thesis {thesis} M"
    with torch.device("meta"):
        smaller = create_model(name, encoder="base_plus")
    assert count_parameters(smaller) / 1e6 < 0.5 * thesis  # the thesis count needs the large trunk


def test_unet_small_is_small_but_not_tiny():
    count = count_parameters(create_model("unet-small")) / 1e6
    assert 1.0 <= count <= 3.0


@pytest.mark.slow
def test_mediar_matches_the_thesis_exactly():
    # built on the CPU: smp's MiT calls .item() in its constructor and its initialisers are
    # slower on the meta device than on the CPU (5-15 s on 2 shared cores)
    count = count_parameters(create_model("mediar")) / 1e6
    assert round(count, 2) == get_model_entry("mediar").thesis_params_m

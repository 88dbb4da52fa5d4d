"""The diameter estimate re-zooms until a re-measure confirms its guess (objects far above the model's size)."""

import numpy as np
import pytest

from mediar3d.inference import diameter as diameter_module
from mediar3d.inference.diameter import estimate_diameter, settle_guess

MODEL_DIAMETER = 23.0


def biased_measure(true_diameter: float, piece: float = 1.75, whole_up_to: float = 1.6):
    """A stand-in for `measure_diameters` of a network biased to its training size.

    At zoom `scale` an object of `true_diameter` pixels spans ``true_diameter * scale`` network
    pixels; up to `whole_up_to` x the model's diameter it is found whole, beyond that it is split
    into pieces of `piece` x the model's diameter (network pixels), as real networks do.
    Returns (diameters in original pixels, areas) like the real function, and logs the scales.
    """
    scales = []

    def measure(slices, slice_fn, scale, **options):
        scales.append(scale)
        seen = true_diameter * scale
        network = seen if seen <= whole_up_to * MODEL_DIAMETER else piece * MODEL_DIAMETER
        diameters = np.full(12, network / scale)
        return diameters, np.pi * (diameters * scale) ** 2 / 4

    measure.scales = scales
    return measure


@pytest.mark.parametrize("true_diameter", [110.0, 140.0])
def test_large_objects_are_measured_whole_after_rezooming(monkeypatch, true_diameter):
    measure = biased_measure(true_diameter)
    monkeypatch.setattr(diameter_module, "measure_diameters", measure)
    image = np.zeros((64, 64), np.float32)
    estimate = estimate_diameter(image, None, MODEL_DIAMETER)
    # the first pass (scale 1) sees pieces of 1.75 x 23 = 40 px; one re-zoom (the old estimate) sees
    # pieces again, 70 px in original pixels
    first_rezoom = float(biased_measure(true_diameter)(None, None, 1 / 1.75)[0][0])
    assert abs(first_rezoom - true_diameter) / true_diameter > 0.25
    assert abs(estimate - true_diameter) / true_diameter < 0.05
    assert measure.scales[0] == 1.0 and len(measure.scales) <= 2 + diameter_module.MAX_RESCALES


def test_a_confirmed_guess_stops_after_one_remeasure(monkeypatch):
    measure = biased_measure(30.0)  # 30 px objects: found whole at scale 1 (30 < 1.6 x 23)
    monkeypatch.setattr(diameter_module, "measure_diameters", measure)
    guess, remeasured = settle_guess(np.zeros((2, 32, 32)), None, MODEL_DIAMETER, 30.0)
    assert (guess, remeasured) == (30.0, pytest.approx(30.0)) and len(measure.scales) == 1


def test_rezooming_is_bounded_and_keeps_the_last_confirmed_scale(monkeypatch):
    # pieces of 3 x the model's size: every re-measure disagrees; the loop gives up after MAX_RESCALES
    measure = biased_measure(10_000.0, piece=3.0)
    monkeypatch.setattr(diameter_module, "measure_diameters", measure)
    guess, remeasured = settle_guess(np.zeros((2, 32, 32)), None, MODEL_DIAMETER, 69.0)
    assert len(measure.scales) == diameter_module.MAX_RESCALES + 1
    assert remeasured is not None and remeasured > guess > 69.0


def test_too_few_masks_at_a_new_scale_keep_the_previous_guess(monkeypatch):
    calls = []

    def measure(slices, slice_fn, scale, **options):
        calls.append(scale)
        if len(calls) == 1:
            return np.full(5, 60.0), np.full(5, 100.0)
        return np.zeros(0), np.zeros(0)

    monkeypatch.setattr(diameter_module, "measure_diameters", measure)
    guess, remeasured = settle_guess(np.zeros((2, 32, 32)), None, MODEL_DIAMETER, 30.0)
    assert guess == 60.0 and remeasured == 60.0 and len(calls) == 2

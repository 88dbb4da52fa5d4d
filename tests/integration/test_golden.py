"""Golden output of the bundled model on the sample volume: a refactor must not change it.

The reference ``golden_sample.npz`` was written by ``tests/integration/golden_sample.py``
(see its docstring) with the bundled weights; the tolerances allow float noise from a
different BLAS or summation order, not a changed pipeline.
"""

import numpy as np
import pytest

from mediar3d.evaluation import average_precision

from golden_sample import GOLDEN, run


@pytest.fixture(scope="module")
def outputs():
    return run()


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.slow
def test_golden_flows_and_probability_match(outputs, golden):
    assert outputs["flows"].shape == golden["flows"].shape
    np.testing.assert_allclose(outputs["flows"], golden["flows"], atol=0.01)
    np.testing.assert_allclose(outputs["probability"], golden["probability"], atol=0.01)


@pytest.mark.slow
def test_golden_labels_match(outputs, golden):
    labels, reference = outputs["labels"], golden["labels"].astype(np.int32)
    assert labels.shape == reference.shape
    assert abs(int(labels.max()) - int(reference.max())) <= 1
    # Same objects: nearly every reference object is found again at IoU 0.8.
    assert float(average_precision(reference, labels.astype(np.int32), thresholds=(0.8,))[0]) >= 0.95
    assert float(outputs["ap_truth"]) == pytest.approx(float(golden["ap_truth"]), abs=0.02)

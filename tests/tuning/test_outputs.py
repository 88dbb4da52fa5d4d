"""Cached network outputs: post-processing them gives what `segment` gives."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import OracleNet2D, OracleNet3D, ball_labels

from mediar3d.errors import ConfigError, InputError
from mediar3d.tuning import predict_outputs, tune_thresholds


@pytest.fixture(scope="module")
def blob_volume():
    labels = ball_labels(shape=(16, 32, 32), spacing=11, radius=4.0, seed=3)
    rng = np.random.default_rng(0)
    image = np.where(labels > 0, 0.8, 0.1).astype(np.float32) + rng.normal(0, 0.02, labels.shape).astype(np.float32)
    return image, labels


def test_cached_outputs_reproduce_segment(blob_volume):
    from mediar3d.inference import segment

    image, labels = blob_volume
    net = OracleNet2D()
    outputs = predict_outputs(image, labels, net, name="blobs", batch_size=16)
    assert outputs.flows.shape == (3,) + image.shape and outputs.voxel_factor == pytest.approx(1.0)
    setting = {"cellprob_threshold": 0.5, "flow_threshold": 0.4, "min_size": 20}
    expected = segment(image, net, batch_size=16, progress=False, **setting)
    assert expected.max() >= 5
    np.testing.assert_array_equal(outputs.labels(**setting), expected)


def test_tuning_with_the_oracle_network_keeps_perfect_scores(blob_volume):
    image, labels = blob_volume
    outputs = [predict_outputs(image, labels, OracleNet2D(), name="blobs", batch_size=16)]
    result = tune_thresholds(outputs, grid={"cellprob_threshold": (-1.0, 0.0, 1.0), "flow_threshold": (0.4,),
                                            "min_size": (15.0,)})
    assert result.score > 0.95


def test_predict_outputs_checks_its_input(blob_volume):
    image, labels = blob_volume
    with pytest.raises(InputError, match="do not match"):
        predict_outputs(image, labels[:-1], OracleNet2D())
    with pytest.raises(ConfigError, match="z-only"):
        predict_outputs(image, labels, OracleNet2D(), z_only=True)


def test_volumetric_network_outputs_reproduce_its_segmentation(blob_volume):
    from mediar3d.inference import run_segmentation

    image, labels = blob_volume
    net = OracleNet3D()
    outputs = predict_outputs(image, labels, net, name="blobs", tta=True, tile=64)
    setting = {"cellprob_threshold": 0.0, "flow_threshold": 0.4, "min_size": 20}
    expected = run_segmentation(image, net, roi_size=None, progress=False, **setting).labels
    assert expected.max() >= 5
    np.testing.assert_array_equal(outputs.labels(**setting), expected)


def test_segment_with_tuned_thresholds_runs_at_the_diameter_tune_used(blob_volume):
    """tune caches outputs at the diameter it estimated; segment with the tuned model must estimate the same."""
    import dataclasses

    from mediar3d.inference import run_segmentation
    from mediar3d.inference.diameter import ESTIMATE_THRESHOLDS, estimate_diameter
    from mediar3d.inference.loader import InferenceModel
    from mediar3d.inference.normalize import normalize_percentile
    from mediar3d.inference.tiling import predict_slices

    image, labels = blob_volume
    untuned = InferenceModel(net=OracleNet2D(), name="oracle", diameter=12.0)
    tuned = dataclasses.replace(untuned, cellprob_threshold=3.0, flow_threshold=0.1, min_size=60.0)
    outputs = predict_outputs(image, labels, untuned, name="blobs", batch_size=16)
    assert outputs.diameter_estimated and outputs.diameter is not None
    result = run_segmentation(image, tuned, batch_size=16, progress=False)
    assert result.params["min_size"] == 60 and result.params["cellprob_threshold"] == 3.0
    assert result.params["diameter_estimated"] and result.params["diameter"] == outputs.diameter
    assert result.params["network_shape"] == list(outputs.logits.shape)
    # the test can fail: measured with the tuned thresholds, the estimate is another one
    normalised = normalize_percentile(image, untuned.percentiles)
    slice_fn = lambda b: predict_slices(b, OracleNet2D(), tile=256, batch_size=16)
    assert estimate_diameter(normalised, slice_fn, 12.0, **ESTIMATE_THRESHOLDS) == outputs.diameter
    with_tuned = estimate_diameter(normalised, slice_fn, 12.0, cellprob_threshold=3.0, flow_threshold=0.1, min_size=300)
    assert with_tuned != pytest.approx(outputs.diameter, rel=1e-3)

"""segment() refuses nonsense options up front; normalisation does not depend on the intensity scale."""

import numpy as np
import pytest
import torch

import mediar3d
from mediar3d.data.normalize import normalize_percentile
from mediar3d.errors import InputError, ModelError
from mediar3d.models import create_model, load_model, save_checkpoint


@pytest.fixture(scope="module")
def net():
    return create_model("unet-small", channels=[4, 8])


VOLUME = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("options, words", [
    ({"diameter": "abc"}, ["diameter", "number"]),
    ({"min_size": "big"}, ["min_size", "number"]),
    ({"cellprob_threshold": float("nan")}, ["cellprob_threshold", "finite"]),
    ({"flow_threshold": float("inf")}, ["flow_threshold", "finite"]),
    ({"niter": 0}, ["niter", ">= 1"]),
    ({"niter": 2.5}, ["niter", "integer"]),
])
def test_nonsense_options_are_input_errors(net, options, words):
    with pytest.raises(InputError) as info:
        mediar3d.segment(VOLUME, net, progress=False, **options)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_module_that_is_not_a_flow_network_is_a_model_error():
    with pytest.raises(ModelError, match=r"Conv2d: maps \(1, 1, 32, 32\) to \(1, 1, 30, 30\)"):
        mediar3d.segment(VOLUME, torch.nn.Conv2d(1, 1, 3), progress=False)


def test_a_checkpoint_with_a_nan_threshold_is_refused(tmp_path, net):
    path = save_checkpoint(tmp_path / "m.pt", net)
    obj = torch.load(path, weights_only=True)
    obj["thresholds"]["cellprob_threshold"] = float("nan")
    torch.save(obj, path)
    with pytest.raises(ModelError, match="finite"):
        load_model(path)


@pytest.mark.parametrize("scale", [1e-30, 1e-40, 1e30])
def test_percentile_normalisation_does_not_depend_on_the_scale(scale):
    reference = normalize_percentile(VOLUME * 100)
    assert reference.max() == 1.0
    np.testing.assert_allclose(normalize_percentile(VOLUME.astype(np.float64) * 100 * scale), reference, atol=1e-6)
    assert not normalize_percentile(np.full((3, 3), 5e-30)).any()   # constant stays constant

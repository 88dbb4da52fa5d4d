"""Ensembles and flip TTA: identities that must hold exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import OracleNet3D

from mediar3d.errors import ConfigError, ModelError
from mediar3d.tuning import EnsembleModel, FlipTTA, load_ensemble
from mediar3d.tuning.ensemble import unflip


def tiny_unet(seed: int) -> torch.nn.Module:
    from mediar3d.models import create_model

    torch.manual_seed(seed)
    return create_model("unet-small", channels=[8, 16]).eval()


def centred_ball(shape=(15, 21, 21), radius=5.0) -> np.ndarray:
    """A volume symmetric under every flip: a ball at the exact centre of odd-sized axes."""
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    return (((grid - centre[:, None, None, None]) ** 2).sum(0) <= radius ** 2).astype(np.float32)


def test_ensemble_of_a_model_with_itself_equals_the_model():
    net = tiny_unet(0)
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(EnsembleModel([net, net, net])(x), net(x), rtol=1e-5, atol=1e-6)


def test_ensemble_is_the_weighted_mean_of_its_members():
    a, b = tiny_unet(0), tiny_unet(1)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        ya, yb = a(x), b(x)
        assert not torch.allclose(ya, yb)
        torch.testing.assert_close(EnsembleModel([a, b])(x), (ya + yb) / 2)
        torch.testing.assert_close(EnsembleModel([a, b], weights=[3, 1])(x), 0.75 * ya + 0.25 * yb)


def test_segment_with_a_self_ensemble_gives_the_same_labels():
    from mediar3d.inference import segment

    net = tiny_unet(2)
    volume = np.random.default_rng(0).random((8, 24, 24)).astype(np.float32)
    options = {"progress": False, "cellprob_threshold": -0.5, "flow_threshold": 0.0, "min_size": 0, "niter": 20}
    single = segment(volume, net, **options)
    both = segment(volume, EnsembleModel([net, net]), **options)
    np.testing.assert_array_equal(single, both)


def test_ensemble_rejects_bad_members():
    with pytest.raises(ModelError, match="at least one"):
        EnsembleModel([])
    with pytest.raises(ModelError, match="2D and volumetric"):
        EnsembleModel([tiny_unet(0), OracleNet3D()])
    with pytest.raises(ConfigError, match="weights"):
        EnsembleModel([tiny_unet(0)], weights=[-1.0])


def test_flip_tta_3d_restores_flows_exactly_on_a_symmetric_input():
    net = OracleNet3D()
    x = torch.from_numpy(centred_ball())[None, None]
    plain = net(x)
    assert plain[:, :3].abs().max() > 1.0  # real flows, not zeros
    torch.testing.assert_close(FlipTTA(net)(x), plain, rtol=0, atol=1e-6)
    # without the sign correction the flipped flows cancel out: the test can fail
    naive = sum(torch.flip(net(torch.flip(x, dims)), dims) for dims in [(), (2,), (3,), (4,), (2, 3, 4)]) / 5
    assert not torch.allclose(naive[:, :3], plain[:, :3], atol=1e-2)


def test_unflip_inverts_a_flip_of_an_equivariant_network():
    net = OracleNet3D()
    volume = np.zeros((12, 16, 20), np.float32)
    volume[2:7, 3:10, 4:13] = 1.0  # off-centre box (odd sides: one centre voxel), not symmetric
    x = torch.from_numpy(volume)[None, None]
    plain = net(x)
    # the box's centre voxel has no flow direction (masks_to_flows picks one); leave it out
    keep = torch.ones_like(plain, dtype=torch.bool)
    keep[..., 4, 6, 8] = False
    for dims in [(2,), (3,), (4,), (2, 4)]:
        back = unflip(net(torch.flip(x, dims)), dims)
        torch.testing.assert_close(back[keep], plain[keep], rtol=0, atol=1e-5)
        if dims != (2,):
            assert not torch.allclose(torch.flip(net(torch.flip(x, dims)), dims)[keep], plain[keep], atol=1e-2)


def test_load_ensemble_from_checkpoints(tmp_path):
    from mediar3d.models import save_checkpoint

    a = save_checkpoint(tmp_path / "a.pt", tiny_unet(0), thresholds={"cellprob_threshold": -1.0, "flow_threshold": 0.2,
                                                                      "min_size": 10.0}, train_diameter=10.0)
    b = save_checkpoint(tmp_path / "b.pt", tiny_unet(1), thresholds={"cellprob_threshold": 1.0, "flow_threshold": 0.6,
                                                                      "min_size": 30.0}, train_diameter=10.2)
    model = load_ensemble([a, b], tta=True)
    assert isinstance(model.net, EnsembleModel) and all(isinstance(m, FlipTTA) for m in model.net.models)
    assert model.cellprob_threshold == pytest.approx(0.0) and model.flow_threshold == pytest.approx(0.4)
    assert model.min_size == pytest.approx(20.0) and model.diameter == pytest.approx(10.1)


def test_load_ensemble_refuses_members_that_see_different_inputs(tmp_path):
    from mediar3d.models import save_checkpoint

    a = save_checkpoint(tmp_path / "a.pt", tiny_unet(0), train_diameter=10.0)
    far = save_checkpoint(tmp_path / "far.pt", tiny_unet(1), train_diameter=12.0)
    unknown = save_checkpoint(tmp_path / "unknown.pt", tiny_unet(1))
    other_norm = save_checkpoint(tmp_path / "c.pt", tiny_unet(2), normalization={"percentiles": [1.0, 99.0]},
                                 train_diameter=10.0)
    with pytest.raises(ModelError, match="diameters.*far.pt 12"):
        load_ensemble([a, far])
    with pytest.raises(ModelError, match="diameters.*unknown.pt None"):
        load_ensemble([a, unknown])
    with pytest.raises(ModelError, match="percentiles.*c.pt"):
        load_ensemble([a, other_norm])
    assert load_ensemble([unknown, unknown]).diameter is None

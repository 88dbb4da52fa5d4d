"""segment() end to end with an oracle network: 3D, anisotropy, 2D, z-only, diameter, bad input."""

import numpy as np
import pytest

from mediar3d.errors import InputError, ModelError
from mediar3d.evaluation import average_precision
from mediar3d.inference import run_segmentation, segment
from mediar3d.inference.diameter import estimate_diameter, pick_slices
from mediar3d.inference.tiling import predict_slices

from helpers import OracleNet2D as OracleNet, blob_volume


def ap50(gt, pred):
    result = average_precision(gt, pred, thresholds=(0.5,))
    value = result[0] if isinstance(result, tuple) else result
    return float(np.asarray(value).ravel()[0])


@pytest.fixture(scope="module")
def blobs():
    return blob_volume()


def test_3d_segmentation_recovers_blobs(blobs):
    image, labels = blobs
    result = run_segmentation(image, OracleNet(), keep_flows=True, progress=False, tile=64)
    assert result.labels.shape == labels.shape and result.labels.dtype == np.int32
    assert ap50(labels, result.labels) >= 0.95
    assert result.flows.shape == (3,) + labels.shape and result.probability.shape == labels.shape
    assert result.params["n_objects"] == result.labels.max() and result.params["mode"] == "3d"
    # the dz component points towards each object's centre along z
    obj = labels == labels.max()
    zc = np.argwhere(obj)[:, 0].mean()
    z = np.argwhere(obj)[:, 0]
    dz = result.flows[0][obj]
    assert np.mean(np.sign(dz[np.abs(z - zc) > 2]) == np.sign(zc - z[np.abs(z - zc) > 2])) > 0.9


def test_anisotropic_volume_round_trip(blobs):
    image, labels = blobs
    sub_image, sub_labels = image[::2], labels[::2]
    res = run_segmentation(sub_image, OracleNet(), anisotropy=2.0, progress=False)
    assert res.params["network_shape"] == [40, 64, 64]
    assert res.labels.shape == sub_labels.shape
    assert ap50(sub_labels, res.labels) >= 0.9


def test_2d_mode_and_z_only_mode(blobs):
    image, labels = blobs
    plane = 21
    pred2d = segment(image[plane], OracleNet(), do_3d=False, progress=False)
    assert pred2d.shape == labels[plane].shape and ap50(labels[plane], pred2d) >= 0.9
    predz = segment(image, OracleNet(), z_only=True, progress=False)
    assert predz.shape == labels.shape and ap50(labels, predz) >= 0.8


def test_diameter_is_estimated_and_used(blobs):
    image, labels = blobs
    slice_fn = lambda b: predict_slices(b, OracleNet(), tile=64)  # noqa: E731
    estimate = estimate_diameter(image, slice_fn, model_diameter=10.0)
    # the diameter of a volume is its objects' 3D equivalent diameter (balls of the same volume);
    # the median 2D cross-section in z-slices (the old estimate) is ~12 % smaller for these balls
    volumes = np.bincount(labels.ravel())[1:]
    expected = float(np.median(np.cbrt(6.0 * volumes[volumes > 0] / np.pi)))
    cross_sections = np.concatenate([np.bincount(p.ravel())[1:] for p in pick_slices(labels, 8)])
    old_definition = float(np.median(np.sqrt(4 * cross_sections[cross_sections >= 15] / np.pi)))
    assert abs(old_definition - expected) / expected > 0.08
    assert abs(estimate - expected) / expected < 0.05
    # with a model trained at half the object size the volume is shrunk by about 2
    res = run_segmentation(image, OracleNet(), model_diameter=expected / 2, progress=False, tile=64)
    assert res.params["diameter_estimated"] and 0.4 < res.params["scale"] < 0.6
    assert res.labels.shape == labels.shape and ap50(labels, res.labels) >= 0.8


def test_given_diameter_rescales(blobs):
    image, labels = blobs
    res = run_segmentation(image[:20, :40, :40], OracleNet(), diameter=20.0, model_diameter=10.0, progress=False)
    assert res.params["scale"] == 0.5 and res.params["network_shape"] == [10, 20, 20]
    assert not res.params["diameter_estimated"] and res.labels.shape == (20, 40, 40)


@pytest.mark.parametrize("volume, kwargs, message", [
    (np.zeros((32, 32), np.float32), {}, "2D"),
    (np.stack([np.zeros((8, 32, 32), np.float32), np.ones((8, 32, 32), np.float32)]), {}, "2 channels but the model takes 1"),
    (np.full((8, 16, 16), np.nan, np.float32), {}, "NaN"),
    (np.zeros((8, 16, 16), np.float32), {"anisotropy": -1}, "anisotropy"),
    (np.zeros((8, 16, 16), np.float32), {"diameter": 0}, "diameter"),
])
def test_bad_input_raises_input_error(volume, kwargs, message):
    with pytest.raises(InputError, match=message):
        segment(volume, OracleNet(), progress=False, **kwargs)


def test_unknown_model_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="no-such-model"):
        segment(np.zeros((8, 16, 16), np.float32), "no-such-model", progress=False)
    with pytest.raises(ModelError):
        segment(np.zeros((8, 16, 16), np.float32), str(tmp_path / "missing.pt"), progress=False)


def test_min_size_fraction_drops_fragments_in_segment(blobs):
    """A speck far smaller than the typical nucleus survives min_size 15 but not min_size_fraction 0.2."""
    image, labels = blobs
    image = image.copy()
    image[2:5, 2:5, 30:33] = 0.9                       # 27 voxels, ~0.04x a blob of ~650 voxels
    kept = run_segmentation(image, OracleNet(), diameter=11.0, model_diameter=11.0, progress=False, tile=64,
                            min_size=15, min_size_fraction=0.0)
    filtered = run_segmentation(image, OracleNet(), diameter=11.0, model_diameter=11.0, progress=False, tile=64,
                                min_size=15, min_size_fraction=0.2)
    assert kept.labels[3, 3, 31] > 0 and filtered.labels[3, 3, 31] == 0
    assert filtered.labels.max() == kept.labels.max() - 1 == labels.max()
    assert filtered.params["min_size_fraction"] == 0.2
    with pytest.raises(InputError, match="min_size_fraction"):
        run_segmentation(image, OracleNet(), diameter=11.0, model_diameter=11.0, progress=False, min_size_fraction=2)


def test_a_models_stored_min_size_fraction_is_its_default(blobs):
    """The fraction stored with a model (the bundled one ships 0.05) applies when the caller gives none."""
    from mediar3d.inference.loader import InferenceModel

    image, labels = blobs
    image = image.copy()
    image[2:5, 2:5, 30:33] = 0.9                       # a 27-voxel speck, ~0.04x a blob
    model = InferenceModel(OracleNet(), name="oracle", diameter=11.0, min_size=15, min_size_fraction=0.2)
    result = run_segmentation(image, model, diameter=11.0, progress=False, tile=64)
    assert result.labels[3, 3, 31] == 0 and result.labels.max() == labels.max()
    assert result.params["min_size_fraction"] == 0.2
    given = run_segmentation(image, model, diameter=11.0, progress=False, tile=64, min_size_fraction=0.0)
    assert given.labels[3, 3, 31] > 0                   # the caller's value wins


def test_a_checkpoints_min_size_fraction_reaches_the_model(tmp_path):
    """The fraction in a checkpoint's thresholds is read into its InferenceModel (how the bundled one gets 0.05)."""
    from mediar3d.inference.loader import from_checkpoint
    from mediar3d.models import create_model, save_checkpoint

    path = save_checkpoint(tmp_path / "m.pt", create_model("unet-small", channels=(4, 8)),
                           thresholds={"cellprob_threshold": -0.5, "flow_threshold": 0.6, "min_size": 15,
                                       "min_size_fraction": 0.3})
    model = from_checkpoint(path)
    assert model.min_size_fraction == 0.3 and model.min_size == 15
    bare = from_checkpoint(save_checkpoint(tmp_path / "b.pt", create_model("unet-small", channels=(4, 8))))
    assert bare.min_size_fraction is None


def test_status_announces_each_phase_before_it_starts(blobs):
    """status(...) comes before the diameter estimate's, then the network's calls, and post-processing after them."""
    image, _ = blobs
    events = []
    net = OracleNet()
    net.register_forward_hook(lambda *_: events.append("net"))
    res = run_segmentation(image[:20, :40, :40], net, model_diameter=10.0, tile=64,
                           progress=lambda done, total: events.append("slices"),
                           status=lambda line: events.append(line))
    lines = [e for e in events if e not in ("net", "slices")]
    assert [line.split()[0] for line in lines] == ["estimating", "network", "post-processing:"], lines
    estimate, network, post = (events.index(line) for line in lines)
    assert "net" in events[estimate:network] and "slices" not in events[:network]  # the estimate's own calls
    assert "slices" in events[network:post] and "net" not in events[post:]
    assert f"{res.params['diameter']:.1f} px" in lines[1] and "x".join(map(str, res.params["network_shape"])) in lines[1]
    events.clear()
    run_segmentation(image[:20, :40, :40], net, diameter=12.0, model_diameter=10.0, tile=64, progress=False,
                     status=events.append)
    assert [e.split()[0] for e in events if e != "net"] == ["network", "post-processing:"]  # no estimate to announce

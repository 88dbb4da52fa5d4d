"""`segment` routes volumetric networks (feature3d) to 3D sliding-window inference."""

import numpy as np
import pytest

from mediar3d.errors import InputError


def test_segment_with_feature3d_checkpoint_runs_the_3d_path(tmp_path):
    from mediar3d import segment
    from mediar3d.data.normalize import normalize_percentile
    from mediar3d.inference.predict import relabel
    from mediar3d.inference.volume3d import predict_volume
    from mediar3d.models import create_model, save_checkpoint
    from mediar3d.postprocess import compute_masks

    net = create_model("feature3d", encoder_kwargs={"channels": [8, 16]}, encoder_depth=2,
                       decoder_channels=[16, 8], norm="group")
    path = tmp_path / "f3d.pt"
    save_checkpoint(path, net)
    volume = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    labels = segment(volume, str(path), diameter=None, progress=False, niter=20)
    # by hand: normalise, one 3D window over the whole volume, flows / 5, Algorithm 4
    net.eval()
    pred = predict_volume(net, normalize_percentile(volume, (0.0, 99.5)), roi_size=None)
    reference = relabel(compute_masks(pred[:3] / 5.0, pred[3], niter=20, min_size=15))
    assert labels.shape == volume.shape
    np.testing.assert_array_equal(labels, reference)
    with pytest.raises(InputError, match="3D network"):
        segment(volume[0], str(path), do_3d=False, progress=False)


def test_tta_with_a_3d_network_averages_the_unflipped_predictions_of_flipped_volumes(tmp_path):
    """segment(..., tta=True) on a volumetric network equals, by hand: flip the volume, predict,
    flip the flows back and negate the flipped components, average over the 8 flips."""
    import itertools

    from mediar3d.inference import run_segmentation
    from mediar3d.models import create_model, save_checkpoint

    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = create_model("feature3d", encoder_kwargs={"channels": [8, 16]}, encoder_depth=2,
                       decoder_channels=[16, 8], norm="group")
    path = tmp_path / "f3d.pt"
    save_checkpoint(path, net)
    volume = np.random.default_rng(1).random((8, 16, 24)).astype(np.float32)
    options = dict(progress=False, niter=20, keep_flows=True, roi_size=None)
    plain = run_segmentation(volume, str(path), **options)
    tta = run_segmentation(volume, str(path), tta=True, **options)
    assert tta.params["tta"] is True
    expected = np.zeros_like(plain.flows)
    for k in range(4):
        for axes in itertools.combinations((0, 1, 2), k):
            flows = run_segmentation(np.flip(volume, axes).copy(), str(path), **options).flows
            flows = np.flip(flows, tuple(a + 1 for a in axes)).copy()
            flows[list(axes)] *= -1.0
            expected += flows / 8.0
    # flows are kept in float16 on the network grid: equal up to its rounding (~1e-3 at unit length)
    np.testing.assert_allclose(tta.flows, expected, atol=2e-3)
    assert not np.allclose(tta.flows, plain.flows, atol=1e-3)  # a random network is not flip-equivariant

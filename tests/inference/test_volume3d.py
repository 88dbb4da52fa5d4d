"""3D sliding-window inference for volumetric networks: tiled equals untiled; end-to-end segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mediar3d.errors import ConfigError, InputError
from mediar3d.evaluation import average_precision
from mediar3d.inference import run_segmentation
from mediar3d.inference.volume3d import is_volumetric, predict_volume, window_count, window_size

from helpers import OracleNet2D as OracleNet, blob_volume


class Pointwise3d(torch.nn.Module):
    """A volumetric 1x1x1 network: its output at a voxel depends on that voxel only."""

    spatial_dims = 3
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Oracle3d(torch.nn.Module):
    """(B, 1, Z, Y, X) -> (B, 4, Z, Y, X): 5 x the 3D flows of the bright connected blobs, +-4 logit."""

    spatial_dims = 3
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from mediar3d.flows import masks_to_flows

        out = []
        for volume in x[:, 0].cpu().numpy():
            labels, n = ndimage.label(volume > 0.5)
            flows = masks_to_flows(labels) if n else np.zeros((3, *volume.shape), np.float32)
            logit = np.where(labels > 0, 4.0, -4.0).astype(np.float32)
            out.append(np.concatenate([5.0 * flows, logit[None]]))
        return torch.from_numpy(np.stack(out)).to(x.device)


def test_is_volumetric():
    assert is_volumetric(Pointwise3d())
    assert not is_volumetric(OracleNet())


def test_window_size_is_clipped_and_checked():
    assert window_size((10, 50, 60), (32, 32, 32)) == (10, 32, 32)
    assert window_size((10, 50, 60), None) == (10, 50, 60)
    with pytest.raises(ConfigError):
        window_size((10, 50, 60), (0, 32, 32))


@pytest.mark.parametrize("roi,overlap,blend", [((8, 24, 24), 0.25, "gaussian"), ((5, 17, 40), 0.5, "constant")])
def test_pointwise_network_tiled_equals_untiled(roi, overlap, blend):
    volume = np.random.default_rng(0).random((13, 45, 50)).astype(np.float32)
    net = Pointwise3d().eval()
    whole = predict_volume(net, volume, roi_size=None)
    tiled = predict_volume(net, volume, roi_size=roi, overlap=overlap, batch_size=3, blend=blend)
    assert whole.shape == tiled.shape == (4, 13, 45, 50)
    with torch.no_grad():
        direct = net(torch.from_numpy(volume)[None, None])[0].numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-6)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_feature3d_tiled_close_to_untiled():
    """A real network has a receptive field, so windows differ near their borders; blending keeps it small."""
    from mediar3d.models import create_model

    torch.manual_seed(0)
    net = create_model("feature3d", encoder_kwargs={"channels": [4, 8, 16]}, encoder_depth=3,
                       decoder_channels=[8, 8, 8]).eval()
    image, _ = blob_volume((12, 64, 64), spacing=16)
    whole = predict_volume(net, image, roi_size=None)
    tiled = predict_volume(net, image, roi_size=(12, 48, 48), overlap=0.5)
    scale = np.abs(whole - whole.mean(axis=(1, 2, 3), keepdims=True)).mean()
    error = np.abs(tiled - whole).mean()
    assert error < 0.1 * scale, (error, scale)
    # the windows really were different: a plain crop of the volume gives another prediction at its border
    crop = predict_volume(net, image[:, :48, :48], roi_size=None)
    assert np.abs(crop[:, :, 40:48, 40:48] - whole[:, :, 40:48, 40:48]).mean() > error


def test_oracle_segmentation_tiled_equals_untiled():
    image, labels = blob_volume((32, 64, 64), spacing=16)
    whole = run_segmentation(image, Oracle3d(), roi_size=None, device="cpu", progress=False)
    reports = []
    tiled = run_segmentation(image, Oracle3d(), roi_size=(32, 40, 40), tile_overlap=0.5, device="cpu",
                             progress=lambda done, total: reports.append((done, total)))
    assert whole.labels.shape == image.shape and whole.labels.dtype == np.int32
    ap_whole = average_precision(labels, whole.labels, [0.5, 0.75])
    ap_tiled = average_precision(labels, tiled.labels, [0.5, 0.75])
    assert np.all(np.asarray(ap_whole) >= 0.95), ap_whole
    assert np.all(np.asarray(ap_tiled) >= 0.95), ap_tiled
    assert tiled.params["roi_size"] == [32, 40, 40] and whole.params["n_objects"] == labels.max()
    # progress comes from the window loop: one report per window, the last one complete
    assert len(reports) == window_count((32, 64, 64), (32, 40, 40), 0.5) == reports[-1][0] == reports[-1][1]


def test_anisotropic_volume_is_resampled_and_labels_come_back_on_the_input_grid():
    image, labels = blob_volume((32, 48, 48), spacing=16)
    thin, thin_labels = image[::2], labels[::2]
    result = run_segmentation(thin, Oracle3d(), anisotropy=2.0, roi_size=None, device="cpu", keep_flows=True,
                              progress=False)
    assert result.params["network_shape"] == [32, 48, 48]
    assert result.labels.shape == thin.shape and result.flows.shape == (3, *thin.shape)
    assert np.asarray(average_precision(thin_labels, result.labels, [0.5])).ravel()[0] >= 0.9


@pytest.mark.parametrize("mode", [dict(z_only=True), dict(do_3d=False)])
def test_3d_network_refuses_the_z_only_and_2d_modes(mode):
    data = np.zeros((8, 32, 32) if "z_only" in mode else (32, 32), np.float32)
    with pytest.raises(InputError, match="3D network"):
        run_segmentation(data, Oracle3d(), progress=False, **mode)

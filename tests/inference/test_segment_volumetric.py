"""`segment` routes volumetric networks (feature3d) to 3D sliding-window inference."""

import numpy as np
import pytest

from mediar3d.errors import InputError


def test_segment_with_feature3d_checkpoint_runs_the_3d_path(tmp_path):
    from mediar3d import segment
    from mediar3d.inference.volume3d import run_volume_segmentation
    from mediar3d.models import create_model, save_checkpoint

    net = create_model("feature3d", encoder_kwargs={"channels": [8, 16]}, encoder_depth=2,
                       decoder_channels=[16, 8], norm="group")
    path = tmp_path / "f3d.pt"
    save_checkpoint(path, net)
    volume = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    labels = segment(volume, str(path), diameter=None, progress=False, niter=20)
    reference = run_volume_segmentation(volume, str(path), progress=False, niter=20)
    assert labels.shape == volume.shape
    np.testing.assert_array_equal(labels, reference.labels)
    with pytest.raises(InputError, match="3D network"):
        segment(volume[0], str(path), do_3d=False, progress=False)

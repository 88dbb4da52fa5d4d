"""`mediar3d segment --blocks`: block-wise segmentation on Dask from the command line."""

import numpy as np
import pytest

from mediar3d.cli.main import main


def test_blocks_write_zarr_labels_only(tmp_path, capsys):
    from mediar3d.io import write_image

    source = tmp_path / "vol.tif"
    write_image(source, np.random.default_rng(0).random((8, 32, 32)).astype(np.float32))
    out = tmp_path / "out.tif"
    assert main(["segment", str(source), "-o", str(out), "--blocks", "on", "--no-progress"]) == 1
    assert "written to Zarr" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.dask
def test_blocks_read_a_tiff_input(tmp_path, capsys):
    """A TIFF goes block-wise too (read plane by plane); the labels are a Zarr on the TIFF's voxel size."""
    from mediar3d.io import read_image, read_labels, write_image
    from mediar3d.models import create_model, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "tiny.pt", create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    source = tmp_path / "vol.tif"
    write_image(source, np.random.default_rng(0).integers(0, 200, (8, 32, 48)).astype(np.uint8),
                voxel_size=(2.0, 0.5, 0.5))
    out = tmp_path / "out"
    assert main(["segment", str(source), "-o", str(out), "--blocks", "on", "--block-size", "8", "32", "32",
                 "--scheduler", "synchronous", "--model", str(checkpoint), "--diameter", "10", "--niter", "10",
                 "--no-progress"]) == 0
    assert "2 blocks" in capsys.readouterr().out
    labels = read_image(out / "vol_labels.ome.zarr")
    assert labels.data.shape == (8, 32, 48) and labels.voxel_size == (2.0, 0.5, 0.5)
    assert read_labels(out / "vol_labels.ome.zarr").dtype == np.uint32  # unsigned like every other label file


@pytest.mark.dask
@pytest.mark.slow
def test_blocks_on_zarr_match_whole_volume(tmp_path, capsys):
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.evaluation import average_precision
    from mediar3d.io import read_labels, write_image

    image, truth = make_nuclei_volume((16, 64, 64), n_nuclei=10, radius_range=(5, 7), seed=3, snr=30)
    source = tmp_path / "vol.ome.zarr"
    write_image(source, image)
    common = ["--diameter", "12", "--no-progress", "--min-size", "10"]
    assert main(["segment", str(source), "-o", str(tmp_path / "whole.tif"), "--blocks", "off", *common]) == 0
    assert main(["segment", str(source), "-o", str(tmp_path / "blocks.zarr"), "--blocks", "on",
                 "--block-size", "16", "32", "32", "--scheduler", "synchronous", "--measure", *common]) == 0
    assert "blocks" in capsys.readouterr().out
    whole = read_labels(tmp_path / "whole.tif")
    blocked = read_labels(tmp_path / "blocks.zarr")
    assert blocked.shape == whole.shape and whole.max() > 0
    assert average_precision(whole, blocked, thresholds=[0.5])[0] >= 0.9
    # --measure on a block-wise run: the table of mediar3d.measure on the labels, read slab by slab
    import csv

    import mediar3d

    with open(tmp_path / "blocks_objects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    expected = mediar3d.measure(blocked, image)
    assert [int(r["label"]) for r in rows] == list(expected["label"]) and len(rows) == blocked.max()
    assert [int(r["voxels"]) for r in rows] == list(np.bincount(blocked.ravel())[1:])
    # float32 image: regionprops' mean is float32, the slab-wise one float64
    np.testing.assert_allclose([float(r["intensity_mean"]) for r in rows], expected["intensity_mean"], rtol=1e-5)


@pytest.mark.dask
def test_blocks_are_chosen_when_the_volume_does_not_fit_the_free_memory(tmp_path, capsys, monkeypatch):
    """--blocks auto (the default) goes block-wise, saying why, when the whole-volume estimate exceeds
    the memory free; --blocks off still runs the volume whole."""
    import mediar3d.io.memory
    from mediar3d.io import read_image, write_image
    from mediar3d.models import create_model, save_checkpoint

    monkeypatch.setattr(mediar3d.io.memory, "available_memory", lambda: 10**6)  # 1 MB free
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", create_model("unet-small", channels=(4, 8)), train_diameter=10.0)
    source = tmp_path / "vol.tif"
    write_image(source, np.random.default_rng(0).integers(0, 200, (8, 32, 48)).astype(np.uint8))
    common = ["--block-size", "8", "32", "32", "--scheduler", "synchronous", "--model", str(checkpoint),
              "--diameter", "10", "--niter", "10", "--no-progress"]
    assert main(["segment", str(source), "-o", str(tmp_path / "auto"), *common]) == 0
    said = capsys.readouterr()
    assert "GB free: segmenting in blocks" in said.err and "0.0 GB free" in said.err and "2 blocks" in said.out
    assert read_image(tmp_path / "auto" / "vol_labels.ome.zarr").data.shape == (8, 32, 48)
    assert main(["segment", str(source), "-o", str(tmp_path / "whole"), "--blocks", "off", *common]) == 0
    said = capsys.readouterr()
    assert "segmenting in blocks" not in said.err and " blocks, " not in said.out
    whole = tmp_path / "whole"
    assert (whole / "vol_labels.tif").exists() and not (whole / "vol_labels.ome.zarr").exists()

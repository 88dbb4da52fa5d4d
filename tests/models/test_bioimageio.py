"""bioimage.io export: the validator accepts the package, its weights reproduce its test output, mediar3d reads it.

The package is exported with matplotlib hidden, as in a base install: its cover is drawn with Pillow.
"""

from __future__ import annotations

import importlib
import io
import zipfile

import numpy as np
import pytest
import torch
from helpers import hide_matplotlib
from PIL import Image

from mediar3d.cli.main import main
from mediar3d.models import create_model, load_model, save_checkpoint
from mediar3d.models.bioimageio import export_bioimageio, scale_range
from mediar3d.models.sources import PACKAGE_CHECKPOINT


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bioimageio")
    torch.manual_seed(0)
    net = create_model("unet-small", channels=(4, 8))
    checkpoint = save_checkpoint(folder / "tiny.pt", net, thresholds={"cellprob_threshold": -0.5, "min_size": 9.0},
                                 train_diameter=12.0)
    with pytest.MonkeyPatch.context() as patch:
        hide_matplotlib(patch)
        export = importlib.import_module("mediar3d.models.bioimageio").export_bioimageio  # imported afresh
        return checkpoint, export(checkpoint, folder / "tiny.zip", authors=["A. Tester"])


def test_bioimageio_spec_validates_the_package(exported):
    from bioimageio.spec import ModelDescr, load_description

    _, package = exported
    description = load_description(package, perform_io_checks=True)
    assert isinstance(description, ModelDescr), description.validation_summary.format()
    assert description.validation_summary.status != "failed"
    assert set(description.weights.model_fields_set) >= {"torchscript", "pytorch_state_dict"}
    mediar3d = description.config.model_dump()["mediar3d"]
    assert mediar3d["thresholds"] == {"cellprob_threshold": -0.5, "flow_threshold": 0.4, "min_size": 9.0}
    assert mediar3d["train_diameter"] == 12.0 and "follow flows" in mediar3d["postprocessing"]


def test_torchscript_weights_reproduce_the_test_output(exported):
    checkpoint, package = exported
    with zipfile.ZipFile(package) as archive:
        raw = np.load(io.BytesIO(archive.read("test_input.npy")))
        expected = np.load(io.BytesIO(archive.read("test_output.npy")))
        scripted = torch.jit.load(io.BytesIO(archive.read("weights_torchscript.pt")))
        readme = archive.read("README.md").decode()
    assert raw.ndim == 4 and raw.max() > 1.0  # raw intensities; the package's preprocessing scales them
    with torch.no_grad():
        got = scripted(torch.from_numpy(scale_range(raw, (0.0, 99.5)))).numpy()
        eager = load_model(checkpoint)[0](torch.from_numpy(scale_range(raw, (0.0, 99.5)))).numpy()
    assert got.shape == expected.shape == (1, 3, *raw.shape[-2:])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(eager, expected, atol=1e-4)
    assert "cellprob_threshold" in readme and "mediar3d segment" in readme


def test_package_runs_as_a_mediar3d_model(exported, tmp_path, monkeypatch):
    checkpoint, package = exported
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    with zipfile.ZipFile(package) as archive:
        assert PACKAGE_CHECKPOINT in archive.namelist()
    net, config = load_model(package)
    original, _ = load_model(checkpoint)
    assert config.thresholds["min_size"] == 9.0
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), original.state_dict().values()))


def test_cli_exports_and_refuses_a_volumetric_model(tmp_path, capsys):
    net = create_model("feature3d", encoder_kwargs={"channels": (4, 8)}, decoder_channels=(8, 4))
    volumetric = save_checkpoint(tmp_path / "vol.pt", net)
    assert main(["export-bioimageio", "--model", str(volumetric), "-o", str(tmp_path / "vol.zip")]) == 1
    err = capsys.readouterr().err
    assert "volumetric" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "vol.zip").exists()


def test_cover_is_a_2_to_1_png_of_the_input_and_the_probability(exported):
    _, package = exported
    with zipfile.ZipFile(package) as archive:
        raw = np.load(io.BytesIO(archive.read("test_input.npy")))
        with Image.open(io.BytesIO(archive.read("cover.png"))) as cover:
            assert cover.format == "PNG" and cover.size == (600, 300)
            pixels = np.asarray(cover.convert("RGB")).astype(int)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()  # grey
    # the left panel is the input, scaled to its box below the title: bright where the input is bright
    panel = pixels[:, :300, 0]
    rows, columns = np.flatnonzero((panel < 255).any(axis=1)), np.flatnonzero((panel < 255).any(axis=0))
    size = columns[-1] + 1 - columns[0]  # the title is narrower than the image
    shown = panel[rows[-1] + 1 - size:rows[-1] + 1, columns[0]:columns[-1] + 1]  # the square input, enlarged
    assert size > 200 and rows[0] < rows[-1] + 1 - size  # the title above it
    resized = np.asarray(Image.fromarray(raw[0, 0]).resize(shown.shape[::-1], Image.Resampling.NEAREST))
    assert np.corrcoef(shown.ravel(), resized.ravel())[0, 1] > 0.99

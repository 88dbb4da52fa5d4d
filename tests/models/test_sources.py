"""Model sources: bundled names, bioimage.io packages, URLs with a sha256 (served on localhost)."""

from __future__ import annotations

import functools
import http.server
import threading
import zipfile

import pytest
import torch

from mediar3d.errors import ModelError
from mediar3d.inference.loader import resolve_model
from mediar3d.models import create_model, load_model, save_checkpoint
from mediar3d.models.sources import PACKAGE_CHECKPOINT, bundled_checkpoint, resolve_source
from mediar3d.models.weights import sha256_of


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = create_model("unet-small", channels=(4, 8))
    return save_checkpoint(tmp_path / "served" / "tiny.pt", net, thresholds={"cellprob_threshold": -0.25})


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields its base URL and the request log."""
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=tmp_path / "served"))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    finally:
        httpd.shutdown()
        httpd.server_close()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_bundled_names_resolve_to_the_bundled_checkpoint():
    assert resolve_source(None) == resolve_source("default") == resolve_source("nuclei") == bundled_checkpoint()
    net, config = load_model("default")
    assert config.arch == "unet-small" and not net.training


def _weights_folder(folder, monkeypatch, cells=None):
    """A bundled-weights folder holding the nuclei checkpoint and, if given, `cells` as the cells one."""
    import shutil

    from mediar3d.models import sources

    folder.mkdir()
    shutil.copy(bundled_checkpoint(), folder / sources.BUNDLED_FILE)
    if cells is not None:
        shutil.copy(cells, folder / sources.bundled_model("cells").file)
    monkeypatch.setattr(sources, "weights_dir", lambda: folder)
    return folder


def test_cells_names_resolve_to_the_cells_checkpoint_not_the_nuclei_one(tiny_checkpoint, tmp_path, monkeypatch):
    from mediar3d.models.sources import BUNDLED_MODELS, bundled_model

    folder = _weights_folder(tmp_path / "weights", monkeypatch, cells=tiny_checkpoint)
    cells = folder / bundled_model("cells").file
    assert resolve_source("cells") == resolve_source("unet-small-cells") == resolve_source("membrane") == cells
    assert resolve_source(None) == resolve_source("nuclei") == bundled_checkpoint() != cells
    assert BUNDLED_MODELS[0] is bundled_model(None) is bundled_model("default")             # the default stays first
    net, _ = load_model("cells")
    assert _same_weights(net, load_model(tiny_checkpoint)[0]) and not _same_weights(net, load_model("nuclei")[0])
    with pytest.raises(ModelError, match="not a bundled model.*cells"):
        bundled_checkpoint("cytoplasm")


def test_cells_model_without_its_weights_is_one_clear_error(tmp_path, monkeypatch):
    _weights_folder(tmp_path / "weights", monkeypatch)
    with pytest.raises(ModelError, match="unet-small-cells.pt: file is missing from the installed package; "
                                         "reinstall mediar3d"):
        resolve_source("cells")
    assert resolve_source("nuclei").parent == tmp_path / "weights"


def test_url_is_downloaded_once_checked_and_cached(tiny_checkpoint, server, tmp_path, monkeypatch):
    base, requests = server
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    url = f"{base}/tiny.pt#sha256={sha256_of(tiny_checkpoint)}"
    net, config = load_model(url)
    assert config.thresholds["cellprob_threshold"] == -0.25
    assert _same_weights(net, load_model(tiny_checkpoint)[0])
    assert (tmp_path / "cache" / "tiny.pt").is_file()
    count = len(requests)
    resolved = resolve_model(url)  # the segment path; served from the cache
    assert len(requests) == count == 1
    assert resolved.cellprob_threshold == -0.25


def test_wrong_or_missing_digest_and_remote_http_are_refused(tiny_checkpoint, server, tmp_path, monkeypatch):
    base, requests = server
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelError, match="expected"):
        load_model(f"{base}/tiny.pt#sha256={'0' * 64}")
    assert not (tmp_path / "cache" / "tiny.pt").exists()  # a bad download is not kept
    with pytest.raises(ModelError, match="sha256"):
        load_model(f"{base}/tiny.pt")
    with pytest.raises(ModelError, match="https"):
        load_model(f"http://example.org/tiny.pt#sha256={'0' * 64}")
    assert len(requests) == 1  # only the download with the wrong digest reached the server


def _package(path, checkpoint=None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\n")
        if checkpoint is not None:
            archive.write(checkpoint, PACKAGE_CHECKPOINT)
    return path


def test_package_zip_loads_its_mediar3d_checkpoint(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    package = _package(tmp_path / "model.zip", tiny_checkpoint)
    resolved = resolve_model(str(package))
    assert resolved.cellprob_threshold == -0.25
    assert _same_weights(resolved.net, load_model(tiny_checkpoint)[0])
    with pytest.raises(ModelError, match=f"without a mediar3d checkpoint.*{PACKAGE_CHECKPOINT}"):
        load_model(_package(tmp_path / "other.zip"))


def test_package_served_by_url(tiny_checkpoint, server, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    package = _package(tmp_path / "served" / "model.zip", tiny_checkpoint)
    net, _ = load_model(f"{base}/model.zip#sha256={sha256_of(package)}")
    assert _same_weights(net, load_model(tiny_checkpoint)[0])


def test_missing_file_names_the_choices(tmp_path):
    with pytest.raises(ModelError, match="does not exist.*bundled model.*nuclei.*cells"):
        resolve_model(str(tmp_path / "nope.pt"))


def _tiny_volume(path):
    import numpy as np

    from mediar3d.io import write_image

    write_image(path, np.random.default_rng(0).integers(0, 200, size=(6, 32, 32)).astype(np.uint8))
    return path


def test_sha256_option_pins_a_url_or_checks_a_file(tiny_checkpoint, server, tmp_path, monkeypatch, capsys):
    """--sha256 beside a URL (or a local file) on segment; refusals are one line and write nothing."""
    from mediar3d.cli.main import main

    base, requests = server
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache"))
    volume = _tiny_volume(tmp_path / "vol.tif")
    run = ["segment", str(volume), "--diameter", "10", "--niter", "5", "--no-progress", "-q"]
    digest = sha256_of(tiny_checkpoint)
    assert main([*run, "-o", str(tmp_path / "a"), "--model", f"{base}/tiny.pt", "--sha256", digest.upper()]) == 0
    assert (tmp_path / "a" / "vol_labels.tif").is_file() and requests == ["/tiny.pt"]
    assert (tmp_path / "cache" / "tiny.pt").is_file()
    capsys.readouterr()
    for model, sha, message in [(f"{base}/tiny.pt#sha256={digest}", "0" * 64, "differs from the one in the URL"),
                                (str(tiny_checkpoint), "0" * 64, f"sha256 is {digest}, not the expected"),
                                (str(tiny_checkpoint), "abc", "64 hex digits")]:
        assert main([*run, "-o", str(tmp_path / "b"), "--model", model, "--sha256", sha]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "b").exists() and requests == ["/tiny.pt"]
    monkeypatch.setenv("MEDIAR3D_CACHE", str(tmp_path / "cache2"))  # a fresh cache: the wrong digest is downloaded, refused
    assert main([*run, "-o", str(tmp_path / "c"), "--model", f"{base}/tiny.pt", "--sha256", "1" * 64]) == 1
    assert "expected" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert main([*run, "-o", str(tmp_path / "d"), "--model", str(tiny_checkpoint), "--sha256", digest]) == 0


@pytest.mark.parametrize("command", [["tune", "--data", "unused.json"], ["export-bioimageio", "-o", "unused.zip"]])
def test_sha256_option_of_tune_and_export_checks_the_model(command, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from mediar3d.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main([*command, "--model", str(tiny_checkpoint), "--sha256", "0" * 64]) == 1
    assert f"sha256 is {sha256_of(tiny_checkpoint)}, not the expected" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]

"""A base install (torch, no extras): what the default path imports, and clear errors for the rest.

The optional packages are installed in the test environment, so each check runs in a
fresh interpreter and looks at `sys.modules`, or hides the packages (``sys.modules[name]
= None`` makes their import fail as if they were not installed).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import tifffile

#: Packages only the larger networks, training or 3D sliding windows need.
OPTIONAL = ("timm", "segmentation_models_pytorch", "torchvision", "monai", "huggingface_hub")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_loading_the_default_model_imports_torch_only():
    code = f"""
import json, sys
import mediar3d.models
net, config = mediar3d.models.load_model("default")
print(json.dumps([type(net).__name__, [m for m in {OPTIONAL!r} if m in sys.modules]]))
"""
    name, imported = json.loads(_python(code))
    assert name == "SmallUNet"
    assert imported == []


def test_segment_command_imports_no_optional_package(tmp_path):
    volume = np.zeros((6, 40, 40), np.uint16)
    volume[2:5, 10:20, 10:20] = 1000
    tifffile.imwrite(tmp_path / "tiny.tif", volume)
    code = f"""
import json, sys
from mediar3d.cli.main import main
assert main(["segment", {str(tmp_path / "tiny.tif")!r}, "-o", {str(tmp_path / "out.tif")!r}, "--diameter", "10",
             "--preview"]) == 0
import mediar3d.sample  # what --sample adds: the bundled volume (and the preview, drawn above)
mediar3d.sample.sample_path()
print(json.dumps([m for m in {OPTIONAL!r} + ("zarr", "matplotlib") if m in sys.modules]))
"""
    # zarr too: a TIFF run does not import it (start-up time); matplotlib: the plots extra, not the preview's
    assert json.loads(_python(code)) == []
    assert (tmp_path / "out.tif").is_file() and (tmp_path / "out_preview.png").is_file()


def test_missing_extras_give_one_line_errors_naming_the_extra():
    code = f"""
import json, sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None  # as if not installed
from mediar3d.errors import Mediar3DError
from mediar3d.models import create_model, list_models
messages = []
try:
    create_model("mediar")
except Mediar3DError as error:
    messages.append(str(error))
try:
    import mediar3d.training
except Mediar3DError as error:
    messages.append(str(error))
print(json.dumps([list_models(), create_model("unet-small").__class__.__name__, messages]))
"""
    names, default, messages = json.loads(_python(code))
    assert "mediar" in names and "unet-small" in names  # listing needs no import of the networks
    assert default == "SmallUNet"
    assert len(messages) == 2
    assert "model 'mediar'" in messages[0] and "pip install 'mediar3d[models]'" in messages[0]
    assert "monai" in messages[1] and "pip install 'mediar3d[train]'" in messages[1]
    assert all("\n" not in m for m in messages)


def test_block_decision_and_memory_need_no_psutil(monkeypatch):
    from mediar3d.distributed import should_use_blocks
    from mediar3d.distributed.cluster import parse_memory
    from mediar3d.distributed.grid import total_memory

    monkeypatch.setitem(sys.modules, "psutil", None)
    memory = total_memory()  # from os.sysconf on Linux and macOS
    assert memory is not None and memory > 2 ** 28
    assert should_use_blocks((8, 64, 64)) is False
    assert should_use_blocks((8, 64, 64), memory_limit=1000) is True
    assert parse_memory(None, workers=2) == memory // 2


def test_every_extra_of_the_package_is_named_in_the_error_helper():
    """`optional.EXTRAS` lists exactly the extras pyproject.toml declares (dev, the test set-up, aside)."""
    import tomllib
    from pathlib import Path

    from mediar3d.optional import EXTRAS

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = set(tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]) - {"dev"}
    assert set(EXTRAS) == declared


def test_hdf5_without_h5py_is_a_one_line_error_naming_the_extra(tmp_path):
    (tmp_path / "vol.h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # the file exists: the missing package is the problem
    code = f"""
import sys
sys.modules["h5py"] = None  # as if not installed
from mediar3d.errors import Mediar3DError
from mediar3d.io import read_image
try:
    read_image({str(tmp_path / "vol.h5")!r} + ":/raw")
except Mediar3DError as error:
    print(str(error))
"""
    message = _python(code)
    assert "h5py" in message and "pip install 'mediar3d[hdf5]'" in message and "HDF5" in message

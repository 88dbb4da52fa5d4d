"""The package's top-level API."""

import subprocess
import sys

import pytest

import mediar3d


def test_segment_is_exported_lazily():
    from mediar3d.inference import segment

    assert mediar3d.segment is segment


def test_import_does_not_load_torch():
    code = "import sys, mediar3d; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no_such_thing"):
        mediar3d.no_such_thing

"""Fixtures shared by every test folder; shared helpers live in ``tests/helpers.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `from helpers import ...` from any test folder

from helpers import OracleNet2D, OracleNet3D, hide_matplotlib  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread: torch's and numba's thread pools fight otherwise."""
    import numba
    import torch

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)


@pytest.fixture
def oracle2d() -> OracleNet2D:
    """A perfect 2D network for images of separated bright blobs (see helpers.OracleNet2D)."""
    return OracleNet2D()


@pytest.fixture
def oracle3d() -> OracleNet3D:
    """A perfect volumetric network for volumes of separated bright blobs (see helpers.OracleNet3D)."""
    return OracleNet3D()



@pytest.fixture
def no_matplotlib(monkeypatch):
    """matplotlib as if not installed (the base install); see helpers.hide_matplotlib."""
    hide_matplotlib(monkeypatch)

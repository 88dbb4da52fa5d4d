"""Fixtures of the training tests; plain helpers live in training_helpers.py (a unique module name,
so spawned worker processes cannot pick up another folder's conftest)."""

import pytest
from training_helpers import blobs2d  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every training test on one thread (tests/conftest.py)."""
    yield

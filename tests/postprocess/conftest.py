"""Fixtures of the post-processing tests."""

from __future__ import annotations

import pytest
from pp_synth import touching_nuclei


@pytest.fixture(scope="session")
def nuclei():
    """(40, 64, 64) volume of ~14 touching nuclei."""
    return touching_nuclei()

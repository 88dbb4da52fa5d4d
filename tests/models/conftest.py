"""Fixtures of the model tests: every registered 2D network, in a small configuration."""

from __future__ import annotations

import pytest

from .small import MODELS_2D, SMALL_CONFIGS


@pytest.fixture(params=MODELS_2D)
def model_name(request) -> str:
    """Every registered 2D network (fails if one lacks a small test configuration)."""
    if request.param not in SMALL_CONFIGS:
        pytest.fail(f"registered 2D model {request.param!r} has no small test configuration in SMALL_CONFIGS")
    return request.param

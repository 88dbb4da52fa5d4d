"""Fixtures of the training tests; plain helpers live in training_helpers.py (a unique module name,
so spawned worker processes cannot pick up another folder's conftest)."""

from training_helpers import _one_thread, blobs2d  # noqa: F401  (fixtures)

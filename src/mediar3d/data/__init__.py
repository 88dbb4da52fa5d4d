"""Data: synthetic nuclei volumes (and, elsewhere in this package, dataset mapping and slicing)."""

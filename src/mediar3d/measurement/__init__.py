"""Per-object measurements of instance labels: one table row per object.

``mediar3d.measure(labels, image=None, voxel_size=...)`` is the entry point (labels and image
arrays in, a table of columns out); `write_table_csv` writes such a table.
"""

from mediar3d.measurement.objects import measure, write_table_csv

__all__ = ["measure", "write_table_csv"]

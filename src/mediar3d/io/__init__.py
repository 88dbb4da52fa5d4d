"""Reading and writing of images and label volumes: TIFF, OME-TIFF, Zarr, OME-Zarr.

Arrays are (z, y, x) or (y, x), channels first; voxel sizes are micrometres in the same
order. Writes are atomic; bad input raises :class:`mediar3d.errors.InputError`.
"""

from mediar3d.io.atomic import atomic_output, output_set
from mediar3d.io.image import Image, image_format, read_image, read_labels, write_image, write_labels
from mediar3d.io.lazy import LazyImage, SpatialView, open_image_lazy
from mediar3d.io.validate import check_same_shape, label_dtype, validate_image, validate_labels
from mediar3d.io.zarr_io import create_zarr, open_zarr_lazy, zarr_axes_and_voxel_size

__all__ = [
    "Image", "read_image", "read_labels", "write_image", "write_labels", "image_format",
    "validate_image", "validate_labels", "check_same_shape", "label_dtype",
    "open_zarr_lazy", "zarr_axes_and_voxel_size", "create_zarr", "atomic_output", "output_set",
    "open_image_lazy", "LazyImage", "SpatialView",
]

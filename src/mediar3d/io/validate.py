"""Checks on image and label arrays that raise one-line :class:`InputError` messages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mediar3d.errors import InputError, describe

__all__ = ["validate_image", "validate_labels", "check_same_shape", "label_dtype"]


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def validate_image(array: np.ndarray, source: object = None, *,
                   ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Check that an image array can be segmented.

    Args:
        array: image, spatial axes (z, y, x) or (y, x) (optionally channels first when
            ``ndims`` allows the extra axis).
        source: file name or other label used in error messages (None: ``<array>``).
        ndims: accepted numbers of dimensions.

    Returns:
        The same array, unchanged.

    Raises:
        InputError: empty, wrong ndim, non-numeric dtype, NaN or infinite values.
    """
    name = describe(source)
    array = np.asarray(array)
    if array.dtype == object or np.issubdtype(array.dtype, np.complexfloating) or array.dtype.kind in "SUV":
        raise InputError(f"{name}: image has unsupported data type {array.dtype}; expected integers or floats")
    if array.size == 0:
        raise InputError(f"{name}: image is empty (shape {_shape_text(array.shape)})")
    if array.ndim not in tuple(ndims):
        allowed = " or ".join(f"{n}D" for n in ndims)
        raise InputError(f"{name}: image has {array.ndim} dimensions (shape {_shape_text(array.shape)}); "
                         f"expected {allowed}")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            nan = np.isnan(array)
            if nan.all():
                raise InputError(f"{name}: image is all NaN")
            if nan.any():
                raise InputError(f"{name}: image contains {int(nan.sum())} NaN values; fill or mask them first")
            raise InputError(f"{name}: image contains {int((~finite).sum())} infinite values")
    return array


def label_dtype(max_label: int) -> np.dtype:
    """Smallest unsigned dtype used to store labels up to ``max_label`` (at least uint16; never int16)."""
    if max_label <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if max_label <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def validate_labels(array: np.ndarray, source: object = None, *,
                    ndims: Sequence[int] = (2, 3)) -> np.ndarray:
    """Check an instance label array and return it with an integer dtype.

    Integer arrays are returned unchanged; boolean arrays become uint8; float arrays whose
    values are all whole numbers become uint16/uint32.

    Args:
        array: labels, axes (z, y, x) or (y, x); 0 is background.
        source: file name or other label used in error messages (None: ``<array>``).
        ndims: accepted numbers of dimensions.

    Returns:
        Integer label array of the same shape.

    Raises:
        InputError: empty, wrong ndim, non-integer values, NaN, negative labels.
    """
    name = describe(source)
    array = np.asarray(array)
    if array.size == 0:
        raise InputError(f"{name}: label image is empty (shape {_shape_text(array.shape)})")
    if array.ndim not in tuple(ndims):
        allowed = " or ".join(f"{n}D" for n in ndims)
        raise InputError(f"{name}: label image has {array.ndim} dimensions (shape {_shape_text(array.shape)}); "
                         f"expected {allowed}")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"{name}: label image contains NaN or infinite values; labels must be integers")
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{name}: label image has non-integer values (dtype {array.dtype}); "
                             f"labels must be whole numbers, not probabilities")
        if array.min() < 0:
            raise InputError(f"{name}: label image has negative labels (min {array.min():g}); labels must be >= 0")
        return array.astype(label_dtype(int(array.max())))
    if array.dtype.kind not in "iu":
        raise InputError(f"{name}: label image has unsupported data type {array.dtype}; expected integers")
    if array.dtype.kind == "i":
        low = array.min()
        if low < 0:
            raise InputError(f"{name}: label image has negative labels (min {int(low)}); labels must be >= 0 "
                             f"(was it saved as int16 and wrapped above 32767?)")
    return array


def check_same_shape(image: np.ndarray | Sequence[int], labels: np.ndarray | Sequence[int], *,
                     image_source: object = None, labels_source: object = None) -> None:
    """Check that an image and its labels cover the same voxels.

    Args:
        image: image array (spatial axes (z, y, x) or (y, x), optionally channels first) or its shape.
        labels: label array or its shape, axes (z, y, x) or (y, x).
        image_source: name of the image in messages.
        labels_source: name of the labels in messages.

    Raises:
        InputError: the spatial shapes differ.
    """
    image_shape = tuple(int(s) for s in (image.shape if hasattr(image, "shape") else image))
    label_shape = tuple(int(s) for s in (labels.shape if hasattr(labels, "shape") else labels))
    spatial = image_shape[-len(label_shape):] if len(image_shape) > len(label_shape) else image_shape
    if len(image_shape) - len(label_shape) not in (0, 1) or spatial != label_shape:
        raise InputError(f"{describe(labels_source)}: label shape {_shape_text(label_shape)} does not match "
                         f"image {describe(image_source)} shape {_shape_text(image_shape)}")

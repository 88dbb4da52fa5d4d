"""Input channels: which channels of an image a network sees, as the thesis' data pipeline does.

Table 4.4 of the thesis makes every input channel first (``EnsureChannelFirstd``) and
collapses repeated channels (``RemoveRepeatedChanneld``: a grey image or mask stored as
RGB). Its networks take 3-channel images: an RGB image (H&E) is kept as it is, a grey one
is repeated three times. The same rules serve training (:mod:`mediar3d.training.dataset`)
and ``segment`` (:mod:`mediar3d.inference.predict`), so a model sees its channels in the
same order in both:

1. ``channels`` given (a dataset's ``channels`` in the mapping, ``segment --channels``):
   those channels, in that order (e.g. ``[0, 1]`` = nuclei, membrane).
2. Otherwise channels that all hold the same values are collapsed to one.
3. The result must have 1 channel (repeated by the caller to the network's input
   channels) or exactly the network's number; 3 distinct channels (RGB) for a network
   with one input channel become their mean (grey), as Cellpose does with an RGB image
   and no channels chosen. Anything else is a one-line error that says what to choose.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from mediar3d.errors import InputError

logger = logging.getLogger(__name__)

#: Channels of an RGB image.
RGB = 3


def parse_channels(value: str | Sequence[int] | None, what: str = "channels") -> tuple[int, ...] | None:
    """Channel indices from ``"0,1"`` or a sequence of whole numbers; None stays None.

    Raises:
        InputError: not whole numbers >= 0, empty, or an index given twice (``what`` names the option).
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        out = tuple(int(str(v).strip()) if isinstance(v, str) else _whole(v) for v in items)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r}: give channel indices such as 0,1") from None
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise InputError(f"{what} {value!r}: give distinct channel indices >= 0, such as 0,1")
    return out


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or int(value) != value:
        raise ValueError(value)
    return int(value)


def remove_repeated_channels(image: np.ndarray) -> np.ndarray:
    """(C, ...) -> (1, ...) when every channel equals the first (a grey image stored as RGB), else unchanged."""
    if image.shape[0] > 1 and all(np.array_equal(image[0], image[c]) for c in range(1, image.shape[0])):
        return image[:1]
    return image


def prepare_channels(image: np.ndarray, *, has_channels: bool, channels: Sequence[int] | None = None,
                     in_channels: int | None = None, source: str = "image") -> np.ndarray:
    """The image channel first with the channels a network takes (module docstring).

    Args:
        image: (C, *spatial) when ``has_channels``, else (*spatial).
        has_channels: Whether the first axis is a channel axis.
        channels: Channel indices to keep, in order; None applies rules 2 and 3.
        in_channels: The network's input channels; None checks nothing.
        source: Names the image in errors (a file name).

    Returns:
        (C', *spatial) with C' = 1 or ``in_channels`` (or ``len(channels)`` when
        ``in_channels`` is None).

    Raises:
        InputError: a channel index out of range, or a channel count the network cannot take.
    """
    data = np.asarray(image)
    if not has_channels:
        data = data[None]
    count = data.shape[0]
    if channels is not None:
        bad = [c for c in channels if not 0 <= int(c) < count]
        if bad:
            raise InputError(f"{source}: has {count} channel{'s' if count != 1 else ''}; channel(s) "
                             f"{', '.join(map(str, bad))} do not exist (channels count from 0)")
        data = data[[int(c) for c in channels]]
    else:
        data = remove_repeated_channels(data)
    got = data.shape[0]
    if in_channels is None or got in (1, in_channels):
        return data
    if channels is None and got == RGB and in_channels == 1:
        logger.info("%s: RGB image for a network with one input channel: using the mean of the colours", source)
        return data.astype(np.float32).mean(axis=0, keepdims=True)
    choose = "channel" if in_channels == 1 else f"{in_channels} channels"
    raise InputError(f"{source}: {got} channels but the model takes {in_channels}; choose the {choose} "
                     f"with channels/--channels (e.g. {','.join(map(str, range(in_channels)))})")


def repeat_channels(image: np.ndarray, in_channels: int) -> np.ndarray:
    """(1, ...) -> (in_channels, ...) by repetition (a grey image for a network with several inputs)."""
    if image.shape[0] == in_channels:
        return image
    if image.shape[0] != 1:
        raise InputError(f"cannot repeat {image.shape[0]} channels to {in_channels}")
    return np.repeat(image, in_channels, axis=0)

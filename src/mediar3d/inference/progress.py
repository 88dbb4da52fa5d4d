"""Progress as a callback ``(done, total)``, reported by the code that knows the work.

The slice loop of :func:`mediar3d.inference.orthoslice.predict_orthoslices` reports
slices, :func:`mediar3d.inference.volume3d.predict_volume` windows, the block-wise run
blocks. Consumers pass a callable: :func:`progress_bar` draws a tqdm bar (the CLI), the
napari widget moves its progress bar.

Phases are announced through a second callback, ``status(message)``, called as a phase
starts (the diameter estimate, the network, post-processing): the CLI prints it as a
timed status line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

#: Called with (units done, units in all) as work finishes.
ProgressFn = Callable[[int, int], None]
#: Called with a short description as a phase of the run starts.
StatusFn = Callable[[str], None]


def announce(status: StatusFn | None, message: str) -> None:
    """Pass ``message`` to ``status`` when there is one."""
    if status is not None:
        status(message)


@contextlib.contextmanager
def progress_bar(desc: str, unit: str) -> Iterator[ProgressFn]:
    """A tqdm bar driven by ``(done, total)`` reports; closed when the block ends."""
    from tqdm.auto import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit=unit, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def as_callback(progress: bool | ProgressFn | None, desc: str, unit: str) -> Iterator[ProgressFn | None]:
    """The callback for a ``progress`` argument: a given callable, a tqdm bar for True, None for False / None."""
    if callable(progress):
        yield progress
    elif progress:
        with progress_bar(desc, unit) as update:
            yield update
    else:
        yield None

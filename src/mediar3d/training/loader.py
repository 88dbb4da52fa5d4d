"""The training DataLoader: worker start method and per-worker thread limits.

Every loader worker computes ground-truth flows with numba kernels (some of them
``parallel=True``) and runs MONAI / torch transforms. Left alone, each worker would start
numba's and torch's default thread pools (one thread per core), so ``num_workers``
workers plus the training process ask for many times more threads than there are cores.
:func:`init_worker` gives each worker one numba and one torch thread: the workers are the
parallelism. It touches no random state: augmentations are seeded per draw by the
sampler (:class:`mediar3d.training.sampling.EpochSampler`), and torch's own per-worker
seeding is left as it is.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

#: Threads each loader worker may use for numba kernels and torch operations.
WORKER_THREADS = 1
#: Most worker processes :func:`resolve_workers` chooses by itself.
MAX_AUTO_WORKERS = 8


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(num_workers: int | None, cores: int | None = None) -> int:
    """Loader worker processes: ``num_workers`` as given, or chosen from the cores when None.

    On 2 cores the training step itself uses both (torch's thread pool), and worker
    processes only add start-up time (10-20 s, each imports torch and MONAI) and, when
    anything else runs, oversubscribed cores: measured on 2 cores, 40 steps of 8 x 128^2
    took 13 s with the data loaded in the training process and 36 s with 2 workers on a
    quiet machine, 27 s against 101 s beside another job. So the choice is 0 up to 2
    cores, else half the cores (at most :data:`MAX_AUTO_WORKERS`).

    Args:
        num_workers: Workers asked for (>= 0), or None for the automatic choice.
        cores: Usable cores (default :func:`usable_cores`).

    Returns:
        The number of worker processes.
    """
    if num_workers is not None:
        return int(num_workers)
    cores = usable_cores() if cores is None else int(cores)
    return 0 if cores <= 2 else min(MAX_AUTO_WORKERS, cores // 2)


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training loaders: one numba and one torch thread per worker."""
    import numba
    import torch

    numba.set_num_threads(min(WORKER_THREADS, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(WORKER_THREADS)


def worker_context(num_workers: int, context: str | None = None) -> str | None:
    """Start method of the workers: ``forkserver`` (``spawn`` where unavailable), never ``fork``.

    A forked child whose parent already runs an OpenMP pool (torch) hangs as soon as
    numba's parallel flow kernel uses OpenMP in it. None without workers.
    """
    if num_workers <= 0:
        return None
    if context is not None:
        return context
    import multiprocessing

    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def make_loader(dataset: Dataset, *, batch_size: int, sampler: Sampler | None = None, num_workers: int = 0,
                pin_memory: bool = False, context: str | None = None, **kwargs: Any) -> DataLoader:
    """A DataLoader whose workers persist across epochs and use one thread each (:func:`init_worker`).

    Args:
        dataset: Map-style dataset (items: dicts of tensors).
        batch_size: Samples per batch.
        sampler: Sampler of keys, e.g. :class:`~mediar3d.training.sampling.EpochSampler`.
        num_workers: Worker processes (0: load in the calling process).
        pin_memory: Pin batches (for CUDA).
        context: Worker start method; default :func:`worker_context`.
        **kwargs: Further DataLoader arguments.

    Returns:
        The DataLoader.
    """
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0, multiprocessing_context=worker_context(num_workers, context),
                      worker_init_fn=init_worker if num_workers > 0 else None, pin_memory=pin_memory, **kwargs)


def shutdown_workers(loader: DataLoader | None) -> None:
    """Stop a loader's worker processes now (persistent workers otherwise live until garbage collection).

    Called when training ends, also on an exception such as Ctrl-C or SIGTERM, so that no
    worker outlives the run; the loader starts new workers if it is iterated again.
    """
    iterator = getattr(loader, "_iterator", None)
    if iterator is None:
        return
    shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own clean shutdown (join, then terminate)
    if shutdown is not None:
        shutdown()
    loader._iterator = None  # type: ignore[union-attr]

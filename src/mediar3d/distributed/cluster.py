"""Where block tasks run: a local Dask cluster, an existing scheduler, or in-process.

Dask and distributed are imported only when a cluster is needed (the ``[dask]`` extra).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Sequence

from tqdm.auto import tqdm

from mediar3d.distributed.grid import total_memory
from mediar3d.errors import ConfigError
from mediar3d.optional import missing_extra

log = logging.getLogger(__name__)

#: ``scheduler`` values that run every task in this process, one after another.
SYNCHRONOUS = ("synchronous", "sync")


def parse_memory(value: int | str | None, *, workers: int) -> int:
    """Bytes per worker from an int, a Dask size string ("4GB") or None/"auto" (RAM / workers)."""
    if value is None or value == "auto":
        total = total_memory()
        if total is None:
            raise ConfigError("this machine's memory size is unknown; give a memory limit such as '4GB'")
        return int(total // max(workers, 1))
    if isinstance(value, str):
        try:
            from dask.utils import parse_bytes
        except ModuleNotFoundError as error:
            raise missing_extra(error, "dask", f"memory_limit={value!r}") from None

        try:
            return int(parse_bytes(value))
        except ValueError:
            raise ConfigError(f"memory_limit={value!r}: not a size like '4GB' or '512MiB'") from None
    if int(value) <= 0:
        raise ConfigError(f"memory_limit={value!r}: must be positive")
    return int(value)


class Executor:
    """Runs block tasks and reports progress.

    Args:
        scheduler: None for a new local cluster; "synchronous" to run in this process
            (debugging, tests); "threads" for an in-process cluster of threads; or the
            address of a running Dask scheduler ("tcp://host:8786").
        client: an existing ``distributed.Client`` to use instead (not closed here).
        workers: workers of a new local cluster.
        threads_per_worker: threads of each local worker (blocks processed at once).
        memory_limit: bytes (or a Dask size string) per local worker.
        processes: local workers as processes (True) or threads of this process.
        progress: show a tqdm bar per stage.
    """

    def __init__(
        self,
        *,
        scheduler: str | None = None,
        client: Any = None,
        workers: int = 2,
        threads_per_worker: int = 1,
        memory_limit: int | str | None = None,
        processes: bool = True,
        progress: bool = True,
    ) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise ConfigError(f"workers={workers}, threads_per_worker={threads_per_worker}: both must be >= 1")
        self.scheduler = scheduler
        self.client = client
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.memory_limit = memory_limit
        self.processes = processes
        self.progress = progress
        self._owned: list[Any] = []

    @property
    def distributed(self) -> bool:
        """Whether tasks go to a Dask cluster (else they run in this process)."""
        return self.client is not None

    def __enter__(self) -> "Executor":
        if self.client is not None or self.scheduler in SYNCHRONOUS:
            return self
        try:
            from distributed import Client, LocalCluster
        except ModuleNotFoundError as error:
            raise missing_extra(error, "dask", "block-wise segmentation on a Dask cluster") from None

        if self.scheduler in (None, "local", "threads"):
            threads = self.scheduler == "threads"
            cluster = LocalCluster(
                n_workers=1 if threads else self.workers,
                threads_per_worker=self.workers * self.threads_per_worker if threads else self.threads_per_worker,
                memory_limit=0 if threads else parse_memory(self.memory_limit, workers=self.workers),
                processes=not threads and self.processes,
                dashboard_address=":0",
            )
            self._owned.append(cluster)
            self.client = Client(cluster)
        else:
            try:
                self.client = Client(self.scheduler, timeout="30s")
            except (OSError, ValueError, TimeoutError) as err:
                raise ConfigError(f"scheduler={self.scheduler!r}: cannot connect ({err})") from err
        self._owned.insert(0, self.client)
        link = getattr(self.client, "dashboard_link", None)
        log.info("Dask dashboard: %s", link)
        return self

    def __exit__(self, *exc: object) -> None:
        for thing in self._owned:
            thing.close()
        if self._owned:
            self.client = None
        self._owned = []

    def memory_per_thread(self) -> int:
        """Bytes one block may use: the tightest worker memory limit divided by its threads."""
        if self.client is not None:
            workers = self.client.scheduler_info().get("workers", {}).values()
            shares = [int(w["memory_limit"]) // max(int(w.get("nthreads") or 1), 1)
                      for w in workers if w.get("memory_limit")]
            if shares:
                return min(shares)
        return parse_memory(self.memory_limit, workers=self.workers) // self.threads_per_worker

    def scatter(self, value: Any) -> Any:
        """Send an in-memory array to the workers once (returned unchanged in-process)."""
        if self.client is None:
            return value
        return self.client.scatter(value, broadcast=True)

    def map(self, fn: Callable[..., Any], jobs: Sequence[tuple], *, desc: str) -> Iterator[tuple[int, Any]]:
        """Run ``fn(*job)`` for every job; yield (job number, result) as they finish.

        A failing job cancels the others and re-raises its error.
        """
        bar = tqdm(total=len(jobs), desc=desc, disable=not self.progress, leave=False)
        try:
            if self.client is None:
                for k, job in enumerate(jobs):
                    result = fn(*job)
                    bar.update(1)
                    yield k, result
                return
            from distributed import as_completed

            futures = [self.client.submit(fn, *job, pure=False) for job in jobs]
            number = {f.key: k for k, f in enumerate(futures)}
            try:
                for fut in as_completed(futures):
                    result = fut.result()
                    bar.update(1)
                    yield number[fut.key], result
            finally:
                self.client.cancel([f for f in futures if not f.done()])
        finally:
            bar.close()


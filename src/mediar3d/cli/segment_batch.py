"""`mediar3d segment` over many inputs: expand files / folders / globs, load the model once,
skip what is done, write ``summary.csv``, and fail (exit 1) only after trying every file.

Policy for existing labels: a single input whose labels file exists is refused (one-line
error) unless ``--overwrite``; with several inputs the existing ones are skipped (status
``skipped`` in the summary) unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import glob
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediar3d.cli.segment import (
    _display_name,
    add_parser,
    _model,
    _output_paths,
    _stem,
    _use_blocks,
    blocks_labels_path,
    segment_blocks_file,
    segment_file,
)
from mediar3d.errors import InputError, Mediar3DError

logger = logging.getLogger(__name__)

#: Image files picked up from a folder (Zarr stores are folders recognised by their contents).
FOLDER_SUFFIXES = (".tif", ".tiff", ".h5", ".hdf5")
#: Names of our own outputs, left out when a folder is listed (so out/ can be the input folder).
OUTPUT_MARKS = ("_labels", "_flows", "_prob")
SUMMARY_FIELDS = ("file", "timepoint", "labels", "status", "objects", "diameter", "time_read_s", "time_segment_s",
                  "time_write_s", "time_total_s", "error")


@dataclass
class Job:
    """One input and where its outputs go."""

    source: Path
    labels: Path
    prefix: Path
    blocks: bool = False
    timepoint: int | None = None


class Status:
    """Prints timed status lines to stderr (nothing when quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.start:7.1f} s] {message}", file=sys.stderr, flush=True)


def _is_image(path: Path) -> bool:
    from mediar3d.io.zarr_io import is_zarr

    if path.name.startswith("."):
        return False
    if path.is_file() and path.name.lower().endswith(FOLDER_SUFFIXES):
        return not _stem(path).endswith(OUTPUT_MARKS)
    return path.is_dir() and is_zarr(path) and not _stem(path).endswith(OUTPUT_MARKS)


def expand_inputs(items: list[str]) -> tuple[list[Path], bool]:
    """Files to segment from INPUT arguments, and whether this is a batch (folder, glob or several).

    A folder gives its .tif/.tiff files and Zarr stores (not recursively, our own ``*_labels``,
    ``*_flows``, ``*_prob`` outputs and hidden files left out); a pattern with ``*``, ``?`` or
    ``[`` that names no existing path is expanded with `glob`; anything else is taken as a file.
    """
    from mediar3d.io.zarr_io import is_zarr

    found: list[Path] = []
    batch = len(items) > 1
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir() and not is_zarr(path):
            batch = True
            listed = sorted(p for p in path.iterdir() if _is_image(p))
            if not listed:
                raise InputError(f"{path}: folder holds no images ({', '.join(FOLDER_SUFFIXES)} or Zarr)")
            found += listed
        elif not path.exists() and any(c in item for c in "*?["):
            batch = True
            matched = sorted(Path(m) for m in glob.glob(str(path)))
            if not matched:
                raise InputError(f"{item}: pattern matches no file")
            found += matched
        else:
            found.append(path)
    unique = list(dict.fromkeys(found))
    return unique, batch


def plan_jobs(args: argparse.Namespace, sources: list[Path], batch: bool,
              status: Callable[[str], None] | None = None) -> tuple[list[Job], bool]:
    """Output paths of every input (every time point with --timepoints), and whether this is a batch;
    ``status`` hears why an input goes block-wise on its own.

    Refuses a labels-file -o for several outputs and two inputs that would write the same labels.
    """
    planned: list[tuple[Path, int | None]] = []
    for source in sources:
        timepoints: list[int | None] = [None]
        if getattr(args, "timepoints", False):
            from mediar3d.io import open_image_lazy

            n = open_image_lazy(source).n_timepoints
            if n > 1:
                timepoints, batch = list(range(n)), True
        planned += [(source, t) for t in timepoints]
    if batch:
        out = Path(args.output)
        if out.suffix and not out.is_dir():
            raise InputError(f"-o {out}: several inputs (or time points) need an output folder, not a file name")
        if args.preview not in (None, "auto"):
            raise InputError(f"--preview {args.preview}: with several inputs give --preview without a file name")
    jobs, seen = [], {}
    for source, t in planned:
        stem = _stem(source) if t is None else f"{_stem(source)}_t{t:04d}"
        labels, prefix = _output_paths(args.output, stem)
        blocks = t is None and source.exists() and _use_blocks(args, source, status)
        if blocks:
            labels = blocks_labels_path(args, source, labels)
        if labels in seen:
            raise InputError(f"{source} and {seen[labels]}: both would write {labels}; rename one or run them apart")
        seen[labels] = source
        jobs.append(Job(source, labels, prefix, blocks, t))
    return jobs, batch


def _sources(args: argparse.Namespace) -> tuple[list[Path], bool]:
    if bool(args.sample) == bool(args.inputs):
        raise InputError("give the inputs to segment (files, folders or patterns), or --sample")
    if args.sample:
        from mediar3d.models.sources import bundled_model
        from mediar3d.sample import sample_path

        if args.preview is None:
            args.preview = "auto"
        kind = args.sample
        if kind == "auto":
            cells = bundled_model("cells")
            kind = "cells" if args.model and all(bundled_model(m) is cells for m in args.model) else "nuclei"
        return [sample_path(kind)], False
    return expand_inputs(args.inputs)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `segment` subcommand (parser from `mediar3d.cli.segment`, run by :func:`run_batch`)."""
    add_parser(subparsers).set_defaults(func=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    """Segment every input with one model load; returns 0, or 1 when any input failed."""
    from mediar3d.models.sources import pin_sha256

    status = Status(args.quiet)
    args.model = pin_sha256(args.model, args.sha256)
    sources, batch = _sources(args)
    jobs, batch = plan_jobs(args, sources, batch, status)
    if not batch and jobs[0].labels.exists() and not args.overwrite:
        raise InputError(f"{jobs[0].labels}: exists; pass --overwrite to replace it, or choose another -o")
    summary = Path(args.output) / "summary.csv" if batch else None
    todo = [job for job in jobs if args.overwrite or not job.labels.exists()]
    model = _load_model(args, status) if any(not job.blocks for job in todo) else None
    rows: list[dict[str, Any]] = []
    for number, job in enumerate(jobs, 1):
        row: dict[str, Any] = {"file": str(job.source), "timepoint": job.timepoint, "labels": str(job.labels)}
        rows.append(row)
        if job.labels.exists() and not args.overwrite:
            row["status"] = "skipped"
            status(f"[{number}/{len(jobs)}] {_display_name(job.source)}: skipped, {job.labels} exists (--overwrite redoes it)")
        else:
            _run_job(args, job, model, row, batch, status, f"[{number}/{len(jobs)}]")
        if summary is not None:
            write_summary(summary, rows)
    if summary is not None and not args.quiet:
        print(f"  wrote {summary}")
    failed = [row["file"] for row in rows if row.get("status") == "failed"]
    if failed:
        print(f"mediar3d segment: error: {len(failed)} of {len(jobs)} inputs failed: {', '.join(failed)} "
              f"(see {summary})", file=sys.stderr)
        return 1
    return 0


def _run_job(args: argparse.Namespace, job: Job, model: Any, row: dict[str, Any], batch: bool,
             status: Callable[[str], None], count: str) -> None:
    """Segment one input and fill its summary row; in a batch a failure is recorded, not raised."""
    status(f"{count} {job.source}")
    start = time.perf_counter()
    try:
        if job.blocks:
            done = segment_blocks_file(args, job.source, job.labels, job.prefix, status)
        else:
            done = segment_file(args, job.source, job.labels, job.prefix, model, status, job.timepoint)
    except (Mediar3DError, OSError, ValueError, RuntimeError, MemoryError) as err:
        if not batch:
            raise
        logger.debug("segmenting %s failed", job.source, exc_info=True)
        row.update(status="failed", error=str(err) if isinstance(err, Mediar3DError) else
                   f"{type(err).__name__}: {err}", time_total_s=time.perf_counter() - start)
        print(f"mediar3d segment: error: {job.source}: {row['error']}", file=sys.stderr)
    else:
        row.update({k: v for k, v in done.items() if k in SUMMARY_FIELDS}, status="ok",
                   time_total_s=time.perf_counter() - start)
        _report(job, done, args.quiet)


def _report(job: Job, done: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    n = done["objects"]
    shape = "x".join(map(str, done["shape"])) + ", " if "shape" in done else ""
    detail = f"{done['detail']}, " if "detail" in done else ""
    print(f"found {n} {'cell' if n == 1 else 'cells'} in {_display_name(job.source)} ({shape}{detail}"
          f"{done['time_segment_s']:.1f} s)")
    for path in done["written"]:
        print(f"  wrote {path}")


def _load_model(args: argparse.Namespace, status: Callable[[str], None]) -> Any:
    """Load the --model value(s) once for the run."""
    from mediar3d.inference.loader import resolve_model

    start = time.perf_counter()
    status("loading model " + ("+".join(args.model) if args.model else "default (bundled)"))
    model = resolve_model(_model(args))
    status(f"loaded model {model.name} ({time.perf_counter() - start:.1f} s)")
    return model


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write (atomically) one CSV row per input: file, labels, status, objects, diameter, times, error."""
    from mediar3d.io import atomic_output

    with atomic_output(path) as temp, open(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in row.items()})

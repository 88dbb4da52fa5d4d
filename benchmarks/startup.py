#!/usr/bin/env python
"""Start-up cost of the default path: model load time, time to the first slice, heavy imports.

Each measurement runs in a fresh interpreter (imports are what is measured), `--repeat`
times; the median is printed. Measured:

- ``load``: ``import mediar3d.models; mediar3d.models.load_model(<bundled checkpoint file>)``
  (what ``load_model("default")`` loads; the file path also works with older versions)
  inside the child, timed from before the import to after the load.
- ``first-slice``: ``mediar3d segment --sample -o DIR`` from the child's start to the
  first call of the network (the first batch of slices), wall clock.
- the CPU time (user + system) of each child process, which depends less than the wall
  clock on other jobs sharing the cores (for the load: the whole interpreter, start-up and
  exit included);
- which optional packages (timm, smp, torchvision, monai, huggingface_hub, zarr) the
  ``segment --sample`` run has imported by then;
- the machine's load average (1 min) before and after the runs: the wall clock means
  little when other jobs share the cores.

Usage::

    python benchmarks/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("timm", "segmentation_models_pytorch", "torchvision", "monai", "huggingface_hub", "zarr")

LOAD = """
import time, json, sys
from importlib import resources
t0 = time.perf_counter()
import mediar3d.models
mediar3d.models.load_model(str(resources.files("mediar3d") / "weights" / "unet-small-nuclei.pt"))
print(json.dumps({"seconds": time.perf_counter() - t0, "heavy": [m for m in %r if m in sys.modules]}))
"""

FIRST_SLICE = """
import json, os, sys, time
import torch
HEAVY = %r

def first_call(module, args):
    print(json.dumps({"at": time.time(), "heavy": [m for m in HEAVY if m in sys.modules]}), flush=True)
    os._exit(0)

torch.nn.modules.module.register_module_forward_pre_hook(first_call)
from mediar3d.cli.main import main
sys.exit(main(["segment", "--sample", "-o", %r]))
"""


def _run(code: str) -> tuple[dict, float, float]:
    """Run `code` in a fresh interpreter: (its JSON line, wall-clock start, CPU seconds it used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = [text for text in done.stdout.splitlines() if text.startswith("{")][-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(line), start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh interpreters per measurement")
    args = parser.parse_args()
    loads, load_cpu, firsts, first_cpu, heavy = [], [], [], [], set()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):
            result, _, cpu = _run(LOAD % (HEAVY,))
            loads.append(result["seconds"])
            load_cpu.append(cpu)
            heavy.update(result["heavy"])
            result, start, cpu = _run(FIRST_SLICE % (HEAVY, folder + "/out"))
            firsts.append(result["at"] - start)
            first_cpu.append(cpu)
            heavy.update(result["heavy"])
    for label, wall, cpu in (("default model load (import + load_model)", loads, load_cpu),
                             ("segment --sample, process start to first slice", firsts, first_cpu)):
        print(f"{label}: wall median {statistics.median(wall):.2f} s (min {min(wall):.2f}, max {max(wall):.2f}); "
              f"CPU of the whole process median {statistics.median(cpu):.2f} s, n={len(wall)}")
    print(f"of {', '.join(HEAVY)}, imported by either: {', '.join(sorted(heavy)) or 'none'}")
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

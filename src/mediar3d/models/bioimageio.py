"""Export a 2D mediar3d network as a BioImage Model Zoo (bioimage.io) package.

The package (a zip, format 0.5 of the bioimage.io model description) holds:

- ``rdf.yaml``: the description, validated with ``bioimageio.spec`` before it is written;
- the weights twice: TorchScript (``weights_torchscript.pt``, runs without mediar3d) and a
  PyTorch state dict whose architecture is the mediar3d factory (``import_from``);
- ``test_input.npy`` (1, C, H, W) raw intensities and ``test_output.npy`` (1, 3, H, W),
  what the network gives after the package's preprocessing (per-image percentile scaling
  to [0, 1], then clipping): the zoo's runner checks the weights against them;
- ``mediar3d_model.pt``: the mediar3d checkpoint (architecture, weights, normalisation,
  tuned thresholds, training diameter), so that ``mediar3d segment --model package.zip``
  segments exactly as with the checkpoint;
- ``README.md`` (how the flows become instance masks: the mediar3d post-processing, also
  under ``config.mediar3d`` in ``rdf.yaml``) and a cover image.

Writing the package needs the ``bioimageio`` extra (``bioimageio.spec``); reading one back
(`mediar3d.models.sources`) needs nothing beyond the base install.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mediar3d import __version__
from mediar3d.errors import ModelError
from mediar3d.models.base import FLOW_SCALE
from mediar3d.models.checkpoint import ModelConfig, load_model
from mediar3d.models.registry import get_model_entry
from mediar3d.models.sources import PACKAGE_CHECKPOINT, resolve_source
from mediar3d.optional import missing_extra

logger = logging.getLogger(__name__)

#: bioimage.io model description format written.
FORMAT_VERSION = "0.5.4"
#: Epsilon of bioimage.io's `scale_range` preprocessing: (x - low) / (high - low + eps).
SCALE_RANGE_EPS = 1e-6
CITATIONS = [
    {"text": "Stringer et al. (2021), Cellpose: a generalist algorithm for cellular segmentation "
             "(flow representation and post-processing)", "doi": "10.1038/s41592-020-01018-x"},
    {"text": "Lee et al. (2022), MEDIAR: Harmony of data-centric and model-centric for multi-modality "
             "microscopy", "doi": "10.48550/arXiv.2212.03465"},
]


def _test_image(in_channels: int, stride: int) -> np.ndarray:
    """Raw test input (1, C, H, W) float32: the middle slice of the bundled sample, centre-cropped."""
    from mediar3d.io import read_image
    from mediar3d.sample import sample_path

    volume = np.asarray(read_image(sample_path()).data, dtype=np.float32)
    image = volume[volume.shape[0] // 2]
    side = max(stride * 2, (min(128, *image.shape) // stride) * stride)
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    if top < 0 or left < 0:
        image = np.pad(image, ((max(0, -top),) * 2, (max(0, -left),) * 2), mode="reflect")
        top, left = max(top, 0), max(left, 0)
    crop = image[top:top + side, left:left + side]
    return np.repeat(crop[None, None], in_channels, axis=1).astype(np.float32)


def scale_range(image: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """bioimage.io's ``scale_range`` (per sample and channel over y, x) then ``clip`` to [0, 1].

    Args:
        image: (B, C, H, W) raw intensities.
        percentiles: (low, high) percentiles mapped to 0 and 1.
    """
    low = np.percentile(image, percentiles[0], axis=(2, 3), keepdims=True)
    high = np.percentile(image, percentiles[1], axis=(2, 3), keepdims=True)
    return np.clip((image - low) / (high - low + SCALE_RANGE_EPS), 0.0, 1.0).astype(np.float32)


def _trace(net: torch.nn.Module, example: torch.Tensor, expected: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript by tracing; checked against the eager network on the example and a larger input."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic: checked below instead
        traced = torch.jit.trace(net, example, check_trace=False)
        stride = int(getattr(net, "stride", 32))
        larger = torch.nn.functional.pad(example, (0, stride, 0, stride), mode="reflect")
        for x, want in ((example, expected), (larger, net(larger))):
            if not torch.allclose(traced(x), want, atol=1e-4, rtol=1e-4):
                raise ModelError(f"{type(net).__name__}: the TorchScript trace differs from the network "
                                 f"on a {tuple(x.shape)} input")
    return traced


def _readme(name: str, config: ModelConfig) -> str:
    thresholds = ", ".join(f"`{k}` = {v}" for k, v in sorted(config.thresholds.items()))
    diameter = f"{config.train_diameter:.1f} pixels" if config.train_diameter else "not recorded"
    low, high = config.percentiles
    return f"""# {name}

A mediar3d `{config.arch}` network for instance segmentation of nuclei / cells.

## Input and output

- Input `raw`: a 2D image (batch, channel, y, x); preprocessing scales the {low:g} and {high:g}
  intensity percentiles of each image to 0 and 1 and clips to [0, 1]. mediar3d itself
  takes the percentiles over a whole volume and feeds its z, y and x slices.
- Output `flows_cellprob`: three channels on the input grid: the flows `dy`, `dx` (vectors
  pointing to each object's centre, multiplied by {FLOW_SCALE:g}) and the cell-probability
  logit.

## From the output to instance masks (mediar3d post-processing)

The network's output is not a label image. mediar3d turns it into instance masks
(Cellpose-style, Algorithm 4 of the Mediar3D thesis):

1. divide the flows by {FLOW_SCALE:g}; for a volume, predict the slices along z, y and x and
   average the three views into one 3D flow field and probability;
2. pixels with cell-probability logit above `cellprob_threshold` are foreground;
3. every foreground pixel follows the flow field (Euler integration, 200 steps); pixels that
   end in the same sink form one object;
4. objects whose flows disagree with the flows recomputed from their mask by more than
   `flow_threshold` (mean squared error) are removed, then objects smaller than `min_size`.

Thresholds stored with this model: {thresholds or "the mediar3d defaults"}. Median object
diameter in its training data: {diameter} (mediar3d rescales inputs to it).

The whole pipeline runs with mediar3d, which reads this package directly:

    mediar3d segment volume.tif -o labels.tif --model this-package.zip

The mediar3d checkpoint `{PACKAGE_CHECKPOINT}` inside holds the same weights and settings.
"""


def _cover(path: Path, image: np.ndarray, output: np.ndarray) -> None:
    """A 600 x 300 (2:1) PNG cover: the test input (1, C, H, W) beside the predicted cell probability.

    ``output`` is the network's (1, 3, H, W) output; each panel is scaled from its minimum
    to its maximum (grey).
    """
    from scipy.special import expit
    from skimage.exposure import rescale_intensity

    from mediar3d.figure import panel_figure

    probability = expit(output[0, 2])
    panels = [(title, rescale_intensity(plane.astype(np.float32), out_range=(0.0, 1.0)), 1.0)
              for plane, title in ((image[0, 0], "input"), (probability, "cell probability"))]
    panel_figure(panels, (600, 300)).save(path, format="PNG")


def _description(name: str, config: ModelConfig, net: torch.nn.Module, shape: tuple[int, ...],
                 authors: list[str]) -> dict[str, Any]:
    entry = get_model_entry(config.arch)
    stride = int(getattr(net, "stride", 32))
    low, high = config.percentiles
    space = {"min": max(stride * 2, 64), "step": stride}
    channels = [f"channel{c}" for c in range(shape[1])] if shape[1] > 1 else ["raw"]
    torch_version = torch.__version__.split("+")[0]
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": name,
        "description": f"mediar3d {config.arch}: flows and cell probability for 3D nuclei / cell instance "
                       "segmentation (orthogonal slices, Cellpose-style post-processing)",
        "authors": [{"name": author} for author in authors],
        "cite": CITATIONS,
        "license": "BSD-3-Clause",
        "documentation": "README.md",
        "covers": ["cover.png"],
        "tags": ["mediar3d", "cellpose", "flows", "instance-segmentation", "nuclei", "fluorescence-light-microscopy",
                 "3d", "pytorch"],
        "version": __version__,
        "inputs": [{
            "id": "raw",
            "description": "image; mediar3d feeds the z, y and x slices of a volume",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": channels},
                     {"type": "space", "id": "y", "size": space}, {"type": "space", "id": "x", "size": space}],
            "test_tensor": {"source": "test_input.npy"},
            "data": {"type": "float32"},
            "preprocessing": [
                {"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": low, "max_percentile": high,
                                                 "eps": SCALE_RANGE_EPS}},
                {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
            ],
        }],
        "outputs": [{
            "id": "flows_cellprob",
            "description": f"flows dy, dx (x{FLOW_SCALE:g}) and cell-probability logit; see README.md for the "
                           "post-processing into instance masks",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["flow_y", "flow_x", "cellprob_logit"]},
                     {"type": "space", "id": "y", "size": {"tensor_id": "raw", "axis_id": "y"}},
                     {"type": "space", "id": "x", "size": {"tensor_id": "raw", "axis_id": "x"}}],
            "test_tensor": {"source": "test_output.npy"},
            "data": {"type": "float32"},
        }],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights_state_dict.pt",
                "architecture": {"callable": entry.factory.__name__, "import_from": entry.factory.__module__,
                                 "kwargs": config.kwargs},
                "pytorch_version": torch_version,
            },
            "torchscript": {"source": "weights_torchscript.pt", "pytorch_version": torch_version,
                            "parent": "pytorch_state_dict"},
        },
        "attachments": [{"source": PACKAGE_CHECKPOINT}],
        "config": {"mediar3d": {
            "version": __version__, "checkpoint": PACKAGE_CHECKPOINT, "arch": config.arch,
            "flow_scale": FLOW_SCALE, "normalization": config.normalization, "thresholds": config.thresholds,
            "train_diameter": config.train_diameter,
            "postprocessing": "flows / flow_scale -> follow flows from pixels with cellprob logit > "
                              "cellprob_threshold (200 Euler steps) -> group by sink -> drop masks whose flow "
                              "error > flow_threshold, then masks < min_size; 3D: z, y, x slices averaged first",
            "run": "mediar3d segment VOLUME --model PACKAGE.zip",
        }},
    }


def export_bioimageio(model: str | os.PathLike | None, output: str | os.PathLike, *, name: str | None = None,
                      authors: list[str] | None = None) -> Path:
    """Write `model` as a bioimage.io package (zip), validated by ``bioimageio.spec``.

    Args:
        model: Anything `load_model` takes: a bundled name, a checkpoint, a package, a URL.
        output: The ``.zip`` to write (atomically: a temporary name, then renamed).
        name: Model name in the package; default "mediar3d ARCH STEM" (STEM: the checkpoint's file stem).
        authors: Author names; default ``["mediar3d contributors"]``.

    Returns:
        The path written.

    Raises:
        ModelError: A volumetric network, a bad checkpoint, or a description the validator rejects.
        ConfigError: ``bioimageio.spec`` is not installed (the ``bioimageio`` extra).
    """
    try:
        from bioimageio.spec import InvalidDescr, ValidationContext, build_description, save_bioimageio_package
    except ModuleNotFoundError as error:
        raise missing_extra(error, "bioimageio", "export-bioimageio") from None
    source = resolve_source(model)
    net, config = load_model(source)
    if get_model_entry(config.arch).spatial_dims != 2:
        raise ModelError(f"{source}: {config.arch} is a volumetric network; export-bioimageio writes 2D networks")
    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ModelError(f"{output}: a bioimage.io package is a .zip file; give a name ending in .zip")
    if name is None:
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(str(model)).stem) if model and Path(str(model)).suffix else ""
        name = f"mediar3d {config.arch}" + (f" {stem}" if stem else "")
    stride = int(getattr(net, "stride", 32))
    raw = _test_image(int(getattr(net, "in_channels", 1)), stride)
    example = torch.from_numpy(scale_range(raw, config.percentiles))
    with torch.no_grad():
        expected = net(example).float()
    with tempfile.TemporaryDirectory(prefix="mediar3d-bioimageio-") as folder:
        root = Path(folder)
        torch.save(net.state_dict(), root / "weights_state_dict.pt")
        _trace(net, example, expected).save(str(root / "weights_torchscript.pt"))
        np.save(root / "test_input.npy", raw)
        np.save(root / "test_output.npy", expected.numpy())
        shutil.copyfile(source, root / PACKAGE_CHECKPOINT)
        (root / "README.md").write_text(_readme(name, config), encoding="utf-8")
        _cover(root / "cover.png", raw, expected.numpy())
        rdf = _description(name, config, net, raw.shape, authors or ["mediar3d contributors"])
        description = build_description(rdf, context=ValidationContext(root=root, perform_io_checks=True))
        if isinstance(description, InvalidDescr):
            errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}"
                               for e in description.validation_summary.errors)
            raise ModelError(f"{output}: bioimage.io validation failed: {errors}")
        output.parent.mkdir(parents=True, exist_ok=True)
        temp = output.with_name(f".{output.name}.partial")
        try:
            save_bioimageio_package(description, output_path=temp)
            os.replace(temp, output)
        finally:
            temp.unlink(missing_ok=True)
    logger.info("wrote bioimage.io package %s", output)
    return output

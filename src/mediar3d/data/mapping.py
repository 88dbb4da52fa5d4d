"""Dataset mapping: many image/label datasets described in one JSON file.

A mapping file looks like this (paths are relative to the JSON file's folder)::

    {
      "format": "mediar3d-dataset-mapping", "version": 1,
      "seed": 0, "val_fraction": 0.1, "probability_mode": "dataset",
      "datasets": [
        {"name": "dsb2018", "images": "dsb/images/*.tif", "labels": "dsb/masks/*.tif",
         "probability": 0.6},
        {"name": "embryo", "probability": 0.4, "orientations": ["z", "y", "x"],
         "anisotropy": 2.0,
         "supervision": {"mode": "dilate", "kernel": 3, "iterations": 4, "decay": "gaussian"},
         "pairs": [{"image": "embryo/t01.tif", "label": "embryo/man_seg01.tif",
                    "split": "train", "weight": 1.0}]}
      ]
    }

A dataset lists its pairs either explicitly (``pairs``) or by two globs (``images`` and
``labels``, paired by file name, see :func:`pair_files`). Pairs without a ``split`` are
split into train/val with the mapping's seed, per dataset and per file, so the slices of
one volume never land on both sides. ``probability`` is each dataset's share of the
training draws (``probability_mode: "dataset"``) or, as in the thesis' table 4.1, a
per-sample weight (``"sample"``); ``weight`` is a per-pair factor (``mediar3d cluster``
writes it for modality balancing). A pair may also state its objects' ``diameter`` and its
``intensity_range`` (both written by ``mediar3d slice-volumes`` for the slices of a volume,
see :class:`Pair`).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mediar3d.data.slicing import ORIENTATIONS, check_orientations
from mediar3d.errors import ConfigError, InputError, Mediar3DError
from mediar3d.io.naming import pair_files  # noqa: F401  (the pairing rule lives in io.naming)

log = logging.getLogger(__name__)

FORMAT = "mediar3d-dataset-mapping"
VERSION = 1
SUPERVISION_MODES = ("full", "roi", "dilate")
DECAYS = ("none", "linear", "gaussian")
PROBABILITY_MODES = ("dataset", "sample")
SPLITS = ("train", "val")


@dataclass
class Supervision:
    """How much of a training slice supervises the network (partial annotations, thesis 3.4.2).

    Attributes:
        mode: ``"full"`` (every pixel counts; unlabelled = background), ``"roi"`` (crop to
            the bounding box of the labelled cells plus ``buffer``; only it counts) or
            ``"dilate"`` (the labelled region dilated ``iterations`` times by a square of side
            ``kernel``; its weight decays with distance from the labels).
        buffer: ROI margin in pixels around the labelled cells (``roi``).
        kernel: Side of the square structuring element, odd, >= 3 (``dilate``).
        iterations: Number of dilations (``dilate``); reach = iterations * (kernel // 2) px.
        decay: ``"none"``, ``"linear"`` or ``"gaussian"`` weight decay with distance (``dilate``).
        sigma: Gaussian decay width in pixels; default reach / 2.
    """

    mode: str = "full"
    buffer: int = 32
    kernel: int = 3
    iterations: int = 5
    decay: str = "linear"
    sigma: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in SUPERVISION_MODES:
            raise ConfigError(f"supervision mode {self.mode!r} is unknown; use one of {', '.join(SUPERVISION_MODES)}")
        if self.decay not in DECAYS:
            raise ConfigError(f"supervision decay {self.decay!r} is unknown; use one of {', '.join(DECAYS)}")
        if int(self.buffer) < 0 or int(self.iterations) < 0:
            raise ConfigError(f"supervision buffer ({self.buffer}) and iterations ({self.iterations}) must be >= 0")
        if int(self.kernel) < 3 or int(self.kernel) % 2 == 0:
            raise ConfigError(f"supervision kernel must be an odd size >= 3, got {self.kernel}")
        if self.sigma is not None and float(self.sigma) <= 0:
            raise ConfigError(f"supervision sigma must be > 0, got {self.sigma}")

    @property
    def reach(self) -> int:
        """How far (pixels) the dilated mask reaches beyond the labels."""
        return int(self.iterations) * (int(self.kernel) // 2)


@dataclass
class Pair:
    """One image file and its label file.

    ``diameter`` (optional) is the objects' diameter in y/x pixels when it cannot be measured
    on the file itself, e.g. for 2D slices cut from a volume: the volume's 3D diameter
    (:func:`mediar3d.inference.diameter.median_diameter`), which fine-tuning then zooms to
    the model's training diameter instead of the slice's own 2D statistic.

    ``intensity_range`` (optional, ``(low, high)``) maps ``low`` -> 0 and ``high`` -> 1 instead of
    the file's own percentile normalisation, e.g. for 2D slices cut from a volume: the volume's
    percentiles, so that a slice is normalised as inference normalises the whole volume (a slice
    through a dim region stays dim instead of being stretched to its own maximum).
    """

    image: Path
    label: Path
    split: str | None = None
    weight: float = 1.0
    diameter: float | None = None
    intensity_range: tuple[float, float] | None = None


@dataclass
class DatasetEntry:
    """One dataset of a mapping.

    Attributes:
        name: Unique name.
        pairs: Its image/label pairs.
        probability: Sampling probability (see the module docstring); None = proportional to size.
        supervision: Supervision mask settings for partial annotations.
        orientations: Slice orientations for 3D volumes (2D images are used as they are).
        channel: Channel to read from multi-channel images (None: single channel).
        channels: Channels to read, in order, for a network with several input channels
            (e.g. ``[0, 1]`` = nuclei, membrane; ``[0, 1, 2]`` = RGB); None: see
            :mod:`mediar3d.data.channels` (repeated channels collapse, RGB is kept for a
            3-channel network). Exclusive with ``channel``.
        anisotropy: z spacing / xy spacing of the volumes; None = from the file's voxel size, else 1.
        skip_empty_slices: Leave out slices without labels; default: yes unless mode is full.
    """

    name: str
    pairs: list[Pair]
    probability: float | None = None
    supervision: Supervision = field(default_factory=Supervision)
    orientations: tuple[str, ...] = ORIENTATIONS
    channel: int | None = None
    anisotropy: float | None = None
    skip_empty_slices: bool | None = None
    channels: tuple[int, ...] | None = None

    @property
    def skip_empty(self) -> bool:
        """Whether unlabelled slices are left out."""
        if self.skip_empty_slices is None:
            return self.supervision.mode != "full"
        return bool(self.skip_empty_slices)


@dataclass
class DatasetMapping:
    """A set of datasets, as read from or written to a mapping JSON."""

    datasets: list[DatasetEntry]
    seed: int = 0
    val_fraction: float = 0.1
    probability_mode: str = "dataset"
    path: Path | None = None

    def pairs(self, split: str | None = None) -> list[tuple[DatasetEntry, Pair]]:
        """All (dataset, pair) items, optionally only one split (``"train"`` or ``"val"``)."""
        return [(d, p) for d in self.datasets for p in d.pairs if split is None or p.split == split]


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int, name: str) -> None:
    """Give every pair without a split a seeded train/val split, in place.

    The draw depends only on ``seed``, the dataset ``name`` and the sorted file list, so
    the same files always split the same way. At least one pair stays in train.
    """
    todo = [p for p in pairs if p.split is None]
    if not todo:
        return
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    todo.sort(key=lambda p: str(p.image))
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
    order = rng.permutation(len(todo))
    n_val = int(round(val_fraction * len(todo)))
    if val_fraction > 0 and n_val == 0 and len(todo) > 1:
        n_val = 1
    n_val = min(n_val, len(todo) - 1)
    for rank, i in enumerate(order):
        todo[i].split = "val" if rank < n_val else "train"


def _expand(pattern: str | Sequence[str], base: Path, source: str) -> list[Path]:
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    found: list[Path] = []
    for pat in patterns:
        full = pat if Path(pat).is_absolute() else str(base / pat)
        matches = sorted(glob.glob(full, recursive=True))
        if not matches and not glob.has_magic(pat):
            raise InputError(f"{source}: file {full} does not exist")
        found.extend(Path(m) for m in matches)
    if not found:
        raise InputError(f"{source}: no files match {patterns} (relative to {base})")
    return found


def _check_keys(obj: dict[str, Any], allowed: Sequence[str], source: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


_TOP_KEYS = ("format", "version", "seed", "val_fraction", "probability_mode", "datasets")
_DATASET_KEYS = ("name", "images", "labels", "pairs", "pair_by", "probability", "supervision", "orientations",
                 "channel", "anisotropy", "skip_empty_slices", "channels")
_PAIR_KEYS = ("image", "label", "split", "weight", "diameter", "intensity_range")


def parse_supervision(obj: Any, source: str) -> Supervision:
    """Supervision settings from a mode name or an object of its fields (``source`` names it in errors)."""
    if obj is None:
        return Supervision()
    if isinstance(obj, str):
        obj = {"mode": obj}
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: supervision must be a mode name or an object, got {obj!r}")
    _check_keys(obj, ("mode", "buffer", "kernel", "iterations", "decay", "sigma"), f"{source}: supervision")
    return Supervision(**obj)


def _number(value: Any, what: str) -> float:
    """``value`` as a finite float, or a ConfigError naming ``what`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{what} must be a number, got {value!r:.40}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {value!r:.40}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be a finite number, got {value!r:.40}")
    return number


def _resolve(path: str, base: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def _intensity_range(value: Any, src: str) -> tuple[float, float] | None:
    """A pair's ``intensity_range``: two finite numbers, low < high (None when not given)."""
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
            or not all(np.isfinite(float(v)) for v in value) or not float(value[0]) < float(value[1])):
        raise ConfigError(f"{src}: pair intensity_range must be [low, high] with finite low < high, got {value!r:.80}")
    return float(value[0]), float(value[1])


def parse_dataset(obj: dict[str, Any], base: Path, *, check_files: bool = True) -> DatasetEntry:
    """Build a :class:`DatasetEntry` from its JSON object; relative paths resolve against ``base``."""
    if not isinstance(obj, dict) or "name" not in obj:
        raise ConfigError(f"every dataset needs a 'name'; got {obj!r:.80}")
    name = str(obj["name"])
    src = f"dataset {name!r}"
    _check_keys(obj, _DATASET_KEYS, src)
    pairs: list[Pair] = []
    if "pairs" in obj:
        for item in obj["pairs"]:
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise ConfigError(f"{src}: every pair needs 'image' and 'label', got {item!r:.80}")
            _check_keys(item, _PAIR_KEYS, f"{src}: pair")
            split = item.get("split")
            if split is not None and split not in SPLITS:
                raise ConfigError(f"{src}: split {split!r} is unknown; use 'train' or 'val'")
            weight = _number(item.get("weight", 1.0), f"{src}: pair weight")
            if not weight >= 0:
                raise ConfigError(f"{src}: pair weight must be >= 0, got {weight}")
            diameter = item.get("diameter")
            if diameter is not None and (isinstance(diameter, bool) or not isinstance(diameter, (int, float))
                                         or not 0 < float(diameter) < 1e5):
                raise ConfigError(f"{src}: pair diameter must be a positive number of pixels, got {diameter!r}")
            pairs.append(Pair(_resolve(item["image"], base), _resolve(item["label"], base), split, weight,
                              None if diameter is None else float(diameter),
                              _intensity_range(item.get("intensity_range"), src)))
    if "images" in obj or "labels" in obj:
        if "images" not in obj or "labels" not in obj:
            raise ConfigError(f"{src}: give both 'images' and 'labels' (globs or lists)")
        found = pair_files(_expand(obj["images"], base, src), _expand(obj["labels"], base, src),
                           pair_by=obj.get("pair_by", "auto"), source=src)
        pairs.extend(Pair(i, lab) for i, lab in found)
    if not pairs:
        raise ConfigError(f"{src}: no image/label pairs; give 'pairs' or 'images' + 'labels'")
    if check_files:
        for pair in pairs:
            for p in (pair.image, pair.label):
                if not p.exists():
                    raise InputError(f"{src}: file {p} does not exist")
    probability = obj.get("probability")
    if probability is not None and not _number(probability, f"{src}: probability") >= 0:
        raise ConfigError(f"{src}: probability must be >= 0, got {probability}")
    anisotropy = obj.get("anisotropy")
    if anisotropy is not None and not _number(anisotropy, f"{src}: anisotropy") > 0:
        raise ConfigError(f"{src}: anisotropy must be > 0, got {anisotropy}")
    channel = obj.get("channel")
    channels = _channels(obj.get("channels"), src)
    if channel is not None and channels is not None:
        raise ConfigError(f"{src}: give 'channel' (one) or 'channels' (several), not both")
    return DatasetEntry(
        name=name, pairs=pairs,
        probability=None if probability is None else float(probability),
        supervision=parse_supervision(obj.get("supervision"), src),
        orientations=check_orientations(obj.get("orientations", ORIENTATIONS), f"{src}: orientations"),
        channel=None if channel is None else int(_number(channel, f"{src}: channel")),
        anisotropy=None if anisotropy is None else float(anisotropy),
        skip_empty_slices=obj.get("skip_empty_slices"),
        channels=channels,
    )


def _channels(value: Any, source: str) -> tuple[int, ...] | None:
    """A dataset's ``channels``: a list of distinct channel indices, or None."""
    from mediar3d.data.channels import parse_channels

    if value is not None and not isinstance(value, list):
        raise ConfigError(f"{source}: channels must be a list of channel indices such as [0, 1], got {value!r:.40}")
    try:
        return parse_channels(value, f"{source}: channels")
    except InputError as err:
        raise ConfigError(str(err)) from None


def mapping_from_dict(obj: dict[str, Any], base: str | Path = ".", *, check_files: bool = True,
                      source: str = "<mapping>") -> DatasetMapping:
    """Validate a mapping object and resolve its globs and splits.

    Args:
        obj: The parsed JSON object (see the module docstring).
        base: Folder that relative paths are relative to.
        check_files: Fail early when a listed file is missing.
        source: Name of the mapping (file) for messages.

    Returns:
        The mapping; every pair has a split.

    Raises:
        ConfigError: Unknown keys, bad values or duplicate dataset names.
        InputError: Missing files or files that cannot be paired.
    """
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: a dataset mapping must be a JSON object")
    _check_keys(obj, _TOP_KEYS, source)
    if obj.get("format", FORMAT) != FORMAT or _number(obj.get("version", VERSION), f"{source}: version") > VERSION:
        raise ConfigError(f"{source}: not a {FORMAT} version <= {VERSION} file")
    mode = obj.get("probability_mode", "dataset")
    if mode not in PROBABILITY_MODES:
        raise ConfigError(f"{source}: probability_mode {mode!r} is unknown; use 'dataset' or 'sample'")
    datasets_obj = obj.get("datasets")
    if not isinstance(datasets_obj, list) or not datasets_obj:
        raise ConfigError(f"{source}: 'datasets' must be a non-empty list")
    base = Path(base)
    try:
        datasets = [parse_dataset(d, base, check_files=check_files) for d in datasets_obj]
    except Mediar3DError:
        raise
    except (TypeError, ValueError, AttributeError) as err:  # a value of the wrong type the checks above missed
        raise ConfigError(f"{source}: invalid dataset entry ({err})") from None
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: dataset names must be unique, got {names}")
    given = [d.probability is not None for d in datasets]
    if any(given) and not all(given):
        raise ConfigError(f"{source}: give a probability for every dataset or for none")
    mapping = DatasetMapping(datasets, seed=int(_number(obj.get("seed", 0), f"{source}: seed")),
                             val_fraction=_number(obj.get("val_fraction", 0.1), f"{source}: val_fraction"),
                             probability_mode=mode)
    for d in datasets:
        split_pairs(d.pairs, mapping.val_fraction, mapping.seed, d.name)
    return mapping


def load_mapping(path: str | Path, *, check_files: bool = True) -> DatasetMapping:
    """Read a dataset mapping JSON file (paths inside are relative to its folder)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"dataset mapping {path} does not exist")
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None
    mapping = mapping_from_dict(obj, path.parent, check_files=check_files, source=str(path))
    mapping.path = path
    return mapping


def _relative(p: Path, base: Path) -> str:
    try:
        return Path(p).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        try:
            return Path(os.path.relpath(Path(p).resolve(), base.resolve())).as_posix()
        except ValueError:  # other drive on Windows
            return str(Path(p).resolve())


def mapping_to_dict(mapping: DatasetMapping, base: str | Path = ".") -> dict[str, Any]:
    """JSON object of a mapping with explicit pairs, paths relative to ``base``."""
    base = Path(base)
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "seed": mapping.seed,
                           "val_fraction": mapping.val_fraction, "probability_mode": mapping.probability_mode,
                           "datasets": []}
    for d in mapping.datasets:
        sup = d.supervision
        entry: dict[str, Any] = {"name": d.name}
        if d.probability is not None:
            entry["probability"] = d.probability
        entry["supervision"] = {"mode": sup.mode, "buffer": sup.buffer, "kernel": sup.kernel,
                                "iterations": sup.iterations, "decay": sup.decay, "sigma": sup.sigma}
        entry["orientations"] = list(d.orientations)
        for key in ("channel", "anisotropy", "skip_empty_slices"):
            if getattr(d, key) is not None:
                entry[key] = getattr(d, key)
        if d.channels is not None:
            entry["channels"] = list(d.channels)
        entry["pairs"] = [{"image": _relative(p.image, base), "label": _relative(p.label, base),
                           "split": p.split, "weight": p.weight,
                           **({"diameter": p.diameter} if p.diameter is not None else {}),
                           **({"intensity_range": list(p.intensity_range)} if p.intensity_range is not None else {})}
                          for p in d.pairs]
        out["datasets"].append(entry)
    return out


def save_mapping(mapping: DatasetMapping, path: str | Path) -> Path:
    """Write a mapping as JSON (explicit pairs, paths relative to the file), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(mapping_to_dict(mapping, path.parent), indent=2) + "\n")
    tmp.replace(path)
    mapping.path = path
    return path

"""File names and voxel sizes: the one home of the image suffixes, the image/label pairing
rule and the anisotropy of a voxel size.

- :data:`IMAGE_SUFFIXES` lists every suffix mediar3d reads or writes, longest first, so
  :func:`split_suffix` takes ``.ome.tiff`` off ``seg.ome.tiff`` whole.
- :func:`pair_files` pairs images with label files whatever their naming (same stem;
  same words once role words such as ``img``, ``masks``, ``labels``, ``pred``, ``gt`` are
  dropped; the same numbers). Dataset mappings pair images with labels by it and
  ``mediar3d evaluate`` pairs ground truth with predictions by it (:func:`name_key`).
- :func:`anisotropy_from_voxel_size`: z step over the mean of the y and x steps.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from mediar3d.errors import ConfigError, InputError

log = logging.getLogger(__name__)

#: Image and label file suffixes (lower case), longest first.
IMAGE_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".zarr")
#: Words that tell images, labels and predictions apart in file names; dropped before pairing.
ROLE_WORDS = frozenset({
    "image", "images", "img", "imgs", "im", "raw", "input", "label", "labels", "lbl", "mask", "masks", "gt", "seg",
    "segmentation", "instance", "instances", "man", "cp", "target", "pred", "prediction",
})


def image_suffix(name: str | os.PathLike) -> str | None:
    """The image suffix of a file name as written (``.ome.tiff`` of ``a.OME.tiff``), None if it has none."""
    text = Path(name).name
    lower = text.lower()
    return next((text[len(text) - len(s):] for s in IMAGE_SUFFIXES if lower.endswith(s)), None)


def split_suffix(name: str | os.PathLike) -> tuple[str, str]:
    """(stem, suffix) of a file name: ``seg.ome.tiff`` -> (``seg``, ``.ome.tiff``); other names split as Path does."""
    text = Path(name).name
    suffix = image_suffix(text)
    if suffix is None:
        return Path(text).stem, Path(text).suffix
    return text[: len(text) - len(suffix)], suffix


def anisotropy_from_voxel_size(voxel_size: Sequence[float] | None) -> float | None:
    """z step over the mean y/x step of a (z, y, x) voxel size; None when unknown, zero or not finite."""
    if voxel_size is None or len(voxel_size) != 3:
        return None
    z, y, x = (float(v) for v in voxel_size)
    if not all(math.isfinite(v) and v > 0 for v in (z, y, x)):
        return None
    return z / ((y + x) / 2.0)


def stem_key(path: Path) -> str:
    """The file name without its image suffix."""
    return split_suffix(path)[0]


def name_key(path: Path) -> str:
    """The name's words without role words (case kept): ``cell_01_masks.tif`` -> ``cell_01``, ``seg007`` -> ``007``;
    the stem when every word is a role word."""
    kept = []
    for word in re.split(r"[_\-.\s]+", stem_key(path)):
        match = re.fullmatch(r"([A-Za-z]+)(\d+)", word)
        if match and match.group(1).lower() in ROLE_WORDS:
            word = match.group(2)
        if word and word.lower() not in ROLE_WORDS:
            kept.append(word)
    return "_".join(kept) or stem_key(path)


def word_key(path: Path) -> str:
    """:func:`name_key` in lower case (the key names are compared by)."""
    return name_key(path).lower()


def digit_key(path: Path) -> str:
    """The numbers in the name: ``t007.tif`` and ``man_seg007.tif`` -> ``7``."""
    return "_".join(str(int(d)) for d in re.findall(r"\d+", stem_key(path)))


#: Pairing rules in the order ``auto`` tries them.
PAIR_RULES: dict[str, Callable[[Path], str]] = {"stem": stem_key, "words": word_key, "digits": digit_key}


def pair_files(images: Sequence[str | Path], labels: Sequence[str | Path], *, pair_by: str = "auto",
               source: str = "dataset") -> list[tuple[Path, Path]]:
    """Pair image files with label files whatever their naming.

    ``auto`` tries, in turn, identical stems, stems without role words (image, img, raw,
    mask, label, seg, gt, man, pred, ...; so ``cell_01_img.tif`` pairs with ``cell_01_masks.tif``)
    and the numbers in the name (so ``t007.tif`` pairs with ``man_seg007.tif``); it takes
    the first rule under which every label finds exactly one image. Images without labels
    are left out (a warning names them). ``order`` pairs the sorted lists one to one.

    Args:
        images: Image file paths.
        labels: Label file paths.
        pair_by: ``"auto"``, ``"stem"``, ``"words"``, ``"digits"`` or ``"order"``.
        source: Dataset name for messages.

    Returns:
        (image, label) path pairs, sorted by image path.

    Raises:
        InputError: If no rule pairs every label file with one image.
    """
    imgs = sorted(Path(p) for p in images)
    labs = sorted(Path(p) for p in labels)
    if not imgs or not labs:
        raise InputError(f"{source}: found {len(imgs)} image and {len(labs)} label files; both must be non-empty")
    if pair_by == "order":
        if len(imgs) != len(labs):
            raise InputError(f"{source}: pair_by='order' needs as many images ({len(imgs)}) as labels ({len(labs)})")
        return list(zip(imgs, labs))
    if pair_by != "auto" and pair_by not in PAIR_RULES:
        raise ConfigError(f"{source}: pair_by={pair_by!r} is unknown; use auto, stem, words, digits or order")
    failures = []
    for name, key in PAIR_RULES.items():
        if pair_by not in ("auto", name):
            continue
        image_keys: dict[str, Path] = {}
        clash = None
        for p in imgs:
            k = key(p)
            if k in image_keys:
                clash = f"images {image_keys[k].name} and {p.name} share the key {k!r}"
            image_keys[k] = p
        label_keys = [key(p) for p in labs]
        missing = [p.name for p, k in zip(labs, label_keys) if k not in image_keys]
        if clash is None and not missing and len(set(label_keys)) == len(labs):
            pairs = sorted(((image_keys[k], p) for p, k in zip(labs, label_keys)), key=lambda t: str(t[0]))
            paired = {i for i, _ in pairs}
            unused = [p.name for p in imgs if p not in paired]
            if unused:
                log.warning("%s: %d image(s) have no label file and are left out: %s%s", source, len(unused),
                            ", ".join(unused[:5]), ", ..." if len(unused) > 5 else "")
            return pairs
        failures.append(f"{name}: " + (clash or (f"no image for {missing[0]}" if missing else "two labels share a key")))
    raise InputError(f"{source}: cannot pair image and label files by name ({'; '.join(failures)}); "
                     "rename them, list 'pairs' explicitly or use pair_by='order'")

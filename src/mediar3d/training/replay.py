"""Replay for few-shot fine-tuning: keep the start model general by mixing in data like its own.

Fine-tuning a model on a few objects of one volume makes it a model for that volume: on
a volume of another kind it gets worse. Mixing data like the start model's training data
into every epoch (replay) holds it close to what it knew. The bundled model was trained
on volumes of :mod:`mediar3d.data.synthetic` with settings drawn by
:func:`~mediar3d.data.synthetic.sample_nuclei_params`; :func:`write_replay_volumes` draws
a few such volumes (fully labelled) into the run folder, and :func:`with_replay` adds
them to the training mapping as one more dataset that takes ``share`` of the draws, the
user's datasets keeping their relative shares in the rest. The replay volumes train as
the user's do: slices along z, y and x, isotropic, zoomed to the start model's diameter.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mediar3d.data.mapping import DatasetEntry, DatasetMapping, Pair, Supervision
from mediar3d.errors import ConfigError
from mediar3d.training.dataset import SampleIndex
from mediar3d.training.sampling import sample_probabilities

if TYPE_CHECKING:
    from mediar3d.training.config import TrainConfig

#: Name of the replay dataset in the training mapping.
REPLAY_NAME = "replay-synthetic"
#: Number and shape (z, y, x) of the replay volumes.
REPLAY_VOLUMES = 6
REPLAY_SHAPE = (48, 128, 128)


def write_replay_volumes(folder: str | Path, *, volumes: int | None = None, seed: int = 0,
                         shape: tuple[int, int, int] | None = None) -> list[Pair]:
    """Draw synthetic volumes like the bundled model's training data and write them as TIFF pairs.

    Deterministic given ``seed``; files already there (same names) are reused. Each image is
    float32 (z, y, x) with its anisotropy as the z voxel size, each label volume uint16.

    Args:
        folder: Where ``replay_<k>_image.tif`` / ``replay_<k>_labels.tif`` go.
        volumes: How many volumes (default :data:`REPLAY_VOLUMES`).
        seed: Seed of the settings and the volumes.
        shape: Shape (z, y, x) of each volume (default :data:`REPLAY_SHAPE`).

    Returns:
        The pairs, in the train split.
    """
    from mediar3d.data.synthetic import random_nuclei_volume
    from mediar3d.io.atomic import atomic_output
    from mediar3d.io.tiff import write_tiff

    volumes = REPLAY_VOLUMES if volumes is None else int(volumes)
    shape = REPLAY_SHAPE if shape is None else shape
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = []
    for k in range(volumes):
        image_path, label_path = folder / f"replay_{k}_image.tif", folder / f"replay_{k}_labels.tif"
        image, labels, params = random_nuclei_volume(rng, shape)  # drawn even when reused: same volumes for any k
        if not (image_path.is_file() and label_path.is_file()):
            voxel = (float(params["anisotropy"]), 1.0, 1.0)
            with atomic_output(label_path) as tmp:
                write_tiff(tmp, labels.astype(np.uint16), "ZYX", voxel)
            with atomic_output(image_path) as tmp:
                write_tiff(tmp, image.astype(np.float32), "ZYX", voxel)
        pairs.append(Pair(image_path, label_path, split="train"))
    return pairs


def with_replay(mapping: DatasetMapping, index: SampleIndex, pairs: list[Pair], share: float) -> DatasetMapping:
    """``mapping`` plus a fully labelled replay dataset drawn ``share`` of the time.

    The user's datasets keep the shares they had among themselves (measured on ``index``,
    their training samples, in the mapping's own probability mode); the result is in
    ``dataset`` probability mode.

    Args:
        mapping: The user's mapping.
        index: Its training split (:func:`~mediar3d.training.dataset.build_index`).
        pairs: The replay pairs (:func:`write_replay_volumes`).
        share: Fraction of the training draws from the replay data, in [0, 1).

    Raises:
        ConfigError: ``share`` outside [0, 1).
    """
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"replay share must be in [0, 1), got {share}")
    probs = sample_probabilities(index, mapping.probability_mode)
    totals: dict[str, float] = {}
    for ref, p in zip(index.samples, probs):
        name = index.items[ref.item].dataset.name
        totals[name] = totals.get(name, 0.0) + float(p)
    names = {d.name for d in mapping.datasets}
    if REPLAY_NAME in names:
        raise ConfigError(f"a dataset is already named {REPLAY_NAME!r}; rename it to fine-tune with replay")
    datasets = [dataclasses.replace(d, probability=totals.get(d.name, 0.0) * (1.0 - share)) for d in mapping.datasets]
    datasets.append(DatasetEntry(name=REPLAY_NAME, pairs=list(pairs), probability=share,
                                 supervision=Supervision()))
    return DatasetMapping(datasets, seed=mapping.seed, val_fraction=mapping.val_fraction,
                          probability_mode="dataset", path=mapping.path)


def replay_config(config: TrainConfig, mapping: DatasetMapping, share: float) -> TrainConfig:
    """``config`` training on ``mapping`` plus replay (``share`` of the draws); ``config`` itself if ``share`` is 0.

    Writes the replay volumes into ``SAVE_DIR/replay`` and the training mapping as
    ``SAVE_DIR/train_mapping.json`` (the user's own mapping stays as it is, for re-tuning).
    """
    from mediar3d.data.mapping import save_mapping
    from mediar3d.training.dataset import build_index

    if share == 0:
        return config
    save_dir = Path(config.save_dir)
    pairs = write_replay_volumes(save_dir / "replay", seed=config.seed)
    combined = with_replay(mapping, build_index(mapping, "train"), pairs, share)
    path = save_mapping(combined, save_dir / "train_mapping.json")
    return dataclasses.replace(config, data=str(path))

"""Learning curves: checkpoints at counts of annotated objects seen, scored and plotted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mediar3d.errors import ConfigError, InputError
from mediar3d.tuning import ObjectCountCheckpointer, evaluate_checkpoints
from mediar3d.tuning.learning_curve import (
    checkpoint_objects,
    plot_learning_curve,
    write_curve_table,
)

OBJECTS_PER_IMAGE = 5
CENTRES = ((10, 10), (10, 30), (30, 10), (30, 30), (24, 40))


def five_discs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 48 x 48 image with exactly five separated discs and its labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    labels = np.zeros((48, 48), np.int32)
    for k, (cy, cx) in enumerate(CENTRES, start=1):
        cy, cx = cy + rng.integers(-1, 2), cx + rng.integers(-1, 2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = k
    image = np.where(labels > 0, 800.0, 100.0) + rng.normal(0, 20, labels.shape)
    return image.astype(np.float32), labels


@pytest.fixture
def disc_mapping(tmp_path: Path) -> Path:
    from mediar3d.io import write_image, write_labels

    pairs = []
    for i in range(6):
        image, labels = five_discs(i)
        write_image(tmp_path / "img" / f"d{i}.tif", image)
        write_labels(tmp_path / "lab" / f"d{i}.tif", labels)
        pairs.append({"image": f"img/d{i}.tif", "label": f"lab/d{i}.tif", "split": "val" if i == 5 else "train"})
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"datasets": [{"name": "discs", "pairs": pairs}]}))
    return path


def tiny_config(mapping: Path, save_dir: Path, epochs: int):
    from mediar3d.training import TrainConfig

    return TrainConfig(data=str(mapping), save_dir=str(save_dir), model="unet-small",
                       model_kwargs={"channels": [8, 16]}, epochs=epochs, batch_size=4, samples_per_epoch=4,
                       crop_size=32, num_workers=0, val_every=0, tensorboard=False, progress=False, seed=0)


def test_checkpoints_appear_at_the_requested_counts(tmp_path, disc_mapping):
    from mediar3d.training import Trainer

    counter = ObjectCountCheckpointer([10, 30, 50, 100])
    Trainer(tiny_config(disc_mapping, tmp_path / "run", 3), callbacks=[counter]).fit()
    folder = tmp_path / "run" / "learning_curve"
    # 4 draws of 5 objects per epoch: 20, 40, 60 objects after epochs 1, 2, 3
    assert sorted(p.name for p in folder.glob("*.pt")) == ["objects_0000010.pt", "objects_0000030.pt",
                                                            "objects_0000050.pt"]
    for target, seen, epoch in ((10, 20, 1), (30, 40, 2), (50, 60, 3)):
        objects, meta = checkpoint_objects(folder / f"objects_{target:07d}.pt")
        assert objects == seen and meta["epoch"] == epoch and meta["objects_target"] == target
    assert counter.seen == 3 * 4 * OBJECTS_PER_IMAGE


def test_resumed_run_keeps_counting(tmp_path, disc_mapping):
    from mediar3d.training import Trainer

    run = tmp_path / "run"
    Trainer(tiny_config(disc_mapping, run, 2), callbacks=[ObjectCountCheckpointer([30])]).fit()
    (run / "learning_curve" / "objects_0000030.pt").unlink()
    resumed = ObjectCountCheckpointer([30, 50], folder=tmp_path / "curve")
    Trainer(tiny_config(disc_mapping, run, 3), resume=True, callbacks=[resumed]).fit()
    assert list(resumed.saved) == [50]  # 30 was crossed before the resume, not saved again
    assert checkpoint_objects(tmp_path / "curve" / "objects_0000050.pt")[0] == 60


def test_evaluate_checkpoints_sorts_by_objects_and_plots(tmp_path):
    import torch

    from mediar3d.models import create_model, save_checkpoint

    for seen in (400, 20, 60):
        torch.manual_seed(seen)
        save_checkpoint(tmp_path / "ckpt" / f"c{seen}.pt", create_model("unet-small", channels=[8, 16]),
                        metadata={"objects_seen": seen, "epoch": seen // 20})
    data = [(f"d{i}", *five_discs(10 + i)) for i in range(2)]
    rows = evaluate_checkpoints(tmp_path / "ckpt", data, segment_options={"niter": 20, "progress": False})
    assert [r["objects_seen"] for r in rows] == [20, 60, 400]
    assert all(0.0 <= r["score"] <= 1.0 and r["n_gt"] == 2 * OBJECTS_PER_IMAGE for r in rows)
    table = write_curve_table(tmp_path / "out" / "curve.csv", rows)
    assert len(table.read_text().strip().splitlines()) == 4
    png = plot_learning_curve(tmp_path / "out" / "curve.png", rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_learning_curve_input(tmp_path):
    with pytest.raises(ConfigError, match="positive"):
        ObjectCountCheckpointer([0, 10])
    with pytest.raises(InputError, match="does not exist"):
        evaluate_checkpoints(tmp_path / "nothing", [("a", *five_discs(0))])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no .pt"):
        evaluate_checkpoints(tmp_path / "empty", [("a", *five_discs(0))])


def test_plots_without_matplotlib_name_the_plots_extra(tmp_path, no_matplotlib):
    from mediar3d.data.synthetic_preview import save_montage
    from mediar3d.tuning.report import plot_profiles

    rows = [{"objects_seen": 10.0, "score": 0.5}]
    for draw in (lambda: plot_learning_curve(tmp_path / "curve.png", rows),
                 lambda: plot_profiles(tmp_path / "tuning.png", None),
                 lambda: save_montage(tmp_path / "montage.png", np.zeros((4, 8, 8)))):
        with pytest.raises(ConfigError) as error:
            draw()
        message = str(error.value)
        assert "'matplotlib'" in message and "pip install 'mediar3d[plots]'" in message and "\n" not in message
    assert not any(tmp_path.iterdir())

"""Few-shot fine-tuning: bundled start models, files without a mapping, the small-data plan, the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mediar3d.cli.main import main
from mediar3d.data.mapping import Supervision
from mediar3d.training.dataset import build_index
from mediar3d.training.fewshot import (
    MIN_STEPS,
    STEPS_PER_OBJECT,
    FewShotTrainer,
    apply_plan,
    pairs_mapping,
    plan_small_data,
    write_pairs_mapping,
)

TINY_NET = ["--set", 'model_kwargs={"channels": [8, 16]}']


def _volume(folder: Path, keep: int | None = 3, spacing: float = 1.0) -> tuple[Path, Path]:
    """A 16 x 48 x 48 synthetic nuclei volume (ImageJ TIFF, z spacing ``spacing``) and ``keep`` of its nuclei."""
    from mediar3d.data.partial import simulate_partial
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.io.tiff import write_tiff

    image, labels = make_nuclei_volume((16, 48, 48), radius_range=(5.0, 7.0), seed=1, bit_depth=16)
    if keep is not None:
        labels = simulate_partial(labels, count=keep, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    write_tiff(folder / "img.tif", image.astype(np.uint16), "ZYX", (spacing, 1.0, 1.0))
    tifffile.imwrite(folder / "lab.tif", labels.astype(np.uint16), imagej=True)  # no axes: read as a z-stack
    return folder / "img.tif", folder / "lab.tif"


def _blobs_2d(folder: Path, count: int = 2) -> tuple[list[Path], list[Path]]:
    from training_helpers import write_pairs

    pairs = write_pairs(folder, count, (48, 48), n=4)
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_finetune_from_bundled_name_on_files_with_sparse_labels(tmp_path, capsys):
    """`finetune --from default --image --labels --supervision dilate`: no mapping JSON, thresholds re-tuned."""
    from mediar3d.inference.loader import resolve_model
    from mediar3d.models import read_checkpoint

    image, labels = _volume(tmp_path)
    run = tmp_path / "run"
    code = main(["finetune", "--from", "default", "--image", str(image), "--labels", str(labels),
                 "--supervision", "dilate", "--save-dir", str(run), "--epochs", "1", "--samples-per-epoch", "2",
                 "--batch-size", "2", "--crop-size", "64", "--num-workers", "0", "--device", "cpu",
                 "--set", "tensorboard=false"])
    out = capsys.readouterr().out
    assert code == 0
    mapping = json.loads((run / "mapping.json").read_text())
    dataset = mapping["datasets"][0]
    assert dataset["supervision"]["mode"] == "dilate" and dataset["orientations"] == ["z", "y", "x"]
    assert [p["split"] for p in dataset["pairs"]] == ["train"]
    assert json.loads((run / "config.json").read_text())["init_from"] == "default"
    config, _ = read_checkpoint(run / "model_best.pt")
    tuning = config.metadata["tuning"]
    assert tuning["sparse_gt"] is True
    assert Path(tuning["source"]) == run / "model_last.pt" and tuning["score"] >= 0
    ready = resolve_model(str(run / "model_best.pt"))
    assert ready.cellprob_threshold == config.thresholds["cellprob_threshold"]
    assert ready.diameter == resolve_model("default").diameter  # the start model's diameter is kept
    summary = out.strip().splitlines()[-1]
    assert str(run / "model_best.pt") in summary and "segment" in summary


def test_finetune_unknown_start_model_is_one_line_error(tmp_path, capsys):
    image, labels = _volume(tmp_path)
    assert main(["finetune", "--from", "no-such-model", "--image", str(image), "--labels", str(labels),
                 "--save-dir", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and "bundled" in err and "Traceback" not in err


def test_files_need_matching_labels_and_no_mapping(tmp_path, capsys):
    image, labels = _volume(tmp_path)
    assert main(["finetune", "--from", "default", "--image", str(image), "--save-dir", str(tmp_path / "r")]) == 1
    assert "--labels" in capsys.readouterr().err
    assert main(["finetune", "--from", "default", "--image", str(image), "--labels", str(tmp_path / "none.tif"),
                 "--save-dir", str(tmp_path / "r")]) == 1
    assert "none.tif" in capsys.readouterr().err


def test_plan_follows_the_data(tmp_path):
    """Crop from the largest isotropic, zoomed plane; steps from the annotated objects; lr from the batch."""
    image, labels = _volume(tmp_path / "a", keep=3, spacing=4.0)
    mapping = pairs_mapping([image], [labels], supervision=Supervision("dilate"))
    index = build_index(mapping, "train")
    assert index.items[0].anisotropy == pytest.approx(4.0)
    plan = plan_small_data(index, diameter=None, gpu=True)
    assert plan.objects == 3 and plan.steps == max(MIN_STEPS, 3 * STEPS_PER_OBJECT)
    assert plan.plane_side == 64 and plan.crop_size == 64  # 16 z-planes x 4 = 64 > 48 in y, x
    from mediar3d.training.dataset import diameter_scales

    zoom = diameter_scales(index, 60.0)[0]  # the start model's diameter is larger than the data's
    assert zoom > 1.5
    zoomed = plan_small_data(index, diameter=60.0, gpu=True)
    assert zoomed.plane_side == int(np.ceil(64 * zoom))
    assert zoomed.crop_size == min(256, 32 * int(np.ceil(zoomed.plane_side / 32)))
    assert plan_small_data(index, diameter=60.0, gpu=False).crop_size == 128
    many = plan_small_data(build_index(pairs_mapping([image], [_volume(tmp_path / "b", keep=None)[1]],
                                                     supervision=Supervision()), "train"), diameter=None, gpu=False)
    assert many.objects > 3 * plan.objects and many.steps == many.objects * STEPS_PER_OBJECT
    assert many.samples > plan.samples
    assert plan.lr == pytest.approx(5e-5 * plan.batch_size / 8)


def test_flags_win_over_the_plan(tmp_path):
    from mediar3d.training.config import TrainConfig

    image, labels = _volume(tmp_path)
    mapping = pairs_mapping([image], [labels], supervision=Supervision("dilate"))
    plan = plan_small_data(build_index(mapping, "train"), diameter=None, gpu=False)
    config = apply_plan(TrainConfig(data="x", crop_size=96), plan, {"crop_size"})
    assert config.crop_size == 96 and config.batch_size == plan.batch_size and config.epochs == plan.epochs
    assert config.samples_per_epoch == plan.steps_per_epoch * plan.batch_size


def _tiny_config(tmp_path: Path, epochs: int = 4):
    from mediar3d.training.config import TrainConfig

    images, labels = _blobs_2d(tmp_path / "data")
    mapping = write_pairs_mapping(pairs_mapping(images, labels, supervision=Supervision()), tmp_path / "run")
    return TrainConfig(data=str(mapping), save_dir=str(tmp_path / "run"), model_kwargs={"channels": [8, 16]},
                       epochs=epochs, batch_size=2, samples_per_epoch=2, crop_size=32, num_workers=0, device="cpu",
                       tensorboard=False, niter=10)


def test_budget_ends_the_run_cleanly_with_a_checkpoint(tmp_path):
    seen = []
    trainer = FewShotTrainer(_tiny_config(tmp_path), seconds=0.0, progress=False,
                             on_progress=lambda done, total, eta, loss: seen.append((done, total)))
    trainer.fit()
    assert trainer.stopped_by == "budget" and trainer.steps_done == 1
    assert (tmp_path / "run" / "model_last.pt").is_file()
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 2  # header + one epoch
    assert seen == [(1, 4)]


def test_should_stop_cancels_and_lr_follows_the_cosine(tmp_path):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    trainer = FewShotTrainer(_tiny_config(tmp_path), progress=False, should_stop=stop)
    trainer.fit()
    assert trainer.stopped_by == "cancelled" and trainer.steps_done == 3
    # after epoch 3 of 4 the cosine is at (1 + cos(3 pi / 4)) / 2 of the start lr
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5 * 0.5 * (1 + np.cos(3 * np.pi / 4)))
    finished = FewShotTrainer(_tiny_config(tmp_path / "b", epochs=2), progress=False)
    finished.fit()
    assert finished.stopped_by == "plan" and finished.steps_done == 2

"""Few-shot fine-tuning: bundled start models, files without a mapping, the small-data plan, the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from mediar3d.cli.main import main
from mediar3d.data.mapping import Supervision
from mediar3d.errors import ConfigError
from mediar3d.models.sources import resolve_source
from mediar3d.training.dataset import build_index
from mediar3d.training.budget import BudgetTrainer
from mediar3d.training.fewshot import pairs_mapping, write_pairs_mapping
from mediar3d.training.fewshot_plan import KEEP_START, MIN_STEPS, STEPS_PER_OBJECT, apply_plan, plan_small_data

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


def test_finetune_from_bundled_name_on_files_with_sparse_labels(tmp_path, capsys, monkeypatch):
    """`finetune --from default --image --labels --supervision dilate`: no mapping JSON, thresholds re-tuned."""
    from mediar3d.inference.loader import resolve_model
    from mediar3d.models import read_checkpoint

    monkeypatch.setattr("mediar3d.training.replay.REPLAY_VOLUMES", 1)  # the default replay, made tiny
    monkeypatch.setattr("mediar3d.training.replay.REPLAY_SHAPE", (8, 32, 32))
    monkeypatch.setattr("mediar3d.training.fewshot.RETUNE_MIN_OBJECTS", 1)  # 3 objects: re-tune all the same

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
    assert [p["split"] for p in dataset["pairs"]] == ["train"] and len(mapping["datasets"]) == 1
    trained_on = json.loads((run / "train_mapping.json").read_text())["datasets"]
    assert [d["probability"] for d in trained_on] == pytest.approx([0.5, 0.5])  # the default replay share
    assert json.loads((run / "config.json").read_text())["init_from"] == "default"
    config, _ = read_checkpoint(run / "model_best.pt")
    tuning = config.metadata["tuning"]
    assert config.metadata["keep_start"] == KEEP_START  # the start model blended in by default
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
    assert config.keep_start == KEEP_START > 0  # the small-data mode blends in the start model by default
    assert apply_plan(TrainConfig(data="x", keep_start=0.0), plan, {"keep_start"}).keep_start == 0.0


def _tiny_config(tmp_path: Path, epochs: int = 4):
    from mediar3d.training.config import TrainConfig

    images, labels = _blobs_2d(tmp_path / "data")
    mapping = write_pairs_mapping(pairs_mapping(images, labels, supervision=Supervision()), tmp_path / "run")
    return TrainConfig(data=str(mapping), save_dir=str(tmp_path / "run"), model_kwargs={"channels": [8, 16]},
                       epochs=epochs, batch_size=2, samples_per_epoch=2, crop_size=32, num_workers=0, device="cpu",
                       tensorboard=False, niter=10)


def test_budget_ends_the_run_cleanly_with_a_checkpoint(tmp_path):
    seen = []
    trainer = BudgetTrainer(_tiny_config(tmp_path), seconds=0.0, progress=False,
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

    trainer = BudgetTrainer(_tiny_config(tmp_path), progress=False, should_stop=stop)
    trainer.fit()
    assert trainer.stopped_by == "cancelled" and trainer.steps_done == 3
    # after epoch 3 of 4 the cosine is at (1 + cos(3 pi / 4)) / 2 of the start lr
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5 * 0.5 * (1 + np.cos(3 * np.pi / 4)))
    finished = BudgetTrainer(_tiny_config(tmp_path / "b", epochs=2), progress=False)
    finished.fit()
    assert finished.stopped_by == "plan" and finished.steps_done == 2


def test_replay_takes_its_share_of_the_draws_and_the_user_data_keeps_its_own(tmp_path):
    """Two user datasets of different sizes keep their relative shares; replay gets exactly its share."""
    from mediar3d.data.mapping import DatasetMapping
    from mediar3d.training.replay import REPLAY_NAME, with_replay, write_replay_volumes
    from mediar3d.training.sampling import sample_probabilities

    big = pairs_mapping(*_blobs_2d(tmp_path / "big", 3), supervision=Supervision(), name="big")
    small = pairs_mapping(*_blobs_2d(tmp_path / "small", 1), supervision=Supervision(), name="small")
    user = DatasetMapping([*big.datasets, *small.datasets], val_fraction=0.0)
    index = build_index(user, "train")
    replay = write_replay_volumes(tmp_path / "replay", volumes=2, shape=(8, 32, 32), seed=3)
    assert all(p.image.is_file() and p.label.is_file() for p in replay)
    combined = with_replay(user, index, replay, 0.3)
    mixed = build_index(combined, "train")
    probs = sample_probabilities(mixed, combined.probability_mode)
    share = {}
    for ref, p in zip(mixed.samples, probs):
        name = mixed.items[ref.item].dataset.name
        share[name] = share.get(name, 0.0) + p
    assert share[REPLAY_NAME] == pytest.approx(0.3)
    assert share["big"] == pytest.approx(0.7 * 3 / 4) and share["small"] == pytest.approx(0.7 / 4)
    replay_set = combined.datasets[-1]
    assert replay_set.supervision.mode == "full" and mixed.items[-1].anisotropy >= 1.0
    again = write_replay_volumes(tmp_path / "again", volumes=2, shape=(8, 32, 32), seed=3)
    assert tifffile.imread(again[1].image).tobytes() == tifffile.imread(replay[1].image).tobytes()  # seeded
    with pytest.raises(ConfigError, match="replay"):
        with_replay(user, index, replay, 1.0)


def test_finetune_trains_with_replay_and_retunes_on_the_user_data_only(tmp_path, monkeypatch):
    """The run trains on train_mapping.json (user data + replay); re-tuning sees only the user's mapping."""
    import mediar3d.training.fewshot as fewshot
    from mediar3d.training.replay import REPLAY_NAME

    monkeypatch.setattr("mediar3d.training.replay.REPLAY_VOLUMES", 1)
    monkeypatch.setattr("mediar3d.training.replay.REPLAY_SHAPE", (8, 32, 32))
    monkeypatch.setattr(fewshot, "RETUNE_MIN_OBJECTS", 1)
    tuned_on = []
    real_outputs = fewshot._annotated_outputs
    monkeypatch.setattr(fewshot, "_annotated_outputs",
                        lambda mapping, *a, **k: tuned_on.append(mapping) or real_outputs(mapping, *a, **k))
    from mediar3d.data.mapping import load_mapping

    config = _tiny_config(tmp_path, epochs=1)

    mapping = load_mapping(config.data)
    plan = plan_small_data(build_index(mapping, "train"), diameter=None, gpu=False, replay=0.5)
    result = fewshot.finetune_small(config, plan=plan, progress=False)
    run = tmp_path / "run"
    used = json.loads((run / "config.json").read_text())["data"]
    assert Path(used) == run / "train_mapping.json"
    names = [d["name"] for d in json.loads(Path(used).read_text())["datasets"]]
    assert REPLAY_NAME in names and len(names) == 2
    assert [d.name for d in tuned_on[0].datasets] == [mapping.datasets[0].name]
    assert result.tuned == "yes" and (run / "replay" / "replay_0_labels.tif").is_file()


def test_few_annotated_objects_keep_the_start_thresholds_without_a_search(tmp_path, monkeypatch):
    """Under RETUNE_MIN_OBJECTS annotated objects no search runs and model_best has the start thresholds."""
    import mediar3d.training.fewshot as fewshot
    from mediar3d.data.mapping import load_mapping
    from mediar3d.models import read_checkpoint

    searched = []
    monkeypatch.setattr(fewshot, "retune_thresholds", lambda *a, **k: searched.append(1))
    config = _tiny_config(tmp_path, epochs=1)
    config.cellprob_threshold, config.flow_threshold = -0.25, 0.55  # as the plan sets the start model's
    plan = plan_small_data(build_index(load_mapping(config.data), "train"), diameter=None, gpu=False)
    assert plan.objects < fewshot.RETUNE_MIN_OBJECTS
    result = fewshot.finetune_small(config, plan=plan, progress=False)
    best = read_checkpoint(tmp_path / "run" / "model_best.pt")[0].thresholds
    assert not searched and result.tuned == "few" and "start model" in result.summary()
    assert best["cellprob_threshold"] == -0.25 and best["flow_threshold"] == 0.55


def test_replay_steps_keep_the_user_draws(monkeypatch):
    """With half the draws from replay, the plan doubles the steps (the user data is drawn as often)."""
    from types import SimpleNamespace

    monkeypatch.setattr("mediar3d.training.fewshot_plan.count_objects", lambda index: 10)
    index = SimpleNamespace(items=[], samples=[1] * 40)
    plain = plan_small_data(index, diameter=None, gpu=False)
    mixed = plan_small_data(index, diameter=None, gpu=False, replay=0.5)
    assert plain.steps == 10 * STEPS_PER_OBJECT and mixed.steps == 2 * plain.steps and mixed.replay == 0.5


def test_plain_finetune_keeps_the_start_models_thresholds_unless_set(tmp_path):
    """`finetune --data ... --no-small-data`: the checkpoints hold the start model's thresholds, not 0 / 0.4."""
    from mediar3d.models import read_checkpoint

    start = read_checkpoint(Path(resolve_source("default")))[0].thresholds
    assert (start["cellprob_threshold"], start["flow_threshold"]) != (0.0, 0.4)  # else this test shows nothing
    images, labels = _blobs_2d(tmp_path / "data")
    data = write_pairs_mapping(pairs_mapping(images, labels, supervision=Supervision()), tmp_path / "m")
    common = ["finetune", "--from", "default", "--data", str(data), "--no-small-data", "--epochs", "1",
              "--samples-per-epoch", "2", "--batch-size", "2", "--crop-size", "32", "--num-workers", "0",
              "--device", "cpu", "--val-every", "0", "--set", "tensorboard=false"]
    assert main([*common, "--save-dir", str(tmp_path / "a")]) == 0
    for name in ("model_last.pt", "model_best.pt"):
        kept = read_checkpoint(tmp_path / "a" / name)[0].thresholds
        assert {k: kept[k] for k in start} == pytest.approx(start)
    assert main([*common, "--save-dir", str(tmp_path / "b"), "--set", "flow_threshold=0.9"]) == 0
    mine = read_checkpoint(tmp_path / "b" / "model_last.pt")[0].thresholds
    assert mine["flow_threshold"] == 0.9 and mine["cellprob_threshold"] == start["cellprob_threshold"]


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (children, grandchildren, ...), from /proc."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to follow child processes")
@pytest.mark.timeout(600)
def test_sigterm_leaves_no_data_loader_worker_alive(tmp_path):
    """SIGTERM to a running `mediar3d finetune` with 2 loader workers: it exits and no child process remains."""
    import os
    import signal
    import subprocess
    import sys
    import time

    images, labels = _blobs_2d(tmp_path / "data", 1)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "mediar3d", "finetune", "--from", "default", "--image", str(images[0]),
               "--labels", str(labels[0]), "--save-dir", str(run), "--epochs", "100000", "--samples-per-epoch", "2",
               "--batch-size", "2", "--crop-size", "32", "--num-workers", "2", "--device", "cpu", "--replay", "0",
               "--set", "tensorboard=false"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    children: list[int] = []
    try:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and proc.poll() is None:
            children = _descendants(proc.pid)
            if (run / "metrics.csv").is_file() and len(children) >= 3:  # forkserver and 2 workers, training
                break
            time.sleep(0.5)
        assert proc.poll() is None and len(children) >= 3, proc.stderr.read() if proc.poll() is not None else ""
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
        assert proc.returncode == 128 + signal.SIGTERM and "terminated" in err
        left = time.monotonic() + 20
        while time.monotonic() < left and any(_running(pid) for pid in children):
            time.sleep(0.5)
        assert [pid for pid in children if _running(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_replay_is_on_by_default_only_from_the_bundled_model(tmp_path):
    """The replay data imitates the bundled model's training data: other start checkpoints get none by default."""
    import dataclasses
    import shutil

    from mediar3d.data.mapping import load_mapping
    from mediar3d.training.fewshot_plan import REPLAY_SHARE, plan_for

    config = _tiny_config(tmp_path)
    mapping = load_mapping(config.data)
    mine = tmp_path / "mine.pt"
    shutil.copyfile(resolve_source("default"), mine)
    assert plan_for(dataclasses.replace(config, init_from="nuclei"), mapping).replay == REPLAY_SHARE > 0
    assert plan_for(dataclasses.replace(config, init_from=str(mine)), mapping).replay == 0
    assert plan_for(dataclasses.replace(config, init_from=str(mine)), mapping, replay=0.25).replay == 0.25


@pytest.mark.timeout(600)
def test_a_stopped_run_leaves_no_loader_worker_in_a_process_that_goes_on(tmp_path):
    """napari or a script stops a run (cancel) and carries on: the persistent loader workers are gone at once."""
    import dataclasses
    import multiprocessing

    before = set(multiprocessing.active_children())
    config = dataclasses.replace(_tiny_config(tmp_path, epochs=50), num_workers=2)
    during = []

    def stop() -> bool:
        during.append([p for p in multiprocessing.active_children() if p not in before])
        return len(during) > 2

    trainer = BudgetTrainer(config, progress=False, should_stop=stop)
    trainer.fit()
    assert trainer.stopped_by == "cancelled" and trainer.steps_done == 2
    assert len(during[-1]) >= 2  # the workers ran while training ...
    assert trainer._train_loader is not None  # ... the trainer still holds its loader, but not its workers:
    assert [p for p in multiprocessing.active_children() if p not in before] == []

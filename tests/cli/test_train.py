"""`mediar3d map-dataset`, `train`, `finetune` and `cluster`, run in-process on tiny data."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mediar3d.cli.main import main

TINY = ["--epochs", "1", "--batch-size", "2", "--crop-size", "32", "--samples-per-epoch", "4", "--num-workers", "0",
        "--device", "cpu", "--set", 'model_kwargs={"channels": [8, 16]}', "--set", "niter=10",
        "--set", "tensorboard=false", "--set", "progress=false", "--set", "val_max_samples=1"]


@pytest.fixture(autouse=True)
def _one_thread():
    import numba
    import torch

    saved = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    yield
    torch.set_num_threads(saved[0])
    numba.set_num_threads(saved[1])


def _write_data(folder, n=6):
    from mediar3d.io import write_image, write_labels

    rng = np.random.default_rng(0)
    for i in range(n):
        labels = np.zeros((40, 40), np.int32)
        for k, (y, x) in enumerate(rng.integers(8, 32, size=(3, 2))):
            labels[y - 4:y + 4, x - 4:x + 4] = k + 1
        write_image(folder / "raw" / f"sample{i}.tif", (labels > 0).astype(np.float32) + rng.random((40, 40)) * 0.1)
        write_labels(folder / "gt" / f"sample{i}_seg.tif", labels)


def test_map_train_finetune_cluster(tmp_path, capsys):
    _write_data(tmp_path)
    mapping = tmp_path / "map.json"
    assert main(["map-dataset", "--dataset", "cells", str(tmp_path / "raw" / "*.tif"), str(tmp_path / "gt" / "*.tif"),
                 "--val-fraction", "0.34", "--seed", "1", "--supervision", "cells=dilate", "-o", str(mapping)]) == 0
    obj = json.loads(mapping.read_text())
    pairs = obj["datasets"][0]["pairs"]
    assert len(pairs) == 6 and sum(p["split"] == "val" for p in pairs) == 2
    assert all(p["image"].split("/")[-1].replace(".tif", "") in p["label"] for p in pairs)
    assert obj["datasets"][0]["supervision"]["mode"] == "dilate"

    run = tmp_path / "run"
    assert main(["train", "--data", str(mapping), "--save-dir", str(run), "--lr", "1e-3", *TINY]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["model_kwargs"] == {"channels": [8, 16]} and saved["epochs"] == 1
    assert (run / "model_best.pt").is_file() and (run / "metrics.csv").is_file()

    warm = tmp_path / "warm"     # `train --init-from` (a warm start, as the cells model's recipe does)
    assert main(["train", "--data", str(mapping), "--init-from", str(run / "model_last.pt"), "--save-dir", str(warm),
                 *TINY]) == 0
    assert json.loads((warm / "config.json").read_text())["init_from"] == str(run / "model_last.pt")
    assert (warm / "model_last.pt").is_file()

    ft = tmp_path / "ft"
    assert main(["finetune", "--from", str(run / "model_last.pt"), "--data", str(mapping), "--save-dir", str(ft),
                 *TINY]) == 0
    assert (ft / "model_last.pt").is_file()

    out = tmp_path / "balanced.json"
    assert main(["cluster", str(mapping), "--model", str(run / "model_last.pt"), "-k", "2", "--device", "cpu",
                 "-o", str(out)]) == 0
    weights = [p["weight"] for p in json.loads(out.read_text())["datasets"][0]["pairs"] if p["split"] == "train"]
    assert len(weights) == 4 and np.isclose(np.mean(weights), 1.0)


def test_train_errors_are_one_line_exit_1(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "none.json"), "--save-dir", str(tmp_path / "r")]) == 1
    assert "none.json" in capsys.readouterr().err
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": "x.json", "learning_rate": 1}))
    assert main(["train", "--config", str(cfg)]) == 1
    assert "learning_rate" in capsys.readouterr().err
    assert main(["map-dataset", "-o", str(tmp_path / "m.json")]) == 1
    assert main(["map-dataset", "--dataset", "a", str(tmp_path / "*.tif"), str(tmp_path / "*.png"),
                 "-o", str(tmp_path / "m.json")]) == 1
    assert "no files match" in capsys.readouterr().err


def test_train_routes_volumetric_networks_to_3d_training(tmp_path):
    from tests.training.test_trainer3d import TINY_MODEL, write_volumes

    mapping = write_volumes(tmp_path, count=2)
    run = tmp_path / "run3d"
    args = ["train", "--data", str(mapping), "--save-dir", str(run), "--model", "feature3d", "--epochs", "1",
            "--batch-size", "1", "--crop-size", "32", "--crop-depth", "8", "--samples-per-epoch", "1",
            "--num-workers", "0", "--device", "cpu", "--val-every", "0", "--set", f"model_kwargs={json.dumps(TINY_MODEL)}",
            "--set", "tensorboard=false", "--set", "progress=false"]
    assert main(args) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["crop_depth"] == 8 and saved["model"] == "feature3d"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "flow_z" in header
    rows = (run / "metrics.csv").read_text().splitlines()[1].split(",")
    assert rows[header.index("flow_z")] not in ("", "nan")


def test_crop_depth_is_refused_for_slice_networks(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"data": "x.json"}))
    assert main(["train", "--config", str(cfg), "--crop-depth", "8", "--save-dir", str(tmp_path / "r")]) == 1
    assert "crop_depth" in capsys.readouterr().err


def _disc_mapping(folder):
    """Six 48 x 48 images of exactly five discs each: five train pairs, one val pair."""
    from mediar3d.io import write_image, write_labels
    from tests.tuning.test_learning_curve import five_discs

    pairs = []
    for i in range(6):
        image, labels = five_discs(i)
        write_image(folder / "img" / f"d{i}.tif", image)
        write_labels(folder / "lab" / f"d{i}.tif", labels)
        pairs.append({"image": f"img/d{i}.tif", "label": f"lab/d{i}.tif", "split": "val" if i == 5 else "train"})
    path = folder / "map.json"
    path.write_text(json.dumps({"datasets": [{"name": "discs", "pairs": pairs}]}))
    return path


CURVE_RUN = ["--batch-size", "4", "--samples-per-epoch", "4", "--crop-size", "32", "--num-workers",
             "0", "--device", "cpu", "--val-every", "0", "--set", 'model_kwargs={"channels": [8, 16]}',
             "--set", "tensorboard=false", "--set", "progress=false"]


def test_checkpoints_at_object_counts_and_their_learning_curve(tmp_path, capsys):
    from mediar3d.tuning.learning_curve import checkpoint_objects

    mapping = _disc_mapping(tmp_path)
    run = tmp_path / "run"
    # 4 draws of 5 discs per epoch: 20 objects seen after epoch 1, 40 after epoch 2
    assert main(["train", "--data", str(mapping), "--save-dir", str(run), "--checkpoint-at-objects", "10,30,100",
                 "--epochs", "2", *CURVE_RUN]) == 0
    curve = run / "learning_curve"
    assert sorted(p.name for p in curve.glob("*.pt")) == ["objects_0000010.pt", "objects_0000030.pt"]
    assert [checkpoint_objects(curve / f"objects_{n:07d}.pt")[0] for n in (10, 30)] == [20, 40]
    assert json.loads((run / "config.json").read_text())["checkpoint_at_objects"] == [10, 30, 100]

    capsys.readouterr()
    assert main(["evaluate", "--checkpoints", str(curve), "--data", str(mapping), "-o", str(tmp_path / "lc"),
                 "--diameter", "9", "--niter", "20", "--device", "cpu"]) == 0
    assert "scored 2 checkpoints on 1 images" in capsys.readouterr().out
    with open(tmp_path / "lc" / "learning_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["objects_seen"]) for r in rows] == [20.0, 40.0]
    assert [Path(r["checkpoint"]).name for r in rows] == ["objects_0000010.pt", "objects_0000030.pt"]
    assert all(0.0 <= float(r["score"]) <= 1.0 and int(r["n_gt"]) == 5 for r in rows)
    assert (tmp_path / "lc" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_at_objects_from_the_config_file(tmp_path, capsys):
    mapping = _disc_mapping(tmp_path)
    config = tmp_path / "curve.json"
    config.write_text(json.dumps({"data": "map.json", "checkpoint_at_objects": [100, 10]}))
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--save-dir", str(run), "--epochs", "1", *CURVE_RUN]) == 0
    assert [p.name for p in (run / "learning_curve").glob("*.pt")] == ["objects_0000010.pt"]

    config.write_text(json.dumps({"data": "map.json", "checkpoint_at_objects": [0, 10]}))
    assert main(["train", "--config", str(config), "--save-dir", str(tmp_path / "bad")]) == 1
    assert "checkpoint_at_objects" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--data", str(mapping), "--checkpoint-at-objects", "ten"])
    assert "--checkpoint-at-objects" in capsys.readouterr().err


def test_evaluate_checkpoints_usage_errors(tmp_path, capsys):
    assert main(["evaluate", "--gt", str(tmp_path)]) == 1
    assert "--checkpoints" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoints", str(tmp_path), "--pred", str(tmp_path), "--gt", str(tmp_path)]) == 1
    assert "leave out --pred" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoints", str(tmp_path / "none"), "--image", str(tmp_path / "a.tif")]) == 1
    assert "--labels" in capsys.readouterr().err

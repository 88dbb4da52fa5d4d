"""`mediar3d tune` in-process on a tiny volume and a tiny untrained network."""

from __future__ import annotations

import csv
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mediar3d.cli.main import main

SMALL = ["--cellprob-thresholds", "-2", "0", "2", "--flow-thresholds", "0", "0.4", "--min-sizes", "0", "15",
         "--niter", "20", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def _volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((12, 24, 24), np.int32)
    for k, (z, y, x) in enumerate([(3, 6, 6), (8, 16, 8), (5, 8, 17), (8, 18, 18)], start=1):
        labels[z - 2:z + 3, y - 3:y + 3, x - 3:x + 3] = k
    image = np.where(labels > 0, 0.8, 0.1) + rng.normal(0, 0.02, labels.shape)
    return image.astype(np.float32), labels


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    import torch

    from mediar3d.models import create_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "model.pt", create_model("unet-small", channels=[8, 16]),
                           thresholds={"cellprob_threshold": 0.0, "flow_threshold": 0.4})


def _write(folder: Path, n: int) -> list[tuple[Path, Path]]:
    from mediar3d.io import write_image, write_labels

    pairs = []
    for i in range(n):
        image, labels = _volume(i)
        pairs.append((folder / "img" / f"v{i}.tif", folder / "gt" / f"v{i}.tif"))
        write_image(pairs[-1][0], image)
        write_labels(pairs[-1][1], labels)
    return pairs


def test_tune_writes_checkpoint_table_and_plot(tmp_path, tiny_model, capsys):
    from mediar3d.models import load_model, read_checkpoint

    (image, labels), = _write(tmp_path, 1)
    before = tiny_model.read_bytes()
    assert main(["tune", "--model", str(tiny_model), "--image", str(image), "--labels", str(labels), *SMALL]) == 0
    assert tiny_model.read_bytes() == before  # the source checkpoint is left alone
    tuned = tmp_path / "model_tuned.pt"
    report = json.loads((tmp_path / "model_tuned_tuning" / "tuning.json").read_text())
    _, config = load_model(tuned)
    assert config.thresholds == pytest.approx(report["best"])
    assert set(report["best"]) == {"cellprob_threshold", "flow_threshold", "min_size", "min_size_fraction"}
    assert config.metadata["tuning"]["score"] == pytest.approx(report["score"])
    with open(tmp_path / "model_tuned_tuning" / "tuning.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["n_settings"] >= 3
    assert max(float(r["ap"]) for r in rows) == pytest.approx(report["score"], abs=1e-5)
    assert (tmp_path / "model_tuned_tuning" / "tuning.png").read_bytes()[:4] == b"\x89PNG"
    assert read_checkpoint(tiny_model)[0].thresholds["cellprob_threshold"] == 0.0
    assert "wrote" in capsys.readouterr().out


def test_tune_from_a_mapping_with_cache_in_place(tmp_path, tiny_model):
    from mediar3d.models import read_checkpoint

    pairs = _write(tmp_path, 2)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"datasets": [{"name": "vols", "pairs": [
        {"image": str(i), "label": str(lab), "split": "val"} for i, lab in pairs]}]}))
    args = ["tune", "--model", str(tiny_model), "--data", str(mapping), "--cache", str(tmp_path / "cache"),
            "--in-place", "--report", str(tmp_path / "rep"), *SMALL]
    assert main(args) == 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    first = json.loads((tmp_path / "rep" / "tuning.json").read_text())
    assert read_checkpoint(tiny_model)[0].thresholds == pytest.approx(first["best"])
    assert first["settings"]["images"] == ["vols/v0.tif", "vols/v1.tif"]
    # only the thresholds changed, so the cached outputs are reused and give the same result
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.npz")} == stamps
    assert json.loads((tmp_path / "rep" / "tuning.json").read_text())["score"] == pytest.approx(first["score"])


def test_tune_learning_curve(tmp_path, capsys):
    import torch

    from mediar3d.models import create_model, save_checkpoint

    (image, labels), = _write(tmp_path, 1)
    for seen in (100, 10):
        torch.manual_seed(seen)
        save_checkpoint(tmp_path / "curve" / f"objects_{seen:07d}.pt", create_model("unet-small", channels=[8, 16]),
                        metadata={"objects_seen": seen})
    assert main(["tune", "--learning-curve", str(tmp_path / "curve"), "--image", str(image), "--labels", str(labels),
                 "-o", str(tmp_path / "lc"), "--niter", "20", "--device", "cpu"]) == 0
    with open(tmp_path / "lc" / "learning_curve.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["objects_seen"]) for r in rows] == [10.0, 100.0]
    assert (tmp_path / "lc" / "learning_curve.png").is_file()


def test_tune_without_matplotlib_writes_the_thresholds_and_leaves_the_plot_out(tmp_path, tiny_model, caplog,
                                                                             no_matplotlib):
    (image, labels), = _write(tmp_path, 1)
    with caplog.at_level(logging.WARNING):
        assert main(["tune", "--model", str(tiny_model), "--image", str(image), "--labels", str(labels), *SMALL]) == 0
    report = tmp_path / "model_tuned_tuning"
    assert sorted(p.name for p in report.iterdir()) == ["tuning.csv", "tuning.json"]
    assert (tmp_path / "model_tuned.pt").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "pip install 'mediar3d[plots]'" in warnings[0] and "tuning.png left out" in warnings[0]


def test_learning_curve_without_matplotlib_stops_before_scoring(tmp_path, capsys, no_matplotlib):
    from mediar3d.models import create_model, save_checkpoint

    (image, labels), = _write(tmp_path, 1)
    save_checkpoint(tmp_path / "curve" / "objects_0000010.pt", create_model("unet-small", channels=[8, 16]),
                    metadata={"objects_seen": 10})
    assert main(["tune", "--learning-curve", str(tmp_path / "curve"), "--image", str(image), "--labels", str(labels),
                 "-o", str(tmp_path / "lc"), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("mediar3d tune: error: ") and len(err.strip().splitlines()) == 1, err
    assert "learning_curve.png" in err and "pip install 'mediar3d[plots]'" in err
    assert not (tmp_path / "lc").exists() and "objects" not in out  # no checkpoint was scored


def test_tune_usage_errors(tmp_path, tiny_model, capsys):
    assert main(["tune", "--model", str(tiny_model)]) == 1
    assert "no validation data" in capsys.readouterr().err
    (image, labels), = _write(tmp_path, 1)
    assert main(["tune", "--model", str(tiny_model), "--image", str(image)]) == 1
    assert "--labels" in capsys.readouterr().err
    assert main(["tune", "--model", str(tiny_model), "--learning-curve", str(tmp_path)]) == 1
    assert "leave out --model" in capsys.readouterr().err
    assert main(["tune", "--model", "default", "--in-place", "--image", str(image), "--labels", str(labels)]) == 1
    assert "bundled" in capsys.readouterr().err
    package = tmp_path / "model.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("rdf.yaml", "type: model\n")
        archive.write(tiny_model, "mediar3d_model.pt")
    before = package.read_bytes()
    assert main(["tune", "--model", str(package), "--in-place", "--image", str(image), "--labels", str(labels)]) == 1
    assert "packages cannot be changed" in capsys.readouterr().err
    assert package.read_bytes() == before


def test_tune_an_ensemble_writes_its_best_thresholds_into_every_member(tmp_path, capsys):
    import torch

    import mediar3d
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.evaluation.metrics import dice_score
    from mediar3d.inference.loader import bundled_checkpoint
    from mediar3d.io import write_image, write_labels
    from mediar3d.models import load_model, read_checkpoint, save_checkpoint

    # two members that see the same input but predict differently: the bundled model, and a
    # copy whose output layer is damped (weaker flows and logits)
    net, config = load_model(bundled_checkpoint())
    first = save_checkpoint(tmp_path / "model.pt", net, config=config,
                            thresholds={"cellprob_threshold": 0.0, "flow_threshold": 0.4})
    with torch.no_grad():
        last = [p for p in net.parameters() if p.ndim == 4][-1]
        last.mul_(0.6)
    other = save_checkpoint(tmp_path / "b" / "model.pt", net, config=config,
                            thresholds={"cellprob_threshold": 1.0, "flow_threshold": 0.6})
    image, labels = make_nuclei_volume((16, 40, 40), radius_range=(8.0, 11.0), seed=3)
    write_image(tmp_path / "img.tif", image)
    write_labels(tmp_path / "gt.tif", labels)
    grid = ["--cellprob-thresholds", "-1", "0", "2", "--flow-thresholds", "0", "--min-sizes", "0",
            "--niter", "50", "--device", "cpu", "--metric", "dice", "--diameter", "20"]
    assert main(["tune", "--model", str(first), "--model", str(other), "--image", str(tmp_path / "img.tif"),
                 "--labels", str(tmp_path / "gt.tif"), *grid]) == 0
    assert "--model " + str(tmp_path / "b" / "model_tuned.pt") in capsys.readouterr().out
    report = json.loads((tmp_path / "model_tuned_tuning" / "tuning.json").read_text())
    assert report["start"]["cellprob_threshold"] == pytest.approx(0.5)  # the members' mean, as segment uses it
    assert report["settings"]["model"] == [str(first), str(other)]
    tuned = [tmp_path / "model_tuned.pt", tmp_path / "b" / "model_tuned.pt"]
    for path in tuned:
        assert read_checkpoint(path)[0].thresholds == pytest.approx(report["best"])
    # the score is the tuned ensemble's own: segment with both tuned members reproduces it
    options = dict(diameter=20, niter=50, device="cpu", progress=False)
    both = mediar3d.segment(image, [str(p) for p in tuned], **options)
    alone = mediar3d.segment(image, str(tuned[0]), **options)
    assert report["score"] > 0.5
    assert dice_score(labels, both) == pytest.approx(report["score"], abs=1e-4)
    assert dice_score(labels, both) != pytest.approx(dice_score(labels, alone), abs=1e-4)


def test_tune_an_ensemble_refuses_one_output_for_several_models(tmp_path, tiny_model, capsys):
    (image, labels), = _write(tmp_path, 1)
    assert main(["tune", "--model", str(tiny_model), "--model", str(tiny_model), "--image", str(image),
                 "--labels", str(labels), "-o", str(tmp_path / "x.pt")]) == 1
    assert "beside its model" in capsys.readouterr().err


@pytest.mark.parametrize("model, expected", [
    ("https://example.org/models/nuclei.pt#sha256=" + "a" * 64, "nuclei_tuned.pt"),
    ("https://example.org/dl/my%20model.v2.zip?download=1", "my_model.v2_tuned.pt"),
    ("https://example.org/", "model_tuned.pt"),
    ("default", "default_tuned.pt"),
    ("runs/a/model_best.pt", "runs/a/model_best_tuned.pt"),
])
def test_default_output_of_a_url_is_a_plain_file_name_here(model, expected):
    """Without -o a URL's tuned copy goes to the working folder, named after the URL's file (not a path from it)."""
    from mediar3d.cli.tune import _default_output

    assert _default_output(model) == Path(expected)


def test_tune_chooses_the_model_diameter_and_stores_it(tmp_path, capsys):
    """The network runs at each model diameter; the best one and its thresholds go into the tuned checkpoint,
    which then scores what the search reported."""
    from mediar3d.data.synthetic import make_nuclei_volume
    from mediar3d.io import write_image, write_labels
    from mediar3d.models import read_checkpoint

    image, labels = make_nuclei_volume((16, 64, 64), n_nuclei=14, radius_range=(5.0, 6.0), seed=3)
    write_image(tmp_path / "img.tif", image)
    write_labels(tmp_path / "gt.tif", labels)
    data = ["--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "gt.tif"), *SMALL]
    tuned = tmp_path / "tuned.pt"
    assert main(["tune", "--model", "default", "-o", str(tuned), "--report", str(tmp_path / "rep"),
                 "--model-diameters", "8", "12", "--cache", str(tmp_path / "cache"), *data]) == 0
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # one cached output per model diameter
    report = json.loads((tmp_path / "rep" / "tuning.json").read_text())
    scores = report["settings"]["model_diameters"]
    assert set(scores) == {"8", "12"} and scores["8"] != scores["12"]  # the network saw two sizes
    chosen = max(scores, key=scores.get)
    config, _ = read_checkpoint(tuned)
    assert config.train_diameter == float(chosen) == report["settings"]["model_diameter"]
    assert report["score"] == pytest.approx(scores[chosen])
    assert "<- chosen" in capsys.readouterr().out
    # the tuned checkpoint alone (its diameter, its thresholds) scores what the search found
    assert main(["tune", "--model", str(tuned), "--no-write", "--report", str(tmp_path / "again"), *data]) == 0
    again = json.loads((tmp_path / "again" / "tuning.json").read_text())
    assert again["start_score"] == pytest.approx(report["score"])


def test_tune_model_diameters_usage_errors(tmp_path, tiny_model, capsys):
    (image, labels), = _write(tmp_path, 1)
    data = ["--image", str(image), "--labels", str(labels)]
    assert main(["tune", "--model", str(tiny_model), "--model-diameters", "0", *data]) == 1
    assert "--model-diameters" in capsys.readouterr().err
    assert main(["tune", "--model", str(tiny_model), "--model", str(tiny_model), "--model-diameters", "20",
                 *data]) == 1
    assert "single --model" in capsys.readouterr().err

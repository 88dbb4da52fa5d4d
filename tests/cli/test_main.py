"""The top-level command: help, version, placeholders and error reporting."""

import pytest

from mediar3d.cli.main import build_parser, main


def test_help_lists_every_available_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for name in ("segment", "evaluate", "train", "info"):
        assert name in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: mediar3d" in capsys.readouterr().out


def test_info_reports_versions_and_devices(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "devices: cpu" in out


def test_info_lists_usable_models_and_architectures_without_weights(capsys):
    import hashlib

    from mediar3d.inference.loader import BUNDLED_NAMES, bundled_checkpoint, resolve_model
    from mediar3d.models import list_models

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    usable = out.split("architectures without bundled weights")[0]
    for name in BUNDLED_NAMES:
        resolve_model(name)  # each listed name really loads
        assert name in usable
    assert hashlib.sha256(bundled_checkpoint().read_bytes()).hexdigest()[:16] in usable
    untrained = out.split("architectures without bundled weights")[1]
    assert "mediar-sam" in untrained and "unet-small" not in untrained
    assert set(list_models()) - {"unet-small"} <= set(untrained.split(": ")[1].strip().split(", "))


def test_info_lists_both_bundled_models_with_what_each_is_for(capsys, tmp_path, monkeypatch):
    import hashlib
    import shutil

    from mediar3d.inference.loader import BUNDLED_MODELS, bundled_checkpoint
    from mediar3d.models import create_model, save_checkpoint, sources

    def model_lines():
        assert main(["info"]) == 0
        out = capsys.readouterr().out
        return {m.names[0]: next(line for line in out.splitlines() if line.strip().startswith(m.names[0] + " "))
                for m in BUNDLED_MODELS}

    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(bundled_checkpoint(), folder / sources.BUNDLED_FILE)
    monkeypatch.setattr(sources, "weights_dir", lambda: folder)
    lines = model_lines()                                  # cells weights absent (a broken install): listed, with why
    assert set(lines) == {"default", "cells"} and "unavailable" not in lines["default"]
    assert "unavailable" in lines["cells"] and "file is missing" in lines["cells"]
    save_checkpoint(folder / sources.bundled_model("cells").file, create_model("unet-small", channels=(4, 8)),
                    train_diameter=21.0)
    lines = model_lines()                                  # cells weights present: listed like the nuclei model
    for model in BUNDLED_MODELS:
        line = lines[model.names[0]]
        assert model.purpose in line and model.file in line and "unavailable" not in line
        assert hashlib.sha256((folder / model.file).read_bytes()).hexdigest()[:16] in line
        assert all(name in line for name in model.names)
    assert "nuclear stain" in lines["default"] and "membrane" in lines["cells"] and "21 px" in lines["cells"]


def test_verbosity_flags_before_or_after_the_subcommand(capsys):
    for argv in (["-v", "info"], ["info", "-v"], ["info", "-q"], ["-q", "info", "-vv"]):
        assert main(argv) == 0
    with pytest.raises(SystemExit):
        main(["info", "--loud"])


def test_every_registered_command_has_help(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in subparsers.choices:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0

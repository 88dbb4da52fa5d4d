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


def test_every_registered_command_has_help(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name in subparsers.choices:
        with pytest.raises(SystemExit) as stop:
            main([name, "--help"])
        assert stop.value.code == 0

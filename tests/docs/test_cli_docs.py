"""docs/cli.md is generated from the CLI parsers: it must match them, flag for flag."""

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date(make_docs):
    written = (ROOT / "docs" / "cli.md").read_text()
    assert written == make_docs.cli_markdown(), "docs/cli.md is out of date: run python scripts/make_docs.py"


def test_every_command_and_flag_is_documented(make_docs):
    from mediar3d.cli.main import build_parser

    text = make_docs.cli_markdown()
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subparsers.choices) >= 5
    for name, parser in subparsers.choices.items():
        assert f"\n## mediar3d {name}\n" in text
        section = text.split(f"\n## mediar3d {name}\n", 1)[1].split("\n## mediar3d ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in section, (name, flag)


def test_a_new_flag_makes_the_check_fail(make_docs, monkeypatch, capsys):
    import mediar3d.cli.main as cli_main

    original = cli_main.build_parser

    def with_extra_flag():
        parser = original()
        parser.add_argument("--brand-new-flag", help="not documented yet")
        return parser

    monkeypatch.setattr(cli_main, "build_parser", with_extra_flag)
    assert make_docs.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err

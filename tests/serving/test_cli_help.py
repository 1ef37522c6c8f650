"""Every command's ``--help`` renders, and its prose reads as paragraphs, not as the docstring's line breaks."""

from __future__ import annotations

import inspect

import pytest
import typer
from typer.testing import CliRunner

from serving.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)


def test_the_documented_commands_are_all_there():
    assert set(COMMANDS) >= {
        "validate",
        "features",
        "train",
        "score",
        "at-risk",
        "serve",
        "demo",
        "models",
        "promote",
        "init",
    }


@pytest.mark.parametrize("name", COMMANDS)
def test_help_renders_and_keeps_no_hard_line_breaks(name):
    """Typer prints a docstring's later paragraphs verbatim, so a wrapped line there breaks mid-sentence."""
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    command = typer.main.get_command(app).commands[name]
    _, *later = inspect.cleandoc(command.help or "").split("\n\n")
    wrapped = [p for p in later if "\n" in p and not p.startswith("\b")]
    assert not wrapped, f"crmscore {name}: join these help paragraphs into one line each: {wrapped}"
    for paragraph in later:
        assert " ".join(paragraph.split()[:4]) in " ".join(result.output.split())

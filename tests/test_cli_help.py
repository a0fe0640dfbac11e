"""``mcp-tornado --help``: plain text (no reStructuredText markup), and every default shown."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from mcp_tornado import cli

COMMANDS = ["serve", "router", "worker", "token"]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"": parser, **{name: sub.choices[name] for name in COMMANDS}}


def _help(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mcp_tornado", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"COLUMNS": "100", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_every_option_shows_its_default(command: str) -> None:
    parser = _parsers()[command]
    options = [
        action
        for action in parser._actions
        if action.option_strings and action.help != argparse.SUPPRESS
        if not isinstance(action, argparse._HelpAction | argparse._VersionAction)
    ]
    assert options or command == ""
    for action in options:
        assert "(default: " in (action.help or ""), action.option_strings


@pytest.mark.parametrize("command", ["serve", "worker", "router"])
def test_help_output_shows_a_default_for_every_flag(command: str) -> None:
    text = _help(command)
    # Each option's entry: from "  --flag" to the next option (its help may wrap).
    entries = re.split(r"\n  (?=--)", text.split("options:", 1)[1])[1:]
    flags = [entry.split()[0] for entry in entries]
    assert {"--host", "--port", "--workers"} & set(flags) or command == "router"
    assert len(flags) > 5
    for entry in entries:
        assert "(default:" in " ".join(entry.split()), entry
    if command in ("serve", "worker"):
        flat = " ".join(text.split())
        assert "--host HOST address to listen on (default: 127.0.0.1)" in flat
        assert "--port PORT port to listen on (default: 8000)" in flat


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_no_restructuredtext_markup_in_any_help(command: str) -> None:
    text = _help(*([command] if command else []))
    assert "``" not in text
    assert ":class:" not in text and ":func:" not in text

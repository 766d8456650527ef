"""Shared fixtures: a throw-away copy of the sample project, and a way to run the command."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from campaign.cli import main

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

Run = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the sample project (settings, letters, recipients) in a temporary folder."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    (root / "outbox").mkdir()
    return root


@pytest.fixture
def run(project: Path) -> Run:
    """Run `campaign --settings <project>/settings.yaml ARGS...` in-process."""

    def invoke(*args: str, settings: Path | None = None) -> Result:
        runner = CliRunner()
        path = settings or project / "settings.yaml"
        return runner.invoke(main, ["--settings", str(path), *args], catch_exceptions=True)

    return invoke

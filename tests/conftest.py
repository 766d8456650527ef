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


# --- letters and PDFs (issue 3): a project with a few recipients, so that rendering stays fast ---

FEW_RECIPIENTS = [
    {
        "Civilité": "Madame",
        "Prénom": "Élise",
        "Nom": "Le Goff",
        "Fonction": "Directrice déléguée",
        "Établissement": "Centre hospitalier de Valbrune",
        "Adresse": "Bâtiment A\n48 allée Marie-Curie",
        "Code postal": "69485",
        "Ville": "VALBRUNE",
        "Courriel": "elise.le-goff@example.org",
    },
    {
        "Civilité": "Monsieur",
        "Prénom": "Noël",
        "Nom": "d’Aubigné",
        "Fonction": "Directeur",
        "Établissement": "Hôpital local de Montclair-les-Bains",
        "Adresse": "7 chemin des Acacias",
        "Code postal": "02453",
        "Ville": "MONTCLAIR-LES-BAINS",
        "Courriel": "noel.daubigne@example.com",
    },
    {
        "Civilité": "",
        "Prénom": "Camille",
        "Nom": "<b> *x* _y_",
        "Fonction": "",
        "Établissement": "[^1] {{ 7*7 }} &amp;",
        "Adresse": "1 rue de la Paix",
        "Code postal": "75002",
        "Ville": "PARIS",
        "Courriel": "camille@example.org",
    },
]


def write_few_recipients(root: Path, rows: list[dict[str, str]] | None = None) -> Path:
    """Point the hospital campaign of the project at `recipients/few.csv`, holding `rows`."""
    import csv

    rows = FEW_RECIPIENTS if rows is None else rows
    path = root / "recipients" / "few.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(rows[0]) if rows else list(FEW_RECIPIENTS[0])
        )
        writer.writeheader()
        writer.writerows(rows)
    settings = root / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("recipients/directeurs-hopitaux.xlsx", "recipients/few.csv"), encoding="utf-8"
    )
    return path


@pytest.fixture
def few_project(project: Path) -> Path:
    """The sample project whose hospital campaign has the three `FEW_RECIPIENTS`."""
    write_few_recipients(project)
    return project

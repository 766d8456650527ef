"""`campaign init DIR`: a new project that `campaign check` passes at once, through the command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from click.testing import CliRunner

from campaign.cli import main
from campaign.init import COLUMNS, ROWS
from campaign.spreadsheet import read_table


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_a_new_project_passes_check_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "ma-campagne"
    code, output = invoke("init", str(folder))
    assert code == 0, output
    assert "Created a campaign project" in output
    code, output = invoke("--settings", str(folder / "settings.yaml"), "check")
    assert code == 0, output
    assert "2 recipients, 2 ready, 0 suppressed, 0 errors, 0 warnings" in output


def test_the_project_holds_what_an_organiser_fills_in(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    assert invoke("init", str(folder))[0] == 0
    for name in (
        "settings.yaml",
        "letters/lettre.md",
        "letters/courriel.md",
        "letters/lettre.css",
        "letters/logo.svg",
        "recipients/destinataires.xlsx",
        "recipients/suppression.csv",
        ".gitignore",
    ):
        assert (folder / name).is_file(), name
    assert "outbox/" in (folder / ".gitignore").read_text().splitlines()
    assert (folder / "recipients" / "suppression.csv").read_text() == "email\n"
    letter = (folder / "letters" / "lettre.md").read_text()
    assert letter.count("[^note]:") == 1 and "[^note] ;" in letter
    assert "$today" not in letter
    settings_text = (folder / "settings.yaml").read_text()
    assert settings_text.count("#") > 10  # commented for the organisers
    settings = yaml.safe_load(settings_text)
    campaign = settings["campaigns"]["ma-campagne"]
    assert campaign["recipients"] == "recipients/destinataires.xlsx"
    table = read_table(folder / "recipients" / "destinataires.xlsx")
    assert table.headers == COLUMNS
    assert [cells for _, cells in table.rows] == ROWS
    assert all(row[-1].endswith("@example.org") for row in ROWS)
    assert "01000" in ROWS[0]  # a postcode keeps its leading zero


def test_the_french_an_organiser_reads_uses_the_french_apostrophe(tmp_path: Path) -> None:
    """The settings' comments and the sample texts: « l’adresse », not « l'adresse »."""
    folder = tmp_path / "p"
    assert invoke("init", str(folder))[0] == 0
    for name in ("settings.yaml", "letters/lettre.md", "letters/courriel.md"):
        text = (folder / name).read_text()
        straight = re.findall(r"\w+'\w+", text)
        assert not straight, (name, straight)
        assert "’" in text, name  # the French texts do elide


def test_a_folder_with_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    code, output = invoke("init", str(tmp_path))
    assert code == 2
    assert "is not empty" in output
    assert "name a new folder" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_empty_folder_is_accepted(tmp_path: Path) -> None:
    code, output = invoke("init", str(tmp_path))
    assert code == 0, output
    assert (tmp_path / "settings.yaml").is_file()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "x"
    target.write_text("")
    code, output = invoke("init", str(target))
    assert code == 2
    assert "is a file, not a folder" in output


def test_the_commented_window_is_valid_once_uncommented(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    assert invoke("init", str(folder))[0] == 0
    settings = folder / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    assert "  # window: {" in text
    settings.write_text(text.replace("  # window: {", "  window: {"), encoding="utf-8")
    code, output = invoke("--settings", str(settings), "check")
    assert code == 0, output


def test_the_tour_runs_in_a_new_project_down_to_inbox(tmp_path: Path) -> None:
    """The README's tour, in a fresh project: render → proof → approve → send to the sink → inbox."""
    from tests.smtp_server import FaultyServer

    folder = tmp_path / "ma-campagne"
    assert invoke("init", str(folder))[0] == 0
    settings_path = folder / "settings.yaml"
    settings = yaml.safe_load(settings_path.read_text())
    with FaultyServer() as server:
        settings["smtp"]["port"] = server.port
        settings_path.write_text(yaml.safe_dump(settings, allow_unicode=True))
        at = ("--settings", str(settings_path))
        for step in (("render",), ("proof",), ("approve", "--by", "Maître Dupont")):
            code, output = invoke(*at, *step)
            assert code == 0, (step, output)
        # As a user runs it, its output in a pipe: no progress bar, no blank line on stderr.
        sent = subprocess.run(
            [sys.executable, "-m", "campaign.cli", *at, "send"], capture_output=True, text=True
        )
        assert sent.returncode == 0, sent.stderr
        assert "2 to send" in sent.stderr
        assert "" not in sent.stderr.splitlines(), repr(sent.stderr)
        assert "2 sent" in sent.stdout
        assert len(server.stored) == 2
    code, output = invoke(*at, "inbox")
    assert code == 0, output  # the project names a mailbox: the sink's Maildir
    assert "read 0 new messages" in output

"""`make demo` (scripts/demo.sh) on a small copy of the sample: it works in a copy of the project
under outbox/demo/, so the project's own files (the tracked ones) stay as they were, and a second
demo shows what the first showed (no bounce of the first run comes back as suppressed)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _small_project(root: Path, port: int | None) -> Path:
    """Two directors and two signatories, plus the sample's bounced and out-of-office rows.

    With `port` None the settings keep the sample's own smtp.port (8025)."""
    shutil.copytree(REPO / "letters", root / "letters")
    recipients = root / "recipients"
    recipients.mkdir()
    book = openpyxl.load_workbook(REPO / "recipients" / "directeurs-hopitaux.xlsx")
    sheet = book.active
    assert sheet is not None
    sheet.delete_rows(4, sheet.max_row - 5)  # keep rows 1-3 and the last two (rebond, absence)
    book.save(recipients / "directeurs-hopitaux.xlsx")
    lines = (REPO / "recipients" / "signataires.csv").read_bytes().splitlines(keepends=True)
    (recipients / "signataires.csv").write_bytes(b"".join(lines[:3] + lines[-1:]))
    shutil.copy(REPO / "recipients" / "suppression.csv", recipients / "suppression.csv")
    text = (REPO / "settings.yaml").read_text(encoding="utf-8")
    if port is not None:
        text = text.replace("port: 8025", f"port: {port}")
    (root / "settings.yaml").write_text(text)
    return root / "settings.yaml"


def _files(root: Path) -> dict[str, str]:
    """Every file of the project outside outbox/ (what git tracks), with the hash of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).parts[0] != "outbox"
    }


def _demo(settings: Path, port: int, *, lang: str | None = None) -> str:
    environ = dict(os.environ)
    if lang is not None:  # an organiser's desktop: LANG only
        environ = {k: v for k, v in environ.items() if not k.startswith(("LC_", "LANG"))}
        environ["LANG"] = lang
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        env={
            **environ,
            "CAMPAIGN": f"{sys.executable} -m campaign.cli",
            "SETTINGS": str(settings),
            "DEMO_SINK_PORT": str(port),
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _counts(output: str) -> list[str]:
    """The lines that count: the log after each send, what inbox found, the status's mailbox line."""
    wanted = re.compile(r"^(delivery log: |\d+ bounced, |mailbox: |\d+ sent, )")
    lines = (re.sub(r"\(/.*\)", "", " ".join(line.split())) for line in output.splitlines())
    return [line for line in lines if wanted.search(line)]


def test_the_demo_leaves_the_project_untouched_and_runs_again_the_same(tmp_path: Path) -> None:
    port = _free_port()
    settings = _small_project(tmp_path, port)
    before = _files(tmp_path)
    first = _demo(settings, port)
    assert _files(tmp_path) == before  # the suppression list above all: the bounce is not in it
    demo = tmp_path / "outbox" / "demo"
    suppression = (demo / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    assert "rebond.julien.arnaud@example.org" in suppression  # the copy's list got the bounce
    assert "1 bounced" in " ".join(first.split())
    assert "no longer in the spreadsheet" not in first  # the bounce is suppressed, not gone
    assert (demo / "outbox" / "hopitaux-2020-05" / "report.html").is_file()
    second = _demo(settings, port)
    assert _files(tmp_path) == before
    assert _counts(second) == _counts(first)
    assert "suppressed" not in " ".join(
        line for line in second.splitlines() if "rebond.julien.arnaud" in line
    )


def test_the_demo_runs_for_a_french_organiser_on_a_port_of_his_choice(tmp_path: Path) -> None:
    # The script waited for the sink's English first line: in French it said the port was taken
    # and sent nothing. And with DEMO_SINK_PORT, the sink listened there while the sends went to
    # the sample's smtp.port, 8025: ten minutes of "connection refused", then exit 1.
    port = _free_port()
    settings = _small_project(tmp_path, None)
    first = " ".join(_demo(settings, port, lang="fr_FR.UTF-8").split())
    assert f"serveur local à l’écoute sur 127.0.0.1:{port}" in first
    assert "1 rejeté" in first and "journal d’envoi" in first
    assert "port: 8025" in settings.read_text(encoding="utf-8")  # the project's own file
    copy = tmp_path / "outbox" / "demo" / "settings.yaml"
    assert f"  port: {port}\n" in copy.read_text(encoding="utf-8")


def test_the_demo_sends_nothing_when_another_program_has_the_port(tmp_path: Path) -> None:
    # The sink's error names the address too ("ne peut écouter sur 127.0.0.1:PORT"): it must not
    # pass for the sink's ready line, in either language.
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        foreign.settimeout(0)
        port = foreign.getsockname()[1]
        for lang in ("fr_FR.UTF-8", "C.UTF-8"):
            environ = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
            done = subprocess.run(
                ["bash", str(REPO / "scripts" / "demo.sh")],
                env={
                    **environ,
                    "LANG": lang,
                    "CAMPAIGN": f"{sys.executable} -m campaign.cli",
                    "SETTINGS": str(_small_project(tmp_path / lang, port)),
                    "DEMO_SINK_PORT": str(port),
                },
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 1, done.stdout + done.stderr
            assert "nothing was sent" in done.stderr
            with pytest.raises(BlockingIOError):
                foreign.accept()  # nobody connected to the other program


def test_the_demo_never_deletes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    port = _free_port()
    settings = _small_project(tmp_path, port)
    mine = tmp_path / "outbox" / "demo"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own notes")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh")],
        env={
            **os.environ,
            "CAMPAIGN": f"{sys.executable} -m campaign.cli",
            "SETTINGS": str(settings),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "was not made by make demo" in done.stderr
    assert (mine / "notes.txt").read_text() == "my own notes"

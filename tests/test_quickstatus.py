"""`campaign status` without reading the settings or the spreadsheet (campaign.recorded): the same
output as the full status while nothing changed, the full status as soon as a byte did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from campaign import recorded
from campaign.outbox import Layout
from campaign.settings import DEFAULT_SETTINGS, Settings
from tests.smtp_server import Fault, FaultyServer, make_project

# Prints, at exit, which of the heavy libraries the command imported.
_PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('IMPORTED', *[m for m in ('pydantic', 'pandas', 'jinja2')"
    " if m in sys.modules], file=sys.stderr))\n"
    "from campaign.cli import main\n"
    "main()\n"
)


def status(settings: Path, *args: str) -> tuple[str, set[str], int]:
    """`campaign status` in its own process: its output, the heavy libraries it imported, exit."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "--settings", str(settings), "status", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("IMPORTED"))
    return done.stdout, set(line.split()[1:]), done.returncode


def approved_project(tmp_path: Path, port: int, extra_settings: str = "") -> Path:
    settings = make_project(tmp_path, port=port, recipients=4, extra=extra_settings)
    text = settings.read_text(encoding="utf-8").replace("approval: {required: false}", "")
    settings.write_text(text, encoding="utf-8")
    for command in (["proof", "mini", "--rows", "2", "-q"], ["approve", "mini", "--by", "Me"]):
        done = subprocess.run(
            [sys.executable, "-m", "campaign.cli", "--settings", str(settings), *command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return settings


def test_status_after_approval_needs_no_settings_nor_sheet_and_says_the_same(
    tmp_path: Path,
) -> None:
    failing = Fault("rcpt", code=550, text="5.1.1 unknown", recipient="personne0002@example.org")
    with FaultyServer(faults=[failing]) as server:
        settings = approved_project(tmp_path, server.port)
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "campaign.cli",
                "--settings",
                str(settings),
                "send",
                "--limit",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert sent.returncode == 1, sent.stdout + sent.stderr  # one failed
    quick, imported, code = status(settings)
    assert imported == set()  # the settings' models, pandas and Jinja2 stay unimported
    assert code == 1
    snapshot = Layout(tmp_path / "outbox" / "mini").status_settings
    snapshot.unlink()  # the full status, which writes it again
    full, imported, full_code = status(settings)
    assert "pydantic" in imported  # the settings read (the sheet still not: the approval holds)
    assert snapshot.exists()
    assert quick == full and code == full_code
    assert "approved by Me on" in quick and "content unchanged" in quick
    assert "1 to send: under a minute" in quick  # row 5, pending: the --limit left it
    assert "5.1.1 unknown" in quick
    json_quick, imported, _ = status(settings, "--json")
    assert imported == set()
    snapshot.unlink()
    json_full, _, _ = status(settings, "--json")
    assert _timeless(json_quick) == _timeless(json_full)


def _timeless(text: str) -> dict[str, object]:
    """The JSON status without the forecast's instants (they follow the clock)."""
    value: dict[str, Any] = json.loads(text)
    for key in ("starts_at", "finishes_at"):
        value["forecast"].pop(key)
    return value


def test_a_changed_byte_of_the_sheet_or_the_settings_reads_them_again(tmp_path: Path) -> None:
    settings = approved_project(tmp_path, port=9)
    _, imported, _ = status(settings)
    assert imported == set()
    sheet = tmp_path / "recipients" / "people.csv"
    sheet.write_text(
        sheet.read_text(encoding="utf-8") + "Prénom9,Nom9,personne0009@example.org\n",
        encoding="utf-8",
    )
    output, imported, _ = status(settings)
    assert "jinja2" in imported  # the templates parsed again (a CSV needs no pandas)
    assert "content changed" in output and "5 recipients ready to send" in output
    sheet.write_text("\n".join(sheet.read_text(encoding="utf-8").splitlines()[:-1]) + "\n")
    _, imported, _ = status(settings)  # the same bytes as approved again: the record holds
    assert imported == set()  # and the settings were the same all along
    text = settings.read_text(encoding="utf-8").replace("per_day: 100000", "per_day: 2")
    settings.write_text(text, encoding="utf-8")
    output, imported, _ = status(settings)
    assert "pydantic" in imported
    assert "(2/day)" in output
    output, imported, _ = status(settings)
    assert imported == set() and "(2/day)" in output  # the content is still the approved one
    text = settings.read_text(encoding="utf-8").replace("{{ nom }}", "{{ nom | upper }}")
    settings.write_text(text, encoding="utf-8")  # the display name: not the approved content
    for _ in range(2):
        output, imported, _ = status(settings)
        assert "pydantic" in imported
        assert "content changed since" in output and "display name" in output


def test_a_send_window_keeps_the_full_status(tmp_path: Path) -> None:
    window = "\n  window: {days: [mon, tue, wed, thu, fri], hours: '08:30-18:00', timezone: Europe/Paris}"
    settings = approved_project(tmp_path, port=9)
    text = settings.read_text(encoding="utf-8").replace("concurrency: 2", "concurrency: 2" + window)
    settings.write_text(text, encoding="utf-8")
    output, imported, _ = status(settings)
    assert "pydantic" in imported and "weekdays 08:30" in output
    assert not (Layout(tmp_path / "outbox" / "mini").status_settings).exists()


def test_the_snapshot_knows_the_settings_defaults() -> None:
    assert recorded.DEFAULT_SETTINGS == DEFAULT_SETTINGS
    assert Path(recorded.DEFAULT_OUTBOX) == Settings.model_fields["outbox"].default

"""`status --export FILE --with-sheet`: the organisers' own sheet, every original cell unchanged.

Each test sends to a real aiosmtpd server (one recipient refused with a 5xx whose text starts
with '='), exports through the command, and reads the file back.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font

from campaign.cli import main
from campaign.export import OUTCOME_COLUMNS
from campaign.inputs import load_inputs
from campaign.send import SendOptions, send_campaign
from campaign.settings import load_settings
from campaign.spreadsheet import read_table
from tests.smtp_server import Fault, FaultyServer, make_project

REFUSED = "personne0002@example.org"
HEADERS = ["prenom", "nom", "email", "Note"]
ROWS = [
    ["Élise", "Noël", "personne0001@example.org", "=1+1"],  # the organisers' own formula-like text
    ["Zoé", "Müller", REFUSED, "01000"],
    ["Jean", "Dupont", "personne0003@example.org", ""],
]


def sent_project(tmp_path: Path, sheet: str) -> Path:
    """A project whose recipients are `sheet` (people.csv or people.xlsx), sent once."""
    fault = Fault("rcpt", code=550, text="=HYPERLINK(evil) no such user", recipient=REFUSED)
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        settings.write_text(settings.read_text().replace("people.csv", sheet))
        campaign = load_settings(settings).campaign("mini")
        report = send_campaign(load_inputs(campaign), SendOptions(wait_retries=False))
        assert report.tally.sent == 2 and report.tally.failed == 1
    return settings


def export(settings: Path, target: Path) -> None:
    args = ["--settings", str(settings), "status", "--export", str(target), "--with-sheet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output  # 1: a recipient failed
    assert f"exported to {target}" in result.output.replace("\n", "")


def check_outcomes(header: list[str], rows: list[list[str]]) -> None:
    assert header == [*HEADERS, *OUTCOME_COLUMNS]
    assert [r[:4] for r in rows] == ROWS  # every original cell identical
    states = [r[4] for r in rows]
    assert states == ["sent", "failed", "sent"]
    assert rows[0][5][:2] == "20" and rows[1][5] == ""  # a date for the sent ones only
    assert rows[1][6].startswith("550 ") and rows[1][6].endswith("no such user")
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r[4:])
    assert rows[0][7] == ""  # no reply recorded: empty


def test_a_windows_1252_semicolon_csv_comes_back_in_its_own_form(tmp_path: Path) -> None:
    people = tmp_path / "recipients" / "people-cp.csv"
    people.parent.mkdir(parents=True)
    text = "\r\n".join(";".join(r) for r in [HEADERS, *ROWS]) + "\r\n"
    people.write_bytes(text.encode("cp1252"))
    settings = sent_project(tmp_path, "people-cp.csv")
    target = tmp_path / "suivi.csv"
    export(settings, target)
    raw = target.read_bytes()
    assert b"\r\n" in raw
    decoded = raw.decode("cp1252")  # not UTF-8: the source's encoding
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    records = list(csv.reader(io.StringIO(decoded, newline=""), delimiter=";"))
    check_outcomes(records[0], records[1:])
    assert (target.stat().st_mode & 0o777) == 0o600


def write_xlsx(path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADERS)
    for row in ROWS:
        sheet.append(row)
    sheet["D2"].data_type = "s"  # text that looks like a formula, as the organisers typed it
    sheet["D3"].number_format = "@"
    sheet["A1"].font = Font(bold=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


def test_an_xlsx_sheet_is_copied_cell_by_cell(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "recipients" / "people.xlsx")
    settings = sent_project(tmp_path, "people.xlsx")
    target = tmp_path / "suivi.xlsx"
    export(settings, target)
    original = load_workbook(tmp_path / "recipients" / "people.xlsx").worksheets[0]
    copied = load_workbook(target).worksheets[0]
    for row in original.iter_rows():
        for cell in row:
            twin = copied[cell.coordinate]
            assert (twin.value, twin.number_format, twin.font.b) == (
                cell.value,
                cell.number_format,
                cell.font.b,
            )
    grid = [["" if c is None else str(c) for c in r] for r in copied.iter_rows(values_only=True)]
    check_outcomes(grid[0], grid[1:])


def test_an_xlsx_sheet_exports_to_ods_with_the_cells_it_shows(tmp_path: Path) -> None:
    write_xlsx(tmp_path / "recipients" / "people.xlsx")
    settings = sent_project(tmp_path, "people.xlsx")
    target = tmp_path / "suivi.ods"
    export(settings, target)
    table = read_table(target)
    check_outcomes(table.headers, [cells for _, cells in table.rows])


def test_with_sheet_needs_export_and_a_known_format(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=2525)
    result = CliRunner().invoke(main, ["--settings", str(settings), "status", "--with-sheet"])
    assert result.exit_code == 2
    assert "--with-sheet needs --export FILE" in result.output


def test_added_cells_that_could_start_a_formula_are_neutralised() -> None:
    from campaign.export import outcome_cells
    from campaign.ledger import Delivery, State

    delivery = Delivery(
        email="x@example.org",
        address="x@example.org",
        row=2,
        name=None,
        state=State.FAILED,
        phase=None,
        attempts=1,
        last_code=None,
        last_text="=cmd|' /C calc'!A0",
        message_id="<x@example.org>",
        queued_at=0.0,
        first_attempt_at=None,
        last_attempt_at=None,
        sent_at=None,
        next_attempt_at=None,
    )
    assert outcome_cells(delivery)[2] == "'=cmd|' /C calc'!A0"
    assert outcome_cells(None) == ["", "", "", ""]

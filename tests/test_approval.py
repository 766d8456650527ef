"""The approval fingerprint, the sign-off history, and the refusal that names what changed."""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import openpyxl
import pytest

from campaign import commands, recorded
from campaign.approval import (
    approval_path,
    approval_state,
    approve,
    compute_fingerprint,
    read_history,
    require_approval,
)
from campaign.errors import ApprovalError, CheckFailed, StateError
from campaign.inputs import Inputs, load_inputs
from campaign.recipients import read_table
from campaign.settings import load_settings
from campaign.typography import use_colon
from tests.conftest import Run, approve_proofed

HOSPITALS = "hopitaux-2020-05"
THANKS = "merci-signataires"
XLSX = "recipients/directeurs-hopitaux.xlsx"


def inputs_of(project: Path, name: str = HOSPITALS) -> Inputs:
    return load_inputs(load_settings(project / "settings.yaml").campaign(name))


def refusal(project: Path, name: str = HOSPITALS) -> str:
    with pytest.raises(ApprovalError) as caught:
        require_approval(inputs_of(project, name))
    return str(caught.value)


def approved(project: Path) -> bool:
    state = require_approval(inputs_of(project))
    return state is not None and state.approved


def edit_settings(project: Path, old: str, new: str) -> None:
    path = project / "settings.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def set_cell(project: Path, row: int, header: str, value: str) -> None:
    path = project / XLSX
    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet is not None
    headers = [c.value for c in sheet[1]]
    sheet.cell(row=row, column=headers.index(header) + 1, value=value)
    book.save(path)


def test_fingerprint_is_the_same_on_every_run_and_in_every_folder(
    project: Path, tmp_path: Path
) -> None:
    first = compute_fingerprint(inputs_of(project))
    assert first.digest == compute_fingerprint(inputs_of(project)).digest
    moved = tmp_path / "elsewhere"
    project.rename(moved)
    assert compute_fingerprint(inputs_of(moved)).digest == first.digest
    assert len(first.rows) == 40
    assert not any(str(tmp_path) in file for (_, file) in first.components)


def test_send_is_refused_before_any_approval(project: Path) -> None:
    message = refusal(project)
    assert "not approved yet" in message
    assert "campaign approve" in message


def test_approval_passes_while_nothing_changes(project: Path) -> None:
    record = approve(inputs_of(project), by="Maître Dupont", note="footnotes checked")
    state = require_approval(inputs_of(project))
    assert state is not None and state.approved
    assert state.last is not None and state.last.fingerprint == record.fingerprint
    assert record.recipients == 40


def test_one_changed_cell_is_named_with_its_row(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    set_cell(project, 9, "Ville", "AILLEURS")
    message = refusal(project)
    assert "1 recipient changed: row 9" in message
    assert "letter" not in message


def test_several_changed_rows_are_listed(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    for row in (17, 4, 9):
        set_cell(project, row, "Fonction", "Directrice par intérim")
    assert "3 recipients changed: rows 4, 9, 17" in refusal(project)


def test_one_character_of_the_letter_is_named(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    letter = project / "letters/lettre-hopitaux.md"
    letter.write_text(
        letter.read_text(encoding="utf-8").replace("Un arrêté[^arrete]", "Un arrête[^arrete]"),
        encoding="utf-8",
    )
    message = refusal(project)
    assert "letter template changed (letters/lettre-hopitaux.md)" in message
    assert "recipient" not in message


def test_the_stylesheet_and_the_images_it_uses_are_covered(project: Path) -> None:
    css = project / "letters/lettre.css"
    css.write_text('@page { size: A4 } .logo { background: url("logo.png") }', encoding="utf-8")
    (project / "letters/logo.png").write_bytes(b"\x89PNG fake logo")
    approve(inputs_of(project), by="reviewer")
    (project / "letters/logo.png").write_bytes(b"\x89PNG fake logo, redrawn")
    assert "image changed (letters/logo.png)" in refusal(project)
    approve(inputs_of(project), by="reviewer")
    css.write_text('@page { size: A4 } .logo { background: url("logo.png") } p { margin: 0 }')
    assert "stylesheet changed (letters/lettre.css)" in refusal(project)


def test_one_byte_of_an_attachment_is_named(project: Path) -> None:
    note = project / "letters/annexe.pdf"
    note.write_bytes(b"%PDF-1.4 annexe")
    edit_settings(project, "attachments: []", "attachments: [letters/annexe.pdf]")
    approve(inputs_of(project), by="reviewer")
    note.write_bytes(b"%PDF-1.4 annexf")
    assert "attachment changed (letters/annexe.pdf)" in refusal(project)


def test_the_subject_is_named(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    edit_settings(project, "Health Data Hub — {{", "Health Data Hub, {{")
    message = refusal(project)
    assert "subject changed" in message
    assert "recipient" not in message


def test_the_sender_and_reply_to_are_named(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    edit_settings(project, "reply_to: contact@example.org", "reply_to: autre@example.org")
    assert "reply-to changed" in refusal(project)


def test_the_space_before_a_colon_is_part_of_the_approved_content(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    edit_settings(project, "default_campaign:", "typography: {colon: word}\ndefault_campaign:")
    try:
        assert "typography changed" in refusal(project)
    finally:
        use_colon("fine")  # loading the campaign set it for this process


def test_added_and_removed_recipients_are_counted(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    path = project / XLSX
    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet is not None
    sheet.delete_rows(5)  # row 5 goes; the rows below move up by one
    sheet.append(
        [
            "Madame",
            "Zoé",
            "Nouvelle",
            "Directrice",
            "Hôpital neuf",
            "1 rue Neuve",
            "75001",
            "PARIS",
            "zoe.nouvelle@example.org",
        ]
    )
    book.save(path)
    message = refusal(project)
    assert "1 recipient added: row 41" in message
    assert "1 recipient removed (approved as row 5)" in message
    assert "changed: row" not in message


def test_reordering_rows_does_not_invalidate_the_approval(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    first_email = inputs_of(project).recipients.recipients[0].email
    path = project / XLSX
    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet is not None
    rows = [[(c.value, c.number_format) for c in row] for row in sheet.iter_rows(min_row=2)]
    sheet.delete_rows(2, len(rows))
    for row in reversed(rows):
        sheet.append([value for value, _ in row])
        for cell, (_, number_format) in zip(sheet[sheet.max_row], row, strict=True):
            cell.number_format = number_format  # moving a row moves its formats (00000)
    book.save(path)
    assert inputs_of(project).recipients.recipients[0].email != first_email
    assert approved(project)


def test_resaving_the_spreadsheet_as_csv_does_not_invalidate_the_approval(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    table = read_table(project / XLSX)
    with (project / "recipients/directeurs.csv").open("w", encoding="cp1252", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(table.headers)
        writer.writerows(cells for _, cells in table.rows)
    edit_settings(project, XLSX, "recipients/directeurs.csv")
    assert approved(project)


def test_history_survives_a_second_approval(project: Path, run: Run) -> None:
    first = approve_proofed(
        run, HOSPITALS, "--by", "Alice Relectrice", "--note", "première lecture"
    )
    assert first.exit_code == 0, first.output
    set_cell(project, 3, "Nom", "Autre")
    second = approve_proofed(run, HOSPITALS, "--by", "Bernard Juriste")
    assert second.exit_code == 0, second.output
    assert "approved by Bernard Juriste" in second.output
    history = read_history(inputs_of(project).campaign)
    assert [h.by for h in history] == ["Alice Relectrice", "Bernard Juriste"]
    assert history[0].note == "première lecture"
    assert history[0].fingerprint != history[1].fingerprint
    assert history[0].rows != history[1].rows
    path = approval_path(inputs_of(project).campaign)
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text(encoding="utf-8"))["approvals"][1]) >= {
        "fingerprint",
        "by",
        "at",
        "note",
        "components",
        "rows",
    }


def test_approve_is_refused_while_check_finds_errors(project: Path, run: Run) -> None:
    campaign = inputs_of(project).campaign
    assert run("proof", HOSPITALS, "--rows", "2", "-q").exit_code == 0
    set_cell(project, 6, "Courriel", "pas-une-adresse")
    with pytest.raises(CheckFailed, match="1 error") as caught:
        commands.approve(campaign, by="reviewer")
    assert caught.value.problems[0].place.row == 6
    result = run("approve", HOSPITALS, "--by", "reviewer")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "campaign hopitaux-2020-05 cannot be approved: 40 recipients, 39 ready" in result.output
    assert "Courriel" in text and "@-sign" in text
    assert not approval_path(campaign).exists()


def test_approve_is_refused_until_the_proof_pack_shows_the_content(project: Path, run: Run) -> None:
    campaign = inputs_of(project).campaign
    with pytest.raises(ApprovalError, match="no proof pack"):
        commands.approve(campaign, by="reviewer")
    assert run("proof", HOSPITALS, "--rows", "2", "-q").exit_code == 0
    set_cell(project, 3, "Nom", "Autre")  # the content changes after the proofs were made
    stale = run("approve", HOSPITALS, "--by", "reviewer")
    assert stale.exit_code == 1
    assert "the proof pack shows older content" in " ".join(stale.output.split())
    assert "campaign proof" in stale.output
    assert not approval_path(campaign).exists()
    assert run("proof", HOSPITALS, "--rows", "2", "-q").exit_code == 0
    assert commands.approve(campaign, by="reviewer").by == "reviewer"


def test_a_damaged_history_is_a_clear_error(project: Path, run: Run) -> None:
    approve(inputs_of(project), by="reviewer")
    path = approval_path(inputs_of(project).campaign)
    path.write_text(path.read_text(encoding="utf-8").replace('"by"', '"who"', 1))
    with pytest.raises(StateError, match="approval history is damaged"):
        require_approval(inputs_of(project))
    path.write_text("{ not json")
    result = run("approve", HOSPITALS, "--by", "reviewer")
    assert result.exit_code == 2
    assert "approval history is damaged" in result.output
    assert "Traceback" not in result.output


def test_approval_can_be_turned_off_in_the_settings(project: Path) -> None:
    edit_settings(
        project, "    attach_pdf: false", "    attach_pdf: false\n    approval: {required: false}"
    )
    assert require_approval(inputs_of(project, THANKS)) is None
    assert "not required" in approval_state(inputs_of(project, THANKS)).summary()
    assert "not approved yet" in refusal(project, HOSPITALS)
    approval_path(inputs_of(project, THANKS).campaign).parent.mkdir(parents=True)
    approval_path(inputs_of(project, THANKS).campaign).write_text("damaged")
    assert require_approval(inputs_of(project, THANKS)) is None


def test_the_approval_file_holds_no_absolute_path(project: Path) -> None:
    approve(inputs_of(project), by="reviewer")
    text = approval_path(inputs_of(project).campaign).read_text(encoding="utf-8")
    assert str(project) not in text
    assert not re.search(r'"/', text)


def test_send_refuses_without_approval_but_dry_run_and_test_do_not_need_it(
    project: Path, run: Run
) -> None:
    refused = run("send", HOSPITALS)
    assert refused.exit_code == 1
    assert "not approved yet" in " ".join(refused.output.split())
    assert "Traceback" not in refused.output
    assert not (project / "outbox" / HOSPITALS / "delivery.sqlite").exists()
    book = openpyxl.load_workbook(project / XLSX)
    assert book.active is not None
    book.active.delete_rows(5, 40)  # three recipients are enough for a dry run
    book.save(project / XLSX)
    dry = run("send", HOSPITALS, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "not approved" not in dry.output
    assert "3 messages composed" in dry.output


def test_send_names_what_changed_since_the_approval(project: Path, run: Run) -> None:
    assert approve_proofed(run, HOSPITALS, "--by", "reviewer").exit_code == 0
    set_cell(project, 4, "Nom", "Durand")
    edit_settings(project, "Health Data Hub — {{", "Health Data Hub, {{")
    refused = run("send", HOSPITALS)
    assert refused.exit_code == 1
    text = " ".join(refused.output.split())
    assert "subject changed" in text
    assert "1 recipient changed: row 4" in text
    assert "campaign approve" in text


def test_status_shows_the_approval(project: Path, run: Run) -> None:
    assert "approval: not approved yet" in " ".join(run("status", HOSPITALS).output.split())
    assert approve_proofed(run, HOSPITALS, "--by", "Maître Dupont").exit_code == 0
    shown = " ".join(run("status", HOSPITALS).output.split())
    assert "approved by Maître Dupont" in shown
    assert "content unchanged" in shown


@pytest.mark.parametrize(
    ("zone", "shown"), [("Europe/Paris", "2020-05-06 20:02"), ("UTC", "2020-05-06 18:02")]
)
def test_the_time_of_an_approval_is_said_on_the_organisers_clock(
    monkeypatch: pytest.MonkeyPatch, zone: str, shown: str
) -> None:
    # Kept in UTC; said as the report and the export say the times of sending, on the local
    # clock: a Paris organiser who approved at 20:02 read "18:02 UTC".
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        assert recorded.when("2020-05-06T18:02:41+00:00") == shown
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_email_body_template_is_named(project: Path) -> None:
    body = project / "letters/courriel.md"
    body.write_text("Bonjour {{ prenom }},\n\nVeuillez trouver notre lettre ci-jointe.\n")
    edit_settings(
        project, "    attach_pdf: true", "    attach_pdf: true\n    email_body: letters/courriel.md"
    )
    approve(inputs_of(project), by="reviewer")
    body.write_text("Bonjour {{ prenom }},\n\nVeuillez trouver notre courrier ci-joint.\n")
    message = refusal(project)
    assert "email body template changed (letters/courriel.md)" in message
    assert "letter template" not in message


def test_recipients_leaving_keep_the_approval(project: Path) -> None:
    """A row deleted (or suppressed after a bounce) takes nobody to unapproved content: the
    approval holds, send is not refused, and status says who left."""
    approve(inputs_of(project), by="reviewer")
    path = project / XLSX
    book = openpyxl.load_workbook(path)
    sheet = book.active
    assert sheet is not None
    sheet.delete_rows(5)
    book.save(path)
    state = require_approval(inputs_of(project))
    assert state is not None and state.approved
    assert state.left == [5]
    assert "since then 1 recipient no longer to be sent (approved as row 5)" in state.summary()
    # The fingerprint named is the approved one, not that of the content without row 5.
    assert state.last is not None and state.fingerprint.digest != state.last.fingerprint
    assert f"(fingerprint {state.last.fingerprint[:12]}, content unchanged)" in state.summary()
    # ... but a row changed as well is a change, and the refusal lists both.
    sheet.cell(row=6, column=5).value = "Hôpital renommé"
    book.save(path)
    message = refusal(project)
    assert "1 recipient changed" in message
    assert "1 recipient removed (approved as row 5)" in message

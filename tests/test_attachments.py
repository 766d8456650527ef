"""Per-recipient attachments: a column lists each row's files, checked, fingerprinted, proofed, sent."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from campaign.approval import compute_fingerprint, describe_changes
from campaign.cli import main
from campaign.errors import SettingsError
from campaign.inputs import check_inputs, load_inputs
from campaign.send import SendOptions, send_campaign
from campaign.settings import load_settings
from tests.smtp_server import FaultyServer, make_project

EXTRA = "attachments_column: Pièces jointes\n    attachments_folder: letters/annexes"


def project(tmp_path: Path, cells: list[str], *, port: int = 2525) -> Path:
    """Three recipients whose `Pièces jointes` cells are `cells`; annexes a.pdf and b.txt exist."""
    settings = make_project(tmp_path, port=port, recipients=3, extra=EXTRA)
    annexes = tmp_path / "letters" / "annexes"
    annexes.mkdir(parents=True, exist_ok=True)
    (annexes / "a.pdf").write_bytes(b"%PDF-1.4 annexe A\n")
    (annexes / "b.txt").write_text("annexe B\n", encoding="utf-8")
    lines = ["prenom,nom,email,Pièces jointes"] + [
        f'Prénom{i},Nom{i},personne{i:04d}@example.org,"{cell}"' for i, cell in enumerate(cells, 1)
    ]
    (tmp_path / "recipients" / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return settings


def inputs_of(settings: Path):  # type: ignore[no-untyped-def]
    return load_inputs(load_settings(settings).campaign("mini"))


def test_each_row_gets_the_files_its_cell_lists(tmp_path: Path) -> None:
    inputs = inputs_of(project(tmp_path, ["a.pdf; b.txt", "", "b.txt"]))
    assert check_inputs(inputs).errors == 0
    folder = (tmp_path / "letters" / "annexes").resolve()
    rows = inputs.recipients.ready
    assert inputs.attachments_for(rows[0]) == [folder / "a.pdf", folder / "b.txt"]
    assert inputs.attachments_for(rows[1]) == []
    assert inputs.attachments_for(rows[2]) == [folder / "b.txt"]


def test_check_names_the_row_of_a_missing_file_and_refuses_a_path_out_of_the_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret.txt").write_text("not for them\n")
    inputs = inputs_of(project(tmp_path, ["a.pdf", "manque.pdf", "../../secret.txt"]))
    report = check_inputs(inputs)
    found = {(p.place.row, p.place.column): p.message for p in report.problems}
    assert found[(3, "Pièces jointes")] == "attachment not found: manque.pdf (in letters/annexes)"
    assert "outside letters/annexes" in found[(4, "Pièces jointes")]
    assert report.errors == 2
    with pytest.raises(Exception, match="outside"):
        inputs.attachments_for(inputs.recipients.ready[2])


def test_a_folder_in_place_of_a_file_is_reported(tmp_path: Path) -> None:
    settings = project(tmp_path, ["a.pdf", "", ""])
    (tmp_path / "letters" / "annexes" / "dossier").mkdir()
    csv = tmp_path / "recipients" / "people.csv"
    csv.write_text(csv.read_text().replace('"a.pdf"', '"dossier"'))
    report = check_inputs(inputs_of(settings))
    assert [p.place.row for p in report.problems if p.severity.value == "error"] == [2]


def test_a_missing_column_or_folder_is_named(tmp_path: Path) -> None:
    settings = project(tmp_path, ["", "", ""])
    csv = tmp_path / "recipients" / "people.csv"
    csv.write_text(csv.read_text().replace(",Pièces jointes", ",Annexes"))
    report = check_inputs(inputs_of(settings))
    assert any("attachments column 'Pièces jointes'" in p.message for p in report.problems)
    settings.write_text(settings.read_text().replace("letters/annexes", "letters/nulle-part"))
    with pytest.raises(SettingsError, match="not a folder of the project") as caught:
        load_settings(settings)
    assert caught.value.place.key == "campaigns.mini.attachments_folder"


def test_the_files_are_part_of_the_approval_fingerprint(tmp_path: Path) -> None:
    settings = project(tmp_path, ["a.pdf", "b.txt", ""])
    before = compute_fingerprint(inputs_of(settings))
    (tmp_path / "letters" / "annexes" / "a.pdf").write_bytes(b"%PDF-1.4 annexe A, revised\n")
    after = compute_fingerprint(inputs_of(settings))
    assert before.digest != after.digest
    assert describe_changes(before, after) == ["attachment changed (letters/annexes/a.pdf)"]
    csv = tmp_path / "recipients" / "people.csv"
    csv.write_text(csv.read_text().replace('"b.txt"', '"a.pdf"'))
    again = compute_fingerprint(inputs_of(settings))
    assert "1 recipient changed: row 3" in describe_changes(after, again)


def test_the_proofs_and_the_sent_messages_carry_them(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = project(tmp_path, ["a.pdf; b.txt", "", "b.txt"], port=server.port)
        result = CliRunner().invoke(main, ["--settings", str(settings), "proof", "--all"])
        assert result.exit_code == 0, result.output
        index = (tmp_path / "outbox" / "mini" / "proofs" / "index.html").read_text()
        assert index.count("a.pdf") == 1
        assert index.count("b.txt") == 2
        report = send_campaign(inputs_of(settings), SendOptions(wait_retries=False))
        assert report.tally.sent == 3
        names: dict[str, list[str]] = {}
        for stored in server.stored:
            message = email.message_from_bytes(stored.data, policy=email.policy.default)
            to = str(message["To"].addresses[0].addr_spec)
            parts = list(message.iter_attachments())  # type: ignore[attr-defined]
            names[to] = [str(part.get_filename()) for part in parts]
            if to == "personne0001@example.org":
                assert parts[1].get_content() == "annexe B\n"
    assert names == {
        "personne0001@example.org": ["a.pdf", "b.txt"],
        "personne0002@example.org": [],
        "personne0003@example.org": ["b.txt"],
    }

"""Reading recipient spreadsheets: formats, encodings, and every problem at the row Excel shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.errors import InputError, Severity
from campaign.recipients import (
    Recipient,
    RecipientList,
    Status,
    read_recipients,
    read_suppression,
    read_table,
    variable_name,
)

DATA = Path(__file__).resolve().parent / "data"
SAME_ROWS = [
    "same-rows.csv",
    "same-rows.xlsx",
    "same-rows.ods",
    "windows-1252-semicolon.csv",
    "utf8-bom-comma.csv",
    "tab-separated.tsv",
]
HOSTILE = ["hostile.csv", "hostile.xlsx", "hostile.ods"]


def load(name: str, **options: object) -> RecipientList:
    settings: dict[str, object] = {
        "email_column": "Courriel",
        "required_columns": ["Nom"],
        "header_columns": {"prenom", "nom"},
    }
    settings.update(options)
    return read_recipients(DATA / name, display=name, **settings)  # type: ignore[arg-type]


def as_tuple(recipient: Recipient) -> tuple[object, ...]:
    return (
        recipient.row,
        recipient.email,
        dict(recipient.values),
        dict(recipient.variables),
        recipient.status,
    )


def places(result: RecipientList) -> set[tuple[str, int | None, str | None]]:
    return {(p.severity.value, p.place.row, p.place.column) for p in result.problems}


# -- the same rows in every format ----------------------------------------------------------------


@pytest.mark.parametrize("name", SAME_ROWS[1:])
def test_every_format_gives_the_same_recipients_as_the_utf8_csv(name: str) -> None:
    expected = load("same-rows.csv")
    result = load(name)
    assert result.problems == []
    assert result.headers == expected.headers
    assert [as_tuple(r) for r in result.recipients] == [as_tuple(r) for r in expected.recipients]


@pytest.mark.parametrize("name", SAME_ROWS)
def test_postcode_and_phone_keep_their_leading_zero(name: str) -> None:
    first = load(name).recipients[0]
    assert first.values["Code postal"] == "01000"
    assert first.values["Téléphone"] == "0612345678"
    assert first.variables["code_postal"] == "01000"


@pytest.mark.parametrize("name", ["same-rows.xlsx", "same-rows.ods"])
def test_number_cells_read_as_the_text_the_sheet_shows(name: str) -> None:
    lits = [r.values["Lits"] for r in load(name).recipients]
    assert lits == ["350", "1200", "0", "42"]


@pytest.mark.parametrize("name", SAME_ROWS)
def test_accents_oe_ligature_and_euro_survive_each_encoding(name: str) -> None:
    rows = load(name).recipients
    assert rows[1].values["Nom"] == "Œuvray"
    assert rows[1].values["Établissement"] == "CHU de Besançon — site Minjoz"
    assert rows[3].values["Établissement"] == "Clinique du Parc (5 000 € de dons)"
    assert rows[3].values["Nom"] == 'Dupont, dit "Jeannot"'


@pytest.mark.parametrize("name", SAME_ROWS)
def test_a_multi_line_address_keeps_its_lines(name: str) -> None:
    assert load(name).recipients[1].values["Adresse"] == "Bâtiment B\n3 boulevard Fleming"


def test_semicolons_inside_comma_separated_cells_do_not_change_the_delimiter() -> None:
    table = read_table(DATA / "same-rows.csv")
    assert len(table.headers) == 11
    assert table.rows[2][1][4] == "Hôpital « Les Tilleuls »; pôle 2"


def test_headers_become_variable_names_and_originals_stay_reachable() -> None:
    result = load("same-rows.xlsx")
    assert result.names["etablissement"] == "Établissement"
    assert result.names["code_postal"] == "Code postal"
    context = result.recipients[0].context()
    assert context["etablissement"] == "Centre hospitalier d'Ambérieu"
    assert context["row"]["Établissement"] == "Centre hospitalier d'Ambérieu"  # type: ignore[index]
    assert context["row_number"] == 2


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Établissement", "etablissement"),
        ("Code postal", "code_postal"),
        ("  E-mail  ", "e_mail"),
        ("N° de lits", "n_de_lits"),
        ("2e adresse", "c_2e_adresse"),
        ("Œuvre", "oeuvre"),
        ("***", ""),
    ],
)
def test_variable_name_of_header(header: str, name: str) -> None:
    assert variable_name(header) == name


def test_rows_are_numbered_as_excel_shows_them_when_the_header_is_lower_down() -> None:
    result = load("header-on-row-3.xlsx")
    assert [r.row for r in result.recipients] == [4, 5, 6, 7]
    bad = read_recipients(
        DATA / "header-on-row-3.xlsx", email_column="Mail", display="header-on-row-3.xlsx"
    )
    assert bad.problems[0].place.row == 3  # the header row


def test_suppressed_addresses_are_marked_whatever_their_case() -> None:
    suppressed, problems = read_suppression(DATA / "suppression.csv")
    assert problems == []
    assert suppressed == {"noel.dupont@example.org"}
    result = load("same-rows.csv", suppressed=suppressed)
    assert [r.status for r in result.recipients] == [Status.READY] * 3 + [Status.SUPPRESSED]
    assert result.count(Status.SUPPRESSED) == 1
    assert len(result.ready) == 3


def test_suppression_list_of_bare_lines_reports_a_bad_line_with_its_row(tmp_path: Path) -> None:
    path = tmp_path / "suppression.csv"
    path.write_text("a@example.org\n\n# comment\nnot an address\nB@Example.org\n")
    suppressed, problems = read_suppression(path, display="suppression.csv")
    assert {"a@example.org", "b@example.org"} <= suppressed
    assert [(p.severity, p.place.row) for p in problems] == [(Severity.WARNING, 4)]
    assert "not an address" in problems[0].message


def test_a_missing_suppression_list_suppresses_nobody(tmp_path: Path) -> None:
    assert read_suppression(tmp_path / "none.csv") == (frozenset(), [])


# -- hostile sheets -------------------------------------------------------------------------------

HOSTILE_PROBLEMS = {
    ("error", 3, "Courriel"),
    ("error", 4, "Courriel"),
    ("error", 5, "Courriel"),
    ("error", 6, "Courriel"),
    ("warning", 7, None),
    ("error", 8, "Courriel"),
    ("error", 9, "Prénom"),
    ("error", 10, "Nom"),
    ("error", 11, "Courriel"),
    ("error", 13, "Courriel"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_each_hostile_row_is_reported_at_its_row_and_column(name: str) -> None:
    result = load(name)
    assert places(result) == HOSTILE_PROBLEMS
    assert len(result.problems) == len(HOSTILE_PROBLEMS)  # each reported once
    assert all(p.place.file == name for p in result.problems)
    assert all(p.hint for p in result.problems)  # each says what to do


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize(
    ("row", "fix"),
    [
        (3, "did you mean bob@example.org?"),  # the domain most rows use
        (4, "did you mean alice.martin@example.org?"),  # trailing dot
        (5, "did you mean claire.dubois@example.org?"),  # comma for a dot
        (6, "did you mean jeandupont@example.org?"),  # a space
    ],
)
def test_a_malformed_address_gets_the_obvious_fix_as_hint(name: str, row: int, fix: str) -> None:
    problem = next(p for p in load(name).problems if p.place.row == row)
    assert problem.message.startswith("not an email address")
    assert problem.hint == fix


@pytest.mark.parametrize("name", HOSTILE)
def test_duplicate_address_differing_in_case_names_both_rows(name: str) -> None:
    problem = next(p for p in load(name).problems if p.place.row == 8)
    assert "duplicate email address 'Marie.Curie@EXAMPLE.org': same as row 2" in problem.message
    assert problem.hint is not None and "rows 2 and 8" in problem.hint
    statuses = {r.row: r.status for r in load(name).recipients}
    assert statuses[2] is Status.READY
    assert statuses[8] is Status.INVALID


@pytest.mark.parametrize("name", HOSTILE)
def test_a_line_break_in_a_cell_that_reaches_a_header_is_refused(name: str) -> None:
    problem = next(p for p in load(name).problems if p.place.row == 9)
    assert problem.place.column == "Prénom"
    assert "line break" in problem.message
    assert next(r for r in load(name).recipients if r.row == 9).status is Status.INVALID


def test_a_line_break_in_a_cell_no_header_uses_is_kept() -> None:
    result = load("hostile.csv", header_columns=set())
    assert ("error", 9, "Prénom") not in places(result)
    eve = next(r for r in result.recipients if r.row == 9)
    assert eve.status is Status.READY
    assert eve.values["Prénom"] == "Eve\nBcc: someone@example.org"


@pytest.mark.parametrize("name", HOSTILE)
def test_an_empty_row_is_skipped_with_a_warning(name: str) -> None:
    result = load(name)
    warning = next(p for p in result.problems if p.place.row == 7)
    assert warning.severity is Severity.WARNING
    assert "empty row" in warning.message
    assert 7 not in {r.row for r in result.recipients}
    assert len(result.recipients) == 11


def test_empty_required_cell_and_missing_address_are_errors() -> None:
    problems = {p.place.row: p for p in load("hostile.csv").problems}
    assert problems[10].message == "empty cell in a required column"
    assert problems[11].message == "no email address"


def test_special_use_domain_is_refused_with_a_hint_unless_allowed() -> None:
    problem = next(p for p in load("hostile.csv").problems if p.place.row == 13)
    assert problem.hint is not None and "allow_special_domains" in problem.hint
    allowed = load("hostile.csv", allow_special_domains=True)
    assert 13 not in {p.place.row for p in allowed.problems}


def test_a_one_row_file_gives_one_recipient() -> None:
    result = load("one-row.csv")
    assert result.problems == []
    assert [(r.row, r.email) for r in result.recipients] == [(2, "seul@example.org")]


def test_a_header_only_file_warns_there_are_no_recipients() -> None:
    result = load("header-only.csv")
    assert result.recipients == []
    assert [(p.severity, p.place.row) for p in result.problems] == [(Severity.WARNING, 1)]
    assert "no recipients" in result.problems[0].message


def test_a_blank_header_over_values_is_an_error_naming_the_column_letter() -> None:
    result = load("blank-header.csv")
    assert places(result) == {("error", 1, "B")}  # column D is blank all the way: harmless
    assert "first in row 2" in result.problems[0].message


def test_colliding_headers_are_an_error() -> None:
    result = load("colliding-headers.csv")
    assert places(result) == {("error", 1, "nom")}
    assert "'Nom' and 'nom' both become the variable 'nom'" in result.problems[0].message
    assert result.problems[0].hint == "rename one of the two columns"


def test_a_row_longer_than_the_header_is_reported_not_dropped() -> None:
    result = load("ragged.csv")
    assert places(result) == {("error", 1, "C")}
    assert "first in row 3" in result.problems[0].message


def test_a_workbook_renamed_csv_is_refused_with_a_hint() -> None:
    result = load("binary.csv")
    assert result.recipients == []
    [problem] = result.problems
    assert problem.place.file == "binary.csv"
    assert "workbook" in problem.message
    assert problem.hint is not None and ".xlsx" in problem.hint


def test_random_binary_data_renamed_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(bytes(range(256)) * 4)
    [problem] = read_recipients(path, email_column="Courriel").problems
    assert "not a text file" in problem.message


def test_missing_email_column_suggests_the_closest_header() -> None:
    result = load("same-rows.csv", email_column="Couriel")
    [problem] = result.problems
    assert problem.message == "no column 'Couriel' for the email addresses"
    assert problem.place.row == 1
    assert problem.hint is not None and "did you mean 'Courriel'?" in problem.hint


def test_missing_email_column_names_the_column_that_holds_addresses(tmp_path: Path) -> None:
    # "Mail" is close to no header: the hint said only "set email_column to the header of the
    # address column", and the organiser had to open the sheet to find it.
    [problem] = load("same-rows.csv", email_column="Mail").problems
    assert (
        problem.hint
        == "the column 'Courriel' holds addresses: write email_column: Mail".replace(
            ": Mail", ": Courriel"
        )
    )
    sheet = tmp_path / "sans-adresses.csv"
    sheet.write_text("Nom;Ville\nNoël;Paris\nRoux;Lyon\n", encoding="utf-8")
    [problem] = read_recipients(sheet, email_column="Mail").problems
    assert problem.hint is not None and "the sheet's headers: 'Nom', 'Ville'" in problem.hint


def test_missing_required_column_is_named() -> None:
    result = load("same-rows.csv", required_columns=["Nom", "Service"])
    [problem] = result.problems
    assert problem.message == "required column 'Service' is missing"


def test_email_column_may_be_named_by_its_variable_name() -> None:
    assert load("same-rows.csv", email_column="courriel").problems == []


def test_a_control_character_is_removed_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bell.csv"
    path.write_text("Nom,Ville,Courriel\nAna,Pa\x07ris,ana@example.org\n")
    result = read_recipients(path, email_column="Courriel")
    assert result.recipients[0].values["Ville"] == "Paris"
    assert places(result) == {("warning", 2, "Ville")}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("blank.csv", b"\r\n  \r\n", "the file is empty"),
        ("letter.pdf", b"%PDF-1.7", "unsupported file type .pdf"),
        ("broken.xlsx", b"PK\x03\x04 not really a zip", "cannot read the spreadsheet"),
    ],
)
def test_unreadable_files_are_input_errors(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as caught:
        read_table(path, display=name)
    assert caught.value.place.file == name
    [problem] = read_recipients(path, email_column="Courriel").problems
    assert message in problem.message


def test_a_latin1_file_with_a_single_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes("Courriel\r\nhélène@example.org\r\nzoe@example.org\r\n".encode("latin-1"))
    result = read_recipients(path, email_column="Courriel")
    assert result.problems == []
    assert [r.email for r in result.recipients] == ["hélène@example.org", "zoe@example.org"]

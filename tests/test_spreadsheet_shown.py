"""What the sheet shows is what campaign reads: a failed formula, a hidden or filtered-out row.

A formula that failed in the spreadsheet (#N/A, #DIV/0!) is an error at its row and column.

calamine reads such a cell as empty (or, in an .ods, as 0): the letter would have shown a blank
where the organiser's sheet shows `#N/A`. The files here are written the way Excel and
LibreOffice write them (the error value cached beside the formula), checked through
`campaign check` as an organiser runs it.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from campaign.errors import InputError, Severity
from campaign.recipients import Status, read_recipients
from campaign.spreadsheet import read_table
from tests.conftest import cli, said
from tests.smtp_server import make_project

HEADERS = ["Prénom", "Nom", "Courriel", "Ville"]
ROWS = [
    ["Jeanne", "Martin", "jeanne.martin@example.org", "Lyon"],
    ["Paul", "Durand", "paul.durand@example.org", "Rennes"],
]


def _rewrite_sheet(path: Path, edit: dict[str, str]) -> None:
    """Replace cells of the first sheet's XML by hand, as Excel would have saved them."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for ref, xml in edit.items():
        sheet, count = re.subn(rf'<c r="{ref}"[^>]*?(?:/>|>.*?</c>)', xml, sheet, count=1)
        assert count == 1, ref
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


def workbook(rows: list[list[object]], headers: list[str] = HEADERS) -> tuple[Workbook, Worksheet]:
    """A workbook whose first sheet holds `headers`, then `rows`."""
    book = Workbook()
    sheet = book.active
    assert isinstance(sheet, Worksheet)
    sheet.append(headers)
    for row in rows:
        sheet.append(row)
    return book, sheet


def excel_book(path: Path, edit: dict[str, str]) -> Path:
    book, _sheet = workbook(list(ROWS))
    book.save(path)
    _rewrite_sheet(path, edit)
    return path


def xlsx_project(tmp_path: Path, book: Workbook, *, extra: str = "") -> Path:
    """The small project of `make_project`, its recipients the sheet `book` (in French)."""
    settings = make_project(tmp_path, port=1, extra=extra)
    book.save(tmp_path / "recipients" / "people.xlsx")
    text = settings.read_text().replace("recipients/people.csv", "recipients/people.xlsx")
    text = text.replace("email_column: email", "email_column: Courriel")
    settings.write_text(text + "language: fr\n")
    return settings


# Excel's own way of saving a failed lookup, a formula giving "" and one giving text.
LOOKUP_FAILED = '<c r="D3" t="e"><f>VLOOKUP(B3,Villes!A:B,2,FALSE)</f><v>#N/A</v></c>'
EMPTY_TEXT = '<c r="D3" t="str"><f>IF(B3="","",B3)</f><v></v></c>'
TEXT_RESULT = '<c r="D3" t="str"><f>UPPER("rennes")</f><v>RENNES</v></c>'


def test_an_xlsx_error_value_is_read_as_the_sheet_shows_it(tmp_path: Path) -> None:
    path = excel_book(tmp_path / "d.xlsx", {"D3": LOOKUP_FAILED})
    assert read_table(path).rows[1] == (3, ["Paul", "Durand", "paul.durand@example.org", "#N/A"])


def test_an_xlsx_formula_result_is_read_whatever_it_is(tmp_path: Path) -> None:
    empty = excel_book(tmp_path / "empty.xlsx", {"D3": EMPTY_TEXT})
    assert read_table(empty).rows[1][1][3] == ""
    text = excel_book(tmp_path / "text.xlsx", {"D3": TEXT_RESULT})
    assert read_table(text).rows[1][1][3] == "RENNES"
    listed = read_recipients(text, email_column="Courriel")
    assert listed.problems == []


def test_a_failed_formula_makes_its_row_an_error_at_its_column(tmp_path: Path) -> None:
    path = excel_book(tmp_path / "d.xlsx", {"D3": LOOKUP_FAILED})
    listed = read_recipients(path, email_column="Courriel", display="d.xlsx")
    [problem] = listed.problems
    assert problem.severity is Severity.ERROR
    assert (problem.place.row, problem.place.column) == (3, "Ville")
    assert "#N/A" in problem.message and "RECHERCHEV" in (problem.hint or "")
    assert [r.status for r in listed.recipients] == [Status.READY, Status.INVALID]


def test_formulas_never_computed_are_refused_with_the_first_cell(tmp_path: Path) -> None:
    # openpyxl (and most programs that write .xlsx) store the formula without its result.
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADERS)
    sheet.append(["Jeanne", "Martin", "jeanne.martin@example.org", "Lyon"])
    sheet.append(["Paul", "Durand", '=LOWER(A3)&".durand@example.org"', "Rennes"])
    book.save(tmp_path / "d.xlsx")
    with pytest.raises(InputError) as caught:
        read_table(tmp_path / "d.xlsx", display="d.xlsx")
    assert (caught.value.place.row, caught.value.place.column) == (3, "C")
    assert "LibreOffice" in (caught.value.hint or "")


ODS_CELL = '<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>'


def ods_row(cells: list[str], attributes: str = "") -> str:
    return (
        f"<table:table-row{attributes}>"
        + "".join(ODS_CELL.format(c) for c in cells)
        + ("</table:table-row>")
    )


def write_ods(path: Path, rows_xml: str) -> Path:
    """An .ods with the header row, then `rows_xml` (table rows as LibreOffice writes them)."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        ' xmlns:calcext="urn:org:documentfoundation:names:experimental:calc:xmlns:calcext:1.0"'
        ' office:version="1.3"><office:body><office:spreadsheet><table:table table:name="Liste">'
        '<table:table-column table:number-columns-repeated="4"/>'
        f"{ods_row(HEADERS)}{rows_xml}"
        "</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest'
        ' xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.3"><manifest:file-entry manifest:full-path="/"'
        ' manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "mimetype",
            "application/vnd.oasis.opendocument.spreadsheet",
            compress_type=zipfile.ZIP_STORED,
        )
        archive.writestr("content.xml", content)
        archive.writestr("META-INF/manifest.xml", manifest)
    return path


def libreoffice_ods(path: Path) -> Path:
    """An .ods as LibreOffice saves a failed lookup (text) and a division by zero (number)."""
    failed = (
        "<table:table-row>"
        + ODS_CELL.format("Paul")
        + '<table:table-cell table:formula="of:=1/0" office:value-type="float" office:value="0"'
        ' calcext:value-type="error"><text:p>#DIV/0!</text:p></table:table-cell>'
        + ODS_CELL.format("paul.durand@example.org")
        + '<table:table-cell table:formula="of:=VLOOKUP(&quot;x&quot;;$Villes.A1:B9;2;0)"'
        ' office:value-type="string" office:string-value="" calcext:value-type="error">'
        "<text:p>#N/A</text:p></table:table-cell></table:table-row>"
    )
    return write_ods(path, ods_row(ROWS[0]) + failed)


def test_an_ods_error_value_is_not_read_as_empty_or_zero(tmp_path: Path) -> None:
    path = libreoffice_ods(tmp_path / "d.ods")
    assert read_table(path).rows[1] == (3, ["Paul", "#DIV/0!", "paul.durand@example.org", "#N/A"])
    listed = read_recipients(path, email_column="Courriel")
    assert sorted((p.place.row, p.place.column) for p in listed.problems) == [
        (3, "Nom"),
        (3, "Ville"),
    ]


def test_a_csv_exported_by_french_excel_shows_its_errors_as_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "Prénom;Nom;Courriel;Ville\r\n"
        "Jeanne;Martin;jeanne.martin@example.org;#VALEUR!\r\n"
        "Paul;Durand;paul.durand@example.org;Rennes\r\n"
        "Léa;Roux;lea.roux@example.org;Err:502\r\n"
        "Marc;Noël;marc.noel@example.org;#N/A après\r\n",  # text, not an error value
        encoding="cp1252",
    )
    listed = read_recipients(path, email_column="Courriel")
    assert [(p.place.row, p.place.column) for p in listed.problems] == [(2, "Ville"), (4, "Ville")]


def test_campaign_check_names_the_cell_and_send_refuses(tmp_path: Path) -> None:
    settings = xlsx_project(tmp_path, workbook([])[0])
    excel_book(tmp_path / "recipients" / "people.xlsx", {"D3": LOOKUP_FAILED})
    result = cli(settings, "check", "--json")
    assert result.exit_code == 1, result.output
    [problem] = json.loads(result.output)["problems"]
    assert (problem["file"], problem["row"], problem["column"]) == (
        "recipients/people.xlsx",
        3,
        "Ville",
    )
    assert "#N/A" in problem["message"] and "formule" in problem["message"], problem
    assert "erreur" in said(cli(settings, "check"))
    sent = cli(settings, "send", "--dry-run")
    assert sent.exit_code == 1, sent.output
    assert not list(tmp_path.glob("outbox/mini/dry-run/*.eml"))


# -- rows the program hides -----------------------------------------------------------------------


def test_xlsx_rows_hidden_or_filtered_out_are_named_in_one_warning(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(HEADERS)
    for i in range(2, 10):
        sheet.append([f"Prénom{i}", f"Nom{i}", f"personne{i}@example.org", "Lyon"])
    sheet.append([])  # an empty row, hidden too: nobody's
    sheet.auto_filter.ref = "A1:D9"  # Excel's filter hides the rows it filters out
    for row in (3, 5, 6, 7, 10):
        sheet.row_dimensions[row].hidden = True
    book.save(tmp_path / "d.xlsx")
    assert read_table(tmp_path / "d.xlsx").hidden == [3, 5, 6, 7]
    listed = read_recipients(tmp_path / "d.xlsx", email_column="Courriel")
    [problem] = listed.problems
    assert problem.severity is Severity.WARNING and problem.place.row == 3
    assert "rows 3, 5–7 are hidden" in problem.message
    assert len(listed.ready) == 8  # every row is sent: the warning says so, nothing is skipped


def test_ods_rows_filtered_out_count_their_repeats(tmp_path: Path) -> None:
    same = ["Léa", "Roux", "lea.roux@example.org", "Brest"]
    rows = (
        ods_row(ROWS[0])
        + ods_row(same, ' table:visibility="filter"')
        + ods_row(ROWS[1], ' table:visibility="collapse"')
        + ods_row(["Marc", "Noël", "marc.noel@example.org", "Caen"])
    )
    path = write_ods(tmp_path / "d.ods", rows)
    assert read_table(path).hidden == [3, 4]
    [problem] = read_recipients(path, email_column="Courriel").problems
    assert "rows 3, 4 are hidden" in problem.message
    visible = write_ods(tmp_path / "v.ods", ods_row(ROWS[0]) + ods_row(ROWS[1]))
    assert read_table(visible).hidden == []


def test_campaign_check_warns_of_hidden_rows_in_french(tmp_path: Path) -> None:
    book, sheet = workbook(list(ROWS))
    sheet.row_dimensions[3].hidden = True
    settings = xlsx_project(tmp_path, book)
    result = cli(settings, "check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [problem] = report["problems"]
    assert (problem["severity"], problem["row"], report["ready"]) == ("warning", 3, 2)
    assert "ligne 3 est masquée" in problem["message"], problem


# -- cells merged down several rows ---------------------------------------------------------------


def test_a_cell_merged_over_rows_gives_each_row_its_value(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Nom", "Établissement", "Courriel", "Ville"])
    sheet.append(["Martin", "CHU de Rennes", "a@example.org", "Rennes"])
    sheet.append(["Durand", None, "b@example.org", None])
    sheet.append(["Roux", None, "c@example.org", None])
    sheet.append(["Noël", "CH de Brest", "d@example.org", "Brest"])
    sheet.merge_cells("B2:B4")  # the hospital of its three directors, as organisers lay it out
    sheet.merge_cells("D2:D3")
    sheet.merge_cells("A1:A1")
    book.save(tmp_path / "d.xlsx")
    rows = [cells for _, cells in read_table(tmp_path / "d.xlsx").rows]
    assert [r[1] for r in rows] == ["CHU de Rennes"] * 3 + ["CH de Brest"]
    assert [r[3] for r in rows] == ["Rennes", "Rennes", "", "Brest"]


def test_a_header_merged_down_is_not_copied_into_the_first_row(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Nom", "Courriel"])
    sheet.append([None, "a@example.org"])
    sheet.merge_cells("A1:A2")
    book.save(tmp_path / "d.xlsx")
    assert read_table(tmp_path / "d.xlsx").rows == [(2, ["", "a@example.org"])]


def test_an_ods_cell_spanning_rows_gives_each_row_its_value(tmp_path: Path) -> None:
    covered = "<table:covered-table-cell/>"
    spanning = (
        '<table:table-cell table:number-rows-spanned="3" table:number-columns-spanned="1"'
        ' office:value-type="string"><text:p>CHU de Rennes</text:p></table:table-cell>'
    )
    rows = (
        f"<table:table-row>{ODS_CELL.format('Martin')}{spanning}"
        f"{ODS_CELL.format('a@example.org')}{ODS_CELL.format('Rennes')}</table:table-row>"
        f"<table:table-row>{ODS_CELL.format('Durand')}{covered}"
        f"{ODS_CELL.format('b@example.org')}{ODS_CELL.format('Rennes')}</table:table-row>"
        f"<table:table-row>{ODS_CELL.format('Roux')}{covered}"
        f"{ODS_CELL.format('c@example.org')}{ODS_CELL.format('Rennes')}</table:table-row>"
        + ods_row(["Noël", "CH de Brest", "d@example.org", "Brest"])
    )
    path = write_ods(tmp_path / "d.ods", rows)
    assert [cells[1] for _, cells in read_table(path).rows] == ["CHU de Rennes"] * 3 + [
        "CH de Brest"
    ]


def test_each_director_of_a_merged_hospital_gets_its_name_in_the_email(tmp_path: Path) -> None:
    book, sheet = workbook(
        [
            ["Jeanne", "Martin", "CHU de Rennes", "jeanne.martin@example.org"],
            ["Paul", "Durand", None, "paul.durand@example.org"],
        ],
        ["Prénom", "Nom", "Établissement", "Courriel"],
    )
    sheet.merge_cells("C2:C3")
    settings = xlsx_project(tmp_path, book, extra='subject: "Courrier — {{ etablissement }}"')
    result = cli(settings, "send", "--dry-run")
    assert result.exit_code == 0, result.output
    subjects = sorted(
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Subject"].replace(
            "\xa0", " "
        )  # the typography's no-break space after the dash
        for path in tmp_path.glob("outbox/mini/dry-run/*.eml")
    )
    assert subjects == ["Courrier — CHU de Rennes"] * 2


# -- a workbook of several sheets -----------------------------------------------------------------


def test_recipients_on_another_sheet_than_the_first_are_pointed_to(tmp_path: Path) -> None:
    book = Workbook()
    notes = book.active
    assert notes is not None
    notes.title = "Notes & suivi"
    notes.append(["Réunion du 4 mai", "Relire la lettre"])
    listing = book.create_sheet("Destinataires")
    listing.append(HEADERS)
    listing.append(ROWS[0])
    book.save(tmp_path / "d.xlsx")
    assert read_table(tmp_path / "d.xlsx").sheets == ["Notes & suivi", "Destinataires"]
    [problem] = read_recipients(tmp_path / "d.xlsx", email_column="Courriel").problems
    assert "first sheet, 'Notes & suivi'" in (problem.hint or "")
    assert "another ('Destinataires')" in (problem.hint or ""), problem.hint


def test_an_address_column_under_another_name_is_named_before_the_sheets(tmp_path: Path) -> None:
    book = Workbook()
    first = book.active
    assert first is not None
    first.append(["Nom", "Adresse électronique"])
    first.append(["Martin", "jeanne.martin@example.org"])
    book.create_sheet("Archives")
    book.save(tmp_path / "d.xlsx")
    [problem] = read_recipients(tmp_path / "d.xlsx", email_column="Courriel").problems
    assert "'Adresse électronique' holds addresses" in (problem.hint or ""), problem.hint


def test_an_ods_workbook_names_its_sheets(tmp_path: Path) -> None:
    path = write_ods(tmp_path / "d.ods", ods_row(ROWS[0]))
    assert read_table(path).sheets == ["Liste"]
    assert read_table(tmp_path / "d.ods").rows[0][1][2] == "jeanne.martin@example.org"

"""Write the test spreadsheets of tests/data/: the same rows in five formats, and hostile sheets.

    .venv/bin/python tests/data/make_data.py     # rewrites every data file next to this script

The output is byte-for-byte deterministic (no clock, no randomness; zip entries carry a fixed date),
so re-running it leaves `git status` clean. Fictional people only, addresses at example.org.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

from odf.opendocument import OpenDocumentSpreadsheet
from odf.table import Table, TableCell, TableRow
from odf.text import P
from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
FIXED_DATE = (2020, 5, 7, 12, 0, 0)

# The same recipients in every format. "Lits" is a number in the workbooks and text in the CSVs; the
# postcode and the phone number are text everywhere and must keep their leading zero. Every value
# fits Windows-1252 (Œ, €, « » and the dash are in it, not in Latin-1).
HEADERS = [
    "Civilité",
    "Prénom",
    "Nom",
    "Fonction",
    "Établissement",
    "Adresse",
    "Code postal",
    "Ville",
    "Téléphone",
    "Lits",
    "Courriel",
]
ROWS: list[list[str | int]] = [
    [
        "Madame",
        "Élodie",
        "Lefèvre",
        "Directrice",
        "Centre hospitalier d'Ambérieu",
        "12, rue de l'Hôpital",
        "01000",
        "Bourg-en-Bresse",
        "0612345678",
        350,
        "elodie.lefevre@example.org",
    ],
    [
        "Monsieur",
        "François",
        "Œuvray",
        "Directeur",
        "CHU de Besançon — site Minjoz",
        "Bâtiment B\n3 boulevard Fleming",
        "25000",
        "Besançon",
        "0381669999",
        1200,
        "francois.oeuvray@example.org",
    ],
    [
        "Madame",
        "Anne-Sophie",
        "N'Diaye",
        "",
        "Hôpital « Les Tilleuls »; pôle 2",
        "4 allée des Ormes",
        "97100",
        "Basse-Terre",
        "+33 5 90 00 00 00",
        0,
        "anne-sophie.ndiaye@example.com",
    ],
    [
        "Monsieur",
        "Noël",
        'Dupont, dit "Jeannot"',
        "Directeur délégué",
        "Clinique du Parc (5 000 € de dons)",
        "1 place Carnot",
        "75001",
        "Paris",
        "0140000000",
        42,
        "noel.dupont@example.org",
    ],
]

# Row problems, one (or two) per row; the row number each must be reported at is in test_recipients.
HOSTILE_HEADERS = ["Prénom", "Nom", "Courriel", "Code postal", "Téléphone"]
HOSTILE_ROWS: list[list[str]] = [
    ["Marie", "Curie", "marie.curie@example.org", "75005", "0601020304"],  # 2 fine
    ["Bob", "Martin", "bob@", "75005", "0601020305"],  # 3 address without domain
    ["Alice", "Martin", "alice.martin@example.org.", "75005", "0601020306"],  # 4 trailing dot
    ["Claire", "Dubois", "claire.dubois@example,org", "75005", "0601020307"],  # 5 comma
    ["Jean", "Dupont", "jean dupont@example.org", "75005", "0601020308"],  # 6 space
    ["", "", "", "", ""],  # 7 empty row
    ["MARIE", "CURIE", "Marie.Curie@EXAMPLE.org", "75005", "0601020309"],  # 8 duplicate of 2
    ["Eve\r\nBcc: someone@example.org", "Moreau", "eve.moreau@example.org", "75005", ""],  # 9
    ["Luc", "", "luc.petit@example.org", "75005", "0601020310"],  # 10 empty required Nom
    ["Zoé", "Roux", "", "75005", "0601020311"],  # 11 no address
    ["Paul", "Blanc", "paul.blanc@example.org", "01000", "0612345678"],  # 12 fine, zeros kept
    ["Test", "Domaine", "test.user@site.test", "75005", ""],  # 13 special-use domain
]


def write_csv(
    path: Path,
    headers: list[str],
    rows: list[list[str | int]] | list[list[str]],
    *,
    delimiter: str,
    encoding: str,
) -> None:
    """A CSV the way Excel exports it: CRLF row ends, quotes only where needed."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows([[str(c) for c in row] for row in rows])
    path.write_bytes(buffer.getvalue().encode(encoding))


def write_xlsx(
    path: Path,
    headers: list[str],
    rows: list[list[str | int]] | list[list[str]],
    *,
    leading_blank_rows: int = 0,
) -> None:
    """An .xlsx with typed cells (numbers stay numbers); an all-empty row is left truly empty."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Destinataires"
    for column, header in enumerate(headers, start=1):
        sheet.cell(row=1 + leading_blank_rows, column=column, value=header)
    for number, row in enumerate(rows, start=2 + leading_blank_rows):
        for column, value in enumerate(row, start=1):
            if value != "":
                sheet.cell(row=number, column=column, value=value)
    book.save(path)
    _normalise_zip(path)


def write_ods(
    path: Path, headers: list[str], rows: list[list[str | int]] | list[list[str]]
) -> None:
    """An .ods written with odfpy: strings as string cells, numbers as float cells."""
    doc = OpenDocumentSpreadsheet()
    table = Table(name="Destinataires")
    for row in [headers, *rows]:
        table_row = TableRow()
        for value in row:
            if isinstance(value, int):
                cell = TableCell(valuetype="float", value=str(value))
                cell.addElement(P(text=str(value)))
            elif value == "":
                cell = TableCell()
            else:
                cell = TableCell(valuetype="string")
                for line in str(value).splitlines():  # one paragraph per line, as LibreOffice does
                    cell.addElement(P(text=line))
            table_row.addElement(cell)
        table.addElement(table_row)
    doc.spreadsheet.addElement(table)
    doc.save(str(path))
    _normalise_zip(path)


def _normalise_zip(path: Path) -> None:
    """Rewrite a zip-based document with fixed entry dates and no creation timestamps."""
    with zipfile.ZipFile(path) as source:
        entries = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for name, data in entries:
            if name in {"docProps/core.xml", "meta.xml"}:
                data = re.sub(
                    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?", b"2020-05-07T12:00:00Z", data
                )
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            # ODF wants `mimetype` first and stored; everything else is deflated.
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            target.writestr(info, data)


def main() -> None:
    """Write every data file."""
    write_csv(HERE / "same-rows.csv", HEADERS, ROWS, delimiter=",", encoding="utf-8")
    write_csv(HERE / "windows-1252-semicolon.csv", HEADERS, ROWS, delimiter=";", encoding="cp1252")
    write_csv(HERE / "utf8-bom-comma.csv", HEADERS, ROWS, delimiter=",", encoding="utf-8-sig")
    write_csv(HERE / "tab-separated.tsv", HEADERS, ROWS, delimiter="\t", encoding="utf-8")
    write_xlsx(HERE / "same-rows.xlsx", HEADERS, ROWS)
    write_ods(HERE / "same-rows.ods", HEADERS, ROWS)
    # The header two rows down: row numbers must still be the ones Excel shows.
    write_xlsx(HERE / "header-on-row-3.xlsx", HEADERS, ROWS, leading_blank_rows=2)

    write_csv(HERE / "hostile.csv", HOSTILE_HEADERS, HOSTILE_ROWS, delimiter=",", encoding="utf-8")
    write_xlsx(HERE / "hostile.xlsx", HOSTILE_HEADERS, HOSTILE_ROWS)
    write_ods(HERE / "hostile.ods", HOSTILE_HEADERS, HOSTILE_ROWS)

    write_csv(
        HERE / "one-row.csv",
        ["Nom", "Courriel"],
        [["Seul", "seul@example.org"]],
        delimiter=";",
        encoding="utf-8",
    )
    write_csv(HERE / "header-only.csv", ["Nom", "Courriel"], [], delimiter=";", encoding="utf-8")
    # Column B has values but no header; column D is blank all the way down (harmless).
    write_csv(
        HERE / "blank-header.csv",
        ["Nom", "", "Courriel", ""],
        [["Ana", "note", "ana@example.org", ""], ["Ben", "", "ben@example.org", ""]],
        delimiter=",",
        encoding="utf-8",
    )
    write_csv(
        HERE / "colliding-headers.csv",
        ["Nom", "nom", "Courriel"],
        [["Ana", "ana", "ana@example.org"]],
        delimiter=",",
        encoding="utf-8",
    )
    # Row 3 has one value more than there are headers.
    (HERE / "ragged.csv").write_bytes(
        b"Nom,Courriel\r\nAna,ana@example.org\r\nBen,ben@example.org,en trop\r\n"
    )
    # An Excel workbook saved under a .csv name: binary, not text.
    (HERE / "binary.csv").write_bytes((HERE / "same-rows.xlsx").read_bytes())
    (HERE / "suppression.csv").write_bytes(
        b"email\r\n# opted out by mail on 2020-05-09\r\nNOEL.DUPONT@example.org\r\n"
    )


if __name__ == "__main__":
    main()

"""Cells read as the spreadsheet shows them: a number formatted `00000` keeps its zeros."""

from __future__ import annotations

from pathlib import Path

from odf.number import Number, NumberStyle
from odf.opendocument import OpenDocumentSpreadsheet
from odf.style import Style
from odf.table import Table, TableCell, TableColumn, TableRow
from odf.text import P
from openpyxl import Workbook

from campaign.spreadsheet import padded_cells, read_table


def test_an_xlsx_postcode_typed_as_a_number_with_format_00000_keeps_its_zero(
    tmp_path: Path,
) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Nom", "Code postal", "Lits"])
    sheet.append(["Noël", 1000, 350])
    sheet.append(["Roux", 97100, 42])
    sheet.append(["Carré", 1000, 7])
    for row in (2, 3):
        sheet.cell(row=row, column=2).number_format = "00000"
    path = tmp_path / "d.xlsx"
    book.save(path)
    table = read_table(path)
    assert [cells for _, cells in table.rows] == [
        ["Noël", "01000", "350"],
        ["Roux", "97100", "42"],
        ["Carré", "1000", "7"],  # no format: shown as typed
    ]


def test_an_xlsx_without_padded_formats_is_read_from_values_alone(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Code postal"])
    sheet.append([1000])
    sheet.cell(row=2, column=1).number_format = "0.00"
    book.save(tmp_path / "d.xlsx")
    assert padded_cells(tmp_path / "d.xlsx") == {}
    assert read_table(tmp_path / "d.xlsx").rows == [(2, ["1000"])]


def libreoffice_ods(path: Path, *, on_column: bool) -> None:
    """An .ods the way LibreOffice writes a 5-digit number style, on the cells or the column."""
    doc = OpenDocumentSpreadsheet()
    five = NumberStyle(name="N5")
    five.addElement(Number(decimalplaces="0", minintegerdigits="5"))
    doc.automaticstyles.addElement(five)
    cell_style = Style(name="ce1", family="table-cell", datastylename="N5")
    doc.automaticstyles.addElement(cell_style)
    table = Table(name="Destinataires")
    table.addElement(TableColumn())
    if on_column:
        table.addElement(TableColumn(defaultcellstylename="ce1"))
    else:
        table.addElement(TableColumn())
    table.addElement(TableRow())  # an empty first row: the header is on row 2
    for values in (["Nom", "Code postal"], ["Noël", 1000], ["Roux", 25000]):
        row = TableRow()
        for value in values:
            if isinstance(value, int):
                if on_column:
                    cell = TableCell(valuetype="float", value=str(value))
                else:
                    cell = TableCell(valuetype="float", value=str(value), stylename="ce1")
                cell.addElement(P(text=f"{value:05d}"))
            else:
                cell = TableCell(valuetype="string")
                cell.addElement(P(text=value))
            row.addElement(cell)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    doc.save(str(path))


def test_an_ods_number_style_of_5_digits_on_the_cells_is_shown_padded(tmp_path: Path) -> None:
    libreoffice_ods(tmp_path / "d.ods", on_column=False)
    table = read_table(tmp_path / "d.ods")
    assert table.header_row == 2
    assert table.rows == [(3, ["Noël", "01000"]), (4, ["Roux", "25000"])]


def test_an_ods_number_style_on_the_whole_column_is_shown_padded(tmp_path: Path) -> None:
    libreoffice_ods(tmp_path / "d.ods", on_column=True)
    assert read_table(tmp_path / "d.ods").rows == [(3, ["Noël", "01000"]), (4, ["Roux", "25000"])]


def test_an_ods_header_row_group_and_repeated_rows_keep_the_row_numbers(tmp_path: Path) -> None:
    from odf.table import TableHeaderRows

    doc = OpenDocumentSpreadsheet()
    five = NumberStyle(name="N5")
    five.addElement(Number(decimalplaces="0", minintegerdigits="5"))
    doc.automaticstyles.addElement(five)
    doc.automaticstyles.addElement(Style(name="ce1", family="table-cell", datastylename="N5"))
    table = Table(name="Destinataires")
    table.addElement(TableColumn(numbercolumnsrepeated="2"))
    header = TableHeaderRows()
    row = TableRow()
    for text in ("Nom", "Code postal"):
        cell = TableCell(valuetype="string")
        cell.addElement(P(text=text))
        row.addElement(cell)
    header.addElement(row)
    table.addElement(header)
    table.addElement(TableRow(numberrowsrepeated="2"))  # two empty rows in one element
    row = TableRow()
    row.addElement(TableCell(numbercolumnsrepeated="1"))
    cell = TableCell(valuetype="float", value="6000", stylename="ce1")
    cell.addElement(P(text="06000"))
    row.addElement(cell)
    table.addElement(row)
    doc.spreadsheet.addElement(table)
    doc.save(str(tmp_path / "d.ods"))
    assert padded_cells(tmp_path / "d.ods") == {(3, 1): 5}
    assert read_table(tmp_path / "d.ods").rows[-1] == (4, ["", "06000"])


# What pandas' C reader made of these files (dtype=str, no NA values, blank lines kept) is what
# the csv module must make of them: the cells are the same whichever reads them.
TRICKY_CSV = [
    "Nom;Courriel\r\nDupont;a@example.org\r\n",
    "Nom;Courriel\nDupont;a@example.org",  # no final newline
    'Nom;Adresse;Courriel\r\n"Dupont";"1 rue ""Haute""; bât. B";a@example.org\r\n',
    'Nom,Adresse,Courriel\n"Dupont","ligne 1\nligne 2",a@example.org\n',  # a newline in a cell
    'Nom,Adresse,Courriel\r\n"Dupont","ligne 1\r\nligne 2",a@example.org\r\n',
    "Nom;Courriel\r\n\r\nDupont;a@example.org\r\n\r\n\r\n",  # blank lines inside and after
    "Nom;Prénom;Courriel\r\nDupont;;a@example.org\r\n;;\r\n",  # empty cells, an empty row
    "Nom;Courriel;Code\r\nDupont; a@example.org ;01000\r\n",  # spaces and a leading zero
    "Nom\tCourriel\r\nDupont\ta@example.org\r\n",
    "Nom|Courriel\r\nDupont|a@example.org\r\n",
    "Nom;Courriel\rDupont;a@example.org\r",  # old Mac line ends
    'Nom;Courriel\r\nab"c;a@example.org\r\n',  # a quote inside a cell
    'Nom;Courriel\r\n"Dup"ont;a@example.org\r\n',  # text after a closing quote
    "Nom;Courriel;Ville\r\nDupont;a@example.org\r\n",  # a short row
    "NA;NULL;nan\r\nN/A;#N/A;None\r\n",  # what pandas would have taken for missing values
    "Nom;Courriel\r\n=SOMME(A1);a@example.org\r\n",
]


def test_csv_cells_are_those_pandas_read(tmp_path: Path) -> None:
    import io

    import pandas as pd

    from campaign.spreadsheet import decode_text, sniff_delimiter

    for number, text in enumerate(TRICKY_CSV):
        path = tmp_path / f"f{number}.csv"
        path.write_bytes(text.encode("utf-8"))
        decoded = decode_text(path.read_bytes())
        frame = pd.read_csv(
            io.StringIO(decoded),
            sep=sniff_delimiter(decoded),
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
        by_pandas = frame.to_numpy(dtype=object).tolist()
        table = read_table(path)
        width = len(table.headers)
        padded = [(row + [""] * width)[:width] for row in by_pandas]
        shown = [r for r in padded if any(c.strip() for c in r)]
        assert [table.headers] + [cells for _, cells in table.rows if any(cells)] == [
            [c.strip() for c in shown[0]],
            *shown[1:],
        ], text


def test_reading_a_csv_file_does_not_import_pandas(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "liste.csv"
    path.write_text("Nom;Courriel\r\nDupont;a@example.org\r\n", encoding="utf-8")
    code = (
        "import sys; from pathlib import Path; from campaign.spreadsheet import read_table; "
        f"t = read_table(Path({str(path)!r})); assert t.rows == [(2, ['Dupont', 'a@example.org'])]; "
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_blank_lines_before_the_header_keep_the_row_numbers(tmp_path: Path) -> None:
    # pandas' C reader said "No columns to parse" here: the file looked empty.
    path = tmp_path / "liste.csv"
    path.write_text("\r\n;\r\nNom;Courriel\r\nDupont;a@example.org\r\n", encoding="utf-8")
    table = read_table(path)
    assert (table.header_row, table.headers) == (3, ["Nom", "Courriel"])
    assert table.rows == [(4, ["Dupont", "a@example.org"])]

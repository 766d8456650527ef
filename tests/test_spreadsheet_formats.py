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

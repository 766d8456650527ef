"""A spreadsheet file (.csv, .xlsx, .ods) → a `Table` of text cells, numbered as the program shows.

Every cell is read as text (a postcode `01000` keeps its zero, a number cell shows as the sheet
shows it, a failed formula shows its error, `#N/A`), CSV delimiter and encoding are detected, and
each record keeps the row number the spreadsheet program shows (the header is row 1), leading
empty rows included. A file that cannot be read at all (or whose formulas were never computed) is
an `InputError`; what is wrong inside it is for `campaign.recipients` to judge.
"""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from xml.sax.saxutils import unescape

from campaign.errors import InputError, Place
from campaign.i18n import _

SPREADSHEET_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls", ".ods"}
_DELIMITERS = [";", ",", "\t", "|"]


@dataclass
class Table:
    """The cells of a spreadsheet as text, with the row number of each record."""

    path: Path
    headers: list[str]
    rows: list[tuple[int, list[str]]]
    header_row: int = 1
    hidden: list[int] = field(default_factory=list)  # records the program hides (or filters out)
    sheets: list[str] = field(default_factory=list)  # a workbook's sheets, the first one read


def read_table(path: Path, *, display: str | None = None) -> Table:
    """Read a .csv, .xlsx or .ods file into text cells; an unreadable file is an `InputError`."""
    shown = display or str(path)
    suffix = path.suffix.lower()
    if suffix not in SPREADSHEET_SUFFIXES:
        raise InputError(
            _("unsupported file type {suffix}").format(suffix=suffix or _("(none)")),
            place=Place(file=shown),
            hint=_("save the spreadsheet as .xlsx, .ods or .csv"),
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(
            _("cannot read the file: {reason}").format(reason=err.strerror), place=Place(file=shown)
        ) from None
    if not raw.strip():
        raise InputError(
            _("the file is empty"),
            place=Place(file=shown),
            hint=_("export the spreadsheet again"),
        )
    hidden: set[int] = set()
    sheets: tuple[str, ...] = ()
    if suffix in {".csv", ".txt", ".tsv"}:
        grid = _read_csv(raw, shown)
    else:
        grid, hidden, sheets = _read_workbook(path, shown)
    table = _to_table(path, grid, shown, hidden)
    table.sheets = list(sheets)
    return table


def _read_csv(raw: bytes, shown: str) -> list[list[str]]:
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise InputError(
            _("this is a workbook (Excel or LibreOffice) saved under a .csv name, not a CSV file"),
            place=Place(file=shown),
            hint=_("rename it to .xlsx (or .ods), or open it and export it as CSV"),
        )
    if b"\x00" in raw[:65536] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            _("this is not a text file (it holds binary data)"),
            place=Place(file=shown),
            hint=_(
                "if it is an Excel file, give it the .xlsx extension; otherwise export it as CSV"
            ),
        )
    text = decode_text(raw)
    delimiter = sniff_delimiter(text)
    try:
        # The csv module, not pandas: the same cells (every one as text, rows as they are, the
        # short ones padded by `_to_table`, the long ones reported there), without pandas'
        # import (0.3 s, the largest part of a command's start-up). Workbooks go through pandas.
        return [
            row or [""] for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        ]
    except csv.Error as err:
        raise InputError(
            _("cannot read the CSV file: {error}").format(error=err),
            place=Place(file=shown),
            hint=_("check the quotes and the separator, or export the spreadsheet again"),
        ) from None


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 when it decodes cleanly; otherwise Windows-1252."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # every byte decodes; cp1252 leaves five undefined


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header into most fields and the next records alike.

    Quotes are respected. Spreadsheet programs write every record with as many fields as the
    header, so the right delimiter is the one whose records agree with the header's count; a
    one-column file has none, and gets the comma.
    """
    sample = text[:65536]
    if len(sample) < len(text):
        sample = sample[: sample.rfind("\n") + 1] or sample  # whole lines only
    best, best_score = ",", (0.0, 1)
    for delimiter in _DELIMITERS:
        try:
            records = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)]
        except csv.Error:
            continue
        records = [r for r in records if any(c.strip() for c in r)][:100]
        if not records or len(records[0]) < 2:
            continue
        width = len(records[0])
        agree = sum(1 for r in records[1:] if len(r) == width) / max(1, len(records) - 1)
        score = (agree, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _read_workbook(path: Path, shown: str) -> tuple[list[list[str]], set[int], tuple[str, ...]]:
    """The cells of the first sheet as text, the rows it hides (numbered as it shows them) and
    the names of the workbook's sheets."""
    import pandas as pd  # here, not at the top: reading a CSV file does not need it

    try:
        frame = pd.read_excel(path, engine="calamine", header=None, dtype=object, sheet_name=0)
    except Exception as err:  # calamine raises its own types for every kind of damage
        raise InputError(
            _("cannot read the spreadsheet: {error}").format(error=err).rstrip(),
            place=Place(file=shown),
            hint=_("open it in Excel or LibreOffice and save it again as .xlsx or .ods"),
        ) from None
    grid: list[list[object]] = frame.to_numpy(dtype=object).tolist()
    try:
        xml = sheet_xml(path)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError):
        xml = None  # the values are readable (calamine said so): show them as it gives them
    padded, faults, hidden = (
        (_padded(xml), _faults(xml), _hidden(xml)) if xml is not None else ({}, {}, set())
    )
    if xml is not None:
        _fill_merged(grid, _merged(xml))
    for (row, column), shown_error in faults.items():
        if shown_error is None:
            raise InputError(
                _(
                    "the workbook holds formulas whose results were never computed (a program wrote it, and no spreadsheet program has saved it since)"
                ),
                place=Place(file=shown, row=row + 1, column=column_letter(column)),
                hint=_(
                    "open it in Excel or LibreOffice and save it: the results are then kept in the file, and campaign reads them"
                ),
            )
        if row < len(grid) and column < len(grid[row]):
            grid[row][column] = shown_error  # calamine reads it as empty, or as 0
    for (row, column), digits in padded.items():
        if row < len(grid) and column < len(grid[row]):
            value = grid[row][column]
            if isinstance(value, float) and value.is_integer() and value >= 0:
                grid[row][column] = f"{int(value):0{digits}d}"
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                grid[row][column] = f"{value:0{digits}d}"
    cells = [[v if type(v) is str else _cell_text(v) for v in record] for record in grid]
    return cells, hidden, xml.sheets if xml is not None else ()


@dataclass(frozen=True)
class SheetXml:
    """The XML of a workbook's first sheet and of its styles, read once for what calamine
    does not give: number formats, failed formulas, hidden rows, merges, the sheets' names."""

    ods: bool
    sheet: bytes  # .xlsx: the first sheet's part; .ods: content.xml (every table)
    styles: bytes  # .xlsx: xl/styles.xml; .ods: styles.xml (b"" when the file has none)
    sheets: tuple[str, ...] = ()  # the names of the workbook's sheets, the one read first


def sheet_xml(path: Path) -> SheetXml | None:
    """The first sheet's XML of an .xlsx or .ods file (None for another kind of file)."""
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "xl/workbook.xml" in names:
            styles = archive.read("xl/styles.xml") if "xl/styles.xml" in names else b""
            sheets = _XLSX_SHEET_NAME.findall(archive.read("xl/workbook.xml"))
            return SheetXml(False, archive.read(_first_sheet(archive)), styles, _names(sheets))
        if "content.xml" in names:
            styles = archive.read("styles.xml") if "styles.xml" in names else b""
            content = archive.read("content.xml")
            return SheetXml(True, content, styles, _names(_ODS_TABLE_NAME.findall(content)))
    return None


_XLSX_SHEET_NAME = re.compile(rb'<sheet\b[^>]*?\bname="([^"]*)"')
_ODS_TABLE_NAME = re.compile(rb'<table:table\b[^>]*?\btable:name="([^"]*)"')


def _names(found: list[bytes]) -> tuple[str, ...]:
    return tuple(unescape(name.decode("utf-8", "replace"), {"&quot;": '"'}) for name in found)


def padded_cells(path: Path) -> dict[tuple[int, int], int]:
    """The cells of the first sheet whose number format pads with zeros: (row, column) → digits.

    calamine gives values only, so `01000` typed as a number formatted `00000` (the way French
    organisers keep a postcode's zero) reads as 1000. The styles are read from the file's XML:
    a workbook without such a format costs its styles, and one with it a scan of the sheet's
    XML by regular expressions, without building a tree.
    """
    xml = sheet_xml(path)
    return _padded(xml) if xml is not None else {}


def _padded(xml: SheetXml) -> dict[tuple[int, int], int]:
    return _ods_padded(xml) if xml.ods else _xlsx_padded(xml)


# The values a spreadsheet program shows in a cell whose formula failed: Excel's, in English and
# in French (a CSV export writes them as shown), and LibreOffice's `Err:502`.
SPREADSHEET_ERROR = re.compile(
    r"#(?:N/A|N/D|NULL!|NUL!|DIV/0!|VALUE!|VALEUR!|REF!|NAME\?|NOM\?|NUM!|NOMBRE!|SPILL!"
    r"|PROPAGATION!|CALC!|FIELD!|CHAMP!|BLOCKED!|CONNECT!|BUSY!|UNKNOWN!|GETTING_DATA)|Err:\d{3}"
)


def _faults(xml: SheetXml) -> dict[tuple[int, int], str | None]:
    """The cells of the first sheet whose formula failed or was never computed: (row, column) →
    the error the spreadsheet program shows (`#N/A`), or None for a result never computed.

    calamine reads a failed formula as an empty cell (or 0): the letter would show a blank where
    the sheet shows `#N/A`. Only a sheet holding such cells is scanned cell by cell.
    """
    return _ods_faults(xml.sheet) if xml.ods else _xlsx_faults(xml.sheet)


def _hidden(xml: SheetXml) -> set[int]:
    """The rows of the first sheet the program hides, by hand or by a filter (numbered as shown).

    campaign writes to every row, shown or not: `campaign.recipients` warns of these.
    """
    return _ods_hidden(xml.sheet) if xml.ods else _xlsx_hidden(xml.sheet)


_XLSX_HIDDEN_ROW = re.compile(rb'<row r="(\d+)"[^>]*?\bhidden="(?:1|true)"')


def _xlsx_hidden(sheet: bytes) -> set[int]:
    if b'hidden="' not in sheet:
        return set()
    return {int(row) for row in _XLSX_HIDDEN_ROW.findall(sheet)}


# A cell whose content starts with a formula: its attributes, the formula and its cached result.
_XLSX_FORMULA = re.compile(
    rb'<c r="([A-Z]+)(\d+)"([^>]*?)(?<!/)>(?:<f\b[^>]*/>|<f\b[^>]*>[^<]*</f>)(?:<v>([^<]*)</v>)?'
)
# A cell of error type (with or without its formula) and the error it shows.
_XLSX_ERROR = re.compile(
    rb'<c r="([A-Z]+)(\d+)"[^>]*?\bt="e"[^>]*>(?:<f\b[^>]*/>|<f\b[^>]*>[^<]*</f>)?<v>([^<]*)</v>'
)
_XLSX_TYPE = re.compile(rb'\bt="([^"]*)"')


def _xlsx_faults(sheet: bytes) -> dict[tuple[int, int], str | None]:
    found: dict[tuple[int, int], str | None] = {}
    if b"<f" in sheet:
        for letters, row, attributes, value in _XLSX_FORMULA.findall(sheet):
            # A number formula (no type) without its result: what openpyxl and other writers
            # leave. A text result has t="str", even when it is empty.
            if not value and _XLSX_TYPE.search(attributes) is None:
                found[(int(row) - 1, _column_index(letters.decode()))] = None
    if b't="e"' in sheet:
        for letters, row, value in _XLSX_ERROR.findall(sheet):
            found[(int(row) - 1, _column_index(letters.decode()))] = unescape(value.decode())
    return found


_XLSX_NUMFMT = re.compile(rb'<numFmt\b[^>]*?numFmtId="(\d+)"[^>]*?formatCode="([^"]*)"')
_XLSX_CELLXFS = re.compile(rb"<cellXfs\b[^>]*>(.*?)</cellXfs>", re.S)
_XLSX_XF = re.compile(rb"<xf\b([^>]*)")
_NUMFMT_ID = re.compile(rb'numFmtId="(\d+)"')
_ZERO_MASK = re.compile(r"[0#]*0")


def _blank(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _fill_merged(grid: list[list[object]], regions: list[tuple[int, int, int, int]]) -> None:
    """Give each row of a cell merged down several rows the value the sheet shows there.

    A hospital's name merged over its three directors' rows is one cell to calamine: the rows
    below the first would read blank, and their letters say nothing of their hospital. The
    first column of the merge is filled (what the sheet shows across columns is one value of
    the first); a merge in the header row or above is left alone.
    """
    header = next((i for i, record in enumerate(grid) if not all(map(_blank, record))), 0)
    for first_row, column, last_row, _last_column in regions:
        if first_row <= header or first_row >= len(grid) or column >= len(grid[first_row]):
            continue
        value = grid[first_row][column]
        if _blank(value):
            continue
        for row in range(first_row + 1, min(last_row, len(grid) - 1) + 1):
            if column < len(grid[row]) and _blank(grid[row][column]):
                grid[row][column] = value


def _merged(xml: SheetXml) -> list[tuple[int, int, int, int]]:
    """The merged cells of the first sheet: (first row, first column, last row, last column),
    counted from 0."""
    return _ods_merged(xml.sheet) if xml.ods else _xlsx_merged(xml.sheet)


_XLSX_MERGE = re.compile(rb'<mergeCell ref="([A-Z]+)(\d+):([A-Z]+)(\d+)"')


def _xlsx_merged(sheet: bytes) -> list[tuple[int, int, int, int]]:
    if b"<mergeCell " not in sheet:
        return []
    return [
        (int(r1) - 1, _column_index(c1.decode()), int(r2) - 1, _column_index(c2.decode()))
        for c1, r1, c2, r2 in _XLSX_MERGE.findall(sheet)
    ]


def _digits(mask: str) -> int:
    """The minimum digits of an integer format such as `00000` (1 when it pads nothing)."""
    mask = mask.replace("\\", "").replace('"', "")
    return mask.count("0") if _ZERO_MASK.fullmatch(mask) else 1


def _xlsx_padded(xml: SheetXml) -> dict[tuple[int, int], int]:
    styles = xml.styles
    formats = {int(i): _digits(code.decode()) for i, code in _XLSX_NUMFMT.findall(styles)}
    block = _XLSX_CELLXFS.search(styles)
    wanted: dict[bytes, int] = {}
    for index, attributes in enumerate(_XLSX_XF.findall(block.group(1) if block else b"")):
        found = _NUMFMT_ID.search(attributes)
        digits = formats.get(int(found.group(1)), 1) if found else 1
        if digits > 1:
            wanted[str(index).encode()] = digits
    if not wanted:
        return {}
    sheet = xml.sheet
    styled = re.compile(rb'<c r="([A-Z]+)(\d+)"(?=[^>]*? s="(' + b"|".join(wanted) + rb')")')
    return {
        (int(row) - 1, _column_index(letters.decode())): wanted[style]
        for letters, row, style in styled.findall(sheet)
    }


def _first_sheet(archive: zipfile.ZipFile) -> str:
    """The part of the workbook's first sheet, the one calamine reads."""
    book = archive.read("xl/workbook.xml")
    first = re.search(rb'<sheet\b[^>]*?r:id="([^"]+)"', book)
    rels = archive.read("xl/_rels/workbook.xml.rels")
    if first is not None:
        for attributes in re.findall(rb"<Relationship\b([^>]*)", rels):
            if b'Id="' + first.group(1) + b'"' in attributes:
                target = re.search(rb'Target="([^"]+)"', attributes)
                if target is not None:
                    name = target.group(1).decode().lstrip("/")
                    return name if name.startswith("xl/") else "xl/" + name
    return "xl/worksheets/sheet1.xml"


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - 64
    return index - 1


_ODS_NUMBER_STYLE = re.compile(
    rb'<number:number-style\b[^>]*?style:name="([^"]+)"[^>]*>(.*?)</number:number-style>', re.S
)
_ODS_MIN_DIGITS = re.compile(rb'<number:number\b[^>]*?number:min-integer-digits="(\d+)"')
_ODS_CELL_STYLE = re.compile(
    rb'<style:style\b(?=[^>]*?style:family="table-cell")(?=[^>]*?style:name="([^"]+)")'
    rb'(?=[^>]*?style:data-style-name="([^"]+)")'
)
_ODS_TAG = re.compile(
    rb"<(/?)table:(table-row|table-cell|covered-table-cell|table-column|table)(?=[\s/>])([^>]*?)(/?)>"
)
_ODS_STYLE_NAME = re.compile(rb'table:(?:default-cell-)?style-name="([^"]+)"')
_ODS_REPEAT = re.compile(rb'table:number-(?:rows|columns)-repeated="(\d+)"')


def _ods_padded(xml: SheetXml) -> dict[tuple[int, int], int]:
    content = xml.sheet
    styles = content + xml.styles
    numbers: dict[bytes, int] = {}
    for name, body in _ODS_NUMBER_STYLE.findall(styles):
        found = _ODS_MIN_DIGITS.search(body)
        if found is not None and int(found.group(1)) > 1 and b'decimal-places="0"' in body:
            numbers[name] = int(found.group(1))
    cells = {
        cell: numbers[data] for cell, data in _ODS_CELL_STYLE.findall(styles) if data in numbers
    }
    if not cells:
        return {}
    return _ods_walk(content, cells)


def _ods_walk(content: bytes, cells: dict[bytes, int]) -> dict[tuple[int, int], int]:
    """The padded cells of the first table: those whose style (or column's) pads."""
    return {
        (row, column): cells[style]
        for row, column, style, _tag in _ods_cells(content)
        if style in cells
    }


_ODS_ERROR = b'calcext:value-type="error"'
_ODS_TEXT = re.compile(rb"<text:p\b[^>]*>(.*?)</text:p>", re.S)


def _ods_faults(content: bytes) -> dict[tuple[int, int], str | None]:
    """The cells LibreOffice saved with an error value, with the error it shows (`#N/A`)."""
    if _ODS_ERROR not in content:
        return {}
    found: dict[tuple[int, int], str | None] = {}
    for row, column, _style, tag in _ods_cells(content):
        if _ODS_ERROR in tag.group(3):
            text = _ODS_TEXT.search(
                content, tag.end(), content.find(b"</table:table-cell>", tag.end())
            )
            found[(row, column)] = unescape(text.group(1).decode()) if text else "#N/A"
    return found


_ODS_ROWS_SPANNED = re.compile(rb'table:number-rows-spanned="(\d+)"')
_ODS_COLUMNS_SPANNED = re.compile(rb'table:number-columns-spanned="(\d+)"')


def _ods_merged(content: bytes) -> list[tuple[int, int, int, int]]:
    """LibreOffice's merged cells: a cell that spans rows (the rows below hold covered cells)."""
    if b"number-rows-spanned" not in content:
        return []
    regions = []
    for row, column, _style, tag in _ods_cells(content):
        spanned = _ODS_ROWS_SPANNED.search(tag.group(3))
        if spanned is not None and int(spanned.group(1)) > 1:
            across = _ODS_COLUMNS_SPANNED.search(tag.group(3))
            width = int(across.group(1)) if across else 1
            regions.append((row, column, row + int(spanned.group(1)) - 1, column + width - 1))
    return regions


_ODS_VISIBILITY = re.compile(rb'table:visibility="(collapse|filter)"')


def _ods_hidden(content: bytes) -> set[int]:
    """The rows LibreOffice hides (`collapse`) or filters out (`filter`), repeats counted."""
    if b'table:visibility="' not in content:
        return set()
    hidden: set[int] = set()
    for row, column, _style, tag in _ods_cells(content, rows=True):
        if column < 0 and _ODS_VISIBILITY.search(tag.group(3)):
            repeat = _ODS_REPEAT.search(tag.group(3))
            hidden.update(range(row + 1, row + 1 + (int(repeat.group(1)) if repeat else 1)))
    return hidden


def _ods_cells(
    content: bytes, *, rows: bool = False
) -> Iterator[tuple[int, int, bytes | None, re.Match[bytes]]]:
    """Walk the first table's cells (repeats counted): row, column, style (the cell's, else its
    column's) and the cell's opening tag; with `rows`, each row's own tag too, as column -1."""
    column_styles: list[bytes | None] = []
    row = column = -1
    pending = depth = 0
    for match in _ODS_TAG.finditer(content):
        closing, kind, attributes, _ = match.groups()
        if kind == b"table":
            if closing:
                break  # calamine reads the first sheet only
            depth += 1
            continue
        if depth == 0 or closing:
            continue
        repeat_match = _ODS_REPEAT.search(attributes)
        repeat = int(repeat_match.group(1)) if repeat_match else 1
        style_match = _ODS_STYLE_NAME.search(attributes)
        style = style_match.group(1) if style_match else None
        if kind == b"table-column":
            column_styles += [style] * min(repeat, 16384)
        elif kind == b"table-row":
            row += pending + 1  # the rows a repeated row stands for come before this one
            pending = repeat - 1
            column = -1
            if rows:
                yield row, column, None, match
        else:
            for _ in range(min(repeat, 16384)):
                column += 1
                if kind == b"table-cell":
                    own = style or (column_styles[column] if column < len(column_styles) else None)
                    yield row, column, own, match


def _cell_text(value: object) -> str:
    """The text a spreadsheet cell shows: 75001.0 → '75001', a date → '2020-05-07'."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, bool):
        return "VRAI" if value else "FAUX"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(" ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _to_table(path: Path, grid: list[list[str]], shown: str, hidden: Collection[int] = ()) -> Table:
    numbered = [(index + 1, cells) for index, cells in enumerate(grid)]
    while numbered and not any(c.strip() for c in numbered[0][1]):
        numbered.pop(0)  # leading empty rows: the header is the first row with text
    if not numbered:
        raise InputError(_("the file has no header row"), place=Place(file=shown))
    header_row, header_cells = numbered[0]
    # A record longer than the header (a ragged CSV) widens the table: its extra cells then show
    # as a column with values but no header, reported with the first row that has one.
    width = max(len(cells) for _, cells in numbered)
    headers = [h.strip() for h in header_cells] + [""] * (width - len(header_cells))
    rows = [
        (n, cells if len(cells) == width else (cells + [""] * width)[:width])
        for n, cells in numbered[1:]
    ]
    while rows and not any(c.strip() for c in rows[-1][1]):
        rows.pop()  # trailing empty rows are an artefact of the export, not a mistake
    hidden_records = [n for n, cells in rows if n in hidden and any(cells)] if hidden else []
    return Table(path, headers, rows, header_row, hidden_records)


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: the column as the spreadsheet program names it."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters

"""A spreadsheet file (.csv, .xlsx, .ods) → a `Table` of text cells, numbered as the program shows.

Every cell is read as text (a postcode `01000` keeps its zero, a number cell shows as the sheet
shows it), CSV delimiter and encoding are detected, and each record keeps the row number the
spreadsheet program shows (the header is row 1), leading empty rows included. A file that cannot be
read at all is an `InputError`; what is wrong inside it is for `campaign.recipients` to judge.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

import pandas as pd

from campaign.errors import InputError, Place

SPREADSHEET_SUFFIXES = {".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls", ".ods"}
_DELIMITERS = [";", ",", "\t", "|"]


@dataclass
class Table:
    """The cells of a spreadsheet as text, with the row number of each record."""

    path: Path
    headers: list[str]
    rows: list[tuple[int, list[str]]]
    header_row: int = 1


def read_table(path: Path, *, display: str | None = None) -> Table:
    """Read a .csv, .xlsx or .ods file into text cells; an unreadable file is an `InputError`."""
    shown = display or str(path)
    suffix = path.suffix.lower()
    if suffix not in SPREADSHEET_SUFFIXES:
        raise InputError(
            f"unsupported file type {suffix or '(none)'}",
            place=Place(file=shown),
            hint="save the spreadsheet as .xlsx, .ods or .csv",
        )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read the file: {err.strerror}", place=Place(file=shown)) from None
    if not raw.strip():
        raise InputError(
            "the file is empty", place=Place(file=shown), hint="export the spreadsheet again"
        )
    if suffix in {".csv", ".txt", ".tsv"}:
        grid = _read_csv(raw, shown)
    else:
        grid = _read_workbook(path, shown)
    return _to_table(path, grid, shown)


def _read_csv(raw: bytes, shown: str) -> list[list[str]]:
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise InputError(
            "this is a workbook (Excel or LibreOffice) saved under a .csv name, not a CSV file",
            place=Place(file=shown),
            hint="rename it to .xlsx (or .ods), or open it and export it as CSV",
        )
    if b"\x00" in raw[:65536] and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            "this is not a text file (it holds binary data)",
            place=Place(file=shown),
            hint="if it is an Excel file, give it the .xlsx extension; otherwise export it as CSV",
        )
    text = decode_text(raw)
    delimiter = sniff_delimiter(text)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        raise InputError("the file is empty", place=Place(file=shown)) from None
    except (pd.errors.ParserError, ValueError):
        # Rows of different lengths (pandas wants them all as long as the first): the csv module
        # reads them as they are, and `_to_table` reports the cells that stick out.
        return _read_csv_ragged(text, delimiter, shown)
    grid: list[list[str]] = frame.to_numpy(dtype=object).tolist()  # one C-level conversion
    return grid


def _read_csv_ragged(text: str, delimiter: str, shown: str) -> list[list[str]]:
    try:
        return [
            row or [""] for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        ]
    except csv.Error as err:
        raise InputError(
            f"cannot read the CSV file: {err}",
            place=Place(file=shown),
            hint="check the quotes and the separator, or export the spreadsheet again",
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


def _read_workbook(path: Path, shown: str) -> list[list[str]]:
    try:
        frame = pd.read_excel(path, engine="calamine", header=None, dtype=object, sheet_name=0)
    except Exception as err:  # calamine raises its own types for every kind of damage
        raise InputError(
            f"cannot read the spreadsheet: {err}".rstrip(),
            place=Place(file=shown),
            hint="open it in Excel or LibreOffice and save it again as .xlsx or .ods",
        ) from None
    grid: list[list[object]] = frame.to_numpy(dtype=object).tolist()
    return [[v if type(v) is str else _cell_text(v) for v in record] for record in grid]


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
    if isinstance(value, pd.Timestamp):
        return str(value.date()) if value == value.normalize() else str(value)
    return str(value)


def _to_table(path: Path, grid: list[list[str]], shown: str) -> Table:
    numbered = [(index + 1, cells) for index, cells in enumerate(grid)]
    while numbered and not any(c.strip() for c in numbered[0][1]):
        numbered.pop(0)  # leading empty rows: the header is the first row with text
    if not numbered:
        raise InputError("the file has no header row", place=Place(file=shown))
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
    return Table(path=path, headers=headers, rows=rows, header_row=header_row)


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: the column as the spreadsheet program names it."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters

"""The organisers' spreadsheet + the delivery log → the same sheet with the outcome of each row.

`status --export FILE --with-sheet` writes every original column and cell unchanged, then four
columns: state, date sent, bounce reason, replied. Rows are matched by address (the campaign's
email column), so a sheet sorted since the send still gets each row's own outcome.

The file keeps the source's own form where it can: an .xlsx source is copied cell by cell with
openpyxl (formats and formulas kept), a .csv source is written back in its encoding and delimiter.
Any other pair (an .ods source, or a change of format) is written from the cells as the sheet shows
them. Only the added cells are neutralised (`= + - @` quoted): they hold text from remote servers,
while the original cells are the organisers' own and stay exactly as they were.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from campaign.errors import InputError, Place
from campaign.i18n import N_, _, csv_delimiter, quoted
from campaign.ledger import Delivery, State, state_name
from campaign.outbox import check_output_path
from campaign.settings import Campaign
from campaign.spreadsheet import decode_text, read_table, sniff_delimiter
from campaign.status import neutralise

# The added columns' headers, and their cells, in the language of the run.
OUTCOME_COLUMNS = [N_("state"), N_("date sent"), N_("bounce reason"), N_("replied")]


def outcome_columns() -> list[str]:
    return [_(title) for title in OUTCOME_COLUMNS]


SHEET_SUFFIXES = (".xlsx", ".ods", ".csv")
# States whose last reply says why the message did not arrive.
_NOT_DELIVERED = {State.FAILED.value, "bounced"}


def outcome_cells(delivery: Delivery | None) -> list[str]:
    """The four added cells of one row: empty when the log knows nothing of it."""
    if delivery is None:
        return ["", "", "", ""]
    state = str(delivery.state.value if isinstance(delivery.state, State) else delivery.state)
    sent = (
        time.strftime("%Y-%m-%d %H:%M", time.localtime(delivery.sent_at))
        if delivery.sent_at
        else ""
    )
    reason = ""
    if state in _NOT_DELIVERED:
        reason = " ".join(str(p) for p in (delivery.last_code, delivery.last_text) if p)
    elif state == State.HELD.value and delivery.readdressed_from:
        reason = _("already sent to {earlier}").format(earlier=delivery.readdressed_from)
    # Replies are facts the mailbox scan (`inbox`) adds, with their dates; none leaves it empty.
    if delivery.unsubscribed_at is not None:
        said = _("asked to unsubscribe")
    elif delivery.replied_at is not None:
        said = _("yes")
    else:
        said = _("auto-reply") if delivery.auto_replied_at is not None else ""
    return [str(neutralise(cell)) for cell in (state_name(state), sent, reason, said)]


def export_with_sheet(campaign: Campaign, deliveries: Iterable[Delivery], path: Path) -> Path:
    """Write the campaign's spreadsheet with the outcome columns to `path` (.csv, .xlsx or .ods)."""
    check_output_path(path, SHEET_SUFFIXES, option="--export", example="suivi.xlsx")
    suffix = path.suffix.lower()
    config = campaign.config
    source = campaign.path(config.recipients)
    shown = campaign.settings.display(config.recipients)
    if source.resolve() == path.resolve():
        raise InputError(
            _("the export would overwrite the recipient spreadsheet"),
            place=Place(file=str(path)),
            hint=_("name another file, e.g. {example}").format(example="recipients/outcome.xlsx"),
        )
    by_email = {d.email: d for d in deliveries}
    table = read_table(source, display=shown)
    if config.email_column not in table.headers:
        raise InputError(
            _("the email column {column} is not in the spreadsheet").format(
                column=quoted(config.email_column)
            ),
            place=Place(file=shown, column=config.email_column),
            hint=_("run {command}").format(command="campaign check"),
        )
    source_suffix = source.suffix.lower()
    if suffix == ".xlsx" and source_suffix in {".xlsx", ".xlsm"}:
        _xlsx_copy(source, path, table.header_row, config.email_column, by_email)
    elif suffix == ".csv" and source_suffix in {".csv", ".txt", ".tsv"}:
        _csv_copy(source, path, table.header_row, config.email_column, by_email)
    else:
        column = table.headers.index(config.email_column)
        rows = [
            [*cells, *outcome_cells(by_email.get(_key(cells[column])))] for _, cells in table.rows
        ]
        _write_grid(path, [*table.headers, *outcome_columns()], rows)
    path.chmod(0o600)  # personal data, like everything under outbox/
    return path


def _key(cell: object) -> str:
    return str(cell or "").strip().lower()


def _xlsx_copy(
    source: Path, path: Path, header_row: int, email_column: str, by_email: dict[str, Delivery]
) -> None:
    """Copy the workbook and add the columns to its first sheet, after its last used column."""
    from openpyxl import load_workbook

    book = load_workbook(source)
    sheet = book.worksheets[0]
    header = [str(c.value).strip() if c.value is not None else "" for c in sheet[header_row]]
    email_at = header.index(email_column) + 1
    first = sheet.max_column + 1
    for offset, title in enumerate(outcome_columns()):
        sheet.cell(row=header_row, column=first + offset, value=title)
    for row in range(header_row + 1, sheet.max_row + 1):
        address = sheet.cell(row=row, column=email_at).value
        if address is None:
            continue
        for offset, cell in enumerate(outcome_cells(by_email.get(_key(address)))):
            if cell:
                sheet.cell(row=row, column=first + offset, value=cell)
    book.save(path)


def _csv_copy(
    source: Path, path: Path, header_row: int, email_column: str, by_email: dict[str, Delivery]
) -> None:
    """Write the CSV back in its own encoding, delimiter and line ends, columns added."""
    raw = source.read_bytes()
    text = decode_text(raw)
    delimiter = sniff_delimiter(text)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header = [cell.strip() for cell in records[header_row - 1]]
    email_at = header.index(email_column)
    out: list[list[str]] = []
    for number, record in enumerate(records, 1):
        if number < header_row or not record:
            out.append(record)
        elif number == header_row:
            out.append([*record, *outcome_columns()])
        else:
            address = record[email_at] if email_at < len(record) else ""
            out.append([*record, *outcome_cells(by_email.get(_key(address)))])
    buffer = io.StringIO(newline="")
    ending = "\r\n" if b"\r\n" in raw[:65536] else "\n"
    csv.writer(buffer, delimiter=delimiter, lineterminator=ending).writerows(out)
    path.write_bytes(buffer.getvalue().encode(_encoding(raw), errors="replace"))


def _encoding(raw: bytes) -> str:
    """The encoding `decode_text` read `raw` in, so the export opens the same way."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    for encoding in ("utf-8", "cp1252"):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return "latin-1"


def _write_grid(path: Path, headers: list[str], rows: Sequence[list[str]]) -> None:
    """Write text cells as .xlsx (openpyxl), .ods (pandas + odfpy) or .csv (UTF-8, Excel's separator)."""
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.append(headers)
        for row in rows:
            sheet.append(row)
        for column in sheet.iter_cols(min_row=2):
            for cell in column:
                cell.number_format = "@"  # text, as the source showed it: 01000 stays 01000
        book.save(path)
    elif suffix == ".ods":
        import pandas as pd

        frame = pd.DataFrame(rows, columns=headers, dtype=object)
        with pd.ExcelWriter(path, engine="odf") as ods:
            frame.to_excel(ods, index=False)
    else:
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            out = csv.writer(handle, delimiter=csv_delimiter())
            out.writerow(headers)
            out.writerows(rows)

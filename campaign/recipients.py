"""A spreadsheet's `Table` → `Recipient` rows, and the problems found in them; the suppression list.

Headers become template variables, addresses are validated (no DNS) and de-duplicated, cells that
reach an email header are checked for line breaks. Every problem carries the row number the
spreadsheet program shows (the header is row 1), and all problems of a file are collected before
anything is reported, so that the organiser fixes them in one pass.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from campaign.emailreasons import reason as refusal
from campaign.errors import InputError, Place, Problem, Severity
from campaign.i18n import _, ngettext, quoted, rows_named
from campaign.spreadsheet import SPREADSHEET_ERROR, decode_text, sniff_delimiter
from campaign.spreadsheet import SPREADSHEET_SUFFIXES as SPREADSHEET_SUFFIXES
from campaign.spreadsheet import Table as Table
from campaign.spreadsheet import column_letter as column_letter
from campaign.spreadsheet import read_table as read_table

# Characters that must never reach an email header; \t is allowed in ordinary cells only.
_HEADER_BREAKERS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_UNUSUAL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]")  # all of those but \t
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


_LIGATURES = str.maketrans(
    {"Œ": "OE", "œ": "oe", "Æ": "AE", "æ": "ae", "ß": "ss", "Ø": "O", "ø": "o", "Ł": "L", "ł": "l"}
)


class Status(StrEnum):
    READY = "ready"
    SUPPRESSED = "suppressed"
    INVALID = "invalid"


@dataclass(frozen=True)
class Recipient:
    """One spreadsheet row: its number as the spreadsheet shows it, its address and its cells."""

    row: int
    email: str
    values: Mapping[str, str]  # original header → cell text
    variables: Mapping[str, str]  # template variable name → cell text
    status: Status = Status.READY

    def context(self) -> dict[str, object]:
        """Return the template variables of this row; `row["Établissement"]` reaches any header."""
        return {**self.variables, "row": dict(self.values), "row_number": self.row}


@dataclass
class RecipientList:
    """The recipients of a campaign and everything wrong with them."""

    path: Path
    headers: list[str]
    names: dict[str, str]  # template variable → original header
    recipients: list[Recipient]
    problems: list[Problem] = field(default_factory=list)

    @property
    def ready(self) -> list[Recipient]:
        return [r for r in self.recipients if r.status is Status.READY]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.recipients if r.status is status)


def variable_name(header: str) -> str:
    """Turn a column header into a template variable: `Code postal` → `code_postal`."""
    spelled = header.translate(_LIGATURES)  # NFKD leaves Œ, Æ, ß whole: spell them out first
    ascii_text = (
        unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode("ascii").lower()
    )
    name = re.sub(r"[^a-z0-9]+", "_", ascii_text).strip("_")
    if name and name[0].isdigit():
        name = "c_" + name
    return name


def read_recipients(
    path: Path,
    *,
    email_column: str,
    required_columns: Iterable[str] = (),
    header_columns: Iterable[str] = (),
    suppressed: frozenset[str] = frozenset(),
    allow_special_domains: bool = False,
    display: str | None = None,
) -> RecipientList:
    """Read and validate a recipient spreadsheet; problems are collected, never raised.

    `header_columns` are the variables that reach an email header (subject, display name): their
    cells may hold no line break nor control character. `suppressed` holds lower-cased addresses.
    """
    shown = display or str(path)
    try:
        table = read_table(path, display=shown)
    except InputError as err:
        return RecipientList(path, [], {}, [], [Problem.from_error(err)])
    problems: list[Problem] = []
    names, columns = _name_columns(table, shown, problems)
    email_index = _find_column(email_column, table.headers, names)
    if email_index is None:
        problems.append(
            Problem.error(
                _("no column {column} for the email addresses").format(column=quoted(email_column)),
                Place(file=shown, row=table.header_row),
                _did_you_mean(
                    email_column, table.headers, prefix=_("set email_column in settings.yaml")
                )
                or _address_column_hint(table),
            )
        )
        return RecipientList(path, table.headers, names, [], problems)
    required = _required(required_columns, table, names, shown, problems)
    guarded = {i for i, h in enumerate(table.headers) if variable_name(h) in set(header_columns)}
    guarded.add(email_index)

    recipients: list[Recipient] = []
    first_row_of: dict[str, int] = {}
    pending_bad: list[tuple[int, str]] = []
    headers = table.headers
    name_pairs = list(names.items())
    plain = [(headers[i], i) for i in columns if i not in guarded]
    trimmed = [(headers[i], i) for i in columns if i in guarded]
    for row, cells in table.rows:
        joined = "\t".join(cells)  # one scan of the row instead of one per cell
        if not joined.strip():
            problems.append(
                Problem.warning(
                    _("empty row, skipped"),
                    Place(file=shown, row=row),
                    _("delete the row, or leave it: it is not a recipient"),
                )
            )
            continue
        row_problems: list[Problem] = []
        # Most rows hold no line break, control character or tab: their cells are taken as they
        # are. The others go cell by cell, where each such character is judged in its column.
        if _UNUSUAL.search(joined) or joined.count("\t") != len(cells) - 1:
            values = _clean_cells(cells, row, columns, headers, guarded, shown, row_problems)
        else:
            values = {header: cells[i] for header, i in plain}
            for header, i in trimmed:
                values[header] = cells[i].strip()
        if "#" in joined or "Err:" in joined:
            for header, i in plain + trimmed:
                if SPREADSHEET_ERROR.fullmatch(cells[i].strip()):
                    error = quoted(cells[i].strip())
                    row_problems.append(
                        Problem.error(
                            _(
                                "the cell shows {error}: its formula failed in the spreadsheet"
                            ).format(error=error),
                            Place(file=shown, row=row, column=header),
                            _(
                                "correct the formula (#N/A is often a lookup, VLOOKUP or RECHERCHEV, that finds nothing) or type the value; the letter would show {error}"
                            ).format(error=error),
                        )
                    )
        for i in required:
            if not cells[i].strip():
                row_problems.append(
                    Problem.error(
                        _("empty cell in a required column"),
                        Place(file=shown, row=row, column=table.headers[i]),
                        _("fill it in, or remove the row"),
                    )
                )
        raw_email = cells[email_index].strip()
        email = ""
        if not raw_email:
            if email_index not in required:
                row_problems.append(
                    Problem.error(
                        _("no email address"),
                        Place(file=shown, row=row, column=table.headers[email_index]),
                        _("fill it in, or remove the row"),
                    )
                )
        elif not _HEADER_BREAKERS.search(raw_email):
            normalized = _validate(raw_email, allow_special_domains)
            if isinstance(normalized, str):
                email = normalized
                key = normalized.lower()
                if key in first_row_of:
                    row_problems.append(
                        Problem.error(
                            _("duplicate email address {address}: same as row {first}").format(
                                address=quoted(raw_email), first=first_row_of[key]
                            ),
                            Place(file=shown, row=row, column=table.headers[email_index]),
                            _(
                                "rows {first} and {row} would receive the same letter; "
                                "remove one of them"
                            ).format(first=first_row_of[key], row=row),
                        )
                    )
                else:
                    first_row_of[key] = row
            else:
                pending_bad.append((len(problems) + len(row_problems), raw_email))
                row_problems.append(
                    Problem.error(
                        _("not an email address: {address} ({reason})").format(
                            address=quoted(raw_email), reason=refusal(normalized)
                        ),
                        Place(file=shown, row=row, column=table.headers[email_index]),
                    )
                )
        if row_problems and any(p.severity is Severity.ERROR for p in row_problems):
            status = Status.INVALID
        elif email.lower() in suppressed:
            status = Status.SUPPRESSED
        else:
            status = Status.READY
        problems.extend(row_problems)
        variables = {name: values[header] for name, header in name_pairs}
        recipients.append(Recipient(row, email or raw_email, values, variables, status))
    if table.hidden:
        # A filter left on, or rows hidden by hand: the organiser sees fewer rows than are sent.
        problems.append(
            Problem.warning(
                ngettext(
                    "{rows} is hidden in the spreadsheet (by hand or by a filter): it receives the letter like the others",
                    "{rows} are hidden in the spreadsheet (by hand or by a filter): they receive the letter like the others",
                    len(table.hidden),
                ).format(rows=rows_named(table.hidden)),
                Place(file=shown, row=table.hidden[0]),
                _(
                    "campaign reads every row, shown or not: show them all to check them, and delete the rows that must not receive it"
                ),
            )
        )
    if pending_bad:  # the domains most rows use, to complete an address such as 'bob@'
        domains = Counter(key.rpartition("@")[2] for key in first_row_of)
        _add_email_hints(problems, pending_bad, domains, allow_special_domains)
    if not recipients and not any(p.severity is Severity.ERROR for p in problems):
        problems.append(
            Problem.warning(
                _("the spreadsheet has a header but no recipients"),
                Place(file=shown, row=table.header_row),
                _("add the recipients below the header, or check which file settings.yaml names"),
            )
        )
    return RecipientList(path, table.headers, names, recipients, problems)


def _clean_cells(
    cells: list[str],
    row: int,
    columns: list[int],
    headers: list[str],
    guarded: set[int],
    shown: str,
    row_problems: list[Problem],
) -> dict[str, str]:
    """The values of a row holding a CR or a control character; each such cell is reported."""
    values: dict[str, str] = {}
    for i in columns:
        header = headers[i]
        text = cells[i].replace("\r\n", "\n").replace("\r", "\n")
        if i in guarded and _HEADER_BREAKERS.search(cells[i].strip()):
            row_problems.append(
                Problem.error(
                    _("line break or control character in a cell used in an email header"),
                    Place(file=shown, row=row, column=header),
                    _(
                        "keep this cell on one line; a line break here could add headers to "
                        "the email"
                    ),
                )
            )
        elif _CONTROL.search(text):
            text = _CONTROL.sub("", text)
            row_problems.append(
                Problem.warning(
                    _("invisible control character removed from the cell"),
                    Place(file=shown, row=row, column=header),
                    _("retype the cell if the text looks wrong"),
                )
            )
        values[header] = text.strip() if i in guarded else text
    return values


def _name_columns(
    table: Table, shown: str, problems: list[Problem]
) -> tuple[dict[str, str], list[int]]:
    """Give each used column a variable name; blank and colliding headers are problems."""
    names: dict[str, str] = {}
    columns: list[int] = []
    for i, header in enumerate(table.headers):
        letter = column_letter(i)
        if not header:
            first = next((row for row, cells in table.rows if cells[i].strip()), None)
            if first is not None:
                problems.append(
                    Problem.error(
                        _(
                            "column {letter} has values (the first in row {first}) but no header"
                        ).format(letter=letter, first=first),
                        Place(file=shown, row=table.header_row, column=letter),
                        _("give the column a name in the header row, or delete its values"),
                    )
                )
            continue
        name = variable_name(header)
        if not name:
            problems.append(
                Problem.error(
                    _("header {header} gives no usable variable name").format(
                        header=quoted(header)
                    ),
                    Place(file=shown, row=table.header_row, column=header),
                    _("use letters or digits in the header"),
                )
            )
            continue
        if name in names:
            problems.append(
                Problem.error(
                    _("headers {first} and {second} both become the variable {name}").format(
                        first=quoted(names[name]), second=quoted(header), name=quoted(name)
                    ),
                    Place(file=shown, row=table.header_row, column=header),
                    _("rename one of the two columns"),
                )
            )
            continue
        names[name] = header
        columns.append(i)
    return names, columns


def _find_column(wanted: str, headers: list[str], names: Mapping[str, str]) -> int | None:
    """The index of a column named by its header or its variable name."""
    if wanted in headers:
        return headers.index(wanted)
    header = names.get(variable_name(wanted))
    return headers.index(header) if header is not None else None


def _required(
    wanted: Iterable[str],
    table: Table,
    names: Mapping[str, str],
    shown: str,
    problems: list[Problem],
) -> list[int]:
    found: list[int] = []
    for column in wanted:
        index = _find_column(column, table.headers, names)
        if index is None:
            problems.append(
                Problem.error(
                    _("required column {column} is missing").format(column=quoted(column)),
                    Place(file=shown, row=table.header_row),
                    _did_you_mean(column, table.headers, prefix=_("add the column"))
                    or _("add the column, or remove it from required_columns in settings.yaml"),
                )
            )
        else:
            found.append(index)
    return found


def _other_sheets_hint(table: Table) -> str | None:
    """A workbook of several sheets: campaign reads the first, which may not be the list."""
    if len(table.sheets) < 2:
        return None
    return _(
        "campaign reads the workbook's first sheet, {first}; if the recipients are on another ({others}), move their sheet to the first place (drag its tab), or save it alone"
    ).format(first=quoted(table.sheets[0]), others=", ".join(quoted(n) for n in table.sheets[1:]))


def _address_column_hint(table: Table) -> str:
    """Name the column that holds addresses (most of its first cells have an @), if one does."""
    sample = [cells for _, cells in table.rows[:50]]
    counts = [
        sum(1 for cells in sample if i < len(cells) and "@" in cells[i])
        for i in range(len(table.headers))
    ]
    best = max(range(len(counts)), key=counts.__getitem__, default=None)
    if best is not None and table.headers[best] and counts[best] * 2 > len(sample):
        return _("the column {column} holds addresses: write email_column: {name}").format(
            column=quoted(table.headers[best]), name=table.headers[best]
        )
    return _other_sheets_hint(table) or _(
        "set email_column in settings.yaml to the header of the address column (the sheet's "
        "headers: {headers})"
    ).format(headers=", ".join(quoted(h) for h in table.headers if h))


def _did_you_mean(word: str, candidates: Iterable[str], *, prefix: str) -> str | None:
    by_name = {variable_name(c): c for c in candidates if c}
    close = get_close_matches(variable_name(word), list(by_name), n=1, cutoff=0.6)
    if not close:
        return None
    return _("did you mean {name}? ({then})").format(name=quoted(by_name[close[0]]), then=prefix)


# RFC 5322 dot-atom, the ASCII local parts email-validator accepts as they are.
_PLAIN_LOCAL = re.compile(
    r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z"
)


# RFC 2142 role mailboxes: case-insensitive, so email-validator writes them in lower case.
_RFC2142_MAILBOXES = frozenset(
    [
        "info",
        "marketing",
        "sales",
        "support",
        "abuse",
        "noc",
        "security",
        "postmaster",
        "hostmaster",
        "usenet",
        "news",
        "webmaster",
        "www",
        "uucp",
        "ftp",
    ]
)


def _validate(address: str, allow_special_domains: bool) -> str | EmailNotValidError:
    """The normalised address, or the validator's reason.

    email-validator takes ~28 µs an address. Lists repeat a few domains over many plain ASCII local
    parts, so such addresses only have their domain validated (once per domain); the local part
    is then the RFC 5322 dot-atom email-validator would accept unchanged. Anything else, and every
    failure, goes through email-validator whole, so messages and edge cases stay its own.
    """
    local, at, domain = address.rpartition("@")
    if (
        at
        and len(address) <= 254
        and domain.isascii()
        and "xn--" not in domain.lower()  # IDNA domains change length when normalised
        and len(local) <= 64
        and _PLAIN_LOCAL.match(local)
        and local.lower() not in _RFC2142_MAILBOXES  # email-validator lower-cases those
    ):
        checked = _validate_domain(domain, allow_special_domains)
        if checked is not None:
            return f"{local}@{checked}"
    return _validate_whole(address, allow_special_domains)


@lru_cache(maxsize=50_000)
def _validate_domain(domain: str, allow_special_domains: bool) -> str | None:
    """The normalised domain when a plain address at it is valid, else None."""
    result = _validate_whole(f"postmaster@{domain}", allow_special_domains)
    return result.rpartition("@")[2] if isinstance(result, str) else None


def _validate_whole(address: str, allow_special_domains: bool) -> str | EmailNotValidError:
    try:
        return validate_email(
            address,
            check_deliverability=False,  # no DNS: nothing leaves the machine
            globally_deliverable=not allow_special_domains,
            test_environment=allow_special_domains,  # lets *.test through, as SPEC §2 allows
        ).normalized
    except EmailNotValidError as err:
        return err


def suggest_email(
    address: str, common_domains: Iterable[str] = (), *, allow_special: bool = False
) -> str | None:
    """The likely intended address for a malformed one, or None when no fix is obvious."""
    text = address.strip()
    candidates: list[str] = []
    match = re.search(r"<([^<>]+)>", text)
    if match:
        candidates.append(match.group(1))
    base = text.removeprefix("mailto:").strip("<>\"' ")
    candidates += [
        base.replace(" ", ""),
        base.rstrip(".,;"),
        base.replace(",", "."),
        base.replace(";", "."),
        re.sub(r"@+", "@", base),
        re.sub(r"\.{2,}", ".", base),
        base.replace(" ", "").rstrip(".,;").replace(",", "."),
    ]
    if base.endswith("@") or "@" not in base:
        local = base.rstrip("@")
        candidates += [f"{local}@{d}" for d in common_domains]
    for candidate in candidates:
        if candidate and candidate != text and isinstance(_validate(candidate, allow_special), str):
            return str(_validate(candidate, allow_special))
    return None


def _add_email_hints(
    problems: list[Problem],
    pending: list[tuple[int, str]],
    domains: Counter[str],
    allow_special: bool,
) -> None:
    common = [d for d, _ in domains.most_common(3)]
    for index, address in pending:
        fix = suggest_email(address, common, allow_special=allow_special)
        old = problems[index]
        if fix:
            hint = _("did you mean {address}?").format(address=fix)
        elif "special-use or reserved" in str(_validate(address, allow_special)):
            hint = _(
                "use a real domain; for trial runs only, set allow_special_domains: true "
                "in the campaign's settings"
            )
        else:
            hint = _("correct the address, or remove the row")
        problems[index] = Problem(old.severity, old.message, old.place, hint)


def read_suppression(
    path: Path, *, display: str | None = None
) -> tuple[frozenset[str], list[Problem]]:
    """The lower-cased addresses of the suppression list (one per line, or an `email` column)."""
    shown = display or str(path)
    if not path.exists():
        return frozenset(), []
    try:
        text = decode_text(path.read_bytes())
    except OSError as err:
        return frozenset(), [
            Problem.error(
                _("cannot read the file: {reason}").format(reason=err.strerror), Place(file=shown)
            )
        ]
    addresses: set[str] = set()
    problems: list[Problem] = []
    rows = list(csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text)))
    column = 0
    start = 0
    if rows and rows[0] and "@" not in "".join(rows[0]):
        lowered = [variable_name(c) for c in rows[0]]
        column = next(
            (i for i, c in enumerate(lowered) if c in {"email", "courriel", "e_mail", "mail"}), 0
        )
        start = 1
    for number, cells in enumerate(rows[start:], start=start + 1):
        cell = cells[column].strip() if len(cells) > column else ""
        if not cell or cell.startswith("#"):
            continue
        normalized = _validate(cell, True)
        if isinstance(normalized, str):
            addresses.add(normalized.lower())
        else:
            addresses.add(cell.lower())
            problems.append(
                Problem.warning(
                    _("not an email address: {address}").format(address=quoted(cell)),
                    Place(file=shown, row=number),
                    _("correct or remove it"),
                )
            )
    return frozenset(addresses), problems

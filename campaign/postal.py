"""The French postal norm NF Z10-011: an address block (lines of text) → what breaks the norm.

`address_issues` takes the lines of an address block as the letter prints them (`pdf.address_lines`
builds them) and gives the departures from the norm, each with the line at fault and a proposed
fix: more than 6 lines, a line over 38 characters (the fix uses the norm's abbreviations — `BD`,
`AV`, `ST`, `CHU`… — only as far as needed to fit), punctuation in lines 4 to 6 (the delivery
lines: street, post-office box or locality, postcode and town), and a last line that is not a
5-digit postcode followed by the town in capitals (`CEDEX` and its number allowed; accents allowed,
as La Poste asks). `postcode_issue` judges a postcode cell on its own. Pure functions of text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from campaign.i18n import _, current_language, either, quoted

MAX_LINES = 6
MAX_WIDTH = 38

# The abbreviations of the norm's annex, in the order the norm asks to use them: the type of
# street first, then titles and saints, then the words of an organisation's name. Keys are
# written without accents, in capitals: a line's words are compared the same way.
_STREET_TYPES = {
    "ALLEE": "ALL",
    "AVENUE": "AV",
    "BOULEVARD": "BD",
    "CARREFOUR": "CAR",
    "CHAUSSEE": "CHS",
    "CHEMIN": "CHE",
    "COURS": "CRS",
    "DOMAINE": "DOM",
    "ESPLANADE": "ESP",
    "FAUBOURG": "FG",
    "HAMEAU": "HAM",
    "IMPASSE": "IMP",
    "LOTISSEMENT": "LOT",
    "MONTEE": "MTE",
    "PASSAGE": "PAS",
    "PLACE": "PL",
    "PROMENADE": "PRO",
    "QUARTIER": "QUA",
    "RESIDENCE": "RES",
    "ROND POINT": "RPT",
    "ROUTE": "RTE",
    "SQUARE": "SQ",
    "TRAVERSE": "TRA",
}
_TITLES = {
    "SAINT": "ST",
    "SAINTE": "STE",
    "GENERAL": "GAL",
    "MARECHAL": "MAL",
    "PRESIDENT": "PDT",
    "DOCTEUR": "DR",
    "PROFESSEUR": "PR",
    "COMMANDANT": "CDT",
    "LIEUTENANT": "LT",
    "COLONEL": "COL",
}
_ORGANISATIONS = {
    "CENTRE HOSPITALIER UNIVERSITAIRE": "CHU",
    "CENTRE HOSPITALIER REGIONAL UNIVERSITAIRE": "CHRU",
    "CENTRE HOSPITALIER REGIONAL": "CHR",
    "CENTRE HOSPITALIER INTERCOMMUNAL": "CHI",
    "CENTRE HOSPITALIER": "CH",
    "GROUPE HOSPITALIER": "GH",
}
ABBREVIATIONS: tuple[dict[str, str], ...] = (_STREET_TYPES, _TITLES, _ORGANISATIONS)

# Punctuation La Poste's sorting machines read badly in the delivery lines; the apostrophe and the
# hyphen become spaces there ("RUE DE L EGLISE", "BOURG EN BRESSE"), as in La Poste's own files.
_PUNCTUATION = re.compile(r"[.,;:!?'’\"«»()\[\]\-‐–—_/°]")
_AS_SPACE = re.compile(r"['’\-‐–—/_]")
_DELIVERY_WORDS = re.compile(
    r"(?:\d|(?:BP|CS|TSA|CEDEX|LIEU[ -]DIT|LD|RUE|" + "|".join(_STREET_TYPES) + r")\b)",
    re.IGNORECASE,
)
# The last line: a postcode, the town in capitals (accents allowed), optionally CEDEX and a number.
_LAST_LINE = re.compile(
    r"\d{5} [A-ZÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸŒÆ]+(?: [A-ZÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸŒÆ]+)*(?: CEDEX(?: \d{1,3})?)?"
)
_POSTCODE = re.compile(r"\d{5}")


@dataclass(frozen=True)
class AddressIssue:
    """One departure from the norm: the line (1 = the first of the block), what and the fix."""

    line: int
    message: str
    hint: str


def plain(text: str) -> str:
    """`Hôpital` → `HOPITAL`: the form words are compared in (no accents, capitals)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper()


def strip_punctuation(line: str) -> str:
    """The line as the delivery lines want it: apostrophes and hyphens as spaces, no punctuation."""
    return " ".join(_PUNCTUATION.sub("", _AS_SPACE.sub(" ", line)).split())


def delivery_start(lines: Sequence[str]) -> int:
    """The index of line 4 of the norm: where the street (or post-office box) starts.

    The norm numbers lines from the bottom: 6 is the postcode and town, 5 a post-office box or a
    locality, 4 the street. Of the two lines above the last, the first that reads like a street or
    a box starts them; otherwise the line just above the last is the street.
    """
    count = len(lines)
    if count < 2:
        return max(0, count - 1)
    for index in range(max(0, count - 3), count - 1):
        if _DELIVERY_WORDS.match(lines[index].strip()):
            return index
    return count - 2


def _index(table: dict[str, str]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """An abbreviation table by the first word of each key, longest keys first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for key, short in sorted(table.items(), key=lambda item: -len(item[0])):
        words = tuple(key.split())
        index.setdefault(words[0], []).append((words, short))
    return index


_INDEXES = [_index(table) for table in ABBREVIATIONS]


def abbreviate(line: str, width: int = MAX_WIDTH) -> str | None:
    """Shorten `line` with the norm's abbreviations, one at a time, until it fits in `width`.

    Returns None when it fits already, or when every abbreviation together is not enough.
    """
    if len(line) <= width:
        return None
    words = line.split()
    keys = [plain(word) for word in words]
    for index in _INDEXES:
        position = 0
        while position < len(words):
            for key, short in index.get(keys[position], ()):
                if tuple(keys[position : position + len(key)]) == key:
                    words[position : position + len(key)] = [short]
                    keys[position : position + len(key)] = [short]
                    if len(" ".join(words)) <= width:
                        return " ".join(words)
                    break
            position += 1
    return None


def last_line_fix(line: str) -> str:
    """The last line as the norm writes it: postcode, then the town in capitals, no punctuation."""
    return " ".join(strip_punctuation(line).upper().split())


def postcode_issue(value: str) -> str | None:
    """What is wrong with a postcode cell (None when it is 5 digits)."""
    text = value.strip()
    if not text or _POSTCODE.fullmatch(text):
        return None
    if text.isdigit() and len(text) < 5:
        return _(
            "postcode {value} has {n} digits: a leading zero was probably lost "
            "(write {fixed}, and format the column as text or with the format 00000)"
        ).format(value=quoted(text), n=len(text), fixed=text.zfill(5))
    return _("postcode {value} is not 5 digits (write it as 5 digits, e.g. 75013)").format(
        value=quoted(text)
    )


def address_issues(lines: Sequence[str]) -> list[AddressIssue]:
    """Every departure of an address block from NF Z10-011, with a proposed fix each."""
    issues: list[AddressIssue] = []
    count = len(lines)
    if count == 0:
        return issues
    if count > MAX_LINES:
        issues.append(
            AddressIssue(
                MAX_LINES + 1,
                _("the address has {n} lines; the norm allows {most}").format(
                    n=count, most=MAX_LINES
                ),
                _(
                    "put the name and the function on one line, or leave out a line "
                    "(a building with its street, a service with the name)"
                ),
            )
        )
    start = delivery_start(lines)
    for index, line in enumerate(lines):
        role = _LAST if index == count - 1 else _DELIVERY if index >= start else _IDENTITY
        issues += _line_issues(line, index + 1, role, current_language())
    return issues


_IDENTITY, _DELIVERY, _LAST = "identity", "delivery", "last"


@lru_cache(maxsize=1 << 16)
def _line_issues(line: str, number: int, role: str, language: str) -> tuple[AddressIssue, ...]:
    """The issues of one line; cached, since streets, towns and functions repeat down a list.

    `language` is the language of the messages: a part of the cache's key.
    """
    if role == _IDENTITY and len(line) <= MAX_WIDTH:
        return ()  # the common case, without building anything
    fixed = (
        last_line_fix(line)
        if role == _LAST
        else strip_punctuation(line)
        if role == _DELIVERY
        else line
    )
    proposal = abbreviate(fixed) or fixed
    issues: list[AddressIssue] = []
    if role == _DELIVERY and fixed != line:
        issues.append(
            AddressIssue(
                number,
                _(
                    "punctuation in line {number} of the address ({line}): "
                    "the norm allows none from the street down"
                ).format(number=number, line=quoted(line)),
                _("write {text}").format(text=quoted(proposal)),
            )
        )
    if role == _LAST and not _LAST_LINE.fullmatch(line):
        issues.append(
            AddressIssue(
                number,
                _("the last line {line} is not a 5-digit postcode and the town in capitals").format(
                    line=quoted(line)
                ),
                _("write {text}").format(text=quoted(proposal))
                if _LAST_LINE.fullmatch(fixed)
                else _(
                    "write the postcode (5 digits), a space and the town in capitals, "
                    "e.g. {examples}"
                ).format(examples=either(quoted("75013 PARIS"), quoted("38043 GRENOBLE CEDEX 9"))),
            )
        )
    if len(fixed) > MAX_WIDTH:
        issues.append(
            AddressIssue(
                number,
                _("line {number} of the address has {n} characters; the norm allows {most}").format(
                    number=number, n=len(fixed), most=MAX_WIDTH
                ),
                _("write {text} (the norm's abbreviations)").format(text=quoted(proposal))
                if proposal != fixed
                else _(
                    "shorten it to {most} characters: the norm's abbreviations "
                    "(BD, AV, ST, CHU…) are not enough"
                ).format(most=MAX_WIDTH),
            )
        )
    return tuple(issues)

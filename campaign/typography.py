"""French typography, dates and salutations: the helpers letter templates may call.

`french` takes one run of text (a text node of the HTML, never a tag, an attribute or a URL) and gives
it French spacing and apostrophes. `date_fr` writes a date the French way ("7 mai 2020",
"1er mai 2020") through Babel. `salutation` opens a letter from a civility and a function.
Templates reach them as `{{ salutation(civilite, fonction) }}`, `{{ date_fr(d) }}` or
`{{ d | date_fr }}`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from campaign.errors import HelperError
from campaign.i18n import _, quoted

NNBSP = "\u202f"  # narrow no-break space: before ; ? ! (and : by default) and inside « »
NBSP = "\u00a0"  # no-break space the width of a word space: before : in the "word" style
APOSTROPHE = "\u2019"
# The space before a colon: "fine" (narrow, Le Robert and today's screens) or "word" (a full
# no-break space, the Imprimerie nationale's lexicon). Set once per campaign by `use_colon`.
COLON_SPACES = {"fine": NNBSP, "word": NBSP}
_colon_space = NNBSP


def use_colon(style: str) -> None:
    """Choose the space before `:` for every text made French from now on ("fine" or "word")."""
    global _colon_space
    _colon_space = COLON_SPACES[style]


# Spaces before a high punctuation mark that follows a word or a closing mark, or that open a text
# node (the text after a link or an emphasis); "10:30" and "http://" have no space and stay.
_BEFORE_HIGH = re.compile(r"(?:^|(?<=[\w»)\]\"’.…]))[ \u00a0\u202f]+([;?!])")
_BEFORE_COLON = re.compile(r"(?:^|(?<=[\w»)\]\"’.…]))[ \u00a0\u202f]+:")
_AFTER_OPENING_GUILLEMET = re.compile(r"«[ \u00a0\u202f]*")
_BEFORE_CLOSING_GUILLEMET = re.compile(r"[ \u00a0\u202f]*»")
_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
# An incise between dashes keeps its dashes: "acteurs —\u00a0Commission … hôpitaux\u00a0—, le".
_OPENING_DASH = re.compile(r"—[ ]+(?=\w)")
_CLOSING_DASH = re.compile(r"(?<=\w)[ ]+—(?=[,.;:!?)]|$)")
# A reference and its number, a day and its month, a month and its year never part at a line's end
# ("l’article\u00a040", "alinéa\u00a02", "n°\u00a014130", "21\u00a0avril\u00a02020"), in the PDF and
# in the plain-text part (textwrap breaks at ASCII spaces only).
_MONTHS = "janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre"
_BEFORE_NUMBER = re.compile(
    r"(?<!\w)(articles?|alinéas?|al\.|paragraphes?|§|chapitres?|n°|p\.|pages?)"
    r" (?=\d)",
    re.IGNORECASE,
)
_DAY_MONTH = re.compile(rf"(?<![\w,.])(\d{{1,2}}(?:er)?) (?=(?:{_MONTHS})(?!\w))", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"(?<!\w)({_MONTHS}) (?=\d{{4}}(?!\w))", re.IGNORECASE)


def french(text: str) -> str:
    """Give one run of text French spacing: no-break spaces before ; : ? !, inside « » and incises."""
    if not text:
        return text
    return _french(text, _colon_space)


# Each text node of a letter is made French once per run, not once per recipient.
@functools.lru_cache(maxsize=8192)
def _french(text: str, colon_space: str) -> str:
    if "'" in text:
        text = _APOSTROPHE.sub(APOSTROPHE, text)
    if any(mark in text for mark in ";?!"):
        text = _BEFORE_HIGH.sub(NNBSP + r"\1", text)
    if ":" in text:
        text = _BEFORE_COLON.sub(colon_space + ":", text)
    if any(c.isdigit() for c in text):
        text = _BEFORE_NUMBER.sub("\\1\u00a0", text)
        text = _MONTH_YEAR.sub("\\1\u00a0", _DAY_MONTH.sub("\\1\u00a0", text))
    if "—" in text:
        text = _OPENING_DASH.sub("—\u00a0", _CLOSING_DASH.sub("\u00a0—", text))
    if "«" in text:
        text = _AFTER_OPENING_GUILLEMET.sub("«" + NNBSP, text)
    if "»" in text:
        text = _BEFORE_CLOSING_GUILLEMET.sub(NNBSP + "»", text)
    return text


def as_date(value: object) -> date:
    """Read a date from a `date`, a `datetime` or an ISO text such as 2020-05-07."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise HelperError(
            _("{value} is not a date such as {example}").format(
                value=quoted(text), example="2020-05-07"
            )
        ) from None


def date_fr(value: object) -> str:
    """Write a date in French: `7 mai 2020`, `1er mai 2020`."""
    return _date_fr(as_date(value))


@functools.lru_cache(maxsize=256)
def _date_fr(day: date) -> str:
    from babel.dates import format_date

    text = str(format_date(day, "d MMMM y", locale="fr_FR"))
    return text.replace("1 ", "1er ", 1) if day.day == 1 else text


# Feminine and masculine forms of the words functions are made of, lower case.
_FEMININE = {
    "directeur": "directrice",
    "administrateur": "administratrice",
    "président": "présidente",
    "délégué": "déléguée",
    "général": "générale",
    "adjoint": "adjointe",
    "médecin-chef": "médecin-cheffe",
    "chef": "cheffe",
    "doyen": "doyenne",
    "secrétaire": "secrétaire",
    "intérimaire": "intérimaire",
}
_MASCULINE = {feminine: masculine for masculine, feminine in _FEMININE.items()}
_FEMALE = {"madame", "mme", "mademoiselle", "mlle"}
_MALE = {"monsieur", "m", "mr"}


def known_civility(civility: object) -> bool:
    """Whether `salutation` knows this civility (Madame, Mme, Monsieur, M. …); empty is not one."""
    return str(civility or "").strip().lower().rstrip(".") in _FEMALE | _MALE


def _agree(role: str, female: bool) -> str:
    forms = _FEMININE if female else _MASCULINE
    return " ".join(forms.get(word, word) for word in role.split())


def salutation(civility: object = "", function: object = "") -> str:
    """`Madame la Directrice,` / `Monsieur le Directeur,` from civility and function.

    Without a known civility the salutation is `Madame, Monsieur,`; without a function it is
    `Madame,` or `Monsieur,`. The function agrees with the civility (`Madame` + `Directeur
    général` gives `Madame la Directrice générale,`), and its first word takes the capital that
    French correspondence gives a title one writes to (« Monsieur le Directeur », Lexique de
    l'Imprimerie nationale), whatever the cell's case.
    """
    civ = str(civility or "").strip().lower().rstrip(".")
    role = " ".join(str(function or "").split()).lower()
    female = civ in _FEMALE
    if not (female or civ in _MALE):
        return "Madame, Monsieur,"
    title = "Madame" if female else "Monsieur"
    if not role:
        return f"{title},"
    role = _agree(role, female)
    role = role[0].upper() + role[1:]
    article = "l’" if role[0] in "AEÉÈÊIÎOÔU" else ("la " if female else "le ")
    return f"{title} {article}{role},"


FILTERS: dict[str, Callable[..., Any]] = {"date_fr": date_fr, "french": french}
GLOBALS: dict[str, Any] = {"salutation": salutation, "date_fr": date_fr}

"""The language a person reads: English source strings → the French (or English) of the catalogs.

Every message a person reads goes through `_()` (or `ngettext()` when it counts something), with the
English text as the msgid and named `{placeholders}` filled after translation:

    _("{count} recipients ready to send").format(count=n)
    ngettext("{n} run", "{n} runs", n).format(n=n)

The catalogs are the stdlib's compiled gettext files in `campaign/locale/<lang>/LC_MESSAGES/
campaign.mo` (made by `make catalogs` from the .po files; Babel extracts the messages, but is not
imported here: `campaign --help` stays fast).

The language in force is chosen, in this order: `use_language()` (the command line calls it with
`language:` of settings.yaml once the settings are read), else the environment as gettext reads it
(`LC_ALL`, `LC_MESSAGES`, `LANG`: the first one set and not empty; `fr_FR.UTF-8` → `fr`; `C` and
`POSIX` → `en`). `language_of()` gives a text for another language for a while (the proof pack
speaks the letter's language, whatever the organiser's terminal says).
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

DOMAIN = "campaign"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "fr")  # English is the source language: its catalog is the msgids themselves
DEFAULT_LANGUAGE = "en"

_chosen: str | None = None  # set by use_language(): wins over the environment
_catalogs: dict[str, gettext.NullTranslations] = {}


def environment_language() -> str:
    """The language the environment asks for: the first of LC_ALL, LC_MESSAGES, LANG set."""
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable)
        if value:
            return normalise(value)
    return DEFAULT_LANGUAGE


def normalise(value: str) -> str:
    """`fr_FR.UTF-8` → `fr`, `en_GB` → `en`, `C` / `POSIX` / a language we lack → `en`."""
    code = value.split(".", 1)[0].split("@", 1)[0].replace("-", "_").split("_", 1)[0].lower()
    return code if code in LANGUAGES else DEFAULT_LANGUAGE


def use_language(language: str | None) -> None:
    """Speak `language` (fr or en) from now on; None goes back to the environment's."""
    global _chosen
    _chosen = normalise(language) if language else None


def current_language() -> str:
    """The language messages are given in now."""
    return _chosen or environment_language()


@contextmanager
def language_of(language: str) -> Iterator[None]:
    """Speak `language` inside the block (the proof pack follows its letter), then as before."""
    global _chosen
    before = _chosen
    _chosen = normalise(language)
    try:
        yield
    finally:
        _chosen = before


def catalog(language: str | None = None) -> gettext.NullTranslations:
    """The compiled catalog of `language` (default: the current one), read once."""
    code = language or current_language()
    found = _catalogs.get(code)
    if found is None:
        found = gettext.translation(DOMAIN, LOCALE_DIR, languages=[code], fallback=True)
        _catalogs[code] = found
    return found


def _(message: str) -> str:
    """`message` (English) in the current language."""
    return catalog().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of `singular`/`plural` that agrees with `n`, in the current language."""
    return catalog().ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """`message` in the current language, where the same English needs two translations."""
    return catalog().pgettext(context, message)


def labelled(label: str, text: str) -> str:
    """`label: text` as the current language writes it (French puts a space before the colon)."""
    return _("{label}: {text}").format(label=label, text=text)


def listed(parts: Iterable[str]) -> str:
    """Reasons or faults one after the other, `; ` apart (French: ` ; `)."""
    return pgettext("between items of a list", "; ").join(parts)


def either(first: str, second: str) -> str:
    """`first or second` in the current language (two examples of a hint)."""
    return _("{first} or {second}").format(first=first, second=second)


def quoted(value: object) -> str:
    """A value the organiser wrote, quoted as the language quotes: 'smtp.port', « smtp.port ».

    What cannot be seen is shown as `repr` shows it (a no-break space in a cell is `\\xa0`, a
    line break `\\n`), so that a value refused for it can be told from the one that looks the same.
    """
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))
    return pgettext("a value quoted in a message", "'{value}'").format(value=text)


def rows_named(rows: Iterable[int], *, shown: int = 20) -> str:
    """Spreadsheet rows for a message: "row 5", "rows 4–9, 12 and 3 more" (runs as ranges)."""
    numbers = sorted(set(rows))
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [f"{run[0]}–{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in runs]
    text = ", ".join(parts[:shown])
    if len(parts) > shown:
        more = sum(len(run) for run in runs[shown:])
        text = ngettext("{shown} and {n} more", "{shown} and {n} more", more).format(
            shown=text, n=more
        )
    return ngettext("row {rows}", "rows {rows}", len(numbers)).format(rows=text)


def N_(message: str) -> str:
    """Mark `message` for the catalogs without translating it now (a constant read at import)."""
    return message


def plural(n: int, singular: str, plural_form: str) -> str:
    """`ngettext(...)` with `{n}` filled in: plural(3, "{n} run", "{n} runs") → "3 runs".

    The extractor knows this function too (keyword `plural:2,3` in babel.cfg's callers).
    """
    return ngettext(singular, plural_form, n).format(n=number(n))


class Said(str):
    """A text in the current language that can be said again in another (`again()`).

    `Said(lambda: _("longest {what}").format(what=_("name")))`: the text is made now, and the
    function is kept, so that the proof pack can say it again in the letter's language.
    """

    _say: Callable[[], str]

    def __new__(cls, say: Callable[[], str]) -> Said:
        text = super().__new__(cls, say())
        text._say = say
        return text

    def again(self) -> str:
        """The text in the language in force now."""
        return self._say()


def again(text: str) -> str:
    """`text` said again in the current language when it can be (a `Said`), else as it is."""
    return text.again() if isinstance(text, Said) else text


def csv_delimiter() -> str:
    """The separator the current language's Excel reads a .csv with: `;` where `,` is decimal."""
    return ";" if current_language() == "fr" else ","


def byte_size(n: int) -> str:
    """A size the way mail servers count it (1 KB = 1,000 bytes): `412 KB`, `10.2 MB`."""
    if n < 1000:
        return ngettext("{n} byte", "{n} bytes", n).format(n=number(n))
    if n < 1_000_000:
        return _("{n} KB").format(n=number(n / 1000))
    return _("{n} MB").format(n=number(n / 1_000_000, decimals=1))


def number(n: float, *, decimals: int = 0) -> str:
    """A number the way the current language writes it: 1 234,5 in French, 1234.5 in English.

    English keeps the plain digits the tool always printed (scripts read them).
    """
    if current_language() == "fr":
        # The thousands separator is a narrow no-break space; the decimal mark a comma.
        return f"{n:,.{decimals}f}".replace(",", "\u202f").replace(".", ",")
    return f"{n:.{decimals}f}"

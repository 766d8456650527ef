"""Loaded `Inputs` → the warnings about how each recipient is addressed, for `campaign check`.

Three checks over every row: the printed address against the postal norm NF Z10-011 (the block
is the one the letter prints, `pdf.address_lines`; the norm itself is `campaign.postal`), a
salutation or closing line that abbreviates a title ("Mme la directrice,"), and a civility that
`salutation` does not know ("Dr": the letter would open "Madame, Monsieur,"). Each warning names
the row and the column; the same warning is listed for 20 rows, then counted. Long lists are
checked on every core (forked workers), like the dry merge.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import re
from collections.abc import Callable

import jinja2

from campaign import postal
from campaign.errors import Place, Problem, TemplateError
from campaign.i18n import _, quoted
from campaign.inputs import Inputs
from campaign.letter import Letter, compile_text, merge_letter, render_template
from campaign.recipients import Recipient, Status
from campaign.typography import known_civility

# Below this many rows, starting worker processes costs more than it saves.
_PARALLEL_FROM = 20_000

# How many rows of the same postal or title warning are listed before the rest are counted.
_SAME_WARNING_LISTED = 20
# The columns a line of the address block may come from, in the order `address_lines` uses them.
_ADDRESS_VARIABLES = ("civilite", "prenom", "nom", "fonction", "etablissement", "adresse")


def postal_problems(inputs: Inputs) -> list[Problem]:
    """The NF Z10-011 warnings of every printed address (campaigns with a PDF letter only).

    The address block is the one the letter prints (`pdf.address_lines`), so the check and the
    page cannot disagree about which cells form the address.
    """
    import campaign.typeset  # noqa: F401  (imported before the workers fork; WeasyPrint loads lazily)

    rows = [r for r in inputs.recipients.recipients if r.status is not Status.INVALID]
    listing = _Listing(_shown(inputs))
    for part in _on_every_core(_postal_part, inputs, rows):
        listing.extend(part)
    return listing.problems()


def _shown(inputs: Inputs) -> str:
    return inputs.campaign.settings.display(inputs.campaign.config.recipients)


def _postal_part(inputs: Inputs, rows: list[Recipient]) -> _Listing:
    """The postal warnings of some rows, listed and counted."""
    from campaign.typeset import address_lines

    campaign = inputs.campaign
    letter = inputs.letter
    names = inputs.recipients.names
    listed = _Listing(_shown(inputs))
    postcode = names.get("code_postal")
    for recipient in rows:
        if postcode is not None:
            message = postal.postcode_issue(recipient.values.get(postcode, ""))
            if message is not None and listed.count("postcode"):
                listed.add(
                    "postcode", recipient.row, postcode, message, _("the norm wants 5 digits")
                )
        if not campaign.config.attach_pdf or letter is None:
            continue  # an email-only campaign prints no address
        fields: dict[str, str] = {}
        if letter.text_template("address") is not None:
            fields = dict(merge_letter(letter, inputs.context(recipient)).fields)
        lines = address_lines(recipient, fields)
        for issue in postal.address_issues(lines):
            kind = " ".join(issue.message.split(" ", 3)[:3])
            if listed.count(kind):  # the cell is looked for only for the rows listed
                line = lines[issue.line - 1] if issue.line <= len(lines) else ""
                column = _column_of(line, issue.line == len(lines), recipient, names)
                listed.add(kind, recipient.row, column, issue.message, issue.hint)
    return listed


# What forked workers check: set just before the fork, so that nothing needs pickling.
_JOB: tuple[Callable[[Inputs, list[Recipient]], _Listing], Inputs, list[Recipient]] | None = None


def _on_every_core(
    check: Callable[[Inputs, list[Recipient]], _Listing], inputs: Inputs, rows: list[Recipient]
) -> list[_Listing]:
    """Run `check` over the rows, in forked workers for long lists; the parts in row order."""
    global _JOB
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8)
    if len(rows) < _PARALLEL_FROM or workers < 2 or "fork" not in mp.get_all_start_methods():
        return [check(inputs, rows)]
    size = -(-len(rows) // workers)
    chunks = [(start, min(start + size, len(rows))) for start in range(0, len(rows), size)]
    _JOB = (check, inputs, rows)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            return pool.map(_check_chunk, chunks)
    except OSError:  # no process to spare: check here
        return [check(inputs, rows)]
    finally:
        _JOB = None


def _check_chunk(bounds: tuple[int, int]) -> _Listing:
    assert _JOB is not None
    check, inputs, rows = _JOB
    return check(inputs, rows[bounds[0] : bounds[1]])


def _column_of(line: str, last: bool, recipient: Recipient, names: dict[str, str]) -> str | None:
    """The header of the cell a line of the address block comes from (the town for the last)."""
    if last:
        for name in ("ville", "code_postal"):
            if name in names:
                return names[name]
    for name in _ADDRESS_VARIABLES:
        value = recipient.variables.get(name, "")
        if value and (line in value.splitlines() or value.strip() in line):
            return names.get(name)
    return None


class _Listing:
    """Warnings listed for the first rows of each kind, the rest counted in one line."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.listed: list[tuple[str, Problem]] = []
        self.more: dict[str, int] = {}

    def count(self, kind: str) -> bool:
        """Count one more row of `kind`; True while such rows are still listed one by one."""
        self.more[kind] = self.more.get(kind, 0) + 1
        return self.more[kind] <= _SAME_WARNING_LISTED

    def add(self, kind: str, row: int, column: str | None, message: str, hint: str) -> None:
        """List a warning (after `count` said it is still listed)."""
        place = Place(file=self.shown, row=row, column=column)
        self.listed.append((kind, Problem.warning(message, place, hint)))

    def extend(self, part: _Listing) -> None:
        """Add the listing of the rows that follow (a worker's part)."""
        for kind, problem in part.listed:
            if sum(1 for k, _ in self.listed if k == kind) < _SAME_WARNING_LISTED:
                self.listed.append((kind, problem))
        for kind, count in part.more.items():
            self.more[kind] = self.more.get(kind, 0) + count

    def problems(self) -> list[Problem]:
        extra = [
            Problem.warning(
                _("{n} more rows have the same warning ({kind}…)").format(
                    n=count - _SAME_WARNING_LISTED, kind=kind
                ),
                Place(file=self.shown),
                _("fix the rows listed above the same way"),
            )
            for kind, count in self.more.items()
            if count > _SAME_WARNING_LISTED
        ]
        return [problem for _, problem in self.listed] + extra


# A title abbreviated before an article or a name, where a person is addressed: "Mme la
# directrice,". The address block may abbreviate; a salutation or a closing line may not.
_ABBREVIATED_TITLE = re.compile(r"(?<![\w.])(Mmes|Mme|Mlles|Mlle|MM\.|M\.|Mr|Dr|Pr)(?=\s)")
_IN_FULL = {
    "Mme": "Madame",
    "Mmes": "Mesdames",
    "Mlle": "Mademoiselle",
    "Mlles": "Mesdemoiselles",
    "M.": "Monsieur",
    "MM.": "Messieurs",
    "Mr": "Monsieur",
    "Dr": "Docteur",
    "Pr": "Professeur",
}
_CLOSING = re.compile(
    r"agréer|prions|prie |recevoir|salutations|sentiments|cordialement|bien à vous", re.I
)


def title_problems(inputs: Inputs) -> list[Problem]:
    """A salutation or closing line that abbreviates a title ("Mme la directrice,")."""
    listed = _Listing(_shown(inputs))
    for letter in (inputs.letter, inputs.email_body):
        if letter is None:
            continue
        paragraphs = _addressing_paragraphs(letter)
        if not paragraphs:
            continue
        literal = any(_ABBREVIATED_TITLE.search(source) for _, _, source in paragraphs)
        for recipient in inputs.recipients.recipients:
            if recipient.status is Status.INVALID:
                continue
            # Only a cell holding "Mme" (or the letter's own text) can put one there: the
            # other rows need no merge, which keeps `check` fast on long lists.
            if not literal and not any(v.strip() in _IN_FULL for v in recipient.values.values()):
                continue
            context = inputs.context(recipient)
            for line, template, _source in paragraphs:
                try:
                    text = render_template(template, context, letter.display)
                except TemplateError:
                    continue  # the dry merge reported it
                match = _ABBREVIATED_TITLE.search(text)
                if match is None:
                    continue
                short = match.group(1)
                if not listed.count(f"title {short}"):
                    break
                fixed = " ".join([*text[: match.start()].split(), _IN_FULL[short]])
                rest = " ".join(text[match.end() :].split())
                listed.add(
                    f"title {short}",
                    recipient.row,
                    _column_holding(short, recipient, inputs.recipients.names),
                    _(
                        "{file}, line {line}: the title is abbreviated where the person "
                        "is addressed ({text})"
                    ).format(file=letter.display, line=line, text=quoted(" ".join(text.split()))),
                    _(
                        "write {text}: a person addressed is written in full (the address "
                        "block may keep M. / Mme); {helper} writes it so"
                    ).format(
                        text=quoted((fixed + " " + rest).strip()),
                        helper="{{ salutation(civilite, fonction) }}",
                    ),
                )
                break
    return listed.problems()


# The column a letter hands `salutation` as its civility: `{{ salutation(civilite, fonction) }}`.
_SALUTATION_CIVILITY = re.compile(r"salutation\(\s*(\w+)")


def civility_problems(inputs: Inputs) -> list[Problem]:
    """A civility `salutation` does not know ("Dr", "Pr"): that letter opens "Madame, Monsieur,".

    An empty cell is left alone (the neutral opening is what it asks for); a title such as
    "Docteur" is no civility the salutation can agree a function with.
    """
    listed = _Listing(_shown(inputs))
    names = inputs.recipients.names  # variable → header
    variables = {
        variable
        for letter in (inputs.letter, inputs.email_body)
        if letter is not None
        for variable in _SALUTATION_CIVILITY.findall(letter.body)
        if variable in names
    }
    for variable in sorted(variables):
        for recipient in inputs.recipients.recipients:
            value = recipient.variables.get(variable, "").strip()
            if recipient.status is Status.INVALID or not value or known_civility(value):
                continue
            if not listed.count(f"civility {value}"):
                continue
            listed.add(
                f"civility {value}",
                recipient.row,
                names[variable],
                _(
                    "the civility {value} is not one the salutation knows: this letter opens "
                    "with {opening}"
                ).format(value=quoted(value), opening=quoted("Madame, Monsieur,")),
                _(
                    "write Madame or Monsieur (Mme, M.) in this column, so that the letter "
                    "opens with {example}; a title such as Docteur belongs in the letter's text"
                ).format(example=quoted("Madame la Directrice,")),
            )
    return listed.problems()


def _column_holding(short: str, recipient: Recipient, names: dict[str, str]) -> str | None:
    return next((h for h, v in recipient.values.items() if v.strip() == short), None)


def _addressing_paragraphs(letter: Letter) -> list[tuple[int, jinja2.Template, str]]:
    """The salutation (first paragraph) and the closing paragraphs: line, template, source.

    Jinja expressions are blanked in the source kept, so that only the letter's own words count.
    """
    found: list[tuple[int, jinja2.Template, str]] = []
    line = 1
    first = True
    for block in re.split(r"(\n\s*\n)", letter.body):
        if block.strip() and not block.lstrip().startswith("[^"):
            start = line + len(block) - len(block.lstrip("\n"))
            if first or _CLOSING.search(block):
                with contextlib.suppress(TemplateError):  # reported where the letter compiles
                    template = compile_text(block.strip(), letter.display)
                    found.append((start, template, re.sub(r"{[{%#].*?[}%#]}", " ", block)))
            first = False
        line += block.count("\n")
    return found

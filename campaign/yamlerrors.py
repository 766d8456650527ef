"""A YAML syntax error in words an organiser reads: what is wrong on the line, and what to do.

PyYAML says `expected <block end>, but found '<block mapping start>'` for a key indented one space
too far; the organisers who edit settings.yaml and a letter's front matter are not YAML's readers.
`explain` maps the mistakes people make (indentation, a tab, a value holding ": ", a missing
colon, a quote never closed, a value starting with a reserved character) to a sentence and a hint
in the session's language; any other error keeps PyYAML's own text, with a general hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from campaign.i18n import _, quoted


@dataclass(frozen=True)
class Explained:
    problem: str
    hint: str
    line: int | None  # 1-based, in the text that was parsed


# PyYAML writes a tab as the two characters \t.
_RESERVED = re.compile(r"found character '(\\t|.)' that cannot start any token")


def explain(err: yaml.YAMLError) -> Explained:
    """What `err` means for the person who wrote the file."""
    mark = getattr(err, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = str(getattr(err, "problem", None) or err)
    context = str(getattr(err, "context", None) or "")
    reserved = _RESERVED.search(problem)
    if reserved and reserved.group(1) in ("\\t", "\t"):
        return Explained(
            _("a tab is used to indent"), _("indent with spaces only, never with a tab"), line
        )
    if reserved:
        return Explained(
            _("a value starts with {char}, which YAML reserves").format(
                char=quoted(reserved.group(1))
            ),
            _("put that value between double quotes"),
            line,
        )
    if problem.startswith("expected <block end>") or problem == "did not find expected key":
        return Explained(
            _("this line is not indented like the lines of its section"),
            _(
                "line up each key with the keys beside it, with spaces; a section's keys are indented under it"
            ),
            line,
        )
    if problem == "mapping values are not allowed here":
        return Explained(
            _("a value holds {colon}, which YAML reads as the start of another key").format(
                colon=quoted(": ")
            ),
            _("put that value between double quotes, e.g. {example}").format(
                example='subject: "Objet : la lettre"'
            ),
            line,
        )
    if problem == "could not find expected ':'":
        return Explained(
            _("a key has no colon after it"), _("write each setting as key: value"), line
        )
    if problem == "found unexpected end of stream" and "quoted scalar" in context:
        opened = getattr(err, "context_mark", None)
        return Explained(
            _("a quotation mark is never closed"),
            _("close the quotes opened on that line"),
            opened.line + 1 if opened is not None else line,
        )
    return Explained(
        problem,
        _(
            "look at that line and the one above it: the indentation, a colon after each key, "
            "double quotes around a value that holds {colon}"
        ).format(colon=quoted(": ")),
        line,
    )

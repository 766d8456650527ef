"""A campaign's settings → its loaded inputs (letter, templates, recipients), and `check` over them.

Every later stage (render, proof, send) starts from `load_inputs`, so that what `check` validates is
exactly what they use.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes

from campaign.depends import Dependency, dependencies
from campaign.errors import CampaignError, InputError, Place, Problem, Severity, TemplateError
from campaign.i18n import _, byte_size, plural, quoted
from campaign.letter import (
    FRONT_TEMPLATES,
    Letter,
    MergedLetter,
    compile_text,
    footnote_problems,
    front_matter_line,
    load_letter,
    make_environment,
    merge_letter,
    python_error,
    render_merged,
    render_template,
    template_problems,
    template_variables,
)
from campaign.recipients import (
    Recipient,
    RecipientList,
    Status,
    read_recipients,
    read_suppression,
    variable_name,
)
from campaign.settings import Campaign
from campaign.typography import french, use_colon

# How many merged recipients `Inputs.merged` keeps (a run asks for each a few times in a row).
_MERGED_KEPT = 256
# How many rows of the same template failure are listed before the rest are summed up.
_SAME_FAILURE_LISTED = 5


@dataclass
class Inputs:
    """Everything a campaign reads, loaded and validated once."""

    campaign: Campaign
    letter: Letter | None
    email_body: Letter | None
    subject: jinja2.Template | None
    to_name: jinja2.Template | None
    recipients: RecipientList
    problems: list[Problem] = field(default_factory=list)
    pdf_name: jinja2.Template | None = None
    _merged: OrderedDict[int, Merged] = field(
        default_factory=OrderedDict, init=False, repr=False, compare=False
    )

    @cached_property
    def dependencies(self) -> list[Dependency]:
        """Every file the letters and emails depend on (`campaign.depends`), read once."""
        return dependencies(self)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    def context(self, recipient: Recipient) -> dict[str, Any]:
        """The template variables for one recipient: its cells, the sender, the front matter."""
        settings = self.campaign.settings
        return {
            "letter": dict(self.letter.front) if self.letter else {},
            "sender": settings.sender.model_dump(),
            **recipient.context(),
        }

    def merged(self, recipient: Recipient) -> Merged:
        """The recipient merged into every template, once (kept for the last few hundred rows)."""
        found = self._merged.get(recipient.row)
        if found is None or found.recipient is not recipient:
            found = self._merged[recipient.row] = Merged(self, recipient)
            if len(self._merged) > _MERGED_KEPT:
                self._merged.popitem(last=False)
        return found

    def subject_for(self, recipient: Recipient) -> str:
        return self.merged(recipient).subject

    def attachments_for(self, recipient: Recipient) -> list[Path]:
        """The files of the recipient's `attachments_column` cell, resolved in the folder.

        The names are `;`-separated; an empty cell attaches nothing. Only what `check` accepts
        reaches a send (`attachment_problems`); a path leaving the folder is refused here too.
        """
        config = self.campaign.config
        if config.attachments_column is None:
            return []
        cell = recipient.values.get(config.attachments_column, "")
        folder = self.campaign.path(config.attachments_folder).resolve()
        found: list[Path] = []
        for name in attachment_names(cell):
            target = (folder / name).resolve()
            if not target.is_relative_to(folder):
                raise InputError(
                    _("the attachment {name} is outside {folder}").format(
                        name=quoted(name), folder=config.attachments_folder
                    ),
                    place=Place(
                        file=self.campaign.settings.display(config.recipients),
                        row=recipient.row,
                        column=config.attachments_column,
                    ),
                    hint=_("name files inside the attachments folder, without '..'"),
                )
            found.append(target)
        return found

    def own_attachment_sizes(self, recipient: Recipient) -> list[tuple[str, int]]:
        """The recipient's own files (`attachments_for`) and what each weighs in a message.

        A file that cannot be read counts nothing: composing or `check` says what is wrong.
        """
        sizes = []
        for path in self.attachments_for(recipient):
            try:
                sizes.append((path.name, encoded_size(path.stat().st_size)))
            except OSError:
                continue
        return sizes

    def to_name_for(self, recipient: Recipient) -> str:
        return self.merged(recipient).to_name

    def pdf_name_for(self, recipient: Recipient) -> str:
        return self.merged(recipient).pdf_name


class Merged:
    """One recipient merged once: what compose, the PDF, the proofs and the delivery log take.

    Each value is made on first use: the subject and display name cost one Jinja render each, the
    letter and email bodies one Jinja render and, when a rendering is asked for, one Markdown parse.
    """

    def __init__(self, inputs: Inputs, recipient: Recipient) -> None:
        self.inputs = inputs
        self.recipient = recipient

    @cached_property
    def context(self) -> dict[str, Any]:
        return self.inputs.context(self.recipient)

    @cached_property
    def subject(self) -> str:
        if self.inputs.subject is None:
            return ""
        text = render_template(self.inputs.subject, self.context, "subject")
        return french(" ".join(text.split()))  # the subject is typeset like the body

    @cached_property
    def to_name(self) -> str:
        """The display name of the To header ("" without a `to_name` template)."""
        if self.inputs.to_name is None:
            return ""
        return " ".join(render_template(self.inputs.to_name, self.context, "to_name").split())

    @cached_property
    def pdf_name(self) -> str:
        """The attached letter's file name from `pdf_name`, without ".pdf" ("" without one)."""
        if self.inputs.pdf_name is None:
            return ""
        text = render_template(self.inputs.pdf_name, self.context, "pdf_name")
        return french(" ".join(text.split()))

    @cached_property
    def letter(self) -> MergedLetter | None:
        """The letter (the PDF's text), merged."""
        letter = self.inputs.letter
        return None if letter is None else merge_letter(letter, self.context)

    @cached_property
    def email(self) -> MergedLetter | None:
        """The email body: its own template when the campaign has one, else the letter."""
        body = self.inputs.email_body
        return self.letter if body is None else merge_letter(body, self.context)


def load_inputs(campaign: Campaign) -> Inputs:
    """Load letter, templates, suppression list and recipients; problems are collected, not raised."""
    settings = campaign.settings
    config = campaign.config
    problems: list[Problem] = []
    shown = settings.display
    use_colon(settings.typography.colon)  # before anything is merged, workers included

    letter = _load(campaign, config.letter, problems)
    email_body = _load(campaign, config.email_body, problems) if config.email_body else None
    if email_body is None and letter is not None and letter.front.get("email_body"):
        email_body = _load(campaign, Path(str(letter.front["email_body"])), problems)

    subject_source = config.subject
    subject_where = f"{settings.path} (campaigns.{campaign.name}.subject)"
    if subject_source is None and letter is not None and letter.front.get("subject"):
        subject_source = str(letter.front["subject"])
        subject_where = _("{file} (front matter {key})").format(file=letter.display, key="subject")
    if subject_source is None:
        problems.append(
            Problem.error(
                _("the campaign has no subject"),
                Place(file=str(settings.path), key=f"campaigns.{campaign.name}.subject"),
                _("set subject: in the campaign's settings or in the letter's front matter"),
            )
        )
    subject = _compile(subject_source, subject_where, problems)
    to_name = _compile(
        config.to_name, f"{settings.path} (campaigns.{campaign.name}.to_name)", problems
    )

    pdf_name = _compile(
        config.pdf_name, f"{settings.path} (campaigns.{campaign.name}.pdf_name)", problems
    )
    header_vars = (
        _header_variables(subject_source or "")
        | _header_variables(config.to_name or "")
        | _header_variables(config.pdf_name or "")  # a file name in a header too
    )
    suppressed, suppression_problems = read_suppression(
        campaign.path(config.suppression), display=shown(config.suppression)
    )
    problems += suppression_problems
    recipients = read_recipients(
        campaign.path(config.recipients),
        email_column=config.email_column,
        required_columns=config.required_columns,
        header_columns=header_vars,
        suppressed=suppressed,
        allow_special_domains=config.allow_special_domains,
        display=shown(config.recipients),
    )
    problems += recipients.problems
    return Inputs(
        campaign, letter, email_body, subject, to_name, recipients, problems, pdf_name=pdf_name
    )


def attachment_names(cell: str) -> list[str]:
    """`annexe 1.pdf; tarifs.pdf` → the file names, blanks dropped."""
    return [part.strip() for part in cell.split(";") if part.strip()]


# Postfix's default message_size_limit: many servers, the provider's or a recipient's, refuse more.
COMMON_SIZE_LIMIT = 10_240_000


def encoded_size(n: int) -> int:
    """The bytes a file of `n` bytes takes in a message (`campaign.compose`: base64, 76 a line)."""
    return 4 * -(-n // 3) + 2 * -(-n // 57)


def size_problems(inputs: Inputs) -> list[Problem]:
    """A warning where the attachments make a message bigger than many servers take.

    The campaign's own files once (they are in every message), else each row whose own files
    (the attachments column) make its message too big. What the server itself takes is known
    only when `send` connects (its SIZE): `send` stops, or fails that row, there.
    """
    campaign = inputs.campaign
    config = campaign.config

    def size_of(path: Path) -> int:
        try:
            return encoded_size(path.stat().st_size)
        except OSError:
            return 0  # a missing file is reported on its own

    shared = sum(size_of(campaign.path(path)) for path in config.attachments)
    hint = _(
        "make the files smaller, or put them on a web page the email links to; {command} to your own address shows whether your provider takes it"
    ).format(command="campaign send --test-to")
    if shared > COMMON_SIZE_LIMIT:
        return [
            Problem.warning(
                _(
                    "the attachments make every message about {size} once encoded: many mail servers refuse messages over {limit}"
                ).format(size=byte_size(shared), limit=byte_size(COMMON_SIZE_LIMIT)),
                Place(
                    file=str(campaign.settings.path), key=f"campaigns.{campaign.name}.attachments"
                ),
                hint,
            )
        ]
    if config.attachments_column is None:
        return []
    problems: list[Problem] = []
    shown = campaign.settings.display(config.recipients)
    for recipient in inputs.recipients.ready:
        try:
            own = sum(size for _name, size in inputs.own_attachment_sizes(recipient))
        except InputError:
            continue  # reported by attachment_problems
        if shared + own > COMMON_SIZE_LIMIT:
            problems.append(
                Problem.warning(
                    _(
                        "this row's attachments make its message about {size} once encoded: many mail servers refuse messages over {limit}"
                    ).format(size=byte_size(shared + own), limit=byte_size(COMMON_SIZE_LIMIT)),
                    Place(file=shown, row=recipient.row, column=config.attachments_column),
                    hint,
                )
            )
    return problems


def attachment_problems(inputs: Inputs) -> list[Problem]:
    """Each ready row's listed files: missing, unreadable or outside the folder, with its row."""
    campaign = inputs.campaign
    config = campaign.config
    column = config.attachments_column
    if column is None:
        return []
    shown = campaign.settings.display(config.recipients)
    if inputs.recipients.headers and column not in inputs.recipients.headers:
        return [
            Problem.error(
                _("the attachments column {column} is not in the spreadsheet").format(
                    column=quoted(column)
                ),
                Place(file=shown, column=column),
                _("add the column, or correct {key}").format(
                    key=f"campaigns.{campaign.name}.attachments_column"
                ),
            )
        ]
    problems: list[Problem] = []
    folder = config.attachments_folder
    for recipient in inputs.recipients.recipients:
        if recipient.status is Status.INVALID:
            continue
        place = Place(file=shown, row=recipient.row, column=column)
        try:
            paths = inputs.attachments_for(recipient)
        except InputError as err:
            problems.append(Problem.from_error(err))
            continue
        for path, name in zip(
            paths, attachment_names(recipient.values.get(column, "")), strict=True
        ):
            if not path.is_file():
                problems.append(
                    Problem.error(
                        _("attachment not found: {name} (in {folder})").format(
                            name=name, folder=folder
                        ),
                        place,
                        _("put the file in {folder} or correct the name in this cell").format(
                            folder=f"{folder}/"
                        ),
                    )
                )
            else:
                try:
                    path.open("rb").close()
                except OSError as err:
                    problems.append(
                        Problem.error(
                            _("the attachment {name} cannot be read: {reason}").format(
                                name=name, reason=err.strerror
                            ),
                            place,
                            _("check the file's permissions"),
                        )
                    )
    return problems


def _header_variables(source: str) -> set[str]:
    """The variables a header template reads, `row["Prénom"]` counted as `prenom`."""
    names = template_variables(source)
    try:
        parsed = _PARSER.parse(source)
    except jinja2.TemplateSyntaxError:
        return names  # reported where the template is compiled
    for item in parsed.find_all(nodes.Getitem):
        if (
            isinstance(item.node, nodes.Name)
            and item.node.name == "row"
            and isinstance(item.arg, nodes.Const)
            and isinstance(item.arg.value, str)
        ):
            names.add(variable_name(item.arg.value))
    return names


_PARSER = make_environment(markdown=False)


def _load(campaign: Campaign, path: Path | None, problems: list[Problem]) -> Letter | None:
    if path is None:
        return None
    try:
        return load_letter(campaign.path(path), display=campaign.settings.display(path))
    except CampaignError as err:
        problems.append(Problem.from_error(err))
        return None


def _compile(source: str | None, shown: str, problems: list[Problem]) -> jinja2.Template | None:
    if source is None:
        return None
    try:
        return compile_text(source, shown)
    except TemplateError as err:
        problems.append(Problem.from_error(err))
        return None


@dataclass
class CheckReport:
    """The outcome of `campaign check`: counts and problems."""

    campaign: str
    total: int
    ready: int
    suppressed: int
    invalid: int
    problems: list[Problem]

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity is Severity.WARNING)

    def summary(self) -> str:
        return ", ".join(
            (
                plural(self.total, "{n} recipient", "{n} recipients"),
                plural(self.ready, "{n} ready", "{n} ready"),
                plural(self.suppressed, "{n} suppressed", "{n} suppressed"),
                plural(self.errors, "{n} error", "{n} errors"),
                plural(self.warnings, "{n} warning", "{n} warnings"),
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "recipients": self.total,
            "ready": self.ready,
            "suppressed": self.suppressed,
            "invalid": self.invalid,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [p.as_dict() for p in self.problems],
        }


def check_inputs(inputs: Inputs) -> CheckReport:
    """Validate templates against the spreadsheet, then dry-merge every row (no PDF)."""
    problems = list(inputs.problems)
    recipients = inputs.recipients
    known = set(recipients.names)
    static: list[Problem] = []  # what would fail every row: reported once, no dry merge
    structure: list[Problem] = []  # a footnote without text: the rows are still merged
    for letter in (inputs.letter, inputs.email_body):
        if letter is not None:
            static += template_problems(letter.body, letter.display, known, recipients.headers)
            structure += footnote_problems(letter.body, letter.display)
            for key in FRONT_TEMPLATES:
                value = letter.front.get(key)
                if isinstance(value, str):
                    # Name the key and its line in the letter file, not a line of the value.
                    place = Place(file=letter.display, line=front_matter_line(letter, key), key=key)
                    static += [
                        replace(p, place=place)
                        for p in template_problems(value, letter.display, known, recipients.headers)
                    ]
    campaign = inputs.campaign
    config = campaign.config
    for key, source in (
        ("subject", config.subject),
        ("to_name", config.to_name),
        ("pdf_name", config.pdf_name),
    ):
        if source:
            where = f"{campaign.settings.path} (campaigns.{campaign.name}.{key})"
            static += template_problems(source, where, known, recipients.headers)
    problems += static + structure
    problems += attachment_problems(inputs)
    problems += size_problems(inputs)
    # A placeholder no column provides would fail every row: report it once, not per row.
    failed: set[int] = set()
    if recipients.headers and not any(p.severity is Severity.ERROR for p in static):
        problems += _dry_merge(inputs, recipients.recipients, failed)
    if not failed:
        from campaign.addressing import (  # they import this module
            civility_problems,
            postal_problems,
            title_problems,
        )

        problems += postal_problems(inputs)
        problems += title_problems(inputs)
        problems += civility_problems(inputs)
    # A row whose letter cannot be merged is not ready, whatever its cells.
    unmergeable = sum(1 for r in recipients.ready if r.row in failed)
    return CheckReport(
        campaign=campaign.name,
        total=len(recipients.recipients),
        ready=recipients.count(Status.READY) - unmergeable,
        suppressed=recipients.count(Status.SUPPRESSED),
        invalid=recipients.count(Status.INVALID) + unmergeable,
        problems=problems,
    )


def _dry_merge(inputs: Inputs, rows: Iterable[Recipient], failed: set[int]) -> list[Problem]:
    """Render every template for every row in memory; add the rows that fail to `failed`.

    The same failure is listed for a few rows, then summed up.
    """
    problems: list[Problem] = []
    seen: dict[tuple[str, int | None], int] = {}
    shown = inputs.campaign.settings.display(inputs.campaign.config.recipients)
    per_row, constant = _merge_templates(inputs)
    for template, where in constant:  # no row variable: once for all rows
        try:
            render_template(template, inputs.context(_NOBODY), where)
        except TemplateError as err:
            problems.append(Problem.from_error(err))
    mergeable = [r for r in rows if r.status is not Status.INVALID]
    for row, message, where, line, hint in _merge_all(inputs, per_row, mergeable):
        failed.add(row)
        seen[(message, line)] = seen.get((message, line), 0) + 1
        if seen[(message, line)] <= _SAME_FAILURE_LISTED:
            problems.append(
                Problem.error(
                    _("{message} (in {where})").format(message=message, where=where),
                    Place(file=shown, row=row),
                    hint or _("fix this row's cells, or the template at that line"),
                )
            )
    for (message, line), count in seen.items():
        if count > _SAME_FAILURE_LISTED:
            problems.append(
                Problem.error(
                    _("{n} more rows fail the same way: {message}").format(
                        n=count - _SAME_FAILURE_LISTED, message=message
                    ),
                    Place(file=shown, line=line),
                    _("fix the rows listed above (or the template line); these follow"),
                )
            )
    return problems


# One row's merge failure: row, message, where in the template, template line, hint. Plain
# values, so that worker processes can send them back.
_Failure = tuple[int, str, str, int | None, str | None]
_PerRow = list[tuple[jinja2.Template, str, dict[str, Any]]]
# Below this many rows, starting worker processes costs more than it saves.
_PARALLEL_FROM = 20_000
# What forked workers merge: set just before the fork, so that nothing needs pickling.
_JOB: tuple[Inputs, _PerRow, list[Recipient]] | None = None


def _merge_rows(inputs: Inputs, per_row: _PerRow, rows: Iterable[Recipient]) -> list[_Failure]:
    """Merge each row into each template; the first failure of a row is its failure."""
    failures: list[_Failure] = []
    for recipient in rows:
        context = inputs.context(recipient)
        merged: dict[int, dict[str, Any]] = {}  # templates share their globals: merge once a row
        for template, where, helpers in per_row:
            try:
                if id(helpers) not in merged:
                    merged[id(helpers)] = {**helpers, **context}
                render_merged(template, merged[id(helpers)])
            except Exception:
                failure = _explain(recipient.row, template, context, where)
                if failure is not None:
                    failures.append(failure)
                    break  # one failure per row is enough to fix it
    return failures


def _explain(
    row: int, template: jinja2.Template, context: dict[str, Any], where: str
) -> _Failure | None:
    """Render again the documented way, which names the template line and wraps the error."""
    try:
        render_template(template, context, where)
    except TemplateError as err:
        return (row, err.message, str(err.place), err.place.line, err.hint)
    except Exception as err:  # e.g. RecursionError from a macro calling itself
        message = _("template error: {error}").format(error=python_error(err))
        return (row, message, where, None, None)
    return None


def _merge_all(inputs: Inputs, per_row: _PerRow, rows: list[Recipient]) -> list[_Failure]:
    """Merge every row, on every core for long lists when processes can be forked."""
    global _JOB
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 8)
    if len(rows) < _PARALLEL_FROM or workers < 2 or "fork" not in mp.get_all_start_methods():
        return _merge_rows(inputs, per_row, rows)
    size = -(-len(rows) // (workers * 4))  # a few chunks per worker evens out slow rows
    chunks = [(start, min(start + size, len(rows))) for start in range(0, len(rows), size)]
    _JOB = (inputs, per_row, rows)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_merge_chunk, chunks)
    except OSError:  # no process to spare: merge here
        return _merge_rows(inputs, per_row, rows)
    finally:
        _JOB = None
    return [failure for part in parts for failure in part]


def _merge_chunk(bounds: tuple[int, int]) -> list[_Failure]:
    """In a forked worker: merge rows[start:end] of the job its parent set up."""
    assert _JOB is not None
    inputs, per_row, rows = _JOB
    return _merge_rows(inputs, per_row, rows[bounds[0] : bounds[1]])


# A recipient with no cells, to render the templates that read none.
_NOBODY = Recipient(row=0, email="", values={}, variables={})
_ROW_NAMES = {"row", "row_number"}


def _merge_templates(inputs: Inputs) -> tuple[_PerRow, list[tuple[jinja2.Template, str]]]:
    """The templates a recipient is merged into, split into those that read row values or not."""
    campaign = inputs.campaign
    found: list[tuple[jinja2.Template, str, str]] = []
    for letter in (inputs.letter, inputs.email_body):
        if letter is not None:
            found.append((letter.template, letter.display, letter.body))
            for key in FRONT_TEMPLATES:
                template = letter.text_template(key)
                if template is not None:
                    found.append((template, letter.display, str(letter.front[key])))
    for key, template, source in (
        ("subject", inputs.subject, campaign.config.subject),
        ("to_name", inputs.to_name, campaign.config.to_name),
        ("pdf_name", inputs.pdf_name, campaign.config.pdf_name),
    ):
        if template is not None:
            where = f"{campaign.settings.path} (campaigns.{campaign.name}.{key})"
            if source is None:  # the subject came from the letter's front matter
                front = inputs.letter.front if inputs.letter is not None else {}
                source = str(front.get(key, ""))
            found.append((template, where, source))
    names = set(inputs.recipients.names) | _ROW_NAMES
    per_row: list[tuple[jinja2.Template, str, dict[str, Any]]] = []
    constant: list[tuple[jinja2.Template, str]] = []
    shared: list[dict[str, Any]] = []
    for template, where, source in found:
        if not template_variables(source) & names:
            constant.append((template, where))
            continue
        helpers = dict(template.globals)
        helpers = next((known for known in shared if known == helpers), helpers)
        if not any(known is helpers for known in shared):
            shared.append(helpers)
        per_row.append((template, where, helpers))
    return per_row, constant

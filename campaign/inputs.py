"""A campaign's settings → its loaded inputs (letter, templates, recipients), and `check` over them.

Every later stage (render, proof, send) starts from `load_inputs`, so that what `check` validates is
exactly what they use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from campaign.errors import CampaignError, Place, Problem, Severity, TemplateError
from campaign.letter import (
    Letter,
    compile_text,
    load_letter,
    render_template,
    template_problems,
    template_variables,
)
from campaign.recipients import Recipient, RecipientList, Status, read_recipients, read_suppression
from campaign.settings import Campaign

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

    def subject_for(self, recipient: Recipient) -> str:
        if self.subject is None:
            return ""
        return " ".join(render_template(self.subject, self.context(recipient), "subject").split())

    def to_name_for(self, recipient: Recipient) -> str:
        if self.to_name is None:
            return ""
        return " ".join(render_template(self.to_name, self.context(recipient), "to_name").split())


def load_inputs(campaign: Campaign) -> Inputs:
    """Load letter, templates, suppression list and recipients; problems are collected, not raised."""
    settings = campaign.settings
    config = campaign.config
    problems: list[Problem] = []
    shown = settings.display

    letter = _load(campaign, config.letter, problems)
    email_body = _load(campaign, config.email_body, problems) if config.email_body else None
    if email_body is None and letter is not None and letter.front.get("email_body"):
        email_body = _load(campaign, Path(str(letter.front["email_body"])), problems)

    subject_source = config.subject
    subject_where = f"{settings.path} (campaigns.{campaign.name}.subject)"
    if subject_source is None and letter is not None and letter.front.get("subject"):
        subject_source = str(letter.front["subject"])
        subject_where = f"{letter.display} (front matter subject)"
    if subject_source is None:
        problems.append(
            Problem.error(
                "the campaign has no subject",
                Place(file=str(settings.path), key=f"campaigns.{campaign.name}.subject"),
                "set subject: in the campaign's settings or in the letter's front matter",
            )
        )
    subject = _compile(subject_source, subject_where, problems)
    to_name = _compile(
        config.to_name, f"{settings.path} (campaigns.{campaign.name}.to_name)", problems
    )

    header_vars = template_variables(subject_source or "") | template_variables(
        config.to_name or ""
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
    return Inputs(campaign, letter, email_body, subject, to_name, recipients, problems)


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
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'' if n == 1 else 's'}"

        return (
            f"{plural(self.total, 'recipient')}, {self.ready} ready, {self.suppressed} suppressed, "
            f"{plural(self.errors, 'error')}, {plural(self.warnings, 'warning')}"
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
    static: list[Problem] = []
    for letter in (inputs.letter, inputs.email_body):
        if letter is not None:
            static += template_problems(letter.body, letter.display, known, recipients.headers)
            for key in ("subject", "place", "signature"):
                value = letter.front.get(key)
                if isinstance(value, str):
                    where = f"{letter.display} (front matter {key})"
                    static += template_problems(value, where, known, recipients.headers)
    campaign = inputs.campaign
    for key, source in (("subject", campaign.config.subject), ("to_name", campaign.config.to_name)):
        if source:
            where = f"{campaign.settings.path} (campaigns.{campaign.name}.{key})"
            static += template_problems(source, where, known, recipients.headers)
    problems += static
    # A placeholder no column provides would fail every row: report it once, not per row.
    failed: set[int] = set()
    if recipients.headers and not any(p.severity is Severity.ERROR for p in static):
        problems += _dry_merge(inputs, recipients.recipients, failed)
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
    for recipient in rows:
        if recipient.status is Status.INVALID:
            continue
        context = inputs.context(recipient)
        merged: dict[int, dict[str, Any]] = {}  # templates share their globals: merge once a row
        for template, where, helpers in per_row:
            try:
                if id(helpers) not in merged:
                    merged[id(helpers)] = {**helpers, **context}
                _render_quick(template, merged[id(helpers)])
            except Exception:
                try:  # again the documented way, which names the line and wraps the error
                    render_template(template, context, where)
                except TemplateError as err:
                    failure = (err.message, err.place.line)
                    seen[failure] = seen.get(failure, 0) + 1
                    failed.add(recipient.row)
                    if seen[failure] <= _SAME_FAILURE_LISTED:
                        problems.append(
                            Problem.error(
                                f"{err.message} (in {err.place})",
                                Place(file=shown, row=recipient.row),
                                err.hint,
                            )
                        )
                break  # one failure per row is enough to fix it
    for (message, line), count in seen.items():
        if count > _SAME_FAILURE_LISTED:
            problems.append(
                Problem.error(
                    f"{count - _SAME_FAILURE_LISTED} more rows fail the same way: {message}",
                    Place(file=shown, line=line),
                )
            )
    return problems


# A recipient with no cells, to render the templates that read none.
_NOBODY = Recipient(row=0, email="", values={}, variables={})
_ROW_NAMES = {"row", "row_number"}


def _merge_templates(
    inputs: Inputs,
) -> tuple[list[tuple[jinja2.Template, str, dict[str, Any]]], list[tuple[jinja2.Template, str]]]:
    """The templates a recipient is merged into, split into those that read row values or not."""
    campaign = inputs.campaign
    found: list[tuple[jinja2.Template, str, str]] = []
    for letter in (inputs.letter, inputs.email_body):
        if letter is not None:
            found.append((letter.template, letter.display, letter.body))
            for key in ("subject", "place", "signature"):
                template = letter.text_template(key)
                if template is not None:
                    found.append((template, letter.display, str(letter.front[key])))
    for key, template, source in (
        ("subject", inputs.subject, campaign.config.subject),
        ("to_name", inputs.to_name, campaign.config.to_name),
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


def _render_quick(template: jinja2.Template, merged: dict[str, Any]) -> str:
    """Render with the globals already merged in: Template.render copies them for every call.

    The compiled template is the same, sandbox checks and finalizer included; only the context
    is built once instead of per call. Any exception makes the caller render again with
    `render_template`, which reports it properly.
    """
    environment = template.environment
    # globals=None: the helpers are in `merged` already, and Jinja would otherwise copy their
    # names into a set on every call.
    context = environment.context_class(environment, merged, template.name, template.blocks)
    return "".join(template.root_render_func(context))

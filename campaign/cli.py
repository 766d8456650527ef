"""The `campaign` command: parse the command line, call one library function, print the outcome.

This is the only module that prints. Exit codes: 0 success; 1 the job found problems (validation
errors, failed or uncertain deliveries, refused send); 2 usage or configuration errors; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from campaign.errors import CampaignError, Problem, Severity
from campaign.settings import DEFAULT_SETTINGS, Campaign, load_settings

F = TypeVar("F", bound=Callable[..., Any])

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def reports_errors(command: F) -> F:
    """Turn the tool's own errors into a message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CampaignError as err:
            err_console.print(f"[bold red]error:[/] {_escape(str(err))}")
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class Context:
    """What every command receives: where the settings are, and how to print."""

    def __init__(self, settings_path: Path, *, quiet: bool) -> None:
        self.settings_path = settings_path
        self.quiet = quiet

    def campaign(self, name: str | None) -> Campaign:
        return load_settings(self.settings_path).campaign(name)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_SETTINGS,
    show_default=True,
    help="The settings file; relative paths in it are relative to its folder.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only problems and the summary.")
@click.version_option(package_name="campaign")
@click.pass_context
def main(ctx: click.Context, settings_path: Path, quiet: bool) -> None:
    """Mail-merge letter campaigns: spreadsheet + letter → PDF letters and emails, sent safely."""
    ctx.obj = Context(settings_path, quiet=quiet)


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
@reports_errors
def check(ctx: Context, campaign_name: str | None, as_json: bool) -> None:
    """Validate settings, letter, recipients and suppression list, and dry-merge every letter."""
    from campaign.inputs import check_inputs, load_inputs

    campaign = ctx.campaign(campaign_name)
    report = check_inputs(load_inputs(campaign))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        if report.problems:
            print_problems(report.problems)
        style = "red" if report.errors else "green"
        console.print(f"[bold]{campaign.name}[/]: [{style}]{report.summary()}[/]")
    sys.exit(1 if report.errors else 0)


def print_problems(problems: list[Problem]) -> None:
    """A table of problems: severity, file, row (or line), column, message, hint."""
    table = Table(show_lines=False, header_style="bold")
    for name in ("severity", "file", "row/line", "column", "message", "hint"):
        table.add_column(name, overflow="fold")
    for problem in problems:
        place = problem.place
        where = (
            str(place.row)
            if place.row is not None
            else (f"line {place.line}" if place.line is not None else "")
        )
        colour = "red" if problem.severity is Severity.ERROR else "yellow"
        table.add_row(
            f"[{colour}]{problem.severity.value}[/]",
            _escape(place.file or ""),
            where,
            _escape(place.column or place.key or ""),
            _escape(problem.message),
            _escape(problem.hint or ""),
        )
    console.print(table)


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--sample", "extra", type=click.IntRange(min=0), default=0, help="Add N random rows.")
@click.option("--rows", "rows", default=None, help="Proof these spreadsheet rows, e.g. 2,7,19.")
@click.option("--all", "everyone", is_flag=True, help="Proof every recipient.")
@pass_context
@reports_errors
def proof(
    ctx: Context, campaign_name: str | None, extra: int, rows: str | None, everyone: bool
) -> None:
    """Write the reviewers' proof pack: stamped proofs.pdf and index.html with each email."""
    from rich.progress import Progress

    from campaign.errors import UsageError
    from campaign.inputs import load_inputs
    from campaign.proofs import build_proofs, choose_sample, parse_rows

    if everyone and rows:
        raise UsageError("--all and --rows do not go together", hint="choose one of them")
    campaign = ctx.campaign(campaign_name)
    inputs = load_inputs(campaign)
    if inputs.errors:
        print_problems(inputs.errors)
        raise UsageError(
            f"campaign {campaign.name} has errors; there is nothing to proof yet",
            hint=f"run campaign check {campaign.name} and fix what it lists",
        )
    sample = choose_sample(
        inputs, rows=parse_rows(rows) if rows else None, extra=extra, everyone=everyone
    )
    with Progress(console=err_console, disable=ctx.quiet, transient=True) as bar:
        task = bar.add_task("proofs", total=len(sample))
        pack = build_proofs(
            inputs, sample, progress=lambda done, total: bar.update(task, completed=done)
        )
    if not ctx.quiet:
        table = Table(header_style="bold")
        for name in ("row", "recipient", "why this row"):
            table.add_column(name, overflow="fold")
        for item in pack.sample:
            table.add_row(
                str(item.recipient.row),
                _escape(item.recipient.email),
                _escape("; ".join(item.reasons)),
            )
        console.print(table)
    console.print(
        f"[bold]{campaign.name}[/]: proofs of {len(pack.sample)} recipients, {pack.pages} pages, "
        f"fingerprint {pack.fingerprint.short}"
    )
    console.print(f"  {_escape(str(pack.pdf))}\n  {_escape(str(pack.index))}")
    console.print(f"next: have them read, then campaign approve {campaign.name} --by NAME")


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--by", "by", required=True, help="Who approves the content (name or email).")
@click.option("--note", default=None, help="A note kept with the approval.")
@pass_context
@reports_errors
def approve(ctx: Context, campaign_name: str | None, by: str, note: str | None) -> None:
    """Record that NAME approved the current content (letter, emails, attachments, recipients)."""
    from campaign.approval import approval_path
    from campaign.approval import approve as record_approval
    from campaign.inputs import load_inputs
    from campaign.outbox import run_lock
    from campaign.proofs import proofed_fingerprint

    campaign = ctx.campaign(campaign_name)
    with run_lock(campaign.outbox, campaign=campaign.name, action="approved"):
        record = record_approval(load_inputs(campaign), by=by, note=note)
    if proofed_fingerprint(campaign) != record.fingerprint:
        err_console.print(
            "[yellow]warning:[/] the proof pack does not show this content (it is missing or "
            f"older); run campaign proof {campaign.name} so that reviewers read what is sent"
        )
    console.print(
        f"[bold]{campaign.name}[/]: [green]approved by {_escape(record.by)}[/] on {record.when}, "
        f"{record.recipients} recipients, fingerprint {record.fingerprint[:12]}"
    )
    console.print(f"recorded in {_escape(str(approval_path(campaign)))}")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The `campaign` command: parse the command line, call one function of `campaign.commands`, print.

This package is the only one that prints (its `output` module holds the tables and reports). Exit codes: 0 success; 1 the job found problems (validation
errors, failed or uncertain deliveries, refused send); 2 usage or configuration errors; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from campaign.cli.output import (
    SendProgress,
    console,
    err_console,
    print_inbox,
    print_problems,
    print_send_report,
    print_status,
)
from campaign.cli.output import escape as _escape
from campaign.errors import CampaignError, CheckFailed

if TYPE_CHECKING:
    from campaign.settings import Campaign, Settings

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(command: F) -> F:
    """Turn the tool's own errors into a message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CampaignError as err:
            if isinstance(err, CheckFailed):
                print_problems(err.problems)
            err_console.print(f"[bold red]error:[/] {_escape(str(err))}")
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


class Context:
    """What every command receives: where the settings are, and how to print."""

    def __init__(self, settings_path: Path | None, *, quiet: bool) -> None:
        self.settings_path = settings_path
        self.quiet = quiet

    def settings(self) -> Settings:
        # Imported here: `campaign --help` need not pay for pydantic and email-validator.
        from campaign.settings import DEFAULT_SETTINGS, load_settings

        return load_settings(self.settings_path or DEFAULT_SETTINGS)

    def campaign(self, name: str | None) -> Campaign:
        return self.settings().campaign(name)


pass_context = click.make_pass_decorator(Context)


class _InOrder(click.Group):
    """Lists the commands in the order they are used, not alphabetically."""

    ORDER = ("init", "check", "render", "proof", "approve", "send", "inbox", "status", "sink")

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))


@click.group(cls=_InOrder, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The settings file; relative paths in it are relative to its folder "
    "[default: settings.yaml].",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only problems and the summary.")
@click.version_option(package_name="campaign")
@click.pass_context
def main(ctx: click.Context, settings_path: Path | None, quiet: bool) -> None:
    """Mail-merge letter campaigns: spreadsheet + letter → PDF letters and emails, sent safely."""
    ctx.obj = Context(settings_path, quiet=quiet)


CAMPAIGN_HELP = (
    "CAMPAIGN is a key of campaigns: in settings.yaml; without it, the command takes "
    "default_campaign, or the only campaign there is."
)
CAMPAIGN_ARG = click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
QUIET = click.option(
    "-q", "--quiet", "quiet", is_flag=True, help="No progress bar; print the summary."
)


@main.command(short_help="Create a new campaign project in DIR, ready to fill in.")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=True))
@reports_errors
def init(folder: Path) -> None:
    """Create a new campaign project in DIR: settings, a letter, a recipient sheet, a suppression list."""
    from campaign.init import init_project

    created = init_project(folder)
    for path in created.files:
        console.print(f"  {_escape(str(folder / path))}")
    console.print(
        f"[green]Created a campaign project in {_escape(str(folder))}[/]; "
        f"next: cd {_escape(str(folder))} && campaign check"
    )


@main.command(
    short_help="Validate settings, letter and recipients; merge every row.", epilog=CAMPAIGN_HELP
)
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
@reports_errors
def check(ctx: Context, campaign_name: str | None, as_json: bool) -> None:
    """Validate settings, letter, recipients and suppression list, and dry-merge every letter."""
    from campaign import commands

    campaign = ctx.campaign(campaign_name)
    report = commands.check(campaign)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        if report.problems:
            print_problems(report.problems)
        style = "red" if report.errors else "green"
        console.print(f"[bold]{campaign.name}[/]: [{style}]{report.summary()}[/]")
    sys.exit(1 if report.errors else 0)


def _bar(*, disable: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console.rich(),
        disable=disable,
        transient=True,
    )


@main.command(
    short_help="Write one PDF letter per recipient (only what changed).", epilog=CAMPAIGN_HELP
)
@CAMPAIGN_ARG
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None, help="Worker processes [all cores]."
)
@click.option(
    "--print",
    "print_pack",
    is_flag=True,
    help="Also write one print-ready PDF of all letters, each starting on a right-hand page.",
)
@QUIET
@pass_context
@reports_errors
def render(
    ctx: Context, campaign_name: str | None, jobs: int | None, print_pack: bool, quiet: bool
) -> None:
    """Write one PDF letter per ready recipient, skipping letters whose inputs did not change."""
    from campaign import commands

    campaign = ctx.campaign(campaign_name)
    with _bar(disable=quiet or ctx.quiet) as bar:
        task = bar.add_task("rendering letters", total=None)
        done = commands.render(
            campaign,
            jobs=jobs,
            print_pack=print_pack,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )
    report = done.report
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(warning)}")
    if report.failures:
        print_problems(report.failures)
    rate = (
        f", {report.seconds * 1000 / len(report.rendered):.0f} ms/letter" if report.rendered else ""
    )
    style = "red" if report.failures else "green"
    console.print(
        f"[bold]{campaign.name}[/]: [{style}]{len(report.rendered)} rendered, "
        f"{report.skipped} unchanged, {len(report.removed)} removed, "
        f"{len(report.failures)} failed[/] in {report.seconds:.1f} s "
        f"({_plural(report.jobs, 'job')}{rate})"
    )
    console.print(f"letters in {_escape(str(report.folder))}")
    if done.print_pack is not None:
        console.print(f"print-ready PDF: {_escape(str(done.print_pack))}")
    sys.exit(1 if report.failures else 0)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@main.command(
    short_help="Write the reviewers' proof pack (proofs.pdf, index.html).", epilog=CAMPAIGN_HELP
)
@CAMPAIGN_ARG
@click.option("--sample", "extra", type=click.IntRange(min=0), default=0, help="Add N random rows.")
@click.option("--rows", "rows", default=None, help="Proof these spreadsheet rows, e.g. 2,7,19.")
@click.option("--all", "everyone", is_flag=True, help="Proof every recipient.")
@QUIET
@pass_context
@reports_errors
def proof(
    ctx: Context,
    campaign_name: str | None,
    extra: int,
    rows: str | None,
    everyone: bool,
    quiet: bool,
) -> None:
    """Write the reviewers' proof pack: stamped proofs.pdf and index.html with each email."""
    from campaign import commands

    quiet = quiet or ctx.quiet
    campaign = ctx.campaign(campaign_name)
    with _bar(disable=quiet) as bar:
        task = bar.add_task("proofs", total=None)
        pack = commands.proof(
            campaign,
            rows=rows,
            extra=extra,
            everyone=everyone,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )
    if not quiet:
        from rich.table import Table

        table = Table(header_style="bold")
        for name in ("row", "recipient", "why this row"):
            table.add_column(name, overflow="fold")
        for item in pack.sample:
            reasons = "; ".join(item.reasons)
            table.add_row(str(item.recipient.row), _escape(item.recipient.email), _escape(reasons))
        console.print(table)
    console.print(
        f"[bold]{campaign.name}[/]: proofs of {len(pack.sample)} recipients, {pack.pages} pages, "
        f"fingerprint {pack.fingerprint.short}"
    )
    console.print(f"  {_escape(str(pack.pdf))}\n  {_escape(str(pack.index))}")
    console.print(f"next: have them read, then campaign approve {campaign.name} --by NAME")


@main.command(
    short_help="Record a reviewer's sign-off of the proofed content.", epilog=CAMPAIGN_HELP
)
@CAMPAIGN_ARG
@click.option("--by", "by", required=True, help="Who approves the content (name or email).")
@click.option("--note", default=None, help="A note kept with the approval.")
@pass_context
@reports_errors
def approve(ctx: Context, campaign_name: str | None, by: str, note: str | None) -> None:
    """Record that NAME approved the proofed content (letter, emails, attachments, recipients)."""
    from campaign import commands

    campaign = ctx.campaign(campaign_name)
    record = commands.approve(campaign, by=by, note=note)
    console.print(
        f"[bold]{campaign.name}[/]: [green]approved by {_escape(record.by)}[/] on {record.when}, "
        f"{record.recipients} recipients, fingerprint {record.fingerprint[:12]}"
    )
    console.print(f"recorded in {_escape(str(campaign.layout.approval))}")


@main.command(
    short_help="Send the emails: throttled, retried, logged, resumable.", epilog=CAMPAIGN_HELP
)
@CAMPAIGN_ARG
@click.option(
    "--dry-run",
    is_flag=True,
    help="Compose every message into outbox/<campaign>/dry-run/; send nothing.",
)
@click.option(
    "--test-to",
    metavar="ADDR",
    help="Send the first letter(s) to ADDR, subject [TEST]; record nobody as sent.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --test-to: how many letters.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), help="Send to at most N recipients in this run."
)
@click.option("--retry-failed", is_flag=True, help="Try the failed recipients again.")
@click.option(
    "--resend-uncertain", is_flag=True, help="Send again to those whose delivery is uncertain."
)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Stop instead of waiting for deferred retries or for the send window to open.",
)
@click.option(
    "--wait",
    "wait_day",
    is_flag=True,
    help="When the day's cap is reached, wait for the next slot.",
)
@QUIET
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
@reports_errors
def send(
    ctx: Context,
    campaign_name: str | None,
    dry_run: bool,
    test_to: str | None,
    count: int,
    limit: int | None,
    retry_failed: bool,
    resend_uncertain: bool,
    no_wait: bool,
    wait_day: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Send the emails, throttled and retried; resumes where the last run stopped."""
    from campaign import commands
    from campaign.send import SendOptions

    campaign = ctx.campaign(campaign_name)
    options = SendOptions(
        dry_run=dry_run,
        test_to=test_to,
        count=count,
        limit=limit,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        wait_retries=not no_wait,
        wait_for_day=wait_day,
    )
    with SendProgress(disable=quiet or ctx.quiet or as_json) as progress:
        report = commands.send(campaign, options, progress=progress)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_send_report(report)
    sys.exit(report.exit_code)


@main.command(short_help="Show what became of each recipient.", epilog=CAMPAIGN_HELP)
@CAMPAIGN_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the delivery log to FILE.csv or FILE.xlsx (safe to open in Excel).",
)
@click.option(
    "--with-sheet",
    is_flag=True,
    help="With --export: write the recipient spreadsheet itself, every cell unchanged, plus "
    "state, date sent, bounce reason and replied columns (.xlsx, .ods or .csv).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help="Also write a report for the organisers to FILE.html: counts, failures, bounces, the "
    "server's limits, what is left and the messages per hour (one page, opens offline).",
)
@pass_context
@reports_errors
def status(
    ctx: Context,
    campaign_name: str | None,
    as_json: bool,
    export_path: Path | None,
    with_sheet: bool,
    report_path: Path | None,
) -> None:
    """Show the delivery log against the spreadsheet: counts, failures with their replies, timing."""
    from campaign import commands

    report = None
    if export_path is None and report_path is None and not with_sheet:
        # Nothing changed since the last status and approval: no settings or sheet to read.
        report = commands.quick_status(ctx.settings_path, campaign_name)
    if report is None:
        campaign = ctx.campaign(campaign_name)
        if with_sheet and export_path is None:
            from campaign.errors import UsageError

            raise UsageError(
                "--with-sheet needs --export FILE",
                hint="e.g. status --export suivi.xlsx --with-sheet",
            )
        report = commands.status(
            campaign, export=export_path, with_sheet=with_sheet, report_to=report_path
        )
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(warning)}")
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_status(report)
        if report.forecast is not None:
            console.print(_escape(report.forecast.summary()))
        if export_path is not None:
            console.print(f"exported to {_escape(str(export_path))}")
        if report_path is not None:
            console.print(f"report written to {_escape(str(report_path))}")
    sys.exit(report.exit_code)


@main.command(short_help="Read bounces and replies from the mailbox.", epilog=CAMPAIGN_HELP)
@CAMPAIGN_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
@reports_errors
def inbox(ctx: Context, campaign_name: str | None, as_json: bool) -> None:
    """Read the mailbox since the last scan: bounces, delivery reports, replies, auto-replies.

    Hard bounces join the suppression list; uncertain sends are looked for in the Sent folder.
    The mailbox is only read: nothing is moved, flagged or deleted.
    """
    from campaign import commands

    report = commands.inbox(ctx.campaign(campaign_name))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_inbox(report)
    sys.exit(report.exit_code)


@main.command(short_help="Run a local SMTP server that keeps what it receives.")
@click.option("--port", type=click.IntRange(0, 65535), default=8025, show_default=True)
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to store messages [outbox/sink next to settings.yaml].",
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append a line per message: receive time, Message-ID, recipients.",
)
@click.option(
    "--mailbox",
    "mailbox_path",
    type=click.Path(path_type=Path, file_okay=False),
    help="The sender's mailbox Maildir, where bounces and out-of-office replies go "
    "[mailbox.maildir of the settings].",
)
@click.option(
    "--bounce",
    default="rebond.*@*",
    show_default=True,
    help="Recipients (a pattern) whose server refuses the message and bounces it.",
)
@click.option(
    "--absence",
    default="absence.*@*",
    show_default=True,
    help="Recipients (a pattern) who answer with an out-of-office reply.",
)
@pass_context
@reports_errors
def sink(
    ctx: Context,
    port: int,
    maildir: Path | None,
    log_path: Path | None,
    mailbox_path: Path | None,
    bounce: str,
    absence: str,
) -> None:
    """Run a local SMTP server on 127.0.0.1 that stores what it receives as a Maildir.

    With a mailbox Maildir it also plays the recipients' servers: bounces and out-of-office
    replies arrive there, for campaign inbox to read.
    """
    from campaign.outbox import sink_folder
    from campaign.sink import Remote, run_sink

    settings = None
    with contextlib.suppress(CampaignError):  # the sink also runs outside a project
        settings = ctx.settings()
    if maildir is None:
        if settings is not None:
            maildir = sink_folder(settings.resolve(settings.outbox))
        else:
            maildir = sink_folder(Path("outbox"))
    configured = settings.mailbox if settings is not None else None
    if mailbox_path is None and settings is not None and configured and configured.maildir:
        mailbox_path = settings.resolve(configured.maildir)
    remote = Remote(mailbox_path, bounce, absence) if mailbox_path is not None else None

    def ready(actual: int) -> None:
        click.echo(
            f"sink listening on 127.0.0.1:{actual}, storing messages in {maildir}/new "
            "(Ctrl-C to stop)"
        )
        if remote is not None:  # after the line scripts wait for
            click.echo(
                f"playing the remote servers: {bounce} bounces, {absence} is away; "
                f"answers go to {remote.mailbox}/new"
            )
        sys.stdout.flush()

    count = run_sink(maildir, port=port, log=log_path, on_ready=ready, remote=remote)
    click.echo(f"sink stopped: {count} messages stored in {maildir}/new")


@main.command(
    short_help="Delete the campaign's personal data from the outbox.", epilog=CAMPAIGN_HELP
)
@CAMPAIGN_ARG
@click.option(
    "--all", "include_log", is_flag=True, help="Also delete the delivery log and the approvals."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
@reports_errors
def purge(ctx: Context, campaign_name: str | None, include_log: bool, yes: bool) -> None:
    """Delete the campaign's personal data: PDFs, proofs, dry runs and the sink's copies."""
    from campaign import commands
    from campaign.errors import UsageError

    campaign = ctx.campaign(campaign_name)
    shown = _escape(campaign.settings.display(campaign.outbox))

    def what(plan: Any) -> str:
        log = " (delivery log included)" if include_log else ""
        return f"{len(plan.files)} files under {shown}{log} and {len(plan.sink_copies)} copies in the local sink"

    def confirm(plan: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            again = f"campaign purge {campaign.name}{' --all' if include_log else ''} --yes"
            raise UsageError(
                f"purge would delete {plan.total} files; it needs a confirmation",
                hint=f"run it in a terminal, or confirm with {again}",
            )
        return click.confirm(f"Delete {what(plan)}?", default=False, err=True)

    result = commands.purge(campaign, include_log=include_log, confirm=confirm)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {_escape(warning)}")
    if result.plan.total == 0:
        console.print(f"[bold]{campaign.name}[/]: no personal data to delete")
        return
    if not result.confirmed:
        console.print("nothing deleted")
        sys.exit(1)
    console.print(f"[bold]{campaign.name}[/]: deleted {result.deleted} files ({what(result.plan)})")
    if not include_log:
        console.print(
            "kept the delivery log and approvals (they record who was sent what); "
            "--all deletes them too"
        )


if __name__ == "__main__":  # pragma: no cover
    main()

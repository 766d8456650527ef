"""The `campaign` command: parse the command line, call one function of `campaign.commands`, print.

This package is the only one that prints (its `output` module holds the tables and reports). Exit codes: 0 success; 1 the job found problems (validation
errors, failed or uncertain deliveries, refused send); 2 usage or configuration errors; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import gettext
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from campaign import i18n
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
from campaign.i18n import _, ngettext, number, plural

if TYPE_CHECKING:
    from campaign.settings import Campaign, Settings

F = TypeVar("F", bound=Callable[..., Any])

# click translates its own texts (Usage:, Options, its usage errors) with the stdlib's gettext in the
# program's text domain: ours, whose catalogs hold them (campaign.cli.clickmessages).
gettext.bindtextdomain(i18n.DOMAIN, str(i18n.LOCALE_DIR))
gettext.textdomain(i18n.DOMAIN)


def reports_errors(command: F) -> F:
    """Turn the tool's own errors into a message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CampaignError as err:
            if isinstance(err, CheckFailed):
                print_problems(err.problems)
            err_console.print("[bold red]" + _("error:") + f"[/] {_escape(str(err))}")
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print(_("interrupted"))
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


class Context:
    """What every command receives: where the settings are, and how to print."""

    def __init__(self, settings_path: Path | None, *, quiet: bool) -> None:
        self.settings_path = settings_path
        self.quiet = quiet

    def settings(self) -> Settings:
        # Imported here: `campaign --help` need not pay for pydantic and email-validator.
        # Loading them also sets the language of the messages (`language:`, else the locale).
        from campaign.settings import DEFAULT_SETTINGS, load_settings

        return load_settings(self.settings_path or DEFAULT_SETTINGS)

    def campaign(self, name: str | None) -> Campaign:
        return self.settings().campaign(name)


pass_context = click.make_pass_decorator(Context)


class _Formatter(click.HelpFormatter):
    """click's help, with the space French puts before a colon ("Options :")."""

    def write_heading(self, heading: str) -> None:
        colon = " :" if i18n.current_language() == "fr" else ":"
        self.write(f"{'':>{self.current_indent}}{heading}{colon}\n")


class _Context(click.Context):
    formatter_class = _Formatter


class _Command(click.Command):
    context_class = _Context


class _InOrder(click.Group):
    """Lists the commands in the order they are used, not alphabetically."""

    context_class = _Context
    command_class = _Command

    ORDER = (
        "init",
        "check",
        "render",
        "proof",
        "approve",
        "send",
        "inbox",
        "status",
        "sink",
        "purge",
    )

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))


@click.group(cls=_InOrder, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=_(
        "The settings file; relative paths in it are relative to its folder "
        "[default: settings.yaml]."
    ),
)
@click.option("-q", "--quiet", is_flag=True, help=_("Print only problems and the summary."))
@click.version_option(package_name="campaign", help=_("Show the version and exit."))
@click.pass_context
def main(ctx: click.Context, settings_path: Path | None, quiet: bool) -> None:
    ctx.obj = Context(settings_path, quiet=quiet)


# The help texts are read when this module is imported: in the environment's language (--help
# reads no settings).
main.help = _(
    "Mail-merge letter campaigns: spreadsheet + letter → PDF letters and emails, sent safely."
)
CAMPAIGN_HELP = _(
    "CAMPAIGN is a key of campaigns: in settings.yaml; without it, the command takes "
    "default_campaign, or the only campaign there is."
)
CAMPAIGN_ARG = click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
QUIET = click.option(
    "-q", "--quiet", "quiet", is_flag=True, help=_("No progress bar; print the summary.")
)


@main.command(
    short_help=_("Create a new campaign project in DIR, ready to fill in."),
    help=_(
        "Create a new campaign project in DIR: settings, a letter, a recipient sheet, "
        "a suppression list."
    ),
)
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path, file_okay=True))
@reports_errors
def init(folder: Path) -> None:
    from campaign.init import init_project

    created = init_project(folder)
    for path in created.files:
        console.print(f"  {_escape(str(folder / path))}")
    shown = _escape(str(folder))
    console.print(
        "[green]"
        + _("Created a campaign project in {folder}").format(folder=shown)
        + "[/]; "
        + _("next: {command}").format(command=f"cd {shown} && campaign check")
    )


@main.command(
    short_help=_("Validate settings, letter and recipients; merge every row."),
    help=_(
        "Validate settings, letter, recipients and suppression list, and dry-merge every letter."
    ),
    epilog=CAMPAIGN_HELP,
)
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--json", "as_json", is_flag=True, help=_("Print the report as JSON."))
@pass_context
@reports_errors
def check(ctx: Context, campaign_name: str | None, as_json: bool) -> None:
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
    short_help=_("Write one PDF letter per recipient (only what changed)."),
    help=_(
        "Write one PDF letter per ready recipient, skipping letters whose inputs did not change."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help=_("Worker processes [all cores]."),
)
@click.option(
    "--print",
    "print_pack",
    is_flag=True,
    help=_("Also write one print-ready PDF of all letters, each starting on a right-hand page."),
)
@QUIET
@pass_context
@reports_errors
def render(
    ctx: Context, campaign_name: str | None, jobs: int | None, print_pack: bool, quiet: bool
) -> None:
    from campaign import commands

    campaign = ctx.campaign(campaign_name)
    with _bar(disable=quiet or ctx.quiet) as bar:
        task = bar.add_task(_("rendering letters"), total=None)
        done = commands.render(
            campaign,
            jobs=jobs,
            print_pack=print_pack,
            progress=lambda n, total: bar.update(task, completed=n, total=total),
        )
    report = done.report
    for warning in report.warnings:
        err_console.print("[yellow]" + _("warning:") + f"[/] {_escape(warning)}")
    if report.failures:
        print_problems(report.failures)
    rate = (
        ", " + _("{ms} ms/letter").format(ms=number(report.seconds * 1000 / len(report.rendered)))
        if report.rendered
        else ""
    )
    style = "red" if report.failures else "green"
    counts = ", ".join(
        (
            plural(len(report.rendered), "{n} rendered", "{n} rendered"),
            plural(report.skipped, "{n} unchanged", "{n} unchanged"),
            plural(len(report.removed), "{n} removed", "{n} removed"),
            plural(len(report.failures), "{n} failed", "{n} failed"),
        )
    )
    took = _("in {seconds} s").format(seconds=number(report.seconds, decimals=1))
    workers = plural(report.jobs, "{n} job", "{n} jobs")
    console.print(f"[bold]{campaign.name}[/]: [{style}]{counts}[/] {took} ({workers}{rate})")
    console.print(_("letters in {folder}").format(folder=_escape(str(report.folder))))
    if done.print_pack is not None:
        console.print(_("print-ready PDF: {path}").format(path=_escape(str(done.print_pack))))
    sys.exit(1 if report.failures else 0)


@main.command(
    short_help=_("Write the reviewers' proof pack (proofs.pdf, index.html)."),
    help=_("Write the reviewers' proof pack: stamped proofs.pdf and index.html with each email."),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "--sample", "extra", type=click.IntRange(min=0), default=0, help=_("Add N random rows.")
)
@click.option("--rows", "rows", default=None, help=_("Proof these spreadsheet rows, e.g. 2,7,19."))
@click.option("--all", "everyone", is_flag=True, help=_("Proof every recipient."))
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
    from campaign import commands

    quiet = quiet or ctx.quiet
    campaign = ctx.campaign(campaign_name)
    with _bar(disable=quiet) as bar:
        task = bar.add_task(_("proofs"), total=None)
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
        for name in (_("row"), _("recipient"), _("why this row")):
            table.add_column(name, overflow="fold")
        for item in pack.sample:
            reasons = "; ".join(item.reasons)
            table.add_row(str(item.recipient.row), _escape(item.recipient.email), _escape(reasons))
        console.print(table)
    made = _("proofs of {recipients}, {pages}, fingerprint {fingerprint}").format(
        recipients=plural(len(pack.sample), "{n} recipient", "{n} recipients"),
        pages=plural(pack.pages, "{n} page", "{n} pages"),
        fingerprint=pack.fingerprint.short,
    )
    console.print(f"[bold]{campaign.name}[/]: {made}")
    console.print(f"  {_escape(str(pack.pdf))}\n  {_escape(str(pack.index))}")
    console.print(
        _("next: have them read, then {command}").format(
            command=f"campaign approve {campaign.name} --by NAME"
        )
    )


@main.command(
    short_help=_("Record a reviewer's sign-off of the proofed content."),
    help=_(
        "Record that NAME approved the proofed content (letter, emails, attachments, recipients)."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option("--by", "by", required=True, help=_("Who approves the content (name or email)."))
@click.option("--note", default=None, help=_("A note kept with the approval."))
@pass_context
@reports_errors
def approve(ctx: Context, campaign_name: str | None, by: str, note: str | None) -> None:
    from campaign import commands

    campaign = ctx.campaign(campaign_name)
    record = commands.approve(campaign, by=by, note=note)
    approved = _("approved by {name}").format(name=_escape(record.by))
    rest = _("on {when}, {recipients}, fingerprint {fingerprint}").format(
        when=record.when,
        recipients=plural(record.recipients, "{n} recipient", "{n} recipients"),
        fingerprint=record.fingerprint[:12],
    )
    console.print(f"[bold]{campaign.name}[/]: [green]{approved}[/] {rest}")
    console.print(_("recorded in {path}").format(path=_escape(str(campaign.layout.approval))))


@main.command(
    short_help=_("Send the emails: throttled, retried, logged, resumable."),
    help=_("Send the emails, throttled and retried; resumes where the last run stopped."),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "--dry-run",
    is_flag=True,
    help=_("Compose every message into outbox/<campaign>/dry-run/; send nothing."),
)
@click.option(
    "--test-to",
    metavar="ADDR",
    help=_("Send the first letter(s) to ADDR, subject [TEST]; record nobody as sent."),
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help=_("With --test-to: how many letters."),
)
@click.option(
    "--limit", type=click.IntRange(min=1), help=_("Send to at most N recipients in this run.")
)
@click.option("--retry-failed", is_flag=True, help=_("Try the failed recipients again."))
@click.option(
    "--resend-uncertain", is_flag=True, help=_("Send again to those whose delivery is uncertain.")
)
@click.option(
    "--no-wait",
    is_flag=True,
    help=_("Stop instead of waiting for deferred retries or for the send window to open."),
)
@click.option(
    "--wait",
    "wait_day",
    is_flag=True,
    help=_("When the day's cap is reached, wait for the next slot."),
)
@QUIET
@click.option("--json", "as_json", is_flag=True, help=_("Print the report as JSON."))
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


@main.command(
    short_help=_("Show what became of each recipient."),
    help=_(
        "Show the delivery log against the spreadsheet: counts, failures with their replies, timing."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option("--json", "as_json", is_flag=True, help=_("Print the status as JSON."))
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("Also write the delivery log to FILE.csv or FILE.xlsx (safe to open in Excel)."),
)
@click.option(
    "--with-sheet",
    is_flag=True,
    help=_(
        "With --export: write the recipient spreadsheet itself, every cell unchanged, plus "
        "state, date sent, bounce reason and replied columns (.xlsx, .ods or .csv)."
    ),
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    help=_(
        "Also write a report for the organisers to FILE.html: counts, failures, bounces, the "
        "server's limits, what is left and the messages per hour (one page, opens offline)."
    ),
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
                _("{option} needs {other}").format(option="--with-sheet", other="--export FILE"),
                hint=_("e.g. {command}").format(command="status --export suivi.xlsx --with-sheet"),
            )
        report = commands.status(
            campaign, export=export_path, with_sheet=with_sheet, report_to=report_path
        )
    for warning in report.warnings:
        err_console.print("[yellow]" + _("warning:") + f"[/] {_escape(warning)}")
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_status(report)
        if report.forecast is not None:
            console.print(_escape(report.forecast.summary()))
        if export_path is not None:
            console.print(_("exported to {path}").format(path=_escape(str(export_path))))
        if report_path is not None:
            console.print(_("report written to {path}").format(path=_escape(str(report_path))))
    sys.exit(report.exit_code)


@main.command(
    short_help=_("Read bounces and replies from the mailbox."),
    help=_(
        "Read the mailbox since the last scan: bounces, delivery reports, replies, auto-replies."
    )
    + "\n\n"
    + _(
        "Hard bounces join the suppression list; uncertain sends are looked for in the Sent "
        "folder. The mailbox is only read: nothing is moved, flagged or deleted."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option("--json", "as_json", is_flag=True, help=_("Print the report as JSON."))
@pass_context
@reports_errors
def inbox(ctx: Context, campaign_name: str | None, as_json: bool) -> None:
    from campaign import commands

    report = commands.inbox(ctx.campaign(campaign_name))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print_inbox(report)
    sys.exit(report.exit_code)


@main.command(
    short_help=_("Run a local SMTP server that keeps what it receives."),
    help=_("Run a local SMTP server on 127.0.0.1 that stores what it receives as a Maildir.")
    + "\n\n"
    + _(
        "With a mailbox Maildir it also plays the recipients' servers: bounces and "
        "out-of-office replies arrive there, for campaign inbox to read."
    ),
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8025,
    show_default=True,
    help=_("The port to listen on (0: any free port)."),
)
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    help=_("Where to store messages [outbox/sink next to settings.yaml]."),
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("Also append a line per message: receive time, Message-ID, recipients."),
)
@click.option(
    "--mailbox",
    "mailbox_path",
    type=click.Path(path_type=Path, file_okay=False),
    help=_(
        "The sender's mailbox Maildir, where bounces and out-of-office replies go "
        "[mailbox.maildir of the settings]."
    ),
)
@click.option(
    "--bounce",
    default="rebond.*@*",
    show_default=True,
    help=_("Recipients (a pattern) whose server refuses the message and bounces it."),
)
@click.option(
    "--absence",
    default="absence.*@*",
    show_default=True,
    help=_("Recipients (a pattern) who answer with an out-of-office reply."),
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
        # Scripts wait for "127.0.0.1:PORT" on the first line, in any language.
        click.echo(
            _("sink listening on {address}, storing messages in {folder} (Ctrl-C to stop)").format(
                address=f"127.0.0.1:{actual}", folder=f"{maildir}/new"
            )
        )
        if remote is not None:
            click.echo(
                _(
                    "playing the remote servers: {bounce} bounces, {absence} is away; "
                    "answers go to {folder}"
                ).format(bounce=bounce, absence=absence, folder=f"{remote.mailbox}/new")
            )
        sys.stdout.flush()

    count = run_sink(maildir, port=port, log=log_path, on_ready=ready, remote=remote)
    stopped = ngettext(
        "sink stopped: {n} message stored in {folder}",
        "sink stopped: {n} messages stored in {folder}",
        count,
    )
    click.echo(stopped.format(n=number(count), folder=f"{maildir}/new"))


@main.command(
    short_help=_("Delete the campaign's personal data from the outbox."),
    help=_("Delete the campaign's personal data: PDFs, proofs, dry runs and the sink's copies."),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "--all", "include_log", is_flag=True, help=_("Also delete the delivery log and the approvals.")
)
@click.option("--yes", is_flag=True, help=_("Do not ask for confirmation."))
@pass_context
@reports_errors
def purge(ctx: Context, campaign_name: str | None, include_log: bool, yes: bool) -> None:
    from campaign import commands
    from campaign.errors import UsageError

    campaign = ctx.campaign(campaign_name)
    shown = _escape(campaign.settings.display(campaign.outbox))

    def what(plan: Any) -> str:
        files = plural(len(plan.files), "{n} file", "{n} files")
        copies = plural(len(plan.sink_copies), "{n} copy", "{n} copies")
        if include_log:
            text = _(
                "{files} under {folder} (delivery log included) and {copies} in the local sink"
            )
        else:
            text = _("{files} under {folder} and {copies} in the local sink")
        return text.format(files=files, folder=shown, copies=copies)

    def confirm(plan: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            again = f"campaign purge {campaign.name}{' --all' if include_log else ''} --yes"
            raise UsageError(
                _("purge would delete {files}; it needs a confirmation").format(
                    files=plural(plan.total, "{n} file", "{n} files")
                ),
                hint=_("run it in a terminal, or confirm with {command}").format(command=again),
            )
        return click.confirm(_("Delete {what}?").format(what=what(plan)), default=False, err=True)

    result = commands.purge(campaign, include_log=include_log, confirm=confirm)
    for warning in result.warnings:
        err_console.print("[yellow]" + _("warning:") + f"[/] {_escape(warning)}")
    if result.plan.total == 0:
        console.print(f"[bold]{campaign.name}[/]: " + _("no personal data to delete"))
        return
    if not result.confirmed:
        console.print(_("nothing deleted"))
        sys.exit(1)
    deleted = ngettext("deleted {n} file ({what})", "deleted {n} files ({what})", result.deleted)
    deleted = deleted.format(n=number(result.deleted), what=what(result.plan))
    console.print(f"[bold]{campaign.name}[/]: {deleted}")
    if not include_log:
        console.print(
            _(
                "kept the delivery log and approvals (they record who was sent what); "
                "{option} deletes them too"
            ).format(option="--all")
        )


if __name__ == "__main__":  # pragma: no cover
    main()

"""The `campaign` command: parse the command line, call one function of `campaign.commands`, print.

This package is the only one that prints (its `output` module holds the tables and reports). Exit codes: 0 success; 1 the job found problems (validation
errors, failed or uncertain deliveries, refused send); 2 usage or configuration errors; 130 interrupted.
"""

from __future__ import annotations

import atexit
import gc
import json
import sys
from pathlib import Path
from typing import Any

import click

from campaign.cli.base import (
    CAMPAIGN_ARG,
    CAMPAIGN_HELP,
    QUIET,
    Context,
    WholeNumber,
    _InOrder,
    pass_context,
    reports_errors,
)
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
from campaign.cli.tools import purge, sink
from campaign.i18n import _, labelled, listed, ngettext, number, plural

# At exit the interpreter collects once more every object the command made: 70-150 ms after a
# send of 1,000 messages on the benchmark machine (docs/performance-send.md), for memory the
# ending process gives back anyway. Frozen, they are left out of that last collection (their
# files are still closed, by reference counting; the log is committed before this point).
atexit.register(gc.freeze)


@click.group(
    cls=_InOrder,
    context_settings={"help_option_names": ["-h", "--help"]},
    subcommand_metavar=_("COMMAND [ARGS]..."),
)
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


@main.command(
    short_help=_("Create a new campaign project in DIR, ready to fill in."),
    help=_(
        "Create a new campaign project in DIR: settings, a letter, a recipient sheet, "
        "a suppression list."
    ),
)
@click.argument("folder", metavar=_("DIR"), type=click.Path(path_type=Path, file_okay=True))
@reports_errors
def init(folder: Path) -> None:
    from campaign.init import init_project

    created = init_project(folder)
    for path in created.files:
        console.print(f"  {_escape(str(folder / path))}")
    shown = _escape(str(folder))
    made = _("Created a campaign project in {folder}").format(folder=shown)
    then = _("next: {command}").format(command=f"cd {shown} && campaign check")
    console.print(listed([f"[green]{made}[/]", then]))


@main.command(
    short_help=_("Validate settings, letter and recipients; merge every row."),
    help=_(
        "Validate settings, letter, recipients and suppression list, and dry-merge every letter."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
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
        console.print(labelled(f"[bold]{campaign.name}[/]", f"[{style}]{report.summary()}[/]"))
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
    type=WholeNumber(min=1),
    metavar="N",
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
    seen = [0, 0]  # letters written so far, of how many to write

    def progress(n: int, total: int) -> None:
        seen[:] = [n, total]
        bar.update(task, completed=n, total=total)

    try:
        with _bar(disable=quiet or ctx.quiet) as bar:
            task = bar.add_task(_("rendering letters"), total=None)
            done = commands.render(campaign, jobs=jobs, print_pack=print_pack, progress=progress)
    except KeyboardInterrupt:
        # The letters written are in the manifest and kept: the next run writes only the rest.
        written, total = seen
        err_console.print(
            ngettext(
                "interrupted: {n} letter of {total} written, and kept; {command} writes the rest",
                "interrupted: {n} letters of {total} written, and kept; {command} writes the rest",
                written,
            ).format(
                n=number(written),
                total=number(total),
                command=f"campaign render {campaign.name}",
            )
        )
        sys.exit(130)
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
    console.print(
        labelled(f"[bold]{campaign.name}[/]", f"[{style}]{counts}[/] {took} ({workers}{rate})")
    )
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
    "--sample",
    "extra",
    type=WholeNumber(min=0),
    default=0,
    metavar="N",
    help=_("Add N random rows."),
)
@click.option(
    "--rows",
    "rows",
    default=None,
    metavar=_("ROWS"),
    help=_("Proof these spreadsheet rows, e.g. 2,7,19."),
)
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
    from campaign.approval import approve_command

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
            reasons = listed(item.reasons)
            table.add_row(str(item.recipient.row), _escape(item.recipient.email), _escape(reasons))
        console.print(table)
    made = _("proofs of {recipients}, {pages}, fingerprint {fingerprint}").format(
        recipients=plural(len(pack.sample), "{n} recipient", "{n} recipients"),
        pages=plural(pack.pages, "{n} page", "{n} pages"),
        fingerprint=pack.fingerprint.short,
    )
    console.print(labelled(f"[bold]{campaign.name}[/]", made))
    console.print(f"  {_escape(str(pack.pdf))}\n  {_escape(str(pack.index))}")
    console.print(
        _("next: have them read, then {command}").format(command=approve_command(campaign.name))
    )


@main.command(
    short_help=_("Record a reviewer's sign-off of the proofed content."),
    help=_(
        "Record that NAME approved the proofed content (letter, emails, attachments, recipients)."
    ),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "--by",
    "by",
    required=True,
    metavar=_("NAME"),
    help=_("Who approves the content (name or email)."),
)
@click.option("--note", default=None, metavar=_("TEXT"), help=_("A note kept with the approval."))
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
    console.print(labelled(f"[bold]{campaign.name}[/]", f"[green]{approved}[/] {rest}"))
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
    metavar=_("ADDR"),
    help=_("Send the first letter(s) to ADDR, subject [TEST]; record nobody as sent."),
)
@click.option(
    "--count",
    type=WholeNumber(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help=_("With --test-to: how many letters."),
)
@click.option(
    "--limit",
    type=WholeNumber(min=1),
    metavar="N",
    help=_("Send to at most N recipients in this run."),
)
@click.option("--retry-failed", is_flag=True, help=_("Try the failed recipients again."))
@click.option(
    "--resend-uncertain", is_flag=True, help=_("Send again to those whose delivery is uncertain.")
)
@click.option(
    "--retry-bounced",
    is_flag=True,
    help=_(
        "Send again to those whose message bounced for the campaign's sake (the sender's SPF, "
        "DKIM or DMARC, the sending server, the content), once that is put right."
    ),
)
@click.option(
    "--resend-readdressed",
    is_flag=True,
    help=_(
        "Send also to those held because the letter already reached the same person at an "
        "earlier address (same name, or the same row but the address)."
    ),
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
    retry_bounced: bool,
    resend_readdressed: bool,
    no_wait: bool,
    wait_day: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    from campaign import commands
    from campaign.send import SendOptions

    # What the imports made lives as long as the process: out of the collections of the run
    # (one over everything took 27 ms while the spreadsheet was read, docs/performance-send.md).
    gc.freeze()
    campaign = ctx.campaign(campaign_name)
    options = SendOptions(
        dry_run=dry_run,
        test_to=test_to,
        count=count,
        limit=limit,
        retry_failed=retry_failed,
        resend_uncertain=resend_uncertain,
        retry_bounced=retry_bounced,
        resend_readdressed=resend_readdressed,
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
    metavar=_("FILE"),
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
    metavar=_("FILE"),
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
                _("{option} needs {other}").format(
                    option="--with-sheet", other=f"--export {_('FILE')}"
                ),
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


main.add_command(sink)
main.add_command(purge)


if __name__ == "__main__":  # pragma: no cover
    main()

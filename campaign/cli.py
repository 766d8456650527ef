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
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress bar; print the summary.")
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
    from rich.progress import Progress

    from campaign.errors import UsageError
    from campaign.inputs import load_inputs
    from campaign.outbox import run_lock
    from campaign.proofs import build_proofs, choose_sample, parse_rows

    if everyone and rows:
        raise UsageError("--all and --rows do not go together", hint="choose one of them")
    quiet = quiet or ctx.quiet
    campaign = ctx.campaign(campaign_name)
    inputs = load_inputs(campaign)
    rows_read = {r.row for r in inputs.recipients.recipients}
    blocking = [p for p in inputs.errors if p.place.row not in rows_read]  # not one row's error
    if blocking:
        print_problems(blocking)
        raise UsageError(
            f"campaign {campaign.name} has errors; there is nothing to proof yet",
            hint=f"run campaign check {campaign.name} and fix what it lists",
        )
    if inputs.errors:
        bad = len({p.place.row for p in inputs.errors})
        err_console.print(
            f"[yellow]warning:[/] {bad} row{'s have' if bad > 1 else ' has'} errors, left out; "
            f"campaign check {campaign.name} lists them (approve refuses until they are fixed)"
        )
    sample = choose_sample(
        inputs, rows=parse_rows(rows) if rows else None, extra=extra, everyone=everyone
    )
    with (
        run_lock(campaign.outbox, campaign=campaign.name, action="proofed"),
        Progress(console=err_console, disable=quiet, transient=True) as bar,
    ):
        task = bar.add_task("proofs", total=len(sample))
        pack = build_proofs(
            inputs, sample, progress=lambda done, total: bar.update(task, completed=done)
        )
    if not quiet:
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


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None, help="Worker processes [all cores]."
)
@click.option(
    "--print",
    "print_pack",
    is_flag=True,
    help="Also write one print-ready PDF of all letters, each starting on a right-hand page.",
)
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress bar; print the summary.")
@pass_context
@reports_errors
def render(
    ctx: Context, campaign_name: str | None, jobs: int | None, print_pack: bool, quiet: bool
) -> None:
    """Write one PDF letter per ready recipient, skipping letters whose inputs did not change."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from campaign import pdf
    from campaign.inputs import check_inputs, load_inputs
    from campaign.outbox import run_lock

    campaign = ctx.campaign(campaign_name)
    inputs = load_inputs(campaign)
    checked = check_inputs(inputs)
    if checked.errors:
        print_problems([p for p in checked.problems if p.severity is Severity.ERROR])
        err_console.print(
            f"[bold]{campaign.name}[/]: [red]{checked.summary()}[/]; "
            "fix the errors above (campaign check) before rendering"
        )
        sys.exit(1)
    quiet = quiet or ctx.quiet
    with run_lock(campaign.outbox, campaign=campaign.name, action="rendered"):
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            disable=quiet,
            transient=True,
        ) as bar:
            task = bar.add_task("rendering letters", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = pdf.render_letters(inputs, jobs=jobs, progress=advance)
        for warning in report.warnings:
            err_console.print(f"[yellow]warning:[/] {_escape(warning)}")
        if report.failures:
            print_problems(report.failures)
        packed = pdf.print_pack(inputs) if print_pack and not report.failures else None
    rate = (
        f", {report.seconds * 1000 / len(report.rendered):.0f} ms/letter" if report.rendered else ""
    )
    style = "red" if report.failures else "green"
    console.print(
        f"[bold]{campaign.name}[/]: [{style}]{len(report.rendered)} rendered, "
        f"{report.skipped} unchanged, {len(report.removed)} removed, "
        f"{len(report.failures)} failed[/] in {report.seconds:.1f} s "
        f"({report.jobs} job{'s' if report.jobs > 1 else ''}{rate})"
    )
    console.print(f"letters in {_escape(str(report.folder))}")
    if packed is not None:
        console.print(f"print-ready PDF: {_escape(str(packed))}")
    sys.exit(1 if report.failures else 0)


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
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
@click.option("--no-wait", is_flag=True, help="Stop instead of waiting for deferred retries.")
@click.option(
    "--wait",
    "wait_day",
    is_flag=True,
    help="When the day's cap is reached, wait for the next slot.",
)
@click.option("-q", "--quiet", "quiet", is_flag=True, help="No progress bar; print the summary.")
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
    from campaign.errors import DeliveryError, UsageError
    from campaign.inputs import check_inputs, load_inputs
    from campaign.send import SendOptions, send_campaign

    campaign = ctx.campaign(campaign_name)
    if test_to is not None:
        from email_validator import EmailNotValidError, validate_email

        try:
            test_to = validate_email(test_to, check_deliverability=False).normalized
        except EmailNotValidError as err:
            raise UsageError(f"--test-to {test_to!r} is not an email address: {err}") from None
    inputs = load_inputs(campaign)
    checked = check_inputs(inputs)
    if checked.errors:
        print_problems([p for p in checked.problems if p.severity is Severity.ERROR])
        raise DeliveryError(
            f"refusing to send: {checked.summary()}",
            hint=f"fix the errors above (campaign check {campaign.name}), then send again",
        )
    if not dry_run and test_to is None:  # a dry run or a test send needs no approval
        from campaign.approval import require_approval

        require_approval(inputs)
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
    with _SendProgress(disable=quiet or ctx.quiet or as_json) as progress:
        report = send_campaign(inputs, options, progress=progress)
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        _print_send_report(report)
    sys.exit(report.exit_code)


class _SendProgress:
    """A progress bar with rate and estimated finish, and the countdown of waits."""

    def __init__(self, *, disable: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            "{task.fields[rate]}",
            TimeRemainingColumn(),
            console=err_console,
            disable=disable,
            transient=True,
        )
        self.task = self.bar.add_task("sending", total=None, rate="")
        self.done = 0

    def __enter__(self) -> _SendProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: Any) -> None:
        if event.kind == "start":
            self.bar.update(self.task, total=event.total)
        elif event.kind == "done":
            self.done += 1
            speed = self.bar.tasks[0].speed
            rate = f"{speed * 60:.0f}/min" if speed else ""
            self.bar.update(self.task, completed=self.done, description="sending", rate=rate)
        elif event.kind == "wait":
            description = f"waiting {event.seconds:.0f} s ({event.text})"
            self.bar.update(self.task, description=description)
        elif event.kind == "stopping":
            self.bar.update(self.task, description="stopping: finishing messages in flight")


def _print_send_report(report: Any) -> None:
    import time

    name = f"[bold]{report.campaign}[/]"
    if report.mode == "dry-run":
        console.print(f"{name}: {report.written} messages composed, nothing sent")
        console.print(f"messages in {_escape(str(report.folder))}")
        return
    safe, unsure = report.recovered
    if safe or unsure:
        console.print(
            f"previous run interrupted: {safe} to send again, {unsure} uncertain "
            "(campaign status lists them)"
        )
    tally = report.tally
    style = "red" if tally.failed or tally.uncertain else "green"
    what = "test messages" if report.mode == "test" else "this run"
    console.print(
        f"{name}, {what}: [{style}]{tally.sent} sent, {tally.deferred} deferred, "
        f"{tally.failed} failed, {tally.uncertain} uncertain[/] in {report.seconds:.1f} s "
        f"over {tally.connections} connection{'s' if tally.connections != 1 else ''}"
    )
    if tally.pace is not None and tally.pace.describe():
        console.print(f"[yellow]server[/]: {tally.pace.describe()}")
    if report.stopped == "interrupted":
        console.print("[yellow]interrupted[/]: messages in flight were finished and recorded")
    elif report.stopped == "retries pending" and report.next_retry:
        when = time.strftime("%H:%M:%S", time.localtime(report.next_retry))
        console.print(f"deferred messages wait for a retry at {when}; run send again then")
    elif report.stopped:
        console.print(f"[yellow]stopped[/]: {_escape(report.stopped)}")
    if report.mode == "send":
        counts = ", ".join(f"{n} {state}" for state, n in report.counts.items() if n)
        console.print(f"delivery log: {counts or 'empty'} ({_escape(str(report.ledger))})")
        if report.counts.get("failed") or report.counts.get("uncertain"):
            console.print(
                "see campaign status for the replies; --retry-failed and --resend-uncertain "
                "send to them again"
            )


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--export",
    "export_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the delivery log to FILE.csv or FILE.xlsx (safe to open in Excel).",
)
@pass_context
@reports_errors
def status(
    ctx: Context, campaign_name: str | None, as_json: bool, export_path: Path | None
) -> None:
    """Show the delivery log: counts per state, failures with their SMTP replies, timing."""
    import time

    from campaign.approval import approval_line
    from campaign.errors import StateError
    from campaign.ledger import LEDGER_NAME, Ledger, export_deliveries, status_summary
    from campaign.outbox import run_lock

    campaign = ctx.campaign(campaign_name)
    approval = approval_line(campaign)
    _warn_retention(campaign)
    path = campaign.outbox / LEDGER_NAME
    if not path.exists():
        if as_json:
            click.echo(
                json.dumps(
                    {"campaign": campaign.name, "counts": {}, "approval": approval}, indent=2
                )
            )
        else:
            console.print(f"[bold]{campaign.name}[/]: nothing sent yet (no {_escape(str(path))})")
            console.print(f"approval: {_escape(approval)}")
        return
    with Ledger(path) as log:
        try:  # settle what a killed run left `sending`, unless a send is running now
            with run_lock(campaign.outbox, campaign=campaign.name, action="inspected"):
                log.recover()
        except StateError:
            pass
        summary = status_summary(log, time.time())
        if export_path is not None:
            export_deliveries(log.deliveries(), export_path)
    if as_json:
        document = {"campaign": campaign.name, "approval": approval, **summary}
        click.echo(json.dumps(document, ensure_ascii=False, indent=2))
    else:
        counts = summary["counts"]
        table = Table(header_style="bold")
        for state in counts:
            table.add_column(state, justify="right")
        table.add_row(*(str(n) for n in counts.values()))
        console.print(f"[bold]{campaign.name}[/]: delivery log {_escape(str(path))}")
        console.print(table)
        console.print(f"approval: {_escape(approval)}")
        if summary["attention"]:
            problems = Table(header_style="bold", title="needing attention")
            for column in ("row", "email", "state", "attempts", "SMTP reply"):
                problems.add_column(column, overflow="fold")
            for item in summary["attention"]:
                reply = " ".join(str(p) for p in (item["code"], item["reply"]) if p is not None)
                problems.add_row(
                    str(item["row"] or ""),
                    _escape(item["email"]),
                    item["state"],
                    str(item["attempts"]),
                    _escape(reply),
                )
            console.print(problems)
        if summary["per_minute"] is not None:
            console.print(
                f"{summary['runs']} runs, {summary['run_seconds']:.1f} s sending, "
                f"{summary['per_minute']} messages/min; {summary['sent_last_24h']} in the last 24 h"
            )
        if summary["test_sends"]:
            console.print(f"{summary['test_sends']} test messages (recorded apart)")
    if export_path is not None and not as_json:
        console.print(f"exported to {_escape(str(export_path))}")
    sys.exit(1 if summary["counts"].get("failed") or summary["counts"].get("uncertain") else 0)


def _warn_retention(campaign: Campaign) -> None:
    """Warn when the outbox keeps personal data longer than `retention_days` allows."""
    from campaign.outbox import oldest_personal_file

    days = campaign.settings.retention_days
    oldest = oldest_personal_file(campaign.outbox) if days else None
    if days and oldest and oldest[1] > days:
        shown = campaign.settings.display(oldest[0])
        err_console.print(
            f"[yellow]warning:[/] personal data older than retention_days ({days}) remains: "
            f"{_escape(shown)} is {oldest[1]:.0f} days old; delete it with "
            f"campaign purge {campaign.name}"
        )


@main.command()
@click.argument("campaign_name", metavar="[CAMPAIGN]", required=False)
@click.option(
    "--all", "include_log", is_flag=True, help="Also delete the delivery log and the approvals."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
@reports_errors
def purge(ctx: Context, campaign_name: str | None, include_log: bool, yes: bool) -> None:
    """Delete the campaign's personal data: PDFs, proofs, dry runs and the sink's copies."""
    from campaign.errors import UsageError
    from campaign.outbox import plan_purge, run_lock

    campaign = ctx.campaign(campaign_name)
    settings = campaign.settings
    sink_folder = settings.resolve(settings.outbox) / "sink"
    with run_lock(campaign.outbox, campaign=campaign.name, action="purged"):
        plan = plan_purge(campaign.outbox, sink_folder, include_log=include_log)
        if plan.unmatched:
            err_console.print(
                f"[yellow]warning:[/] the sink's copies cannot be found: {_escape(plan.unmatched)}"
            )
        if plan.total == 0:
            console.print(f"[bold]{campaign.name}[/]: no personal data to delete")
            return
        what = (
            f"{len(plan.files)} files under {_escape(settings.display(campaign.outbox))}"
            + (" (delivery log included)" if include_log else "")
            + f" and {len(plan.sink_copies)} copies in the local sink"
        )
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"purge would delete {plan.total} files; it needs a confirmation",
                    hint=f"run it in a terminal, or confirm with campaign purge {campaign.name} "
                    "--yes",
                )
            if not click.confirm(f"Delete {what}?", default=False, err=True):
                console.print("nothing deleted")
                sys.exit(1)
        deleted = plan.execute()
    console.print(f"[bold]{campaign.name}[/]: deleted {deleted} files ({what})")
    if not include_log:
        console.print(
            "kept the delivery log and approvals (they record who was sent what); "
            "--all deletes them too"
        )


@main.command()
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
@pass_context
@reports_errors
def sink(ctx: Context, port: int, maildir: Path | None, log_path: Path | None) -> None:
    """Run a local SMTP server on 127.0.0.1 that stores what it receives as a Maildir."""
    from campaign.sink import run_sink

    if maildir is None:
        try:
            settings = load_settings(ctx.settings_path)
            maildir = settings.resolve(settings.outbox) / "sink"
        except CampaignError:
            maildir = Path("outbox/sink")

    def ready(actual: int) -> None:
        click.echo(
            f"sink listening on 127.0.0.1:{actual}, storing messages in {maildir}/new "
            "(Ctrl-C to stop)"
        )
        sys.stdout.flush()

    count = run_sink(maildir, port=port, log=log_path, on_ready=ready)
    click.echo(f"sink stopped: {count} messages stored in {maildir}/new")


if __name__ == "__main__":  # pragma: no cover
    main()

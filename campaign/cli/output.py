"""What the commands print: tables of problems, the send report, the status. Rich, to stdout/stderr.

The reports are typed values of the library (`CheckReport`, `SendReport`, `StatusReport`); this
module only turns them into lines a person reads.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from campaign.errors import Problem, Severity

if TYPE_CHECKING:  # the command line imports no SMTP, PDF or spreadsheet library to start
    from rich.console import Console

    from campaign.inbox import InboxReport
    from campaign.send import SendReport
    from campaign.sentcopy import CopyReport
    from campaign.status import StatusReport


class _Console:
    """A rich `Console` made on first use: `campaign --help` need not import rich."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich(), name)

    def rich(self) -> Console:
        """The console itself (a progress bar needs the real object)."""
        if self._console is None:
            from rich.console import Console

            stream = sys.stderr if self._stderr else sys.stdout
            # In a pipe, lines are not wrapped at the console's width: sentences stay whole.
            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=not stream.isatty()
            )
        return self._console


console = _Console(stderr=False)
err_console = _Console(stderr=True)
# How many row numbers a grouped line lists before it sums up the rest.
_ROWS_SHOWN = 12


def escape(text: str) -> str:
    """Text printed as it is, never read as rich markup (a cell may hold `[bold]`)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


__all__ = [
    "console",
    "err_console",
    "escape",
    "print_inbox",
    "print_problems",
    "print_send_report",
    "print_status",
]


def print_problems(problems: list[Problem]) -> None:
    """A table of problems: severity, file, row (or line), column, message, hint."""
    from rich.table import Table

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
            escape(place.file or ""),
            where,
            escape(place.column or place.key or ""),
            escape(problem.message),
            escape(problem.hint or ""),
        )
    console.print(table)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _rows(rows: list[int]) -> str:
    if not rows:
        return ""
    shown = ", ".join(map(str, rows[:_ROWS_SHOWN]))
    more = f" and {len(rows) - _ROWS_SHOWN} more" if len(rows) > _ROWS_SHOWN else ""
    return f" (row{'s' if len(rows) > 1 else ''} {shown}{more})"


def print_send_report(report: SendReport) -> None:
    """The end of `campaign send`: what this run did, why some were not sent, what the log holds."""
    name = f"[bold]{escape(report.campaign)}[/]"
    if report.mode == "dry-run":
        console.print(f"{name}: {report.written} messages composed, nothing sent")
        console.print(f"messages in {escape(str(report.folder))}")
        return
    safe, unsure = report.recovered
    if safe or unsure:
        console.print(
            f"previous run interrupted: {safe} to send again, {unsure} uncertain "
            "(campaign status lists them)"
        )
    tally = report.tally
    style = "red" if tally.failed or tally.uncertain or tally.deferred else "green"
    what = "test messages" if report.mode == "test" else "this run"
    console.print(
        f"{name}, {what}: [{style}]{tally.sent} sent, {tally.deferred} deferred, "
        f"{tally.failed} failed, {tally.uncertain} uncertain[/] in {report.seconds:.1f} s "
        f"over {_plural(tally.connections, 'connection')}"
    )
    for reason in report.reasons:
        console.print(f"  {reason.count} {reason.state.value}: {escape(reason.text)}")
    if tally.pace is not None and tally.pace.describe():
        console.print(f"[yellow]server[/]: {escape(tally.pace.describe())}")
    if report.stopped == "interrupted":
        console.print("[yellow]interrupted[/]: messages in flight were finished and recorded")
    elif report.stopped == "retries pending" and report.next_retry:
        when = time.strftime("%H:%M:%S", time.localtime(report.next_retry))
        console.print(f"deferred messages wait for a retry at {when}; run send again then")
    elif report.stopped:
        console.print(f"[yellow]stopped[/]: {escape(report.stopped)}")
    _print_copies(report.copies)
    for note in report.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    if report.mode == "send":
        counts = ", ".join(f"{n} {state}" for state, n in report.counts.items() if n)
        console.print(f"delivery log: {counts or 'empty'} ({escape(str(report.ledger))})")
        if report.counts.get("failed") or report.counts.get("uncertain"):
            console.print(
                "see campaign status for the replies; --retry-failed and --resend-uncertain "
                "send to them again"
            )


def _print_copies(copies: CopyReport | None) -> None:
    """The copies in Sent (mailbox.save_sent), when there was anything to copy or retry."""
    if copies is None:
        return
    if copies.provider_files and not copies.saved and not copies.failed:
        console.print("Sent: the provider files sent mail itself; no copy appended")
        return
    if not copies.saved and not copies.failed:
        return
    folder = escape(copies.folder or "Sent")
    line = f"{copies.saved} {'copy' if copies.saved == 1 else 'copies'} saved in {folder}"
    if copies.failed:
        line += (
            f", [yellow]{copies.failed} not saved[/] ({escape('; '.join(copies.errors))}): "
            "the next send or inbox saves them; nothing is sent again"
        )
    console.print(line)


def print_status(report: StatusReport) -> None:
    """`campaign status`: counts, the spreadsheet rows not sent yet, grouped replies, timing."""
    from rich.table import Table

    name = f"[bold]{escape(report.campaign)}[/]"
    if not report.started:
        console.print(f"{name}: nothing sent yet (no {escape(str(report.log))})")
    else:
        console.print(f"{name}: delivery log {escape(str(report.log))}")
        # One row per state met: nine states side by side do not fit 80 columns.
        table = Table(header_style="bold")
        table.add_column("state")
        table.add_column("recipients", justify="right")
        for state, n in report.counts.items():
            if n:
                table.add_row(state, str(n))
        console.print(table)
    console.print(f"approval: {escape(report.approval)}")
    if report.not_sent_yet and report.started:
        console.print(
            f"[yellow]{len(report.not_sent_yet)} not sent yet[/]: in the spreadsheet, not yet in "
            f"the log{_rows(report.not_sent_yet)}; campaign send sends them"
        )
    elif report.not_sent_yet:
        console.print(f"{len(report.not_sent_yet)} recipients ready to send")
    if report.not_in_sheet:
        shown = ", ".join(report.not_in_sheet[:_ROWS_SHOWN])
        more = (
            f" and {len(report.not_in_sheet) - _ROWS_SHOWN} more"
            if len(report.not_in_sheet) > _ROWS_SHOWN
            else ""
        )
        console.print(
            f"{_plural(len(report.not_in_sheet), 'entry').replace('entrys', 'entries')} of the log no longer in the "
            f"spreadsheet (kept, never sent again): {escape(shown)}{more}"
        )
    groups = report.groups
    if groups:
        problems = Table(header_style="bold", title="needing attention")
        for column in ("recipients", "state", "SMTP reply", "rows"):
            problems.add_column(column, overflow="fold")
        for group in groups:
            reply = " ".join(str(p) for p in (group.code, group.reply) if p)
            who = group.emails[0] if group.count == 1 else str(group.count)
            rows = _rows(group.rows).strip(" ()")
            problems.add_row(escape(who), group.state.value, escape(reply), rows)
        console.print(problems)
    if report.replied or report.auto_replied or report.delayed or report.bounces:
        console.print(
            f"mailbox: {report.replied} replied, {report.auto_replied} auto-replied, "
            f"{len(report.bounces)} bounced, {report.delayed} delay notices"
        )
    if report.bounces:
        bounced = Table(header_style="bold", title="bounced (added to the suppression list)")
        for column in ("row", "recipient", "reason"):
            bounced.add_column(column, overflow="fold")
        for item in report.bounces:
            bounced.add_row(str(item.row or ""), escape(item.email), escape(item.reason))
        console.print(bounced)
    for email, what in report.searched.items():
        console.print(f"[yellow]uncertain[/] {escape(email)}: {escape(what)}")
    if report.copies_not_saved:
        console.print(
            f"[yellow]Sent[/]: {report.copies_not_saved} copies not saved yet "
            "(the next send or inbox saves them)"
        )
    if report.per_minute is not None:
        console.print(
            f"{_plural(report.runs, 'run')}, {report.run_seconds:.1f} s sending, "
            f"{report.per_minute} messages/min; {report.sent_last_24h} in the last 24 h"
        )
    if report.test_sends:
        console.print(f"{report.test_sends} test messages (recorded apart)")


def print_inbox(report: InboxReport) -> None:
    """`campaign inbox`: what was read, the counts per kind, the bounces with their reasons."""
    from rich.table import Table

    folders = ", ".join(report.folders)
    console.print(
        f"[bold]{escape(report.campaign)}[/]: read {report.read} new messages in "
        f"{escape(folders)} ({report.mailbox}), {report.fetched} of them whole"
    )
    counts = report.as_dict()
    console.print(
        f"{counts['bounced']} bounced, {counts['delayed']} delay notices, "
        f"{counts['delivered']} delivery reports, {counts['replied']} replied, "
        f"{counts['auto_replied']} auto-replied; {report.unmatched} about no recipient "
        "(left alone)"
    )
    if report.bounces:
        table = Table(header_style="bold", title="bounced")
        for column in ("recipient", "reason"):
            table.add_column(column, overflow="fold")
        for bounce in report.bounces:
            table.add_row(escape(bounce.email), escape(bounce.reason))
        console.print(table)
    if report.suppressed:
        console.print(
            f"added to the suppression list {escape(report.suppression_file)}: "
            + escape(", ".join(report.suppressed))
        )
    for email, evidence in report.resolved.items():
        console.print(f"uncertain → sent: {escape(email)}: {escape(evidence)}")
    for email, searched in report.uncertain.items():
        console.print(f"[yellow]still uncertain[/] {escape(email)}: {escape(searched)}")
    _print_copies(report.copies)


class SendProgress:
    """A progress bar with rate and estimated finish, and the countdown of waits."""

    def __init__(self, *, disable: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TimeRemainingColumn,
        )

        # Not on a terminal (a pipe, a log file): no bar, which would leave an empty line there.
        console = err_console.rich()
        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            "{task.fields[rate]}",
            TimeRemainingColumn(),
            console=console,
            disable=disable or not console.is_terminal,
            transient=True,
        )
        self.task = self.bar.add_task("sending", total=None, rate="")
        self.disabled = disable
        self.done = 0

    def __enter__(self) -> SendProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, event: Any) -> None:
        kind = str(event.kind)
        if kind == "start":
            self.bar.update(self.task, total=event.total)
            if event.text and not self.disabled:  # the forecast: "711 to send: about 2 days (…)"
                self.bar.console.print(escape(event.text))
        elif kind == "done":
            self.done += 1
            speed = self.bar.tasks[0].speed
            rate = f"{speed * 60:.0f}/min" if speed else ""
            self.bar.update(self.task, completed=self.done, description="sending", rate=rate)
        elif kind == "wait":
            description = f"waiting {event.seconds:.0f} s ({event.text})"
            self.bar.update(self.task, description=description)
        elif kind == "stopping":
            self.bar.update(self.task, description="stopping: finishing messages in flight")

"""What the commands print: tables of problems, the send report, the status. Rich, to stdout/stderr.

The reports are typed values of the library (`CheckReport`, `SendReport`, `StatusReport`); this
module only turns them into lines a person reads.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from campaign.causes import Cause, cause_of, without_addresses
from campaign.errors import Problem, Severity
from campaign.i18n import N_, _, labelled, listed, ngettext, number, plural

if TYPE_CHECKING:  # the command line imports no SMTP, PDF or spreadsheet library to start
    from rich.console import Console

    from campaign.inbox import InboxReport
    from campaign.ledger import Held
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

            _keep_no_break_spaces()
            stream = sys.stderr if self._stderr else sys.stdout
            # In a pipe, lines are not wrapped at the console's width: sentences stay whole.
            self._console = Console(
                stderr=self._stderr, highlight=False, soft_wrap=not stream.isatty()
            )
        return self._console


# The spaces French typography puts inside « » and before ; : ? ! are no-break spaces.
_NO_BREAK = "\u00a0\u2007\u202f"
_RICH_WORD = r"\s*\S+\s*"


def _keep_no_break_spaces() -> None:
    """Make rich wrap lines only where a line may break: never at a no-break space.

    rich cuts a table cell into words with `\\s*\\S+\\s*`, and `\\s` matches U+00A0 and U+202F too
    (Textualize/rich#4196, open): a proof reason `civilité «\u202fMadame\u202f»` ended a line with
    `Madame` and put `»` alone on the next. The pattern is replaced only while it is the one that
    issue describes; tests/test_i18n_cli.py checks that the guillemets stay on one line.
    """
    import re

    from rich import _wrap

    if _wrap.re_word.pattern == _RICH_WORD:
        space, word = f"[^\\S{_NO_BREAK}]", f"[\\S{_NO_BREAK}]"
        _wrap.re_word = re.compile(f"{space}*{word}+{space}*")


console = _Console(stderr=False)
err_console = _Console(stderr=True)
# How many row numbers a grouped line lists before it sums up the rest.
_ROWS_SHOWN = 12


def escape(text: str) -> str:
    """Text printed as it is, never read as rich markup (a cell may hold `[bold]`)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def ask(question: str) -> bool:
    """Ask a yes-or-no question on the terminal; no unless the person answers yes.

    The answer is read in the language of the session: "o"/"oui" in French ("y"/"yes" always do);
    Enter, "n" or "non" is a no; anything else asks again.
    """
    import click

    yes = {"y", "yes", *(w.strip() for w in _("y, yes").split(","))}
    no = {"n", "no", *(w.strip() for w in _("n, no").split(","))}
    choices = _("[y/N]")
    while True:
        answer = click.prompt(
            f"{question} {choices}", default="", show_default=False, err=True, prompt_suffix=" "
        )
        word = answer.strip().lower()
        if word in yes:
            return True
        if not word or word in no:
            return False
        err_console.print(_("answer y (yes) or n (no)"))


__all__ = [
    "ask",
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
    for name in (_("severity"), _("file"), _("row/line"), _("column"), _("message"), _("hint")):
        table.add_column(name, overflow="fold")
    for problem in problems:
        place = problem.place
        where = (
            str(place.row)
            if place.row is not None
            else (_("line {line}").format(line=place.line) if place.line is not None else "")
        )
        colour = "red" if problem.severity is Severity.ERROR else "yellow"
        table.add_row(
            f"[{colour}]{problem.severity.label}[/]",
            escape(place.file or ""),
            where,
            escape(place.column or place.key or ""),
            escape(problem.message),
            escape(problem.hint or ""),
        )
    console.print(table)


def _rows(rows: list[int]) -> str:
    if not rows:
        return ""
    shown = ", ".join(map(str, rows[:_ROWS_SHOWN]))
    if len(rows) > _ROWS_SHOWN:
        more = len(rows) - _ROWS_SHOWN
        shown = ngettext("{shown} and {n} more", "{shown} and {n} more", more).format(
            shown=shown, n=number(more)
        )
    return " (" + ngettext("row {rows}", "rows {rows}", len(rows)).format(rows=shown) + ")"


def print_send_report(report: SendReport) -> None:
    """The end of `campaign send`: what this run did, why some were not sent, what the log holds."""
    name = f"[bold]{escape(report.campaign)}[/]"
    if report.mode == "dry-run":
        composed = plural(
            report.written,
            "{n} message composed, nothing sent",
            "{n} messages composed, nothing sent",
        )
        console.print(labelled(name, composed))
        console.print(_("messages in {folder}").format(folder=escape(str(report.folder))))
        return
    safe, unsure = report.recovered
    if safe or unsure:
        console.print(
            _(
                "previous run interrupted: {safe} to send again, {unsure} uncertain "
                "(campaign status lists them)"
            ).format(safe=number(safe), unsure=number(unsure))
        )
    if report.requeued:
        console.print(
            plural(
                report.requeued,
                "{n} recipient queued to be sent again",
                "{n} recipients queued to be sent again",
            )
        )
    tally = report.tally
    style = "red" if tally.failed or tally.uncertain or tally.deferred else "green"
    what = _("test messages") if report.mode == "test" else _("this run")
    counts = ", ".join(
        (
            plural(tally.sent, "{n} sent", "{n} sent"),
            plural(tally.deferred, "{n} deferred", "{n} deferred"),
            plural(tally.failed, "{n} failed", "{n} failed"),
            plural(tally.uncertain, "{n} uncertain", "{n} uncertain"),
        )
    )
    took = _("in {seconds} s over {connections}").format(
        seconds=number(report.seconds, decimals=1),
        connections=plural(tally.connections, "{n} connection", "{n} connections"),
    )
    if report.mode == "send" and not report.to_send and not tally.connections:
        # Everyone ready is already in the log: say so, not "0 sent … in 0.0 s over 0 connections".
        console.print(labelled(name, _("nothing left to send")))
    else:
        console.print(labelled(f"{name}, {what}", f"[{style}]{counts}[/] {took}"))
    for reason in report.reasons:
        console.print(
            "  " + labelled(state_count(reason.state.value, reason.count), escape(reason.text))
        )
    if report.mode == "send":  # refusals that are the campaign's, not the recipients' addresses
        _print_failed_causes(
            ((r.state.value, r.text, r.count) for r in report.reasons),
            report.sender_domain,
            report.campaign,
        )
    if tally.pace is not None and tally.pace.describe():
        console.print(labelled("[yellow]" + _("server") + "[/]", escape(tally.pace.describe())))
    if report.stopped == "interrupted":
        console.print(
            labelled(
                "[yellow]" + _("interrupted") + "[/]",
                _("messages in flight were finished and recorded"),
            )
        )
    elif report.stopped == "retries pending" and report.next_retry:
        when = time.strftime("%H:%M:%S", time.localtime(report.next_retry))
        console.print(
            _("deferred messages wait for a retry at {time}; run send again then").format(time=when)
        )
    elif report.stopped:
        console.print(labelled("[yellow]" + _("stopped") + "[/]", escape(report.stopped)))
    _print_copies(report.copies)
    _print_held(report.held, report.campaign)
    for note in report.notes:
        console.print(labelled("[yellow]" + _("note") + "[/]", escape(note)))
    if report.mode == "send":
        counts = ", ".join(state_count(state, n) for state, n in report.counts.items() if n)
        console.print(
            _("delivery log: {counts} ({path})").format(
                counts=counts or _("empty"), path=escape(str(report.ledger))
            )
        )
        if report.counts.get("failed") or report.counts.get("uncertain"):
            console.print(
                _(
                    "see campaign status for the replies; {retry} and {resend} send to them again"
                ).format(retry="--retry-failed", resend="--resend-uncertain")
            )


def _print_copies(copies: CopyReport | None) -> None:
    """The copies in Sent (mailbox.save_sent), when there was anything to copy or retry."""
    if copies is None:
        return
    if copies.provider_files and not copies.saved and not copies.failed:
        console.print(_("Sent: the provider files sent mail itself; no copy appended"))
        return
    if not copies.saved and not copies.failed:
        return
    folder = escape(copies.folder or "Sent")
    line = ngettext("{n} copy saved in {folder}", "{n} copies saved in {folder}", copies.saved)
    line = line.format(n=number(copies.saved), folder=folder)
    if copies.failed:
        line += (
            ", [yellow]"
            + plural(copies.failed, "{n} not saved", "{n} not saved")
            + "[/] "
            + _("({errors}): the next send or inbox saves them; nothing is sent again").format(
                errors=escape(listed(copies.errors))
            )
        )
    console.print(line)


# The delivery states as a person reads them (`--json` and the log keep the names themselves).
_STATES: dict[str, Callable[[int], str]] = {
    "pending": lambda n: plural(n, "{n} pending", "{n} pending"),
    "sending": lambda n: plural(n, "{n} sending", "{n} sending"),
    "sent": lambda n: plural(n, "{n} sent", "{n} sent"),
    "deferred": lambda n: plural(n, "{n} deferred", "{n} deferred"),
    "failed": lambda n: plural(n, "{n} failed", "{n} failed"),
    "uncertain": lambda n: plural(n, "{n} uncertain", "{n} uncertain"),
    "suppressed": lambda n: plural(n, "{n} suppressed", "{n} suppressed"),
    "bounced": lambda n: plural(n, "{n} bounced", "{n} bounced"),
    "delivered": lambda n: plural(n, "{n} delivered", "{n} delivered"),
    "held": lambda n: plural(n, "{n} held", "{n} held"),
}


def state_count(state: str, n: int) -> str:
    """`3 sent`, `1 échec`: a count of a delivery state, its word agreeing with the number."""
    count = _STATES.get(state)
    return count(n) if count is not None else f"{number(n)} {state}"


def state_name(state: str) -> str:
    """The name of a delivery state in the current language (a table's heading)."""
    from campaign.ledger import state_name as ledger_state_name  # sqlite3: not at start-up

    if state == "not sent yet":
        return _("not sent yet")
    return ledger_state_name(state)


def print_status(report: StatusReport) -> None:
    """`campaign status`: counts, the spreadsheet rows not sent yet, grouped replies, timing."""
    from rich.table import Table

    name = f"[bold]{escape(report.campaign)}[/]"
    if not report.started:
        console.print(
            labelled(name, _("nothing sent yet (no {path})").format(path=escape(str(report.log))))
        )
    else:
        console.print(labelled(name, _("delivery log {path}").format(path=escape(str(report.log)))))
        # One row per state met: nine states side by side do not fit 80 columns.
        table = Table(header_style="bold")
        table.add_column(_("state"))
        table.add_column(_("recipients"), justify="right")
        for state, n in report.counts.items():
            if n:
                table.add_row(state_name(state), number(n))
        console.print(table)
    console.print(_("approval: {state}").format(state=escape(report.approval)))
    waiting = len(report.not_sent_yet)
    if report.not_sent_yet and report.started:
        if report.reached_elsewhere:  # one of them may be someone already written to
            said = _(
                "in the spreadsheet, not yet in the log{rows}; campaign send sends them, unless "
                "one is someone the letter already reached at another address (campaign check "
                "names them)"
            )
        else:
            said = _("in the spreadsheet, not yet in the log{rows}; campaign send sends them")
        console.print(
            labelled(
                "[yellow]" + plural(waiting, "{n} not sent yet", "{n} not sent yet") + "[/]",
                said.format(rows=_rows(report.not_sent_yet)),
            )
        )
    elif report.not_sent_yet:
        console.print(
            plural(waiting, "{n} recipient ready to send", "{n} recipients ready to send")
        )
    if report.not_in_sheet:
        shown = escape(", ".join(report.not_in_sheet[:_ROWS_SHOWN]))
        if len(report.not_in_sheet) > _ROWS_SHOWN:
            more = len(report.not_in_sheet) - _ROWS_SHOWN
            shown = ngettext("{shown} and {n} more", "{shown} and {n} more", more).format(
                shown=shown, n=number(more)
            )
        console.print(
            ngettext(
                "{n} entry of the log no longer in the spreadsheet (kept, never sent again): {who}",
                "{n} entries of the log no longer in the spreadsheet (kept, never sent again): {who}",
                len(report.not_in_sheet),
            ).format(n=number(len(report.not_in_sheet)), who=shown)
        )
    _print_held(report.held, report.campaign)
    groups = report.groups
    if groups:
        problems = Table(header_style="bold", title=_("needing attention"))
        for column in (_("recipients"), _("state"), _("SMTP reply"), _("rows")):
            problems.add_column(column, overflow="fold")
        for group in groups:
            reply = " ".join(str(p) for p in (group.code, group.reply) if p)
            who = group.emails[0] if group.count == 1 else number(group.count)
            rows = _rows(group.rows).strip(" ()")
            problems.add_row(escape(who), state_name(group.state.value), escape(reply), rows)
        console.print(problems)
        _print_failed_causes(
            ((g.state.value, g.reply, g.count) for g in groups),
            report.sender_domain,
            report.campaign,
        )
    if report.replied or report.auto_replied or report.delayed or report.bounces:
        console.print(
            _("mailbox: {replied}, {auto_replied}, {bounced}, {delayed}").format(
                replied=plural(report.replied, "{n} replied", "{n} replied"),
                auto_replied=plural(report.auto_replied, "{n} auto-replied", "{n} auto-replied"),
                bounced=state_count("bounced", len(report.bounces)),
                delayed=plural(report.delayed, "{n} delay notice", "{n} delay notices"),
            )
        )
    if report.unsubscribed:
        console.print(
            plural(
                report.unsubscribed,
                "{n} recipient asked to unsubscribe: on the suppression list, never written to again",
                "{n} recipients asked to unsubscribe: on the suppression list, never written to again",
            )
        )
    _print_bounces(report.bounces, report.campaign, report.sender_domain)
    for email, what in report.searched.items():
        console.print("[yellow]" + _("uncertain") + "[/] " + labelled(escape(email), escape(what)))
    if report.copies_not_saved:
        console.print(
            labelled(
                "[yellow]Sent[/]",
                ngettext(
                    "{n} copy not saved yet (the next send or inbox saves it)",
                    "{n} copies not saved yet (the next send or inbox saves them)",
                    report.copies_not_saved,
                ).format(n=number(report.copies_not_saved)),
            )
        )
    if report.runs:
        runs = plural(report.runs, "{n} run", "{n} runs")
        seconds = number(report.run_seconds, decimals=1)
        last_day = number(report.sent_last_24h)
        rate = number(report.per_minute or 0)
        paused = number(report.paused_seconds, decimals=1)
        if report.paused_seconds < 0.05 and report.per_minute is None:  # under a minute: no rate
            line = _("{runs}, {seconds} s sending; {last_day} in the last 24 h")
        elif report.paused_seconds < 0.05:
            line = _(
                "{runs}, {seconds} s sending, {rate} messages/min; {last_day} in the last 24 h"
            )
        elif report.per_minute is None:
            line = _(
                "{runs}, {seconds} s sending and {paused} s waiting for the server; "
                "{last_day} in the last 24 h"
            )
        else:
            line = _(
                "{runs}, {seconds} s sending and {paused} s waiting for the server, "
                "{rate} messages/min; {last_day} in the last 24 h"
            )
        line = line.format(runs=runs, seconds=seconds, paused=paused, rate=rate, last_day=last_day)
        console.print(line)
    if report.test_sends:
        console.print(
            plural(
                report.test_sends,
                "{n} test message (recorded apart)",
                "{n} test messages (recorded apart)",
            )
        )


class _Bounced(Protocol):
    @property
    def row(self) -> int | None: ...
    @property
    def email(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def cause(self) -> Cause: ...


# Why the recipients' servers refused a campaign's message when the fault is the campaign's
# (campaign.causes), and what the organiser does about it before sending to them again.
_CAMPAIGN_CAUSES = {
    Cause.AUTHENTICATION: (
        N_(
            "the mail servers found that mail from {domain} failed its authentication (SPF, DKIM, DMARC)"
        ),
        N_(
            "publish the SPF, DKIM and DMARC records your provider documents for {domain}, "
            "or send from an address of the provider's own domain"
        ),
    ),
    Cause.SERVER: (
        N_(
            "the mail servers refused the sending server (a block list, its reputation, its reverse DNS)"
        ),
        N_(
            "ask your provider about its server, quoting the reply, or send through another provider"
        ),
    ),
    Cause.CONTENT: (
        N_("the mail servers refused the message itself (taken for spam, its content or its size)"),
        N_("read the replies and change what they name; a changed message needs a new approval"),
    ),
}


def _print_bounces(bounces: Sequence[_Bounced], campaign: str, domain: str) -> None:
    """The bounces: those of the addresses (on the suppression list now), then those that are
    the campaign's fault, with why and what to do before `send --retry-bounced`."""
    from rich.table import Table

    theirs = [b for b in bounces if b.cause is Cause.ADDRESS]
    ours = [b for b in bounces if b.cause is not Cause.ADDRESS]
    if theirs:
        table = Table(
            header_style="bold", title=_("bounced: the address (added to the suppression list)")
        )
        table.add_column(_("row"))
        table.add_column(_("recipient"), no_wrap=True)  # an address is never cut in two
        table.add_column(_("reason"), overflow="fold")
        for item in theirs:
            table.add_row(str(item.row or ""), escape(item.email), escape(item.reason))
        console.print(table)
    if ours:
        # The same refusal for hundreds of directors is one line: who, the reply, the rows.
        groups: dict[str, list[_Bounced]] = {}
        for item in ours:
            reply = without_addresses(item.reason)
            groups.setdefault(reply, []).append(item)
        table = Table(
            header_style="bold",
            title=_(
                "bounced: the campaign's fault, not the address's (not on the suppression list)"
            ),
        )
        for column in (_("recipients"), _("reason"), _("rows")):
            table.add_column(column, overflow="fold")
        for reply, items in sorted(groups.items(), key=lambda g: -len(g[1])):
            who = items[0].email if len(items) == 1 else number(len(items))
            rows = _rows(sorted(i.row for i in items if i.row is not None)).strip(" ()")
            table.add_row(escape(who), escape(reply), rows)
        console.print(table)
    _print_causes(
        Counter(b.cause for b in ours), domain, f"campaign send {campaign} --retry-bounced"
    )


def _print_held(held: Sequence[Held], campaign: str) -> None:
    """The recipients held because the letter already reached the same person at an earlier
    address, each with both addresses, and the two ways out."""
    if not held:
        return
    from campaign.ledger import held_advice

    said = ngettext(
        "{n} recipient not sent: the letter already reached the same person at another address",
        "{n} recipients not sent: the letter already reached the same person at another address",
        len(held),
    ).format(n=number(len(held)))
    console.print(labelled("[yellow]" + state_name("held") + "[/]", said))
    for one in held[:_ROWS_SHOWN]:
        where = _("row {row}").format(row=one.row) if one.row is not None else ""
        went = _("already sent to {earlier}").format(earlier=one.earlier)
        if one.sent_at is not None:
            went = _("already sent to {earlier} on {when}").format(
                earlier=one.earlier,
                when=time.strftime("%Y-%m-%d %H:%M", time.localtime(one.sent_at)),
            )
        console.print("  " + labelled(escape(f"{where} {one.address}".strip()), escape(went)))
    if len(held) > _ROWS_SHOWN:
        console.print("  " + _("and {n} more").format(n=number(len(held) - _ROWS_SHOWN)))
    console.print(
        "  "
        + labelled(
            _("what to do"),
            escape(held_advice(campaign)),
        )
    )


def _print_failed_causes(
    replies: Iterable[tuple[str, str, int]], domain: str, campaign: str
) -> None:
    """The `failed` among (state, reply, count) whose reply is the campaign's fault, said once
    per cause, with `--retry-failed` to send to them again."""
    causes: Counter[Cause] = Counter()
    for state, reply, count in replies:
        if state == "failed":
            causes[cause_of(reply)] += count
    _print_causes(causes, domain, f"campaign send {campaign} --retry-failed")


def _print_causes(counts: Counter[Cause], domain: str, command: str) -> None:
    """Recipients refused for the campaign's sake (campaign.causes), per cause: why, what to
    put right, and the command that then sends to them again."""
    for cause, (why, what) in _CAMPAIGN_CAUSES.items():
        count = counts.get(cause, 0)
        if not count:
            continue
        said = ngettext(
            "{n} recipient did not get the letter because {why}",
            "{n} recipients did not get the letter because {why}",
            count,
        ).format(n=number(count), why=_(why).format(domain=domain or "sender.email"))
        console.print(labelled("[red]" + _("the campaign's fault") + "[/]", escape(said)))
        console.print("  " + labelled(_("what to do"), escape(_(what).format(domain=domain))))
    if any(counts.get(cause) for cause in _CAMPAIGN_CAUSES):
        console.print(
            "  "
            + _("then {command} sends to them again (the same message, approved)").format(
                command=escape(command)
            )
        )


def print_inbox(report: InboxReport) -> None:
    """`campaign inbox`: what was read, the counts per kind, the bounces with their reasons."""

    folders = ", ".join(report.folders)
    read = ngettext(
        "read {n} new message in {folders} ({mailbox}); {whole} downloaded whole (reports), "
        "the others by their headers only",
        "read {n} new messages in {folders} ({mailbox}); {whole} downloaded whole (reports), "
        "the others by their headers only",
        report.read,
    ).format(
        n=number(report.read),
        folders=escape(folders),
        mailbox=report.mailbox,
        whole=number(report.fetched),
    )
    console.print(labelled(f"[bold]{escape(report.campaign)}[/]", read))
    counts = report.as_dict()
    console.print(
        _("{bounced}, {delayed}, {delivered}, {replied}, {auto_replied}; {unmatched}").format(
            bounced=state_count("bounced", counts["bounced"]),
            delayed=plural(counts["delayed"], "{n} delay notice", "{n} delay notices"),
            delivered=plural(counts["delivered"], "{n} delivery report", "{n} delivery reports"),
            replied=plural(counts["replied"], "{n} replied", "{n} replied"),
            auto_replied=plural(counts["auto_replied"], "{n} auto-replied", "{n} auto-replied"),
            unmatched=plural(
                report.unmatched,
                "{n} about no recipient (left alone)",
                "{n} about no recipient (left alone)",
            ),
        )
    )
    if report.earlier:
        console.print(
            plural(
                report.earlier,
                "{n} failure report about an earlier send of a message sent again since "
                "(left alone)",
                "{n} failure reports about an earlier send of a message sent again since "
                "(left alone)",
            )
        )
    _print_bounces(report.bounces, report.campaign, report.sender_domain)
    if report.unsubscribed:
        console.print(
            labelled(
                "[yellow]"
                + plural(
                    len(report.unsubscribed),
                    "{n} asked to unsubscribe",
                    "{n} asked to unsubscribe",
                )
                + "[/]",
                escape(", ".join(report.unsubscribed)),
            )
        )
    if report.unheld:
        console.print(
            labelled(
                "[yellow]" + state_name("held") + "[/]",
                plural(
                    report.unheld,
                    "{n} recipient held no longer: the letter to their earlier address bounced, "
                    "so the next send sends it to the new one",
                    "{n} recipients held no longer: the letter to their earlier address bounced, "
                    "so the next send sends it to the new one",
                ),
            )
        )
    if report.suppressed:
        console.print(
            _("added to the suppression list {path}: {emails}").format(
                path=escape(report.suppression_file), emails=escape(", ".join(report.suppressed))
            )
        )
    for email, evidence in report.resolved.items():
        console.print(labelled(_("uncertain → sent"), labelled(escape(email), escape(evidence))))
    for email, searched in report.uncertain.items():
        console.print(
            "[yellow]" + _("still uncertain") + "[/] " + labelled(escape(email), escape(searched))
        )
    _print_copies(report.copies)


RATE_EVERY = 0.25  # seconds between two readings of the sending rate shown beside the bar
WAIT_SAID_EVERY = 60.0  # seconds between two lines about the same wait, where there is no bar


WAIT_SAID_AGAIN = 10.0  # seconds, at least, between the lines of the waits that follow a wait


def _waiting(event: Any) -> str:
    """`waiting 30 s (server unreachable): connection refused by …`, as the bar and a log say it.

    Once the outage has lasted a while, how long is said too: `waiting 30 s (server unreachable
    for 61 s)`, so that a log read later shows the pause the summary will count.
    """
    seconds = number(event.seconds)
    if event.since >= 1:
        line = _("waiting {seconds} s ({why} for {since} s)").format(
            seconds=seconds, why=event.text, since=number(event.since)
        )
    else:
        line = _("waiting {seconds} s ({why})").format(seconds=seconds, why=event.text)
    return labelled(line, event.detail) if event.detail else line


class SendProgress:
    """A progress bar with rate and estimated finish, and the countdown of waits."""

    def __init__(self, *, disable: bool) -> None:
        # Not on a terminal (a pipe, a log file): no bar, which would leave an empty line there;
        # and then no rich Progress at all (its import, and its updates per message). Disabled
        # (--quiet, --json): not even the console, whose import and set-up take ~15 ms.
        self.console = None if disable else err_console.rich()
        self.done = 0
        self._rate = ""
        self._rate_at = 0.0
        self.bar: Any = None
        self._wait_said: tuple[str, float] | None = None  # why, when: the last wait said
        self._wait_left: float | None = None  # the seconds the last wait event had left
        if self.console is None or not self.console.is_terminal:
            return
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
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task(_("sending"), total=None, rate="")

    def __enter__(self) -> SendProgress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def __call__(self, event: Any) -> None:
        kind = str(event.kind)
        if kind == "start" and event.text and self.console is not None:
            # The forecast ("711 to send: about 2 days (…)"), with or without a bar.
            self.console.print(escape(event.text))
        if self.bar is None:
            self.done += kind == "done"
            if kind == "done":
                self._wait_said = self._wait_left = None
            elif kind == "wait" and (event.server or event.seconds >= WAIT_SAID_EVERY):
                self._say_wait(event)  # not the throttle's usual pauses
        elif kind == "start":
            self.bar.update(self.task, total=event.total)
        elif kind == "done":
            self.done += 1
            now = time.monotonic()
            if now - self._rate_at >= RATE_EVERY:  # rich's speed scans all its samples
                speed = self.bar.tasks[0].speed
                self._rate = _("{n}/min").format(n=number(speed * 60)) if speed else ""
                self._rate_at = now
            self.bar.update(
                self.task, completed=self.done, description=_("sending"), rate=self._rate
            )
        elif kind == "wait":
            self.bar.update(self.task, description=escape(_waiting(event)))
        elif kind == "stopping":
            self.bar.update(self.task, description=_("stopping: finishing messages in flight"))

    def _say_wait(self, event: Any) -> None:
        """Not on a terminal (a pipe, a log): a line when a wait begins, then one a minute.

        A new wait for the same reason (the server still down after a probe: the backoff grew)
        is said too, at most every WAIT_SAID_AGAIN seconds: "waiting 1 s" then a minute's
        silence read as a hung run.
        """
        now = time.monotonic()
        said = self._wait_said
        left = self._wait_left
        self._wait_left = event.seconds
        if said is not None and said[0] == event.text:
            again = left is not None and event.seconds > left + 0.5  # a longer wait began
            if now - said[1] < (WAIT_SAID_AGAIN if again else WAIT_SAID_EVERY):
                return
        self._wait_said = (event.text, now)
        if self.console is not None:
            self.console.print(escape(_waiting(event)))

"""The delivery log + the current spreadsheet → a `StatusReport`; the log → an Excel-safe export.

`read_status` counts the log's states, groups the recipients that need attention by the reply
that put them there (forty identical "connection refused" make one line, with their rows), and
compares the log with the spreadsheet as it is now: ready rows not yet in the log are "not sent
yet", log entries whose address left the spreadsheet are listed apart.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from campaign.causes import Cause, cause_of, without_addresses
from campaign.errors import InputError, Place
from campaign.i18n import _, csv_delimiter, pgettext
from campaign.ledger import REACHED, Delivery, Held, Ledger, State, state_name
from campaign.outbox import Layout, check_output_path

if TYPE_CHECKING:
    from campaign.window import Forecast


class Ready(Protocol):
    """A ready recipient as the status compares it with the log: a `Recipient`, or its key as
    the last approval recorded it (`campaign.recorded`)."""

    @property
    def row(self) -> int: ...

    @property
    def email(self) -> str: ...


DAY = 86400.0
# Messages a minute are given over at least a minute of sending: 40 messages in 0.1 s are not
# "17,492 a minute" (the throttle allowed 3,000).
RATE_OVER = 60.0
# States that need the organiser: to retry, to decide, or (sending) a run in progress.
_ATTENTION = (State.FAILED, State.UNCERTAIN, State.DEFERRED, State.SENDING)


@dataclass(frozen=True)
class Attention:
    """One recipient that needs attention, with the server's last reply."""

    row: int | None
    email: str
    state: State
    attempts: int
    code: int | None
    reply: str | None
    next_attempt_at: float | None


@dataclass(frozen=True)
class ReplyGroup:
    """Recipients in the same state for the same reason: one line of the status."""

    state: State
    code: int | None
    reply: str  # the reply with the addresses in it replaced by <address>
    rows: list[int]
    emails: list[str]

    @property
    def count(self) -> int:
        return len(self.emails)


@dataclass(frozen=True)
class BouncedRecipient:
    """A recipient whose message bounced (campaign inbox), with the remote server's reason."""

    row: int | None
    email: str
    reason: str
    at: float | None
    cause: Cause = Cause.ADDRESS  # the address's, or the campaign's (campaign.causes)


@dataclass
class StatusReport:
    """Where a campaign's delivery stands."""

    campaign: str
    log: Path
    approval: str
    counts: dict[str, int] = field(default_factory=dict)
    attention: list[Attention] = field(default_factory=list)
    not_sent_yet: list[int] = field(default_factory=list)  # spreadsheet rows, ready, not in log
    not_in_sheet: list[str] = field(default_factory=list)  # log addresses the sheet no longer has
    held: list[Held] = field(default_factory=list)  # in the sheet, already sent elsewhere
    # The letter reached someone at an address the sheet no longer has: a row not sent yet may
    # be that person at a new address, which send holds (`campaign check` names such rows).
    reached_elsewhere: bool = False
    runs: int = 0
    run_seconds: float = 0.0  # sending, that is without `paused_seconds`
    paused_seconds: float = 0.0  # waiting for an unreachable server to come back
    per_minute: float | None = None  # over runs of RATE_OVER seconds or more in all
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    sent_last_24h: int = 0
    test_sends: int = 0
    warnings: list[str] = field(default_factory=list)
    forecast: Forecast | None = None  # when what is left should be sent (`campaign.window`)
    # What the mailbox said (campaign inbox): facts beside the states bounced and delivered.
    replied: int = 0
    auto_replied: int = 0
    delayed: int = 0
    unsubscribed: int = 0  # asked to unsubscribe (List-Unsubscribe), on the suppression list
    bounces: list[BouncedRecipient] = field(default_factory=list)
    sender_domain: str = ""  # named in the advice about bounces that are the campaign's
    searched: dict[str, str] = field(default_factory=dict)  # uncertain: what inbox searched
    copies_not_saved: int = 0  # for Sent: pending, failed or only spooled (saved by the next send)

    @property
    def started(self) -> bool:
        """Whether the log exists (a send, or a test send, has run)."""
        return bool(self.counts) or self.test_sends > 0

    @property
    def groups(self) -> list[ReplyGroup]:
        """The recipients needing attention, grouped by state and reply, largest group first."""
        grouped: dict[tuple[State, int | None, str], ReplyGroup] = {}
        for item in self.attention:
            reply = without_addresses(item.reply or "")
            key = (item.state, item.code, reply)
            group = grouped.setdefault(key, ReplyGroup(item.state, item.code, reply, [], []))
            group.emails.append(item.email)
            if item.row is not None:
                group.rows.append(item.row)
        return sorted(grouped.values(), key=lambda g: (-g.count, g.state, g.reply))

    @property
    def counts_and_facts(self) -> dict[str, int]:
        """The count of each state, and of the mailbox's facts beside them (replies and requests to
        unsubscribe), as `--json` and the HTML report give them."""
        facts = {
            "replied": self.replied,
            "auto_replied": self.auto_replied,
            "unsubscribed": self.unsubscribed,
        }
        return {**self.counts, **facts}

    @property
    def exit_code(self) -> int:
        """1 when a recipient failed, is uncertain or held (the organiser must act), else 0."""
        return 1 if self.counts.get("failed") or self.counts.get("uncertain") or self.held else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "log": str(self.log),
            "approval": self.approval,
            "counts": self.counts_and_facts,
            "delayed": self.delayed,
            "bounces": [{**asdict(b), "cause": b.cause.value} for b in self.bounces],
            "uncertain_searched": self.searched,
            "sent_copies_not_saved": self.copies_not_saved,
            "not_sent_yet": self.not_sent_yet,
            "not_in_sheet": self.not_in_sheet,
            "held": [asdict(held) for held in self.held],
            "forecast": self.forecast.as_dict() if self.forecast else None,
            "attention": [{**asdict(item), "state": item.state.value} for item in self.attention],
            "groups": [
                {
                    "state": g.state.value,
                    "code": g.code,
                    "reply": g.reply,
                    "count": g.count,
                    "rows": g.rows,
                }
                for g in self.groups
            ],
            "runs": self.runs,
            "run_seconds": round(self.run_seconds, 3),
            "paused_seconds": round(self.paused_seconds, 3),
            "per_minute": self.per_minute,
            "first_sent_at": self.first_sent_at,
            "last_sent_at": self.last_sent_at,
            "sent_last_24h": self.sent_last_24h,
            "test_sends": self.test_sends,
            "warnings": self.warnings,
            "exit_code": self.exit_code,
        }


def read_status(
    report: StatusReport, log: Ledger, ready: Sequence[Ready], now: float, layout: Layout
) -> StatusReport:
    """Fill `report` from the log, and compare it with the spreadsheet's ready rows."""
    deliveries = log.deliveries()
    report.counts = log.counts()
    report.attention = [
        Attention(
            d.row, d.address, d.state, d.attempts, d.last_code, d.last_text, d.next_attempt_at
        )
        for d in deliveries
        if d.state in _ATTENTION
    ]
    in_log = {d.email for d in deliveries}
    report.not_sent_yet = sorted(r.row for r in ready if r.email.lower() not in in_log)
    in_sheet = {r.email.lower() for r in ready}
    # An address that bounced for its own sake, or whose owner asked to unsubscribe, is on the
    # suppression list (campaign inbox put it there), so no longer among the ready rows: it has
    # not left the spreadsheet, and the bounces (or the unsubscribe line) say it already.
    report.not_in_sheet = [
        d.address
        for d in deliveries
        if d.email not in in_sheet
        and d.state not in (State.SUPPRESSED, State.BOUNCED)
        and d.unsubscribed_at is None
    ]
    report.held = log.held(in_sheet)
    report.reached_elsewhere = any(
        d.email not in in_sheet and d.state in REACHED for d in deliveries
    )
    runs = log.run_details()
    report.runs = len(runs)
    # A run that waited for a server down is not sending meanwhile: the rate leaves it out.
    report.paused_seconds = sum(float((run["pace"] or {}).get("paused", 0.0)) for run in runs)
    spent = sum((run["ended_at"] or run["started_at"]) - run["started_at"] for run in runs)
    report.run_seconds = max(0.0, spent - report.paused_seconds)
    run_sent = sum(run["sent"] for run in runs)
    if report.run_seconds >= RATE_OVER:
        report.per_minute = round(run_sent / report.run_seconds * 60, 1)
    times = [d.sent_at for d in deliveries if d.state is State.SENT and d.sent_at is not None]
    report.first_sent_at = min(times, default=None)
    report.last_sent_at = max(times, default=None)
    report.sent_last_24h = len(log.sent_times(now - DAY))
    report.test_sends = len(log.test_sends())
    facts = log.facts()
    report.replied, report.auto_replied = facts["replied"], facts["auto_replied"]
    report.delayed, report.unsubscribed = facts["delayed"], facts["unsubscribed"]
    report.bounces = [
        BouncedRecipient(
            d.row, d.address, d.bounce_reason or "", d.bounced_at, cause_of(d.bounce_reason or "")
        )
        for d in deliveries
        if d.state is State.BOUNCED
    ]
    report.copies_not_saved = len(log.copies(["pending", "failed"])) + len(
        log.unrecorded_copies(layout)
    )
    report.searched = {
        d.address: d.evidence for d in deliveries if d.state is State.UNCERTAIN and d.evidence
    }
    return report


# Export ------------------------------------------------------------------------------------

# `person` is a digest that says nothing to a reader; `phase` is the run's own.
EXPORT_COLUMNS = [f.name for f in fields(Delivery) if f.name not in {"phase", "person"}]
_TIME_COLUMNS = {
    "queued_at",
    "first_attempt_at",
    "last_attempt_at",
    "sent_at",
    "next_attempt_at",
    "bounced_at",
    "delivered_at",
    "delayed_at",
    "replied_at",
    "auto_replied_at",
    "unsubscribed_at",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_headers() -> list[str]:
    """The export's headers in the language of the run; in English, the log's own field names."""
    headers = {
        "email": pgettext("export column", "email"),
        "address": pgettext("export column", "address"),
        "row": pgettext("export column", "row"),
        "name": pgettext("export column", "name"),
        "state": pgettext("export column", "state"),
        "attempts": pgettext("export column", "attempts"),
        "last_code": pgettext("export column", "last_code"),
        "last_text": pgettext("export column", "last_text"),
        "message_id": pgettext("export column", "message_id"),
        "queued_at": pgettext("export column", "queued_at"),
        "first_attempt_at": pgettext("export column", "first_attempt_at"),
        "last_attempt_at": pgettext("export column", "last_attempt_at"),
        "sent_at": pgettext("export column", "sent_at"),
        "next_attempt_at": pgettext("export column", "next_attempt_at"),
        "bounced_at": pgettext("export column", "bounced_at"),
        "bounce_reason": pgettext("export column", "bounce_reason"),
        "delivered_at": pgettext("export column", "delivered_at"),
        "delayed_at": pgettext("export column", "delayed_at"),
        "replied_at": pgettext("export column", "replied_at"),
        "auto_replied_at": pgettext("export column", "auto_replied_at"),
        "evidence": pgettext("export column", "evidence"),
        "readdressed_from": pgettext("export column", "readdressed_from"),
        "unsubscribed_at": pgettext("export column", "unsubscribed_at"),
    }
    return [headers[column] for column in EXPORT_COLUMNS]


def neutralise(value: object) -> object:
    """Make a cell safe to open in a spreadsheet: text that could start a formula is quoted."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def export_deliveries(deliveries: Sequence[Delivery], path: Path) -> Path:
    """Write the log to a .csv or .xlsx file that is safe to open in Excel.

    Headers and states in the language of the run; a .csv separated as that language's Excel
    expects (`;` in French, where `,` is the decimal mark).
    """
    check_output_path(path, (".csv", ".xlsx"), option="--export", example="envoi.xlsx")
    suffix = path.suffix.lower()
    rows: list[list[object]] = []
    for delivery in deliveries:
        record = asdict(delivery)
        row: list[object] = []
        for column in EXPORT_COLUMNS:
            value = record[column]
            if column in _TIME_COLUMNS and value is not None:
                # A date cell in .xlsx (openpyxl gives a datetime a date format: Excel sorts and
                # filters it as a date); in .csv the local time written out, which sorts as it reads.
                moment = datetime.fromtimestamp(value).replace(microsecond=0)
                value = moment if suffix == ".xlsx" else moment.strftime("%Y-%m-%d %H:%M:%S")
            elif column == "state":
                value = state_name(str(value))
            elif isinstance(value, StrEnum):
                value = value.value
            row.append(neutralise(value))
        rows.append(row)
    try:
        if suffix == ".csv":
            with path.open("w", encoding="utf-8-sig", newline="") as handle:
                writer = csv.writer(handle, delimiter=csv_delimiter())
                writer.writerow(export_headers())
                writer.writerows(rows)
        else:
            from openpyxl import Workbook

            book = Workbook()
            sheet = book.active
            assert sheet is not None
            sheet.title = "delivery"
            sheet.append(export_headers())
            for row in rows:
                sheet.append(row)
            book.save(path)
        path.chmod(0o600)
    except OSError as err:
        raise InputError(
            _("cannot write the export: {reason}").format(reason=err.strerror),
            place=Place(file=str(path)),
            hint=_("choose a folder you can write to"),
        ) from None
    return path

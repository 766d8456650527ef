"""The sender's mailbox + a campaign's delivery log → what happened after the 250, recorded.

`scan_inbox` reads the inbox folder from where the last scan stopped (`campaign.mailbox`), triages
each new message by its headers, reads whole only the possible bounces, classifies them
(`campaign.bounces`) and matches each to a recipient: by the DSN's ENVID first, then by the
campaign Message-IDs it names, then by the failed address a non-standard bounce gives or the
sender of an answer. It then records, in one transaction with the new scan position:

- a bounce → `bounced` with the remote diagnostic; when the diagnostic is about the address
  (`campaign.causes`), the address is appended to the suppression list with the date,
  the campaign and the reason; when it is about the campaign (the sender's SPF, DKIM or DMARC,
  the sending server's reputation, the message's content or size), it is not: the address was
  fine, and `send --retry-bounced` sends to it again once the campaign is put right;
- a delay notice → `delayed_at`; a delivery report → `delivered`;
- an auto-reply → `auto_replied_at`; a reply → `replied_at` (the fact and its date, never the text);
- a request to unsubscribe (a message to the campaign's `mailto:` List-Unsubscribe) →
  `unsubscribed_at`, and the address on the suppression list.

Each `uncertain` recipient is looked for in the Sent folder as well: found (or named by any report
above), it becomes `sent` with the evidence; not found, it stays `uncertain` and the log says what
was searched. Messages that match nothing are left as they are: the mailbox is only read.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign import ledger
from campaign.bounces import (
    Kind,
    Verdict,
    asks_to_unsubscribe,
    classify,
    parse_headers,
    parse_message,
    triage,
    unsubscribe_target,
    worth_reading,
)
from campaign.bounces import sender_of as _sender_of
from campaign.causes import Cause, cause_of
from campaign.dsn import envelope_id, xtext_decode
from campaign.i18n import _
from campaign.ledger import Delivery, Ledger, State, Write
from campaign.mailbox import Arrival, Box, open_mailbox
from campaign.outbox import run_lock
from campaign.recipients import read_suppression
from campaign.sentcopy import CopyReport, retry_copies
from campaign.settings import Campaign

_SENT_STATES = {State.SENT, State.UNCERTAIN, State.BOUNCED, State.DELIVERED}
# A failure report about a message that reached the reporting server this long before the
# message's last send is about an earlier send of it (the clocks of two machines may differ).
EARLIER_SEND_SLACK = 600.0  # seconds


@dataclass(frozen=True)
class Bounce:
    email: str
    reason: str
    at: float
    cause: Cause = Cause.ADDRESS
    row: int | None = None  # the spreadsheet row, as the organiser finds it


@dataclass
class InboxReport:
    """What one scan read and recorded."""

    campaign: str
    mailbox: str  # "imap" or "maildir"
    folders: list[str] = field(default_factory=list)
    read: int = 0  # new messages listed (headers)
    fetched: int = 0  # of which read whole
    counts: dict[str, int] = field(
        default_factory=lambda: {k.value: 0 for k in Kind if k is not Kind.OTHER}
    )
    unmatched: int = 0
    earlier: int = 0  # failure reports about an earlier send of a message sent again since
    bounces: list[Bounce] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)  # added to the suppression list
    unsubscribed: list[str] = field(default_factory=list)  # asked to (List-Unsubscribe mailto:)
    resolved: dict[str, str] = field(default_factory=dict)  # uncertain → sent: the evidence
    uncertain: dict[str, str] = field(default_factory=dict)  # still uncertain: what was searched
    suppression_file: str = ""
    sender_domain: str = ""  # named in the advice about bounces that are the campaign's
    copies: CopyReport | None = None  # copies for Sent that earlier runs left unsaved, retried
    unheld: int = 0  # held rows whose earlier address bounced: the next send sends them
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "mailbox": self.mailbox,
            "folders": self.folders,
            "read": self.read,
            "fetched": self.fetched,
            "bounced": self.counts["bounce"],
            "delayed": self.counts["delayed"],
            "delivered": self.counts["delivered"],
            "replied": self.counts["reply"],
            "auto_replied": self.counts["auto_reply"],
            "unmatched": self.unmatched,
            "about_an_earlier_send": self.earlier,
            "bounces": [
                {
                    "email": b.email,
                    "row": b.row,
                    "reason": b.reason,
                    "at": b.at,
                    "cause": b.cause.value,
                }
                for b in self.bounces
            ],
            "unsubscribed": self.unsubscribed,
            "added_to_suppression": self.suppressed,
            "suppression_file": self.suppression_file,
            "resolved_uncertain": self.resolved,
            "still_uncertain": self.uncertain,
            "sent_copies": self.copies.as_dict() if self.copies else None,
            "unheld": self.unheld,
            "seconds": round(self.seconds, 3),
        }


class _Index:
    """How a message of the mailbox finds its recipient in the log."""

    def __init__(self, deliveries: list[Delivery]) -> None:
        sent = [d for d in deliveries if d.state in _SENT_STATES]
        self.by_id = {d.message_id.strip().strip("<>"): d.email for d in sent}
        self.by_envid = {envelope_id(d.message_id): d.email for d in sent}
        self.by_address = {d.email: d.email for d in sent}
        self.rows = {d.email: d.row for d in sent}
        self.sent_at = {d.email: d.sent_at for d in sent}

    def match(self, verdict: Verdict) -> str | None:
        for envid in map(xtext_decode, verdict.envids):  # written as sent: in xtext
            if envid in self.by_envid:
                return self.by_envid[envid]
        for mid in verdict.message_ids:
            if mid in self.by_id:
                return self.by_id[mid]
        if verdict.kind in (Kind.BOUNCE, Kind.DELAYED, Kind.DELIVERED):
            # The failed address a report names: only when it quotes no campaign message at
            # all (a report about another message to the same address is not ours).
            if not verdict.message_ids and not verdict.envids:
                for report in verdict.reports:
                    if report.recipient in self.by_address:
                        return self.by_address[report.recipient]
            return None
        return self.by_address.get(verdict.sender)


def scan_inbox(
    campaign: Campaign,
    *,
    box: Box | None = None,
    clock: Callable[[], float] = time.time,
) -> InboxReport:
    """Read what arrived since the last scan, match it to recipients and record it."""
    started = time.perf_counter()
    settings = campaign.settings
    opened = box or open_mailbox(settings)
    try:
        with (
            run_lock(campaign.layout, campaign=campaign.name, action="scanned (inbox)"),
            Ledger.for_campaign(campaign.layout) as log,
        ):
            report = InboxReport(campaign.name, opened.kind)
            report.sender_domain = settings.sender.domain
            writes = _read_inbox(campaign, opened, log, report, clock)
            writes += _reconcile(opened, log, report)
            log.apply(writes)
            if report.bounces:  # a letter that bounced reached nobody: a new address may go
                report.unheld = log.release_unreached()
            if report.unsubscribed or any(b.cause is Cause.ADDRESS for b in report.bounces):
                _suppress(campaign, report, clock())
            if log.copies(["pending", "failed"]):
                report.copies = retry_copies(settings, campaign.layout, log, opened)
    finally:
        if box is None:
            opened.close()
    report.seconds = time.perf_counter() - started
    return report


def _read_inbox(
    campaign: Campaign, box: Box, log: Ledger, report: InboxReport, clock: Callable[[], float]
) -> list[Write]:
    config = campaign.settings.mailbox
    folder = config.folders.inbox if config is not None else "INBOX"
    key = f"{box.kind}:{folder}"
    report.folders.append(folder)
    index = _Index(log.deliveries())
    unsubscribe = unsubscribe_target(campaign.config.list_unsubscribe)
    arrivals, position = box.arrivals(folder, log.scan_position(key))
    report.read = len(arrivals)
    writes: list[Write] = []
    whole: list[Arrival] = []
    reports: set[int | str] = set()  # multipart/report: its parts are enough (Box.fetch)
    for arrival in arrivals:
        if not worth_reading(arrival.headers, index.by_address):
            continue  # ordinary mail: no sign of a report, an answer or a recipient
        headers = parse_headers(arrival.headers)
        kind = Kind.BOUNCE if arrival.report else triage(headers)
        if kind is None:
            # No reference and nothing automatic: an answer only if a recipient wrote it.
            if _sender_of(headers) not in index.by_address:
                continue
            kind = Kind.REPLY
        if kind is Kind.BOUNCE:
            whole.append(arrival)
            if headers.get_content_type() == "multipart/report":
                reports.add(arrival.uid)
            continue
        verdict = classify(headers)  # headers are enough for an answer
        if verdict.kind is Kind.OTHER:
            verdict = Verdict(kind, "sender", verdict.sender, verdict.date)
        if (
            verdict.kind is Kind.REPLY
            and unsubscribe is not None
            and asks_to_unsubscribe(headers, unsubscribe)
        ):
            # Not an answer: the recipient's client followed List-Unsubscribe. Never written
            # to again: the suppression list (`_suppress`), as for an address that bounced.
            email = index.match(verdict)
            if email is None:
                report.unmatched += 1
                continue
            if email not in report.unsubscribed:
                report.unsubscribed.append(email)
            at = verdict.date or arrival.received or clock()
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(at))
            sender = verdict.sender or "unknown"
            evidence = f"request to unsubscribe of {when} in {folder} (from {sender})"
            writes.append(ledger.noted(email, "unsubscribed_at", at, evidence))
            continue
        writes += _record(verdict, arrival, folder, index, report, clock)
    if whole:
        bodies = box.fetch(folder, [a.uid for a in whole], reports=reports)
        report.fetched = len(bodies)
        for arrival in whole:
            data = bodies.get(arrival.uid)
            if data is None:
                continue  # expunged meanwhile
            writes += _record(classify(parse_message(data)), arrival, folder, index, report, clock)
    writes.append(ledger.scan_position(key, position, clock()))
    return writes


def _record(
    verdict: Verdict,
    arrival: Arrival,
    folder: str,
    index: _Index,
    report: InboxReport,
    clock: Callable[[], float],
) -> list[Write]:
    if verdict.kind is Kind.OTHER:
        return []
    email = index.match(verdict)
    if email is None:
        report.unmatched += 1
        return []
    if verdict.kind is Kind.BOUNCE and _about_an_earlier_send(verdict, index.sent_at.get(email)):
        report.earlier += 1  # the message was sent again since (--retry-bounced): not this one
        return []
    at = verdict.date or arrival.received or clock()
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(at))
    what = {
        Kind.BOUNCE: "failure report",
        Kind.DELAYED: "delay notice",
        Kind.DELIVERED: "delivery report",
        Kind.AUTO_REPLY: "auto-reply",
        Kind.REPLY: "reply",
    }[verdict.kind]
    evidence = f"{what} of {when} in {folder} (from {verdict.sender or 'unknown'})"
    report.counts[verdict.kind.value] += 1
    report.uncertain.pop(email, None)
    report.resolved.setdefault(email, evidence)  # kept only if the recipient was uncertain
    if verdict.kind is Kind.BOUNCE:
        reason = verdict.reason or "permanent failure"
        report.bounces.append(Bounce(email, reason, at, cause_of(reason), index.rows.get(email)))
        return [ledger.bounced(email, at, reason, evidence)]
    if verdict.kind is Kind.DELIVERED:
        return [ledger.delivered(email, at, evidence)]
    column = {
        Kind.DELAYED: "delayed_at",
        Kind.AUTO_REPLY: "auto_replied_at",
        Kind.REPLY: "replied_at",
    }[verdict.kind]
    return [ledger.noted(email, column, at, evidence)]


def _about_an_earlier_send(verdict: Verdict, sent_at: float | None) -> bool:
    """Whether a failure report is about an earlier send than the message's last one: the same
    Message-ID goes out again with `--retry-bounced`, and a report about the first send (a
    delay that ended in a failure days later) must not undo the second. The report's
    Arrival-Date says when the reporting server got the message; without it, its Date."""
    when = verdict.arrived or verdict.date
    return when is not None and sent_at is not None and when < sent_at - EARLIER_SEND_SLACK


def _reconcile(box: Box, log: Ledger, report: InboxReport) -> list[Write]:
    """Look for each still-uncertain message in Sent; say what was searched for the others."""
    uncertain = log.deliveries("state = 'uncertain'")
    waiting = {d.email: d for d in uncertain if d.email not in report.resolved}
    report.resolved = {
        e: v for e, v in report.resolved.items() if e in {d.email for d in uncertain}
    }
    if not waiting:
        return []
    writes: list[Write] = []
    sent = box.sent_folder()
    found: set[str] = set()
    if sent is not None:
        report.folders.append(sent)
        ids = {d.message_id.strip().strip("<>"): d.email for d in waiting.values()}
        try:
            found = {ids[mid] for mid in box.find(sent, ids)}
        except Exception as err:  # no such folder on this server: nothing found there
            if "exist" not in str(err).lower() and "nonexistent" not in str(err).lower():
                raise
            sent = None
    stamp = time.strftime("%Y-%m-%d %H:%M")
    for email in sorted(waiting):
        if email in found:
            evidence = f"its copy is in {sent} (searched {stamp})"
            report.resolved[email] = evidence
            writes.append(ledger.resolved(email, evidence))
        else:
            places = ", ".join(report.folders[:1] + ([sent] if sent else []))
            what = f"no trace in {places} (searched {stamp})"
            report.uncertain[email] = what
            writes.append(ledger.searched(email, what))
    return writes


_COMMENT_UNSAFE = re.compile(r"[,;\t|\r\n]+")


def _suppress(campaign: Campaign, report: InboxReport, now: float) -> None:
    """Append to the suppression list, with date, campaign and reason, each address that bounced
    for its own sake (a bounce that is the campaign's leaves the address as it was) and each
    recipient who asked to unsubscribe.

    The file keeps its shape: a list with date/campaign/reason columns gets them filled; a
    one-column list gets the address, after a comment line (skipped by the reader) that says why.
    """
    config = campaign.config
    path = campaign.path(config.suppression)
    report.suppression_file = campaign.settings.display(config.suppression)
    known, _problems = read_suppression(path)
    date = time.strftime("%Y-%m-%d", time.localtime(now))
    # (address, reason, the comment line of a one-column list)
    entries: list[tuple[str, str, str]] = []
    for bounce in report.bounces:
        if bounce.cause is Cause.ADDRESS:
            reason = " ".join(bounce.reason.split())
            said = _("{date} {campaign} bounced: {reason}")
            entries.append(
                (
                    bounce.email,
                    reason,
                    said.format(date=date, campaign=campaign.name, reason=reason),
                )
            )
    said = _("{date} {campaign} asked to unsubscribe (List-Unsubscribe)")
    reason = _("asked to unsubscribe (List-Unsubscribe)")
    entries += [
        (email, reason, said.format(date=date, campaign=campaign.name))
        for email in report.unsubscribed
    ]
    new = [entry for entry in entries if entry[0] not in known]
    if not new:
        return
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("email,date,campaign,reason\n", encoding="utf-8")
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(text)), [])
    names = [h.strip().lower() for h in header]
    lines: list[str] = []
    added: set[str] = set()
    for email, reason, said in new:
        if email in added:
            continue
        added.add(email)
        if len(names) >= 2 and "@" not in "".join(header):
            values = {"email": email, "date": date, "campaign": campaign.name}
            values["reason"] = values["raison"] = values["motif"] = reason
            column = next(
                (i for i, n in enumerate(names) if n in {"email", "courriel", "e-mail", "mail"}), 0
            )
            row = [values.get(n, "") for n in names]
            row[column] = email
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow(row)
            lines.append(buffer.getvalue())
        else:
            why = _COMMENT_UNSAFE.sub(" ", f"# {said}")
            lines += [why + "\n", email + "\n"]
        report.suppressed.append(email)
    with path.open("a", encoding="utf-8") as handle:
        if text and not text.endswith("\n"):
            handle.write("\n")
        handle.writelines(lines)


def suppression_path(campaign: Campaign) -> Path:
    return campaign.path(campaign.config.suppression)

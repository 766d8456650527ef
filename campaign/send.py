"""A campaign's run: plan from the delivery log, compose each message, dispatch, report.

Synchronous: it reads the inputs and the log, makes sure the PDFs to attach are rendered, and
hands jobs (envelope + a way to make the bytes) to the async engine in `campaign.dispatch`, which
runs one event loop. Dry runs compose every message to .eml files and talk to no server.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import composepool, ledger
from campaign.causes import Cause, cause_of
from campaign.compose import (
    Composer,
    Piece,
    dot_stuffed,
    eml_name,
    envelope_address,
    joined,
    load_attachments,
    message_id,
    needs_smtputf8,
    shareable,
    stuffed_pieces,
    with_recipient_attachments,
)
from campaign.dispatch import (
    Clock,
    Dispatcher,
    Event,
    EventKind,
    Job,
    Progress,
    Sleep,
    Tally,
    TooBig,
    run_dispatcher,
)
from campaign.dsn import envelope_id, request_for
from campaign.errors import Place, ServerSettingsError
from campaign.i18n import _, byte_size, listed, ngettext, number, plural
from campaign.inputs import Inputs, encoded_size
from campaign.ledger import Held, Ledger, State
from campaign.logwriter import LedgerWriter
from campaign.outbox import private_dir, write_private
from campaign.recipients import Recipient
from campaign.throttle import DAY, Pace, Throttle, configured_rate, windows_from
from campaign.typography import date_fr
from campaign.window import Forecast, WindowedThrottle, forecast, window_of

if TYPE_CHECKING:
    from campaign.pdf import ApprovedLetters
    from campaign.sentcopy import CopyReport


class SendMode(StrEnum):
    SEND = "send"
    TEST = "test"  # --test-to: messages to a test address, nobody recorded as sent
    DRY_RUN = "dry-run"  # compose to .eml files, talk to no server


@dataclass(frozen=True)
class Reason:
    """Why messages of this run ended in a state other than sent: one reply, how many times."""

    state: State
    text: str
    count: int


_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)", re.MULTILINE)


@dataclass
class SendOptions:
    """What the `send` command asks for."""

    dry_run: bool = False
    test_to: str | None = None
    count: int = 1
    limit: int | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    retry_bounced: bool = False  # the bounces that were the campaign's fault, not the address's
    resend_readdressed: bool = False  # the held: already sent to the same person elsewhere
    wait_retries: bool = True  # --no-wait: stop instead of waiting for due retries
    wait_for_day: bool = False  # --wait: sleep past the day cap instead of stopping


@dataclass
class SendReport:
    """What a run did, what the log holds now, and why it stopped."""

    campaign: str
    mode: SendMode
    tally: Tally = field(default_factory=Tally)
    stopped: str | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    recovered: tuple[int, int] = (0, 0)
    requeued: int = 0
    next_retry: float | None = None
    folder: Path | None = None  # the dry-run .eml files
    ledger: Path | None = None
    written: int = 0
    to_send: int = 0  # what was due at the start of the run (pending or deferred, within --limit)
    forecast: Forecast | None = None  # when the messages left at the start should be sent
    next_window: float | None = None  # when the send window next opens, if it is closed now
    reasons: list[Reason] = field(default_factory=list)  # this run's non-sent outcomes, grouped
    server_down: bool = False  # stopped because the SMTP server stayed unreachable
    copies: CopyReport | None = None  # the copies in Sent (mailbox.save_sent)
    sender_domain: str = ""  # named in the advice about refusals that are the campaign's
    notes: list[str] = field(default_factory=list)  # said once: e.g. no delivery reports (DSN)
    held: list[Held] = field(default_factory=list)  # in the sheet, held (readdressed)

    @property
    def exit_code(self) -> int:
        """0 when everything due was sent (or waits for a cap the settings or --limit set)."""
        if self.stopped == "interrupted":
            return 130
        if self.server_down:
            return 1  # nobody failed, but nobody due was sent either
        if self.mode is SendMode.TEST:
            return 1 if self.tally.failed or self.tally.uncertain or self.tally.deferred else 0
        if self.counts.get("failed") or self.counts.get("uncertain"):
            return 1
        if self.mode is SendMode.SEND and (self.counts.get("deferred") or self.held):
            return 1  # left waiting for a retry, or for the organiser: not everyone was sent
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "mode": self.mode.value,
            "sent": self.tally.sent,
            "deferred": self.tally.deferred,
            "failed": self.tally.failed,
            "uncertain": self.tally.uncertain,
            "connections": self.tally.connections,
            "seconds": round(self.seconds, 3),
            "stopped": self.stopped,
            "log": self.counts,
            "recovered": {"resendable": self.recovered[0], "uncertain": self.recovered[1]},
            "requeued": self.requeued,
            "next_retry": self.next_retry,
            "dry_run_folder": str(self.folder) if self.folder else None,
            "written": self.written,
            "to_send": self.to_send,
            "forecast": self.forecast.as_dict() if self.forecast else None,
            "next_window": self.next_window,
            "reasons": [
                {"state": r.state.value, "reply": r.text, "count": r.count} for r in self.reasons
            ],
            "server": self.tally.pace.as_dict() if self.tally.pace else None,
            "sent_copies": self.copies.as_dict() if self.copies else None,
            "notes": self.notes,
            "held": [asdict(held) for held in self.held],
            "exit_code": self.exit_code,
        }


def send_campaign(
    inputs: Inputs,
    options: SendOptions,
    *,
    progress: Progress | None = None,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
) -> SendReport:
    """Send the campaign (or a dry run, or test sends) and record every step in the delivery log.

    The stage only: the caller holds the run lock and has passed the gates (`campaign.commands`).
    """
    campaign = inputs.campaign
    if options.dry_run:
        return _dry_run(inputs, progress, limit=options.limit)
    mode = SendMode.TEST if options.test_to else SendMode.SEND
    report = SendReport(campaign.name, mode)
    report.sender_domain = campaign.settings.sender.domain
    reasons: Counter[tuple[State, str]] = Counter()
    progress = _counting(reasons, progress)
    started = time.perf_counter()
    with Ledger.for_campaign(campaign.layout) as log:
        report.ledger = log.path
        report.recovered = log.recover()
        ready = inputs.recipients.ready
        salt = log.id_salt()
        if not options.test_to:
            log.enqueue(
                (_entry(inputs, r, salt) for r in ready),
                (
                    _entry(inputs, r, salt)
                    for r in inputs.recipients.recipients
                    if r.status == "suppressed"
                ),
                clock(),
            )
            states = [State.FAILED] * options.retry_failed + [State.UNCERTAIN] * (
                options.resend_uncertain
            )
            report.requeued = log.requeue(states)
            if options.retry_bounced:
                report.requeued += _requeue_bounced(log, report)
            in_sheet = [r.email.lower() for r in ready]
            unheld = log.release_unreached()  # the earlier letter bounced since
            if unheld:
                report.notes.append(
                    plural(
                        unheld,
                        "{n} recipient held no longer: the letter to their earlier address did "
                        "not reach them",
                        "{n} recipients held no longer: the letter to their earlier address did "
                        "not reach them",
                    )
                )
            if log.hold_readdressed(in_sheet) and options.resend_readdressed:
                report.requeued += log.release_held()
            report.held = log.held(in_sheet)
        settings = campaign.settings
        history = log.sent_times(clock() - DAY)
        window = window_of(settings.throttle)
        throttle: Throttle
        if window is None:
            throttle = Throttle(windows_from(settings.throttle), history=history, clock=clock)
        else:
            # The send window wraps the throttle: the dispatcher asks it before every message.
            throttle = WindowedThrottle(
                windows_from(settings.throttle),
                window=window,
                wait_for_window=options.wait_retries,
                history=history,
                clock=clock,
            )
        pace = Pace(
            configured=configured_rate(throttle.windows),
            learnt=log.learnt_rate(),
            max_probe_gap=settings.smtp.probe_interval,
        )
        writer = LedgerWriter(log.path)
        dispatcher = Dispatcher(
            smtp=settings.smtp,
            retry=settings.retry,
            throttle=throttle,
            writer=writer,
            concurrency=settings.throttle.concurrency,
            per_connection=settings.throttle.messages_per_connection,
            password=settings.smtp.password(),
            clock=clock,
            sleep=sleep,
            progress=progress,
            wait_for_day=options.wait_for_day,
            outage_limit=None if options.wait_retries else 0.0,
            tally=report.tally,
            pace=pace,
            dsn=request_for(settings.smtp.dsn, _envid(campaign.name, settings.sender.email, salt)),
        )
        plan = _Plan(inputs, log, options, clock, id_salt=salt)
        if options.test_to and options.count > plan.total:
            report.notes.append(
                ngettext(
                    "--count {count}: only {n} recipient is ready, so {n} test message",
                    "--count {count}: only {n} recipients are ready, so {n} test messages",
                    plan.total,
                ).format(count=options.count, n=plan.total)
            )
        dated = _dated_long_ago(inputs, datetime.fromtimestamp(clock()).date())
        if dated:
            report.notes.append(dated)
        rounds = plan.next_round
        copier = None
        if mode is SendMode.SEND and settings.mailbox and settings.mailbox.save_sent != "never":
            from campaign.sentcopy import SentCopier  # IMAP: imported only when it is used

            copier = SentCopier(settings, campaign.layout)  # its own thread and connection
            progress, rounds = copier.watching(progress), copier.rounds(rounds)
            dispatcher.progress = progress
        report.to_send = plan.total
        if not options.test_to and plan.total:  # not "0 to send: less than a minute"
            report.forecast = forecast(
                plan.total, settings.throttle, window, clock(), sent_last_day=len(history)
            )
        if progress is not None:
            summary = report.forecast.summary() if report.forecast else ""
            progress(Event(EventKind.START, total=plan.total, text=summary))
        run = log.start_run(clock())
        try:
            # The compose workers fork here: after the inputs and shared parts are ready, before
            # the event loop runs.
            plan.prepare(pace.configured)
            if copier is not None:
                copier.start()
            report.stopped = asyncio.run(
                run_dispatcher(dispatcher, rounds, wait_retries=options.wait_retries)
            )
        except TooBig as big:
            raise _too_big(inputs, plan, big) from None
        finally:
            plan.close()
            report.server_down = dispatcher.server_down
            if copier is not None:
                report.copies = copier.close()
            if dispatcher.dsn is not None and dispatcher.dsn.note:
                report.notes.append(dispatcher.dsn.note)
            writer.close()
            log.recover()  # a hard stop may leave messages `sending`: settle them now
            log.end_run(run, clock(), report.tally.sent, report.stopped or "done")
            log.keep_pace(run, asdict(pace.report))  # status --report shows it
            if pace.report.server is not None and pace.rate is not None:
                log.keep_learnt_rate(pace.rate)  # the next run starts from what this one learnt
        if report.stopped is None and options.limit is not None and plan.skipped_by_limit:
            report.stopped = _("limit of {n} reached").format(n=options.limit)
        report.counts = log.counts()
        report.next_retry = log.next_retry()
        if (
            window is not None
            and not window.is_open(clock())
            and (report.counts.get("pending") or report.counts.get("deferred"))
        ):
            report.next_window = window.next_opening(clock())
    report.seconds = time.perf_counter() - started
    report.reasons = [Reason(state, text, n) for (state, text), n in reasons.most_common()]
    return report


# A letter dated further back than this (or ahead of the day it goes out) is said at the send.
STALE_AFTER = timedelta(days=31)


def _dated_long_ago(inputs: Inputs, today: date) -> str | None:
    """A note when the letter's fixed date is far from the day it is sent, else None.

    A dated letter says that date to every recipient, and the approval covers it: reused for a
    later mailing, it would go out months or years old (the sample's is 7 mai 2020)."""
    letter = inputs.letter
    value = letter.front.get("date") if letter is not None else None
    if letter is None or not isinstance(value, date):
        return None  # undated: today's date; a template: the rows say theirs
    day = value.date() if isinstance(value, datetime) else value
    if today - STALE_AFTER <= day <= today:
        return None
    return _(
        "the letter is dated {date}, and its recipients read that date (the front matter's date "
        "in {file}): if that is not the date you mean, change it, proof and approve again"
    ).format(date=date_fr(day), file=letter.display)


def _envid(campaign: str, sender: str, salt: str) -> Callable[[str | int], str]:
    """A job's key → its RFC 3461 ENVID: the left part of the recipient's Message-ID."""
    domain = sender.rpartition("@")[2]

    def envid(key: str | int) -> str:
        if isinstance(key, int):
            return f"test.{key}"  # a test send: reported about, never matched to a recipient
        return envelope_id(message_id(campaign, key, domain, salt))

    return envid


def _counting(reasons: Counter[tuple[State, str]], progress: Progress | None) -> Progress:
    """Pass events on to `progress`, counting the replies of messages that were not sent."""

    def on_event(event: Event) -> None:
        if event.kind is EventKind.DONE and event.state not in (None, State.SENT):
            assert event.state is not None
            reasons[(event.state, event.text)] += 1
        if progress is not None:
            progress(event)

    return on_event


def _entry(inputs: Inputs, recipient: Recipient, salt: str) -> ledger.Entry:
    campaign = inputs.campaign
    domain = campaign.settings.sender.domain
    return ledger.Entry(
        address=recipient.email,
        row=recipient.row,
        name=inputs.to_name_for(recipient) if inputs.to_name else None,
        message_id=message_id(campaign.name, recipient.email, domain, salt),
        person=ledger.person_key(recipient.values, recipient.email),
    )


class _Plan:
    """Which messages each round sends: due ones among today's ready recipients, up to --limit."""

    def __init__(
        self, inputs: Inputs, log: Ledger, options: SendOptions, clock: Clock, *, id_salt: str
    ) -> None:
        self.inputs = inputs
        self.log = log
        self.options = options
        self.clock = clock
        self.ready = {r.email.lower(): r for r in inputs.recipients.ready}
        self.started: set[str] = set()
        self.skipped_by_limit = False
        self.sender = inputs.campaign.settings.sender.email
        self.attachments = load_attachments(inputs)
        self.composer = Composer(inputs, id_salt=id_salt)  # the IDs queued in the log
        self._test_jobs: list[Job] | None = None
        self._first: Sequence[Job] | float | None = None
        self._prepared = False
        self._pool: composepool.ComposePool[Recipient, list[Piece]] | None = None
        self._shared: list[bytes] = []  # the parts every message has: see `prepare`
        self._shared_ids: dict[int, int] = {}
        self._stamp_time = _now()
        self._stamp = b""
        self._date = (-1, b"")
        if options.test_to:
            targets = list(self.ready.values())[: max(options.count, 1)]
        else:
            open_states = {State.PENDING, State.DEFERRED}
            targets = [
                self.ready[d.email]
                for d in log.deliveries()
                if d.email in self.ready and d.state in open_states
            ]
        self.total = len(targets) if options.limit is None else min(len(targets), options.limit)
        self.letters = _pdf_source(inputs, targets)
        if options.test_to:
            self._test_jobs = [self._test_job(r, options.test_to) for r in targets]

    def pdf(self, recipient: Recipient) -> bytes | None:
        return None if self.letters is None else self.letters.pdf(recipient)

    def prepare(self, rate: float | None) -> None:
        """Plan the first round and, when it is large and sent fast, start composing it ahead.

        Composing in workers pays when the sender can go faster than one process composes:
        a throttle of a few messages per second leaves the run's own process idle enough.
        """
        self._first = self._round()
        self._prepared = True
        jobs = self._first
        if (
            self._test_jobs is not None
            or not isinstance(jobs, Sequence)
            or len(jobs) < composepool.MIN_BATCH
            or (rate is not None and rate < POOL_MIN_RATE)
            or not composepool.available()
        ):
            return
        recipients = [self.ready[str(job.key)] for job in jobs]
        self._stamp_time = _now()
        self._stamp = _date_line(self._stamp_time)
        # The attachment parts every message has, made before the workers inherit them: they
        # send their index, not their bytes (a 30 KB PDF is 40 KB of base64 to pickle and pipe).
        # No message is composed here: the first one's templates, date and Markdown (~20 ms)
        # are the worker's, on its core, while this process connects; a message that cannot be
        # composed is reported, as always, by this process when it is about to be sent.
        shared = self.composer.shared_parts(self.attachments)
        self._shared = [part for part in shared if shareable(part)]
        self._shared_ids = {id(part): i for i, part in enumerate(self._shared)}
        self._pool = composepool.ComposePool(
            self._compose_ahead,
            recipients,
            key=lambda r: r.email.lower(),
            workers=composepool.worker_count(),
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def next_round(self) -> Sequence[Job] | float | None:
        if not self._prepared:
            self._prepared = True
            return self._round()
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return self._round()

    def _round(self) -> Sequence[Job] | float | None:
        if self._test_jobs is not None:
            tests, self._test_jobs = self._test_jobs, []
            return tests or None
        limit = self.options.limit
        jobs: list[Job] = []
        for delivery in self.log.due(self.clock()):
            recipient = self.ready.get(delivery.email)
            if recipient is None:
                continue  # no longer in the spreadsheet, or not ready: kept in the log, not sent
            if delivery.email not in self.started:
                if limit is not None and len(self.started) >= limit:
                    self.skipped_by_limit = True
                    continue
                self.started.add(delivery.email)
            jobs.append(self._job(recipient, delivery.attempts))
        if jobs:
            return jobs
        waiting = [
            d.next_attempt_at
            for d in self.log.deliveries("state = 'deferred'")
            if d.email in self.ready
            and d.next_attempt_at is not None
            and (limit is None or d.email in self.started or len(self.started) < limit)
        ]
        return float(min(waiting)) if waiting else None

    def _job(self, recipient: Recipient, attempts: int) -> Job:
        def message() -> bytes:
            pieces = None if self._pool is None else self._pool.take(recipient)
            if pieces is not None and isinstance(head := pieces[0], bytes):
                at = head.find(self._stamp)
                if at >= 0:
                    # Dated when it goes, as a message composed here and now would be.
                    pieces[0] = head[:at] + self._date_line_now() + head[at + len(self._stamp) :]
                    return joined(pieces, self._shared)
            return self._compose(recipient)

        address = envelope_address(recipient.email)
        return Job(
            recipient.email.lower(),
            self.sender,
            address,
            message,
            attempts,
            utf8=needs_smtputf8(address),
            own=tuple(self.inputs.own_attachment_sizes(recipient)),
        )

    def _date_line_now(self) -> bytes:
        """The Date line of a message leaving now: made once a second (it shows seconds)."""
        second = int(time.time())
        if second != self._date[0]:
            self._date = (second, _date_line(datetime.fromtimestamp(second).astimezone()))
        return self._date[1]

    def _compose(self, recipient: Recipient, *, now: datetime | None = None) -> bytes:
        own = with_recipient_attachments(self.inputs, recipient, self.attachments)
        raw = self.composer.compose(recipient, pdf=self.pdf(recipient), attachments=own, now=now)
        return dot_stuffed(raw)

    def _compose_ahead(self, recipient: Recipient) -> list[Piece]:
        """In a worker: compose with the pool's date (replaced when sent); never re-render a PDF."""
        own = with_recipient_attachments(self.inputs, recipient, self.attachments)
        pdf = None if self.letters is None else self.letters.pdf(recipient, rerender=False)
        pieces = self.composer.pieces(recipient, pdf=pdf, attachments=own, now=self._stamp_time)
        return stuffed_pieces(pieces, self._shared_ids)

    def _test_job(self, recipient: Recipient, address: str) -> Job:
        raw = self.composer.compose(
            recipient,
            pdf=self.pdf(recipient),
            attachments=with_recipient_attachments(self.inputs, recipient, self.attachments),
            test_to=address,
        )
        mid = _MESSAGE_ID.search(raw)
        assert mid is not None
        key = self.log.add_test_send(address, recipient.email, mid.group(1).decode(), self.clock())
        data = dot_stuffed(raw)
        target = envelope_address(address)
        return Job(
            key,
            self.sender,
            target,
            lambda: data,
            utf8=needs_smtputf8(target),
            own=tuple(self.inputs.own_attachment_sizes(recipient)),
        )


# Below this configured rate (messages per second) the run's own process composes fast enough.
POOL_MIN_RATE = 20.0


def _now() -> datetime:
    return datetime.now().astimezone()


def _date_line(when: datetime) -> bytes:
    """The Date header line as the composer writes it (short plain ASCII: never folded)."""
    return b"\r\nDate: " + format_datetime(when).encode("ascii") + b"\r\n"


def _too_big(inputs: Inputs, plan: _Plan, big: TooBig) -> ServerSettingsError:
    """The error for messages the server does not take: what makes them big, and what to do."""
    campaign = inputs.campaign
    parts = [(a.filename, encoded_size(len(a.data))) for a in plan.attachments]
    config = campaign.config
    key = "attachments" if parts else "attach_pdf" if config.attach_pdf else "email_body"
    if key == "email_body" and config.email_body is None:
        key = "letter"  # the email is the letter itself
    if config.attach_pdf and inputs.recipients.ready:
        pdf = plan.pdf(inputs.recipients.ready[0])
        if pdf is not None:
            parts.append((_("the letter in PDF"), encoded_size(len(pdf))))
    parts.sort(key=lambda part: -part[1])
    if big.limit is not None:
        message = _(
            "each message is {size} once encoded, more than the {limit} that {host} takes (SIZE {bytes})"
        ).format(
            size=byte_size(big.size), limit=byte_size(big.limit), host=big.host, bytes=big.limit
        )
    else:
        message = _("{host} refused a message of {size} as too big: {reply}").format(
            host=big.host, size=byte_size(big.size), reply=big.reply
        )
    shown = listed(f"{name} ({byte_size(size)})" for name, size in parts)
    if not parts:
        hint = _(
            "the email itself is that big: shorten its text or make its images smaller; no recipient's attempts were used"
        )
    elif config.approval.required:
        hint = _(
            "what the messages carry: {parts}; make the files smaller, or put them on a web page the email links to, then approve again; no recipient's attempts were used"
        )
    else:
        hint = _(
            "what the messages carry: {parts}; make the files smaller, or put them on a web page the email links to; no recipient's attempts were used"
        )
    return ServerSettingsError(
        message,
        place=Place(key=f"campaigns.{campaign.name}.{key}"),
        hint=hint.format(parts=shown),
    )


def _pdf_source(inputs: Inputs, recipients: list[Recipient]) -> ApprovedLetters | None:
    """Make sure the PDFs to attach are rendered from today's inputs; None when none are."""
    if not inputs.campaign.config.attach_pdf or not recipients:
        return None
    from campaign.pdf import ApprovedLetters

    return ApprovedLetters(inputs, recipients)


def _requeue_bounced(log: Ledger, report: SendReport) -> int:
    """`--retry-bounced`: the recipients whose bounce said the campaign was at fault (its
    domain's authentication, its server, its content) are pending again; an address that
    bounced for its own sake is not, and the note says so."""
    bounced = log.deliveries("state = 'bounced'")
    ours = [d.email for d in bounced if cause_of(d.bounce_reason or "") is not Cause.ADDRESS]
    theirs = len(bounced) - len(ours)
    if theirs:
        report.notes.append(
            ngettext(
                "{n} address that bounced for its own sake (unknown, disabled, full) is not sent "
                "again: it is on the suppression list",
                "{n} addresses that bounced for their own sake (unknown, disabled, full) are not "
                "sent again: they are on the suppression list",
                theirs,
            ).format(n=number(theirs))
        )
    return log.requeue_bounced(ours)


def _dry_run(inputs: Inputs, progress: Progress | None, *, limit: int | None) -> SendReport:
    """Compose and validate every message (the first `limit`), write each as .eml; no server."""
    campaign = inputs.campaign
    report = SendReport(campaign.name, SendMode.DRY_RUN)
    started = time.perf_counter()
    folder = private_dir(campaign.layout.dry_run)
    for old in folder.glob("*.eml"):
        old.unlink()
    ready = inputs.recipients.ready[:limit]
    if progress is not None:
        progress(Event(EventKind.START, total=len(ready)))
    letters = _pdf_source(inputs, ready)
    attachments = load_attachments(inputs)
    composer = Composer(inputs) if ready else None
    for recipient in ready:
        assert composer is not None
        own = with_recipient_attachments(inputs, recipient, attachments)
        pdf = None if letters is None else letters.pdf(recipient)
        raw = composer.compose(recipient, pdf=pdf, attachments=own)
        write_private(folder / eml_name(recipient), raw)
        report.written += 1
        if progress is not None:
            progress(Event(EventKind.DONE, key=recipient.email, state=State.PENDING))
    report.folder = folder
    report.seconds = time.perf_counter() - started
    return report

"""Composed messages → SMTP, recorded step by step in the delivery log. The only async module.

`send_campaign` plans a run from the delivery log (pending recipients, deferred ones whose retry is
due), then `Dispatcher` sends them over `concurrency` connections, each carrying up to
`messages_per_connection` messages, within the throttle windows. Every transaction is driven
command by command (MAIL, RCPT, DATA, then the body once the server said 354) so that the log can
tell a message that never left (safe to send again) from one that was on the wire when the
connection dropped (`uncertain`, never resent automatically).

Replies: 4xx, timeouts and drops are transient (`deferred`, retried with the configured backoff; 421
also reconnects); 5xx is `failed`; 530/535 and a rejected TLS certificate stop the run. SIGINT or
SIGTERM: no new transaction starts, those in flight finish and are recorded; a second signal stops
at once (the log then says `uncertain` for any message whose body was on the wire).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib

from campaign import ledger
from campaign.compose import (
    compose_message,
    eml_name,
    envelope_address,
    load_attachments,
    message_bytes,
    message_id,
    needs_smtputf8,
    wire_bytes,
)
from campaign.errors import DeliveryError, Place
from campaign.inputs import Inputs
from campaign.ledger import Ledger, LedgerWriter, Phase, State, Write, Writer
from campaign.outbox import private_dir, run_lock, write_private
from campaign.recipients import Recipient
from campaign.settings import Retry, Smtp
from campaign.throttle import DAY, DayCapReached, Throttle, windows_from

IDLE_CHECK_AFTER = 2.0  # seconds a connection may sit idle before a NOOP checks it is still there
NOOP_TIMEOUT = 5.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Job:
    """One message to send: the log key (address, or test-send id), envelope and wire bytes."""

    key: str | int
    sender: str
    recipient: str
    message: Callable[[], bytes]  # the body after DATA, dot-stuffed, ending with the final dot
    attempts: int = 0  # attempts made before this one
    utf8: bool = False  # the envelope needs SMTPUTF8 (a non-ASCII local part)


@dataclass(frozen=True)
class Event:
    """Progress of a run, for the progress bar: a message ended, or the run waits."""

    kind: str  # "start", "done", "wait", "stopping"
    key: str | int | None = None
    state: State | None = None
    code: int | None = None
    text: str = ""
    seconds: float = 0.0
    total: int = 0


Progress = Callable[[Event], None]


@dataclass
class Tally:
    """What one run did."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    uncertain: int = 0
    connections: int = 0
    messages: int = 0

    def add(self, state: State) -> None:
        self.messages += 1
        if state is State.SENT:
            self.sent += 1
        elif state is State.DEFERRED:
            self.deferred += 1
        elif state is State.FAILED:
            self.failed += 1
        elif state is State.UNCERTAIN:
            self.uncertain += 1


class Stopped(Exception):
    """The run was asked to stop (signal) before a new transaction could start."""


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float
    messages: int = 0


@dataclass
class Dispatcher:
    """Sends jobs over a pool of SMTP connections, within the throttle, recording every step."""

    smtp: Smtp
    retry: Retry
    throttle: Throttle
    writer: Writer
    concurrency: int = 2
    per_connection: int = 100
    password: str | None = None
    clock: Clock = time.time
    sleep: Sleep = asyncio.sleep
    progress: Progress | None = None
    wait_for_day: bool = False
    tally: Tally = field(default_factory=Tally)
    stopping: bool = False
    _pool: list[_Connection | None] = field(default_factory=list)
    _freed: asyncio.Event | None = None
    _unconfirmed: list[concurrent.futures.Future[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.smtp.username and self.smtp.security == "none" and not self.smtp.is_loopback:
            raise DeliveryError(
                f"refusing to send the password for {self.smtp.username} unencrypted to "
                f"{self.smtp.host}",
                place=Place(key="smtp.security"),
                hint="set smtp.security to starttls or tls",
            )
        self._pool = [None] * self.concurrency

    async def run(self, jobs: Sequence[Job]) -> None:
        """Send `jobs`; return when each is recorded, or the run stops (signal, day cap, fatal)."""
        queue = deque(jobs)
        self._freed = asyncio.Event()
        workers = [
            asyncio.create_task(self._worker(slot, queue))
            for slot in range(min(self.concurrency, len(queue)))
        ]
        try:
            done = await asyncio.gather(*workers, return_exceptions=True)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        await self.confirm()
        for result in done:
            if isinstance(result, BaseException) and not isinstance(result, Stopped):
                raise result

    async def close(self) -> None:
        """Say QUIT on every open connection."""
        for slot, conn in enumerate(self._pool):
            self._pool[slot] = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.client.quit(), NOOP_TIMEOUT)
                conn.client.close()

    async def _worker(self, slot: int, queue: deque[Job]) -> None:
        while queue:
            if self.stopping:
                raise Stopped
            job = queue.popleft()
            try:
                await self._acquire()
            except BaseException:
                queue.appendleft(job)
                raise
            counted = False
            try:
                state = await self._send_one(slot, job)
                counted = state in (State.SENT, State.UNCERTAIN)
            except BaseException as err:
                # A fatal error or a hard stop: the message may have been on the wire.
                counted = isinstance(err, asyncio.CancelledError)
                self.stopping = True
                raise
            finally:
                self.throttle.finish(counted=counted)
                if self._freed is not None:
                    self._freed.set()

    async def _acquire(self) -> None:
        """Wait until every throttle window lets a new message start."""
        while True:
            if self.stopping:
                raise Stopped
            wait = self.throttle.wait()
            if wait.ready:
                self.throttle.start()
                return
            stop = self.throttle.day_cap(wait)
            if stop is not None and not self.wait_for_day:
                self.stopping = True
                raise stop
            if wait.seconds == float("inf"):
                assert self._freed is not None
                self._freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._freed.wait(), 1.0)
            else:
                if wait.seconds >= 1.0:
                    self._emit(Event("wait", seconds=wait.seconds, text=_why(wait.window)))
                await self.sleep(min(wait.seconds, 1.0))

    async def _send_one(self, slot: int, job: Job) -> State:
        data = job.message()  # composed before anything is recorded: a failure here sends nothing
        now = self.clock()
        try:
            conn = await self._connection(slot)
        except DeliveryError:
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            unsent = [ledger.begin(job.key, now)]
            state = self._settle(job, None, _describe(err), unsent, transient=True)
            await self._write(unsent)
            return self._done(job, state, None, _describe(err))
        client = conn.client
        options, encoding = [], "ascii"
        if job.utf8:
            if not client.supports_extension("smtputf8"):
                text = (
                    f"{self.smtp.host} does not offer SMTPUTF8, which the address "
                    f"{job.recipient} needs (RFC 6531)"
                )
                unsent = [ledger.begin(job.key, now)]
                state = self._settle(job, None, text, unsent, transient=False)
                await self._write(unsent)
                return self._done(job, state, None, text)
            options, encoding = ["SMTPUTF8"], "utf-8"
        # The start is committed with the step that follows it (the body mark, or how the
        # transaction ended): lost in a crash before then, the recipient stays pending or
        # deferred, which is what a transaction that never reached the body recovers to.
        unwritten: list[Write] = [ledger.begin(job.key, now)]
        in_body = False
        try:
            await client.mail(job.sender, options=options, encoding=encoding)
            await client.rcpt(job.recipient, encoding=encoding)
            start = await client.execute_command(b"DATA")
            if start.code != 354:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            await self._write([ledger.begin(job.key, now, Phase.BODY)])
            unwritten, in_body = [], True
            reply = await self._transmit(client, data)
            conn.messages += 1
            conn.last_used = self.clock()
            if reply.code != 250:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        except aiosmtplib.SMTPResponseException as err:
            code, text = err.code, err.message
            if code in (530, 535):
                await self._write(
                    [*unwritten, ledger.outcome(job.key, State.PENDING, code, text, self.clock())]
                )
                raise _auth_error(self.smtp, code, text) from None
            await self._reset(slot, conn, code)
            writes = unwritten
            state = self._settle(job, code, text, writes, transient=400 <= code < 500)
            await self._write(writes)
            return self._done(job, state, code, text)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            self._drop(slot)
            text = _describe(err)
            if in_body:
                await self._write(
                    [ledger.outcome(job.key, State.UNCERTAIN, None, text, self.clock())]
                )
                return self._done(job, State.UNCERTAIN, None, text)
            state = self._settle(job, None, text, unwritten, transient=True)
            await self._write(unwritten)
            return self._done(job, state, None, text)
        text = reply.message
        self._record([ledger.outcome(job.key, State.SENT, reply.code, text, self.clock())])
        return self._done(job, State.SENT, reply.code, text)

    def _settle(
        self, job: Job, code: int | None, text: str, writes: list[Write], *, transient: bool
    ) -> State:
        """Append the write that ends a transaction that did not deliver; return the new state."""
        now = self.clock()
        attempts = job.attempts + 1
        if not transient:
            writes.append(ledger.outcome(job.key, State.FAILED, code, text, now))
            return State.FAILED
        if attempts >= self.retry.max_attempts:
            text = f"gave up after {attempts} attempts: {text}"
            writes.append(ledger.outcome(job.key, State.FAILED, code, text, now))
            return State.FAILED
        backoff = self.retry.backoff or [0.0]
        delay = backoff[min(attempts - 1, len(backoff) - 1)]
        writes.append(
            ledger.outcome(job.key, State.DEFERRED, code, text, now, next_attempt_at=now + delay)
        )
        return State.DEFERRED

    async def _transmit(self, client: aiosmtplib.SMTP, data: bytes) -> aiosmtplib.SMTPResponse:
        """Send the body and wait for the reply to the final dot (RFC 5321: up to 10 minutes)."""
        protocol = client.protocol
        if protocol is None:
            raise aiosmtplib.SMTPServerDisconnected("connection lost before the message body")
        protocol.write(data)
        return await protocol.read_response(timeout=self.smtp.data_timeout)

    async def _connection(self, slot: int) -> _Connection:
        """The slot's connection: reused while fresh and alive, else a new one."""
        conn = self._pool[slot]
        if conn is not None and conn.messages >= self.per_connection:
            await self._quit(slot)
            conn = None
        if conn is not None and not conn.client.is_connected:
            self._drop(slot)
            conn = None
        if conn is not None and self.clock() - conn.last_used > IDLE_CHECK_AFTER:
            try:
                await conn.client.noop(timeout=NOOP_TIMEOUT)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                self._drop(slot)
                conn = None
        if conn is None:
            conn = _Connection(await self._open(), self.clock())
            self._pool[slot] = conn
            self.tally.connections += 1
        return conn

    async def _open(self) -> aiosmtplib.SMTP:
        smtp = self.smtp
        context = None
        if smtp.security != "none":
            cafile = str(smtp.cert_bundle) if smtp.cert_bundle else None
            context = ssl.create_default_context(cafile=cafile)
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            timeout=smtp.timeout,
            use_tls=smtp.security == "tls",
            start_tls=smtp.security == "starttls",
            validate_certs=True,
            tls_context=context,
            local_hostname=smtp.helo_name,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            if smtp.username:
                await client.login(smtp.username, self.password or "")
        except (ssl.SSLCertVerificationError, aiosmtplib.SMTPConnectError) as err:
            client.close()
            # aiosmtplib wraps the certificate error of implicit TLS in SMTPConnectError
            cause = err if isinstance(err, ssl.SSLCertVerificationError) else err.__cause__
            if not isinstance(cause, ssl.SSLCertVerificationError):
                raise
            raise DeliveryError(
                f"the TLS certificate of {smtp.host}:{smtp.port} was rejected: "
                f"{cause.verify_message or cause.reason}",
                place=Place(key="smtp.host"),
                hint="check smtp.host; for a private certificate authority set smtp.cert_bundle",
            ) from None
        except aiosmtplib.SMTPAuthenticationError as err:
            client.close()
            raise _auth_error(smtp, err.code, err.message) from None
        except aiosmtplib.SMTPException as err:
            client.close()
            if "STARTTLS" in str(err):
                raise DeliveryError(
                    f"{smtp.host}:{smtp.port} does not offer STARTTLS",
                    place=Place(key="smtp.security"),
                    hint="use security: tls (usually port 465) or ask the provider",
                ) from None
            raise
        return client

    async def _reset(self, slot: int, conn: _Connection, code: int) -> None:
        """After a refusal: RSET to reuse the connection, or drop it (421, or RSET fails)."""
        if code == 421 or not conn.client.is_connected:
            self._drop(slot)
            return
        try:
            await conn.client.rset()
            conn.last_used = self.clock()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop(slot)

    async def _quit(self, slot: int) -> None:
        conn = self._pool[slot]
        self._pool[slot] = None
        if conn is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await conn.client.quit(timeout=NOOP_TIMEOUT)
            conn.client.close()

    def _drop(self, slot: int) -> None:
        conn = self._pool[slot]
        self._pool[slot] = None
        if conn is not None:
            conn.client.close()

    def _record(self, writes: Sequence[Write]) -> None:
        """Queue `writes` without waiting: they are committed in order, before any later write.

        For the step whose loss is harmless: a 250 reply (lost, the message was in flight at the
        crash and shows as uncertain). It is committed within `ledger.LINGER`, and always before
        the next body mark of the same connection.
        """
        self._unconfirmed.append(self.writer.submit(writes, fsync=False))

    async def _write(self, writes: Sequence[Write]) -> None:
        """Commit and fsync `writes` (and every write queued before) before going on."""
        earlier, self._unconfirmed = self._unconfirmed, []
        await asyncio.wrap_future(self.writer.submit(writes, fsync=True))
        for future in earlier:
            future.result()  # committed in order, so done: raise if that commit failed

    async def confirm(self) -> None:
        """Commit and fsync every queued write now, and wait for it."""
        if self._unconfirmed:
            await self._write([])

    def _done(self, job: Job, state: State, code: int | None, text: str) -> State:
        self.tally.add(state)
        self._emit(Event("done", key=job.key, state=state, code=code, text=text))
        return state

    def _emit(self, event: Event) -> None:
        if self.progress is not None:
            self.progress(event)


def _why(window: Any) -> str:
    return f"per-{window.name} limit ({window.cap})" if window is not None else "throttle"


def _describe(err: BaseException) -> str:
    name = type(err).__name__
    text = str(err).strip()
    return f"{name}: {text}" if text else name


def _auth_error(smtp: Smtp, code: int, text: str) -> DeliveryError:
    return DeliveryError(
        f"{smtp.host} refused the login of {smtp.username or '(no user)'}: {code} {text}",
        place=Place(key="smtp.username"),
        hint=f"check smtp.username and the password in ${smtp.password_env or 'the environment'}",
    )


async def run_dispatcher(
    dispatcher: Dispatcher,
    rounds: Callable[[], Sequence[Job] | float | None],
    *,
    wait_retries: bool,
) -> str | None:
    """Send round after round: `rounds()` gives jobs, the time of the next retry, or None (done).

    Returns why the run stopped early, or None when everything due was sent.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    handled: list[signal.Signals] = []

    def on_signal() -> None:
        if dispatcher.stopping and main is not None:
            main.cancel()  # a second Ctrl-C: stop now
        dispatcher.stopping = True
        dispatcher._emit(Event("stopping"))

    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, on_signal)
            handled.append(number)
    try:
        while True:
            if dispatcher.stopping:
                return "interrupted"
            plan = rounds()
            if plan is None:
                return None
            if isinstance(plan, float):
                if not wait_retries:
                    return "retries pending"
                while (left := plan - dispatcher.clock()) > 0:
                    if dispatcher.stopping:
                        return "interrupted"
                    dispatcher._emit(Event("wait", seconds=left, text="next retry"))
                    await dispatcher.sleep(min(left, 1.0))
                continue
            try:
                await dispatcher.run(plan)
            except Stopped:
                return "interrupted"
    except asyncio.CancelledError:
        return "interrupted"
    except DayCapReached as stop:
        return str(stop)
    finally:
        for number in handled:
            loop.remove_signal_handler(number)
        with contextlib.suppress(BaseException):
            await dispatcher.close()


# The run: plan from the delivery log, compose, dispatch, report --------------------------------


@dataclass
class SendOptions:
    """What the `send` command asks for."""

    dry_run: bool = False
    test_to: str | None = None
    count: int = 1
    limit: int | None = None
    retry_failed: bool = False
    resend_uncertain: bool = False
    wait_retries: bool = True  # --no-wait: stop instead of waiting for due retries
    wait_for_day: bool = False  # --wait: sleep past the day cap instead of stopping


@dataclass
class SendReport:
    """What a run did, what the log holds now, and why it stopped."""

    campaign: str
    mode: str  # "send", "test" or "dry-run"
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

    @property
    def exit_code(self) -> int:
        if self.stopped == "interrupted":
            return 130
        if self.mode == "test":
            return 1 if self.tally.failed or self.tally.uncertain or self.tally.deferred else 0
        if self.counts.get("failed") or self.counts.get("uncertain"):
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "mode": self.mode,
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
    """Send the campaign (or a dry run, or test sends) and record every step in the delivery log."""
    campaign = inputs.campaign
    if options.dry_run:
        with run_lock(campaign.outbox, campaign=campaign.name, action="sent (dry run)"):
            return _dry_run(inputs, progress, limit=options.limit)
    mode = "test" if options.test_to else "send"
    report = SendReport(campaign.name, mode)
    started = time.perf_counter()
    with (
        run_lock(campaign.outbox, campaign=campaign.name, action="sent"),
        Ledger.for_campaign(campaign.outbox) as log,
    ):
        report.ledger = log.path
        report.recovered = log.recover()
        ready = inputs.recipients.ready
        if not options.test_to:
            log.enqueue(
                (_entry(inputs, r) for r in ready),
                (
                    _entry(inputs, r)
                    for r in inputs.recipients.recipients
                    if r.status == "suppressed"
                ),
                clock(),
            )
            states = [State.FAILED] * options.retry_failed + [State.UNCERTAIN] * (
                options.resend_uncertain
            )
            report.requeued = log.requeue(states)
        settings = campaign.settings
        throttle = Throttle(
            windows_from(settings.throttle),
            history=log.sent_times(clock() - DAY),
            clock=clock,
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
            tally=report.tally,
        )
        plan = _Plan(inputs, log, options, clock)
        if progress is not None:
            progress(Event("start", total=plan.total))
        run = log.start_run(clock())
        try:
            report.stopped = asyncio.run(
                run_dispatcher(dispatcher, plan.next_round, wait_retries=options.wait_retries)
            )
        finally:
            writer.close()
            log.recover()  # a hard stop may leave messages `sending`: settle them now
            log.end_run(run, clock(), report.tally.sent, report.stopped or "done")
        if report.stopped is None and options.limit is not None and plan.skipped_by_limit:
            report.stopped = f"limit of {options.limit} reached"
        report.counts = log.counts()
        report.next_retry = log.next_retry()
    report.seconds = time.perf_counter() - started
    return report


def _entry(inputs: Inputs, recipient: Recipient) -> ledger.Entry:
    campaign = inputs.campaign
    domain = campaign.settings.sender.email.rpartition("@")[2]
    return ledger.Entry(
        address=recipient.email,
        row=recipient.row,
        name=inputs.to_name_for(recipient) if inputs.to_name else None,
        message_id=message_id(campaign.name, recipient.email, domain),
    )


class _Plan:
    """Which messages each round sends: due ones among today's ready recipients, up to --limit."""

    def __init__(self, inputs: Inputs, log: Ledger, options: SendOptions, clock: Clock) -> None:
        self.inputs = inputs
        self.log = log
        self.options = options
        self.clock = clock
        self.ready = {r.email.lower(): r for r in inputs.recipients.ready}
        self.started: set[str] = set()
        self.skipped_by_limit = False
        self.sender = inputs.campaign.settings.sender.email
        self.attachments = load_attachments(inputs)
        self._test_jobs: list[Job] | None = None
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
        self.pdf = _pdf_source(inputs, targets)
        if options.test_to:
            self._test_jobs = [self._test_job(r, options.test_to) for r in targets]

    def next_round(self) -> Sequence[Job] | float | None:
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
            composed = compose_message(
                self.inputs, recipient, pdf=self.pdf(recipient), attachments=self.attachments
            )
            return wire_bytes(composed)

        address = envelope_address(recipient.email)
        return Job(
            recipient.email.lower(),
            self.sender,
            address,
            message,
            attempts,
            utf8=needs_smtputf8(address),
        )

    def _test_job(self, recipient: Recipient, address: str) -> Job:
        composed = compose_message(
            self.inputs,
            recipient,
            pdf=self.pdf(recipient),
            attachments=self.attachments,
            test_to=address,
        )
        key = self.log.add_test_send(address, recipient.email, composed["Message-ID"], self.clock())
        data = wire_bytes(composed)
        target = envelope_address(address)
        return Job(key, self.sender, target, lambda: data, utf8=needs_smtputf8(target))


def _pdf_source(inputs: Inputs, recipients: list[Recipient]) -> Callable[[Recipient], bytes | None]:
    """Make sure the PDFs to attach are rendered; return how to read one recipient's PDF."""
    if not inputs.campaign.config.attach_pdf or not recipients:
        return lambda recipient: None
    from campaign import pdf

    rendered = pdf.render_letters(inputs, recipients)
    if rendered.failures:
        first = rendered.failures[0]
        raise DeliveryError(
            f"{len(rendered.failures)} letters could not be rendered; nothing was sent",
            place=first.place,
            hint=f"first: {first.message}; run `campaign render` to see every problem",
        )
    return lambda recipient: pdf.letter_path(inputs.campaign, recipient).read_bytes()


def _dry_run(inputs: Inputs, progress: Progress | None, *, limit: int | None) -> SendReport:
    """Compose and validate every message (the first `limit`), write each as .eml; no server."""
    campaign = inputs.campaign
    report = SendReport(campaign.name, "dry-run")
    started = time.perf_counter()
    folder = private_dir(campaign.outbox / "dry-run")
    for old in folder.glob("*.eml"):
        old.unlink()
    ready = inputs.recipients.ready[:limit]
    if progress is not None:
        progress(Event("start", total=len(ready)))
    pdfs = _pdf_source(inputs, ready)
    attachments = load_attachments(inputs)
    for recipient in ready:
        message = compose_message(inputs, recipient, pdf=pdfs(recipient), attachments=attachments)
        write_private(folder / eml_name(recipient), message_bytes(message))
        report.written += 1
        if progress is not None:
            progress(Event("done", key=recipient.email, state=State.PENDING))
    report.folder = folder
    report.seconds = time.perf_counter() - started
    return report

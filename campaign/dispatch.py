"""Jobs → SMTP transactions, recorded step by step in the delivery log: the async engine.

`Dispatcher` sends jobs over `concurrency` connections, each carrying up to
`messages_per_connection` messages, within the throttle windows. It needs only the delivery log's
writer, the throttle and the SMTP settings: what a job holds (its envelope and its bytes) is the
campaign run's business (`campaign.send`). Every transaction is driven step by step (MAIL, RCPT
and DATA, pipelined by `campaign.smtpwire` where the server offers it, then the body once the
server said 354) so that the log can tell a message that never left (safe to send again) from one
that was on the wire when the connection dropped (`uncertain`, never resent automatically).

Replies about a recipient: 4xx, timeouts and drops are transient (`deferred`, retried with the
configured backoff); 5xx is `failed`. Connections are opened by `campaign.smtpsession`: a settings
mistake the server reveals (TLS mode, certificate, login; a 530 at MAIL) stops the run once, before
anyone's attempt is spent. Replies about the sender (421, or 45x with 4.7.x/4.3.x about rate,
connections or too much mail), a connection lost before MAIL was answered, and a server that cannot
be reached at all are the run's business, not the recipient's: the recipient goes back in the
queue with its attempts untouched and `throttle.Pace` slows every connection to the rate the
server was measured to allow (or pauses and probes until the server answers again). SIGINT or
SIGTERM: no new transaction starts, those in flight finish and are recorded; a second signal stops
at once (the log then says `uncertain` for any message whose body was on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiosmtplib

from campaign import ledger, smtpwire
from campaign.dsn import DsnRequest
from campaign.errors import DeliveryError
from campaign.i18n import N_, _, byte_size
from campaign.ledger import Phase, State, Write
from campaign.logwriter import Writer
from campaign.settings import Retry, Smtp
from campaign.smtpsession import SessionOpener, login_refused, refused_client, refused_sender
from campaign.throttle import DayCapReached, Pace, PaceReport, Throttle

IDLE_CHECK_AFTER = 2.0  # seconds a connection may sit idle before a NOOP checks it is still there
NOOP_TIMEOUT = 5.0
_DOT = b".\r\n"  # the final dot, after the body's last CRLF (RFC 5321 §4.1.1.4)
_END_OF_DATA = b"\r\n" + _DOT

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
    put_back: int = 0  # times a reply about the sender sent it back to the queue in this run
    own: tuple[tuple[str, int], ...] = ()  # the recipient's own attachments: name, encoded size


class EventKind(StrEnum):
    START = "start"  # the run knows how many messages it will send (`total`)
    DONE = "done"  # a message's transaction ended (`state`, `code`, `text`)
    WAIT = "wait"  # the run waits (`seconds`, and why in `text`)
    STOPPING = "stopping"  # asked to stop: finishing the messages in flight


@dataclass(frozen=True)
class Event:
    """Progress of a run, for the progress bar: a message ended, or the run waits."""

    kind: EventKind
    key: str | int | None = None
    state: State | None = None
    code: int | None = None
    text: str = ""
    seconds: float = 0.0
    total: int = 0
    server: bool = False  # a wait because of the server (unreachable, or its limit)
    detail: str = ""  # what the server did: the last connection's error, while it is unreachable
    since: float = 0.0  # how long the server has been unreachable, seconds (0: it is not)


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
    pace: PaceReport | None = None  # the server's limits and outages met, when any

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


class ServerDown(Exception):
    """The server stayed unreachable longer than smtp.outage_limit: the run ends, nobody failed."""


class TooBig(Exception):
    """The message, without the recipient's own attachments, is more than the server takes.

    Every message of the campaign is: the run stops before anyone's attempt is spent on it
    (`campaign.send` names the attachments). `limit` is the server's SIZE (RFC 1870), or None
    when it did not say and refused the message (`reply`).
    """

    def __init__(self, size: int, limit: int | None, host: str, reply: str | None) -> None:
        super().__init__(size, limit, host, reply)
        self.size, self.limit, self.host, self.reply = size, limit, host, reply


# A temporary reply about the sender rather than the recipient: a rate or connection limit.
_ABOUT_SENDER = re.compile(
    r"\b4\.[37]\.\d{1,3}\b.*(rate|too (much|many)|connection|limit|throttl|exceed|slow down)",
    re.IGNORECASE | re.DOTALL,
)


MAX_PUT_BACK = 5  # then a reply about the sender counts as an attempt: a server that never relents


def about_sender(code: int, text: str) -> bool:
    """Whether a reply limits the sender (slow the run) rather than refuses this recipient."""
    return code == 421 or (code in (450, 451, 452) and _ABOUT_SENDER.search(text) is not None)


# A permanent refusal of the message's size: RFC 3463 X.3.4 (too big for the system), X.2.3 (over
# an administrative limit); or a 552 that says so in words (aiosmtpd: "Too much mail data"). Not
# 5.2.2, a full mailbox: that is the recipient's.
_TOO_BIG = re.compile(
    r"\b5\.(3\.4|2\.3)\b|\b(size|too (big|large)|too much (mail )?data)\b", re.IGNORECASE
)


def too_big(code: int, text: str) -> bool:
    """Whether a refusal says the message is bigger than the server takes."""
    return code in (552, 554) and _TOO_BIG.search(text) is not None and "5.2.2" not in text


# A refusal of the sender's address, whichever command it answers (Postfix judges the sender at
# RCPT by default, `smtpd_delay_reject`): Postfix's "Sender address rejected" (not owned by the
# login, unknown domain), Microsoft 365's SendAsDenied (5.2.252, 5.7.60 "permissions to send as
# this sender"), RFC 3463 X.1.7 and X.1.8 (the sender's address or its domain is bad).
_SENDER_REFUSED = re.compile(
    r"sender address rejected|not owned by|sendasdenied|\bsend as\b|\b5\.7\.60\b|\b5\.1\.[78]\b",
    re.IGNORECASE,
)


def sender_refused(code: int, text: str, verb: bytes | None) -> bool:
    """Whether a permanent refusal is about the sender: any 5xx to MAIL, or one that says so."""
    return 500 <= code < 600 and (verb == b"MAIL" or _SENDER_REFUSED.search(text) is not None)


# Permanent refusals of this machine or of its (missing) login rather than of a recipient, each
# with the setting to change: the server relays for authenticated clients only (Postfix's "Relay
# access denied", Microsoft's 5.7.54/5.7.64), refuses the EHLO name, or refuses this machine.
_CLIENT_REFUSED = [
    (
        re.compile(r"relay access denied|unable to relay|relay(ing)? (denied|not permitted)", re.I),
        "relay",
    ),
    (re.compile(r"helo command rejected", re.I), "helo"),
    (re.compile(r"client host rejected", re.I), "client"),
]


def client_refused(code: int, text: str) -> str | None:
    """What a permanent refusal says is wrong with this client (`relay`, `helo`, `client`)."""
    if not 500 <= code < 600:
        return None
    return next((kind for pattern, kind in _CLIENT_REFUSED if pattern.search(text)), None)


def size_limit(client: Any) -> int | None:
    """The largest message the server takes, from its EHLO (`SIZE 10240000`); None: it did not say.

    RFC 1870: SIZE without a number, or SIZE 0, declares no fixed maximum.
    """
    value = client.esmtp_extensions.get("size", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def about_rate(text: str) -> bool:
    """Whether a reply about the sender says it sends too much (slow down), not just 'closing'."""
    return _ABOUT_SENDER.search(text) is not None


@dataclass
class _Connection:
    client: aiosmtplib.SMTP
    last_used: float
    messages: int = 0
    pipelined: bool = False  # the server offers PIPELINING (RFC 2920): MAIL, RCPT, DATA in one go

    @classmethod
    def opened(cls, client: aiosmtplib.SMTP, now: float) -> _Connection:
        return cls(client, now, pipelined=client.supports_extension("pipelining"))


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
    # How long the server may stay unreachable before the run ends (None: smtp.outage_limit;
    # `send --no-wait` gives 0: it stops at the second failed probe instead of waiting).
    outage_limit: float | None = None
    dsn: DsnRequest | None = None  # smtp.dsn: RFC 3461 parameters when the server offers DSN
    server_down: bool = False  # the run ended because the server stayed unreachable
    tally: Tally = field(default_factory=Tally)
    pace: Pace = field(default_factory=lambda: Pace(configured=None))
    stopping: bool = False
    _probing: bool = False
    _unreachable: str = ""  # how the last connection failed, said with the waits of an outage
    _pool: list[_Connection | None] = field(default_factory=list)
    _opener: SessionOpener = field(init=False, repr=False)
    _freed: asyncio.Event | None = None

    def __post_init__(self) -> None:
        # Settings the server need not be asked about are refused here, before any connection.
        self._opener = SessionOpener(self.smtp, self.password)
        self._pool = [None] * self.concurrency
        self.tally.pace = self.pace.report

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
                if state is None:
                    queue.appendleft(job)  # refused because of the sender: try it again later
            except BaseException as err:
                # A fatal error or a hard stop: the message may have been on the wire.
                counted = isinstance(err, asyncio.CancelledError)
                self.stopping = True
                raise
            finally:
                self._probing = False
                self.throttle.finish(counted=counted)
                if self._freed is not None:
                    self._freed.set()

    async def _acquire(self) -> None:
        """Wait until every throttle window lets a new message start."""
        while True:
            if self.stopping:
                raise Stopped
            delay = self.pace.delay(self.clock())
            if delay > 0:  # the server's: said however short (the throttle's own: from 1 s)
                down_since = self.pace.down_since
                down = down_since is not None
                why = _("server unreachable") if down else _("server's limit")
                detail = self._unreachable if down else ""
                since = self.clock() - down_since if down_since is not None else 0.0
                self._emit(
                    Event(
                        EventKind.WAIT,
                        seconds=delay,
                        text=why,
                        server=True,
                        detail=detail,
                        since=since,
                    )
                )
                await self.sleep(min(delay, 1.0))
                continue
            if self.pace.holding and self._probing:
                await self.sleep(0.05)  # one probe at a time while the server limits or is down
                continue
            wait = self.throttle.wait()
            if wait.ready:
                self.throttle.start()
                self.pace.started(self.clock())
                self._probing = self.pace.holding
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
                    self._emit(Event(EventKind.WAIT, seconds=wait.seconds, text=_why(wait.window)))
                await self.sleep(min(wait.seconds, 1.0))

    async def _send_one(self, slot: int, job: Job) -> State | None:
        """Send one job; its new state, or None when it goes back in the queue untouched."""
        data = job.message()  # composed before anything is recorded: a failure here sends nothing
        now = self.clock()
        try:
            conn = await self._connection(slot)
        except DeliveryError:
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            # No connection at all: the server is down (or refuses us) for everyone. Pause and
            # probe; the recipient's attempts are untouched.
            self.pace.unreachable(self.clock())
            self._unreachable = _describe(err, self.smtp)
            down = self.pace.down_since
            limit = self.smtp.outage_limit if self.outage_limit is None else self.outage_limit
            if down is not None and self.clock() - down > limit:
                self.server_down = True
                raise ServerDown(
                    _("{address} unreachable for {seconds} s: {error}").format(
                        address=f"{self.smtp.host}:{self.smtp.port}",
                        seconds=f"{self.clock() - down:.0f}",
                        error=_describe(err, self.smtp),
                    )
                ) from None
            return None
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
        most = size_limit(client)
        if most is not None:
            if len(data) > most:  # refused before a command is sent: the server said its limit
                unsent = [ledger.begin(job.key, now)]
                return await self._too_big(job, len(data), most, unsent)
            options = [*options, f"SIZE={len(data)}"]  # RFC 1870: refused at MAIL, if at all
        # The start is committed with the step that follows it (the body mark, or how the
        # transaction ended): lost in a crash before then, the recipient stays pending or
        # deferred, which is what a transaction that never reached the body recovers to.
        unwritten: list[Write] = [ledger.begin(job.key, now)]
        in_body = False
        wire: smtpwire.Wire | None = None
        mail, rcpt = self.dsn.options(client, job.key, job.recipient) if self.dsn else ([], [])
        commands = [
            smtpwire.command(b"MAIL", job.sender, options + mail, encoding),
            smtpwire.command(b"RCPT", job.recipient, rcpt, encoding),
            b"DATA\r\n",
        ]
        try:
            with smtpwire.Wire(client) as wire:
                # One deadline moved at each reply rather than a timeout per reply (asyncio.wait_for:
                # two futures, a timer and a loop turn more for each of the four replies).
                envelope = self.writer.expect()  # the log may hold another mark for this one's
                try:
                    async with _Deadline(self.smtp.timeout) as deadline:
                        await smtpwire.exchange(
                            wire, commands, pipelined=conn.pipelined, step=deadline
                        )
                finally:
                    self.writer.expected(envelope)
                # The body mark must be on the disk before the final dot (only then may the server
                # accept the message): the body itself goes meanwhile, while the mark is fsynced.
                marked = self.writer.commit([ledger.begin(job.key, now, Phase.BODY)])
                unwritten, in_body = [], True
                reply = await self._transmit(slot, wire, data, marked)
            conn.messages += 1
            conn.last_used = self.clock()
            if reply.code != 250:
                raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        except aiosmtplib.SMTPResponseException as err:
            code, text = err.code, err.message
            if code in (530, 535):
                # The settings' fault (no login, no TLS): the recipient keeps its attempts.
                await self._write([*unwritten, ledger.put_back(job.key, code, text)])
                raise login_refused(self.smtp, client, code, text) from None
            await self._reset(slot, conn, code)
            if too_big(code, text):
                return await self._too_big(job, len(data), most, unwritten, code, text)
            refused = client_refused(code, text)
            verb = err.verb if isinstance(err, smtpwire.Refused) else None
            if refused or sender_refused(code, text, verb):
                # Every message would be refused the same way: the settings' fault, said once.
                await self._write([*unwritten, ledger.put_back(job.key, code, text)])
                if refused:
                    raise refused_client(self.smtp, refused, code, text) from None
                raise refused_sender(self.smtp, job.sender, code, text) from None
            if about_sender(code, text) and job.put_back < MAX_PUT_BACK:
                job.put_back += 1
                if about_rate(text):
                    self.pace.refused(self.clock())
                else:
                    self.pace.report.refusals += 1  # a bare 421 closing: reconnect, no slow-down
                if in_body:  # the body mark counted an attempt: give it back
                    await self._write([ledger.put_back(job.key, code, text)])
                return None
            writes = unwritten
            state = self._settle(job, code, text, writes, transient=400 <= code < 500)
            await self._write(writes)
            return self._done(job, state, code, text)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            self._drop(slot)
            mailed = wire is not None and wire.replies > 0  # the server heard of this message
            if not mailed and job.put_back < MAX_PUT_BACK:
                job.put_back += 1  # the connection was lost before the server heard of anyone
                return None
            text = _describe(err)
            if in_body and not isinstance(err, _NotDelivered):
                await self._write(
                    [ledger.outcome(job.key, State.UNCERTAIN, None, text, self.clock())]
                )
                return self._done(job, State.UNCERTAIN, None, text)
            state = self._settle(job, None, text, unwritten, transient=True)
            await self._write(unwritten)
            return self._done(job, state, None, text)
        text = reply.message
        self.pace.accepted(self.clock())
        # Lost in a crash, the message shows as uncertain (it was in flight): not waited for.
        self.writer.record([ledger.outcome(job.key, State.SENT, reply.code, text, self.clock())])
        return self._done(job, State.SENT, reply.code, text)

    async def _too_big(
        self,
        job: Job,
        size: int,
        limit: int | None,
        unwritten: list[Write],
        code: int | None = None,
        text: str = "",
    ) -> State:
        """A message the server does not take for its size: the campaign's or this recipient's.

        Without the recipient's own attachments it would be too big as well (or the recipient
        has none): every message is, the run stops and the recipient keeps its attempts. Else
        it is the recipient's own files: failed, with their names, not retried.
        """
        own = sum(n for _name, n in job.own)
        reply = None if code is None else f"{code} {text}"  # the server's refusal, if it said one
        if not job.own or (limit is not None and size - own > limit):
            if not unwritten:  # the body mark is in the log: give its attempt back
                await self._write([ledger.put_back(job.key, code, text)])
            raise TooBig(size - own, limit, self.smtp.host, reply)
        names = ", ".join(name for name, _n in job.own)
        if limit is None:
            why = _(
                "{host} refused the message of {size} ({reply}): its own attachments ({names}) make it too big"
            ).format(host=self.smtp.host, size=byte_size(size), reply=reply, names=names)
        else:
            why = _(
                "the message of {size} is over the {limit} that {host} takes: its own attachments ({names}) make it too big"
            ).format(size=byte_size(size), limit=byte_size(limit), host=self.smtp.host, names=names)
        state = self._settle(job, code, why, unwritten, transient=False)
        await self._write(unwritten)
        return self._done(job, state, code, why)

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

    async def _transmit(
        self, slot: int, wire: smtpwire.Wire, data: bytes, marked: Awaitable[None]
    ) -> aiosmtplib.SMTPResponse:
        """Send the body, the final dot once `marked` is done, and wait for the server's reply.

        The server may accept a message only once it has the final dot (RFC 5321 §4.1.1.4: a
        body cut before it is not delivered), so the body goes while its mark is being committed
        and the dot only once the mark is durable. If the mark cannot be committed, the
        connection is closed without the dot and the message is not delivered.
        """
        assert data.endswith(_END_OF_DATA)
        try:
            wire.write(memoryview(data)[: -len(_DOT)])
        except aiosmtplib.SMTPServerDisconnected:
            raise _NotDelivered("connection lost before the message body") from None
        try:
            await marked
        except BaseException:
            self._drop(slot)
            raise
        if not wire.is_connected:
            raise _NotDelivered("connection lost before the final dot")
        wire.write(_DOT)
        async with _Deadline(self.smtp.data_timeout):
            return await wire.reply()

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
            conn = _Connection.opened(await self._opener.open(), self.clock())
            self._pool[slot] = conn
            self.tally.connections += 1
        return conn

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

    async def _write(self, writes: Sequence[Write]) -> None:
        """Commit and fsync `writes` (and every write handed over before) before going on."""
        await self.writer.commit(writes)

    async def confirm(self) -> None:
        """Commit and fsync every recorded write now, and wait for it."""
        await self.writer.commit([])

    def _done(self, job: Job, state: State, code: int | None, text: str) -> State:
        self.tally.add(state)
        self._emit(Event(EventKind.DONE, key=job.key, state=state, code=code, text=text))
        return state

    def _emit(self, event: Event) -> None:
        if self.progress is not None:
            self.progress(event)


class _Deadline:
    """`asyncio.timeout(seconds)`, moved on at each step, its expiry raised as aiosmtplib's own."""

    def __init__(self, seconds: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._seconds = seconds
        self._timeout = asyncio.Timeout(self._loop.time() + seconds)

    def again(self) -> None:
        """Give the next step as long again, from now."""
        self._timeout.reschedule(self._loop.time() + self._seconds)

    async def __aenter__(self) -> _Deadline:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            await self._timeout.__aexit__(kind, error, trace)
        except TimeoutError:
            raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None


class _NotDelivered(aiosmtplib.SMTPServerDisconnected):
    """The connection was lost during the body, before its final dot: the server has no message."""


def _why(window: Any) -> str:
    if window is None:
        return _("throttle")
    if window.cap == 0:  # the send window (campaign.window): closed, not a count
        return _("send window")
    limits = {
        "second": N_("per-second limit ({cap})"),
        "minute": N_("per-minute limit ({cap})"),
        "hour": N_("per-hour limit ({cap})"),
        "day": N_("per-day limit ({cap})"),
    }
    known = limits.get(str(window.name))
    if known is None:
        return f"per-{window.name} limit ({window.cap})"
    return _(known).format(cap=window.cap)


def _describe(err: BaseException, smtp: Smtp | None = None) -> str:
    """The error in the organiser's words where we know them, else its type and text."""
    refused = isinstance(err, ConnectionRefusedError) or isinstance(
        err.__cause__, ConnectionRefusedError
    )
    if smtp is not None and (refused or "Connect call failed" in str(err)):
        return _("connection refused by {address} (is the SMTP server running?)").format(
            address=f"{smtp.host}:{smtp.port}"
        )
    name = type(err).__name__
    text = str(err).strip()
    return f"{name}: {text}" if text else name


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
        dispatcher._emit(Event(EventKind.STOPPING))

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
                    dispatcher._emit(Event(EventKind.WAIT, seconds=left, text=_("next retry")))
                    await dispatcher.sleep(min(left, 1.0))
                continue
            try:
                await dispatcher.run(plan)
            except Stopped:
                return "interrupted"
    except asyncio.CancelledError:
        return "interrupted"
    except (DayCapReached, ServerDown) as stop:
        return str(stop)
    finally:
        dispatcher.pace.outage_over(dispatcher.clock())
        for number in handled:
            loop.remove_signal_handler(number)
        with contextlib.suppress(BaseException):
            await dispatcher.close()

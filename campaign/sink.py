"""The local SMTP sink: an aiosmtpd server on 127.0.0.1 that stores every message it receives.

Each message becomes one file of a Maildir (`outbox/sink/new/`), readable by the owner only, that
any mail client can open. `--log FILE` also appends one tab-separated line per message (receive
time, Message-ID, recipients), which the crash tests and the benchmark use to count copies.
This is the default server of the sample settings: trying a campaign sends nothing anywhere.

With a `Remote` it also plays the recipients' servers (`campaign.bounces` reads what it writes):
a recipient matching `bounce` (default `rebond.*@*`) is refused the way Postfix refuses an
unknown user, and its RFC 3464 bounce, as Postfix writes them, lands in the sender's mailbox
Maildir; one matching `absence` (default `absence.*@*`) gets the message and answers with a
French out-of-office (`Auto-Submitted: auto-replied`, RFC 3834).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import itertools
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime, formatdate, make_msgid
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP

from campaign.errors import Place, UsageError
from campaign.i18n import _
from campaign.outbox import private_dir

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_END_OF_DATA = b"\r\n.\r\n"
SINK_HOSTNAME = "campaign-sink"


@dataclass(frozen=True)
class Received:
    """One message the sink stored."""

    at: float
    message_id: str
    recipients: tuple[str, ...]
    size: int


def message_id_of(data: bytes) -> str:
    """The Message-ID header of a raw message (headers only), or an empty string."""
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).strip().decode("ascii", "replace") if found else ""


DEFAULT_BOUNCE = "rebond.*@*"
DEFAULT_ABSENCE = "absence.*@*"


@dataclass(frozen=True)
class Remote:
    """The sink playing the recipients' servers: which addresses bounce or are away, and the
    Maildir of the sender's mailbox where their answers arrive."""

    mailbox: Path
    bounce: str = DEFAULT_BOUNCE
    absence: str = DEFAULT_ABSENCE

    def bounces(self, address: str) -> bool:
        return fnmatch.fnmatch(address.lower(), self.bounce.lower())

    def away(self, address: str) -> bool:
        return fnmatch.fnmatch(address.lower(), self.absence.lower())


def postfix_bounce(data: bytes, sender: str, recipient: str, *, now: float) -> bytes:
    """The RFC 3464 report Postfix writes for a recipient its mailbox table does not know."""
    boundary = f"{int(now)}.{os.getpid()}/{SINK_HOSTNAME}"
    queue_id = f"{int(now * 1000) & 0xFFFFFFFF:08X}"
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    returned = head.decode("utf-8", "replace").replace("\r\n", "\n")
    reply = (
        f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in virtual "
        "mailbox table"
    )
    date = formatdate(now, localtime=True)
    text = f"""Return-Path: <>
Date: {date}
From: MAILER-DAEMON@{SINK_HOSTNAME} (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {sender}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="{boundary}"
Content-Transfer-Encoding: 8bit
Message-Id: <20201201000000.{queue_id}@{SINK_HOSTNAME}>

This is a MIME-encapsulated message.

--{boundary}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {SINK_HOSTNAME}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{recipient}>: host mx.example.org[192.0.2.25] said: {reply} (in reply to RCPT TO
    command)

--{boundary}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; {SINK_HOSTNAME}
X-Postfix-Queue-ID: {queue_id}
X-Postfix-Sender: rfc822; {sender}
Arrival-Date: {date}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {reply}

--{boundary}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

{returned}

--{boundary}--
"""
    return text.encode("utf-8")


def out_of_office(data: bytes, sender: str, recipient: str, *, now: float) -> bytes:
    """A French out-of-office answer, marked the RFC 3834 way, to the message `data`."""
    from email.message import EmailMessage
    from email.parser import BytesHeaderParser
    from email.policy import SMTP as SMTP_POLICY

    original = BytesHeaderParser().parsebytes(data)
    answer = EmailMessage(policy=SMTP_POLICY)
    answer["From"] = recipient
    answer["To"] = sender
    subject = " ".join(str(original.get("Subject", "")).split())
    answer["Subject"] = f"Réponse automatique : {subject}"[:200]
    answer["Date"] = format_datetime(time_to_datetime(now))
    answer["Message-ID"] = make_msgid(domain=recipient.rpartition("@")[2] or "example.org")
    mid = " ".join(str(original.get("Message-ID", "")).split())
    if mid:
        answer["In-Reply-To"] = mid
        answer["References"] = mid
    answer["Auto-Submitted"] = "auto-replied"
    answer["X-Auto-Response-Suppress"] = "All"
    answer.set_content(
        "Bonjour,\n\nJe suis absent(e) du bureau et ne lirai pas vos messages avant mon retour."
        "\nEn cas d'urgence, veuillez contacter le secrétariat de direction.\n\nCordialement\n"
    )
    return answer.as_bytes()


def time_to_datetime(now: float) -> Any:
    from datetime import datetime

    return datetime.fromtimestamp(now).astimezone()


class MaildirHandler:
    """aiosmtpd handler: store each message in a Maildir, optionally log its arrival."""

    def __init__(
        self,
        maildir: Path,
        *,
        log: Path | None = None,
        on_message: Callable[[Received], None] | None = None,
        remote: Remote | None = None,
    ) -> None:
        private_dir(maildir)
        for sub in ("tmp", "new", "cur"):
            private_dir(maildir / sub)
        self.maildir = maildir
        self._names = itertools.count()
        self.count = 0  # messages stored in new/ (what `campaign sink` says when it stops)
        self._log: IO[str] | None = None
        if log is not None:
            # The log's folder is the user's (it may be /tmp or their home): never tighten it;
            # the file itself is private.
            log.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._log = os.fdopen(fd, "a", encoding="utf-8")
        self.on_message = on_message
        self.remote = remote
        # The sender's mailbox, where the remote servers' answers arrive.
        self._mailbox = MaildirHandler(remote.mailbox) if remote is not None else None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        delivered = True
        if self.remote is not None and self._mailbox is not None:
            # A remote server accepts the message, then reports: the bounce comes back later.
            delivered = self._play(data, str(envelope.mail_from or ""), list(envelope.rcpt_tos))
        if delivered:
            self.deliver(data)
            self.count += 1  # messages stored: one a remote server bounced is not in the Maildir
        received = Received(time.time(), message_id_of(data), tuple(envelope.rcpt_tos), len(data))
        if self._log is not None:
            self._log.write(
                f"{received.at:.6f}\t{received.message_id}\t{','.join(received.recipients)}\n"
            )
            self._log.flush()
        if self.on_message is not None:
            self.on_message(received)
        return "250 2.0.0 OK: stored"

    def deliver(self, data: bytes) -> Path:
        """Store one message the Maildir way: write it under tmp/, then rename it into new/.

        Unlike `mailbox.Maildir.add`, no fsync: this is a local test server, and an fsync per
        message would make it, rather than the sender, the bottleneck of every local run.
        """
        name = f"{time.time():.6f}.P{os.getpid()}Q{next(self._names)}.{SINK_HOSTNAME}"
        temporary = self.maildir / "tmp" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.replace(b"\r\n", b"\n"))
        target = self.maildir / "new" / name
        os.rename(temporary, target)
        return target

    def _play(self, data: bytes, sender: str, recipients: list[str]) -> bool:
        """Write the remote servers' answers; return whether any recipient got the message."""
        assert self.remote is not None and self._mailbox is not None
        now = time.time()
        kept = False
        for recipient in recipients:
            if self.remote.bounces(recipient):
                self._mailbox.deliver(postfix_bounce(data, sender, recipient, now=now))
                continue
            kept = True
            if self.remote.away(recipient):
                self._mailbox.deliver(out_of_office(data, sender, recipient, now=now))
        return kept

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class SinkSMTP(SMTP):
    """aiosmtpd's server, reading the message body in chunks rather than line by line.

    aiosmtpd awaits one `readuntil` per line of DATA: ~600 awaits for a 30 KB PDF in base64. Reading
    64 KB chunks and searching for the final dot makes the sink several times faster, so that the
    sink, not the sender, is no longer what a local run measures.
    """

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buffer = bytearray(b"\r\n")  # the DATA line's CRLF: an empty message is just ".\r\n"
        searched = 0
        while True:
            chunk = await self._reader.read(65536)
            if not chunk:
                return  # the client went away mid-message: store nothing
            buffer += chunk
            end = buffer.find(_END_OF_DATA, searched)
            if end >= 0:
                break
            searched = max(0, len(buffer) - len(_END_OF_DATA) + 1)
        leftover = bytes(buffer[end + len(_END_OF_DATA) :])
        if leftover:  # a pipelining client's next command: give it back to the reader
            self._reader._buffer[0:0] = leftover  # type: ignore[attr-defined]
        # Undo dot-stuffing (RFC 5321 §4.5.2): a line starting with "." had one more added.
        content = bytes(buffer[2 : end + 2]).replace(b"\r\n.", b"\r\n")
        if content.startswith(b"."):
            content = content[1:]
        if self.data_size_limit and len(content) > self.data_size_limit:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        await self.push(status if isinstance(status, str) else "250 OK")
        self._set_post_data_state()  # type: ignore[no-untyped-call]


async def serve(
    handler: MaildirHandler,
    *,
    host: str = "127.0.0.1",
    port: int = 8025,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM in the main thread)."""
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    try:
        server = await loop.create_server(
            lambda: SinkSMTP(handler, hostname=SINK_HOSTNAME, enable_SMTPUTF8=True),
            host=host,
            port=port,
        )
    except OSError as err:
        reasons = {  # the system's own text is English whatever the organiser reads
            errno.EADDRINUSE: _("the port is already taken (by another program, or another sink)"),
            errno.EACCES: _("not allowed (ports below 1024 are the system's)"),
            errno.EADDRNOTAVAIL: _("this machine has no such address"),
        }
        raise UsageError(
            _("cannot listen on {address}: {reason}").format(
                address=f"{host}:{port}", reason=reasons.get(err.errno or 0, err.strerror or err)
            ),
            place=Place(option="--port"),
            hint=_("another sink may already run there; stop it or choose another {option}").format(
                option="--port"
            ),
        ) from None
    handled: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
            handled.append(number)
    try:
        if on_ready is not None:
            on_ready(server.sockets[0].getsockname()[1])
        await stop.wait()
    finally:
        for number in handled:
            loop.remove_signal_handler(number)
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        handler.close()


def run_sink(
    maildir: Path,
    *,
    port: int = 8025,
    log: Path | None = None,
    on_ready: Callable[[int], None] | None = None,
    on_message: Callable[[Received], None] | None = None,
    remote: Remote | None = None,
) -> int:
    """Run the sink until Ctrl-C or SIGTERM; return how many messages it stored."""
    try:
        handler = MaildirHandler(maildir, log=log, on_message=on_message, remote=remote)
    except OSError as err:
        raise UsageError(
            _("cannot store messages in {path}: {reason}").format(
                path=err.filename or maildir, reason=err.strerror
            ),
            place=Place(option="--maildir" if err.filename != str(log) else "--log"),
            hint=_("choose a folder you can write to"),
        ) from None
    asyncio.run(serve(handler, port=port, on_ready=on_ready))
    return handler.count


def read_log(path: Path) -> list[Received]:
    """The messages a sink's `--log` file records."""
    found: list[Received] = []
    if not path.exists():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        at, message_id, recipients = ([*line.split("\t"), "", ""])[:3]
        found.append(Received(float(at), message_id, tuple(filter(None, recipients.split(","))), 0))
    return found

"""The local SMTP sink: an aiosmtpd server on 127.0.0.1 that stores every message it receives.

Each message becomes one file of a Maildir (`outbox/sink/new/`), readable by the owner only, that
any mail client can open. `--log FILE` also appends one tab-separated line per message (receive
time, Message-ID, recipients), which the crash tests and the benchmark use to count copies.
This is the default server of the sample settings: trying a campaign sends nothing anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP

from campaign.errors import Place, UsageError
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


class MaildirHandler:
    """aiosmtpd handler: store each message in a Maildir, optionally log its arrival."""

    def __init__(
        self,
        maildir: Path,
        *,
        log: Path | None = None,
        on_message: Callable[[Received], None] | None = None,
    ) -> None:
        private_dir(maildir)
        for sub in ("tmp", "new", "cur"):
            private_dir(maildir / sub)
        self.maildir = maildir
        self._names = itertools.count()
        self.count = 0
        self._log: IO[str] | None = None
        if log is not None:
            private_dir(log.parent)
            self._log = log.open("a", encoding="utf-8")
        self.on_message = on_message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        self.deliver(data)
        received = Received(time.time(), message_id_of(data), tuple(envelope.rcpt_tos), len(data))
        self.count += 1
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
        raise UsageError(
            f"cannot listen on {host}:{port}: {err.strerror}",
            place=Place(option="--port"),
            hint="another sink may already run there; stop it or choose another --port",
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
) -> int:
    """Run the sink until Ctrl-C or SIGTERM; return how many messages it stored."""
    try:
        handler = MaildirHandler(maildir, log=log, on_message=on_message)
    except OSError as err:
        raise UsageError(
            f"cannot store messages in {err.filename or maildir}: {err.strerror}",
            place=Place(option="--maildir" if err.filename != str(log) else "--log"),
            hint="choose a folder you can write to",
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

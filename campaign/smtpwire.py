"""One SMTP transaction on an open aiosmtplib connection: the commands pipelined, every reply kept.

Where the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go in one write and their three
replies come back together: one turn of the network per message instead of three before the
body. aiosmtplib's protocol keeps only the reply it is waiting for (a reply that arrives before it
is awaited is dropped), so while a transaction holds the connection `Wire` takes the transport's
data itself (`transport.set_protocol`, the asyncio API for handing a connection over) and gives
aiosmtplib its connection back afterwards, for RSET, NOOP and QUIT. A lost connection is passed
on to aiosmtplib's protocol too, so the client knows it is closed.

`exchange` sends the commands of the envelope and returns the reply to DATA. RFC 2920 §3.1: the
client checks every reply of a group; when MAIL or RCPT is refused, the replies still due are read
before anything else is sent, and a DATA that was accepted anyway gets the final dot alone (an
empty message the server then refuses, for want of a recipient). Without PIPELINING the same
commands go one at a time, each after the reply to the one before.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import aiosmtplib
from aiosmtplib.email import quote_address

_MAX_REPLY = 32 * 1024  # bytes of one unfinished reply kept (aiosmtplib's own bound)
_FORBIDDEN = re.compile(rb"[\x00-\x1f\x7f]")  # as aiosmtplib: no CR, LF or NUL in a command
_ACCEPTED = {b"MAIL": (250,), b"RCPT": (250, 251), b"DATA": (354,)}


class Refused(aiosmtplib.SMTPResponseException):
    """A command of the envelope was refused: `verb` says which (b"MAIL", b"RCPT" or b"DATA")."""

    def __init__(self, code: int, message: str, verb: bytes) -> None:
        super().__init__(code, message)
        self.verb = verb


class Steps(Protocol):
    def again(self) -> None: ...  # the next reply gets the full timeout again


class Wire(asyncio.Protocol):
    """The connection's transport while a transaction holds it, and a reader that keeps every reply."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        protocol = client.protocol
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self._inner = protocol
        self._transport: Any = transport
        self._buffer = bytearray()
        self._replies: deque[aiosmtplib.SMTPResponse] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self.replies = 0  # replies read: once MAIL's is in, the server knows of the message

    def __enter__(self) -> Wire:
        self._transport.set_protocol(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._transport.set_protocol(self._inner)  # unanswered data (none is due) is dropped

    @property
    def is_connected(self) -> bool:
        return self._error is None and not self._transport.is_closing()

    def abandon(self) -> None:
        """Close the connection: its replies are out of step, it is not reused."""
        self._transport.close()

    def write(self, data: bytes | memoryview) -> None:
        if not self.is_connected:
            raise aiosmtplib.SMTPServerDisconnected("connection lost")
        self._transport.write(data)

    async def reply(self) -> aiosmtplib.SMTPResponse:
        """The next reply of the server, in order; the connection's loss once none is left."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.replies += 1
        return self._replies.popleft()

    # asyncio.Protocol: called by the transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (reply := self._parse()) is not None:
                self._replies.append(reply)
        except aiosmtplib.SMTPResponseException as err:
            self._fail(err)
            self._transport.close()
        if len(self._buffer) > _MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "reply too long"))
            self._transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)
        self._inner.connection_lost(exc)  # aiosmtplib's client learns it is closed

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _parse(self) -> aiosmtplib.SMTPResponse | None:
        """The first complete reply in the buffer (taken out of it), as aiosmtplib reads one."""
        buffer, start, lines = self._buffer, 0, []
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end])
            start = end + 1
            code = line[:3]
            if not (len(code) == 3 and code.isdigit()):
                text = line.decode("utf-8", "replace")
                raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}")
            lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if line[3:4] != b"-":
                del buffer[:start]
                return aiosmtplib.SMTPResponse(int(code), "\n".join(lines))
        return None


# An address of atext, dots and one @ (what nearly every validated address is): aiosmtplib's
# quote_address (email.utils.parseaddr) gives it back unchanged between angle brackets, and took
# 8 % of the sender's time at 80 µs an address (tests/test_smtpwire.py compares the two).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")


def quoted(address: str, encoding: str) -> bytes:
    """`<address>` as MAIL FROM and RCPT TO take it, as aiosmtplib quotes it."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    return _quoted(address, encoding)


@functools.lru_cache(maxsize=64)
def _quoted(address: str, encoding: str) -> bytes:
    return quote_address(address).encode(encoding)


def command(verb: bytes, address: str, options: Sequence[str], encoding: str) -> bytes:
    """`MAIL FROM:<address> options` or `RCPT TO:<address> options`, with its CRLF."""
    words = [verb + (b" FROM:" if verb == b"MAIL" else b" TO:") + quoted(address, encoding)]
    words += [option.encode("ascii") for option in options]
    line = b" ".join(words)
    if _FORBIDDEN.search(line):
        raise ValueError("Command arg contains a prohibited control character")
    return line + b"\r\n"


async def exchange(
    wire: Wire, commands: Sequence[bytes], *, pipelined: bool, step: Steps
) -> aiosmtplib.SMTPResponse:
    """Send MAIL, RCPT and DATA; the 354. `step.again()` is called after each reply.

    A refusal raises `Refused` (an `SMTPResponseException`) with the first refused reply and its
    command, once the replies still due have been read (or the connection was lost meanwhile:
    the refusal is still what is said).
    """
    if pipelined:
        wire.write(b"".join(commands))
    refused: aiosmtplib.SMTPResponse | None = None
    verb = b""  # the command refused
    replies: list[aiosmtplib.SMTPResponse] = []
    for line in commands:
        if not pipelined:
            wire.write(line)
        try:
            reply = await wire.reply()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            if refused is None:
                raise
            wire.abandon()  # the replies are out of step: the connection is not reused
            break
        replies.append(reply)
        step.again()
        if refused is None and reply.code not in _ACCEPTED[line[:4]]:
            refused, verb = reply, line[:4]
            if not pipelined or reply.code == 421:  # nothing more is due, or the server is closing
                break
    if refused is None:
        return replies[-1]
    if len(replies) == len(commands) and replies[-1].code == 354 and wire.is_connected:
        wire.write(b".\r\n")  # DATA accepted although the envelope was not: send an empty message
        try:
            await wire.reply()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            wire.abandon()
    raise Refused(refused.code, refused.message, verb)

"""Pipelined transactions (RFC 2920) against a raw server that answers from a script.

The server runs on 127.0.0.1 in the test's own event loop and records what it received, one
chunk per read, so a test sees whether MAIL, RCPT and DATA came in one write; it sends the
replies of a group in one write, which is what aiosmtplib's own reader loses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib
import pytest

from campaign import smtpwire

EHLO = b"250-test.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
PLAIN_EHLO = b"250-test.example.org\r\n250 8BITMIME\r\n"
ENVELOPE = [
    smtpwire.command(b"MAIL", "bureau@example.org", [], "ascii"),
    smtpwire.command(b"RCPT", "personne1@example.org", ["NOTIFY=FAILURE"], "ascii"),
    b"DATA\r\n",
]


class Scripted:
    """Answers each command line with `answers(line)`; the replies to one read go in one write."""

    def __init__(self, answers: Callable[[bytes], bytes], ehlo: bytes = EHLO) -> None:
        self.answers = answers
        self.ehlo = ehlo
        self.chunks: list[bytes] = []  # what each read brought, after the EHLO
        self.port = 0

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test.example.org ESMTP\r\n")
        pending, in_body = b"", False
        while data := await reader.read(65536):
            pending += data
            if not pending.startswith(b"EHLO"):
                self.chunks.append(data)
            out = b""
            while b"\n" in pending:
                if in_body:
                    if b"\r\n.\r\n" not in b"\r\n" + pending:
                        break
                    _, _, pending = (b"\r\n" + pending).partition(b"\r\n.\r\n")
                    in_body = False
                    out += self.answers(b".")
                    continue
                line, _, pending = pending.partition(b"\n")
                line = line.rstrip(b"\r")
                if line.startswith(b"EHLO"):
                    out += self.ehlo
                    continue
                reply = self.answers(line)
                in_body = reply.startswith(b"354")
                out += reply
                if line == b"QUIT":
                    writer.write(out)
                    writer.close()
                    return
            if out:
                writer.write(out)  # every reply due, in one write
                await writer.drain()
        writer.close()


def accepting(line: bytes) -> bytes:
    if line.startswith(b"DATA"):
        return b"354 go ahead\r\n"
    if line == b".":
        return b"250 2.0.0 Ok: queued as ABC123\r\n"
    if line.startswith(b"QUIT"):
        return b"221 bye\r\n"
    return b"250 2.1.0 Ok\r\n"


async def _client(port: int) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
    await client.connect()
    await client.ehlo()
    return client


class _Steps:
    def __init__(self) -> None:
        self.count = 0

    def again(self) -> None:
        self.count += 1


def run(test: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(test(), 20))


def test_mail_rcpt_and_data_go_in_one_write_and_their_three_replies_are_all_kept() -> None:
    async def test() -> None:
        async with Scripted(accepting) as server:
            client = await _client(server.port)
            steps = _Steps()
            with smtpwire.Wire(client) as wire:
                start = await smtpwire.exchange(wire, ENVELOPE, pipelined=True, step=steps)
                assert start.code == 354 and steps.count == 3
                wire.write(b"Subject: x\r\n\r\nbody\r\n.\r\n")
                done = await wire.reply()
            assert (done.code, done.message) == (250, "2.0.0 Ok: queued as ABC123")
            assert server.chunks[0] == b"".join(ENVELOPE)  # the group in one write
            # The connection is aiosmtplib's again, in step: RSET and QUIT are answered.
            assert (await client.rset()).code == 250
            assert (await client.quit()).code == 221

    run(test)


def test_without_pipelining_each_command_waits_for_the_reply_before_it() -> None:
    async def test() -> None:
        async with Scripted(accepting, ehlo=PLAIN_EHLO) as server:
            client = await _client(server.port)
            assert not client.supports_extension("pipelining")
            with smtpwire.Wire(client) as wire:
                await smtpwire.exchange(wire, ENVELOPE, pipelined=False, step=_Steps())
            assert server.chunks == ENVELOPE  # one command per read: never two in flight
            client.close()

    run(test)


def test_a_refused_recipient_reads_every_reply_due_and_answers_an_accepted_data_with_a_dot() -> (
    None
):
    """RFC 2920 §3.1: a DATA accepted although no recipient was gets the final dot alone."""

    def refusing(line: bytes) -> bytes:
        if line.startswith(b"RCPT"):
            return b"550-5.1.1 <personne1@example.org>:\r\n550 5.1.1 user unknown\r\n"
        if line == b".":
            return b"554 5.5.1 Error: no valid recipients\r\n"
        return accepting(line)

    async def test() -> None:
        async with Scripted(refusing) as server:
            client = await _client(server.port)
            with smtpwire.Wire(client) as wire:
                with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                    await smtpwire.exchange(wire, ENVELOPE, pipelined=True, step=_Steps())
            assert refused.value.code == 550
            assert refused.value.message == "5.1.1 <personne1@example.org>:\n5.1.1 user unknown"
            assert server.chunks[-1] == b".\r\n"  # an empty message, no body
            assert (await client.rset()).code == 250  # the replies were all read: in step
            client.close()

    run(test)


def test_a_refused_sender_stops_the_one_at_a_time_exchange_at_once() -> None:
    def refusing(line: bytes) -> bytes:
        return b"553 5.7.1 sender refused\r\n" if line.startswith(b"MAIL") else accepting(line)

    async def test() -> None:
        async with Scripted(refusing, ehlo=PLAIN_EHLO) as server:
            client = await _client(server.port)
            with smtpwire.Wire(client) as wire:
                with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                    await smtpwire.exchange(wire, ENVELOPE, pipelined=False, step=_Steps())
            assert refused.value.code == 553
            assert server.chunks == ENVELOPE[:1]  # neither RCPT nor DATA was sent
            client.close()

    run(test)


def test_a_server_closing_after_421_is_reported_as_the_421_and_the_client_knows_it_is_closed() -> (
    None
):
    async def test() -> None:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 hi\r\n")
            await reader.readline()
            writer.write(EHLO)
            await reader.readline()  # MAIL
            writer.write(b"421 4.7.0 too many connections, closing\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        client = await _client(server.sockets[0].getsockname()[1])
        with smtpwire.Wire(client) as wire:
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await smtpwire.exchange(wire, ENVELOPE, pipelined=True, step=_Steps())
        assert refused.value.code == 421
        await asyncio.sleep(0.1)
        assert not client.is_connected  # the loss reached aiosmtplib's client
        server.close()

    run(test)


def test_replies_cut_anywhere_are_read_whole_and_in_order() -> None:
    async def test() -> None:
        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 hi\r\n")
            await reader.readline()
            writer.write(EHLO)
            for _ in ENVELOPE:
                await reader.readline()
            for byte in b"250-2.1.0 sender\r\n250 ok\r\n250 2.1.5 Ok\r\n354 go ahead\r\n":
                writer.write(bytes([byte]))  # one byte a write: replies cut at every place
                await writer.drain()
                await asyncio.sleep(0.001)
            await reader.read()

        server = await asyncio.start_server(session, "127.0.0.1", 0)
        client = await _client(server.sockets[0].getsockname()[1])
        with smtpwire.Wire(client) as wire:
            start = await smtpwire.exchange(wire, ENVELOPE, pipelined=True, step=_Steps())
            assert (start.code, start.message) == (354, "go ahead")
            assert wire.replies == 3
        client.close()
        server.close()

    run(test)


def test_a_malformed_reply_is_an_error_not_a_hang() -> None:
    def garbage(line: bytes) -> bytes:
        return b"hello there\r\n" if line.startswith(b"MAIL") else accepting(line)

    async def test() -> None:
        async with Scripted(garbage) as server:
            client = await _client(server.port)
            with smtpwire.Wire(client) as wire:
                with pytest.raises(aiosmtplib.SMTPResponseException, match="Malformed"):
                    await smtpwire.exchange(wire, ENVELOPE, pipelined=True, step=_Steps())
            client.close()

    run(test)


def test_a_command_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="prohibited"):
        smtpwire.command(b"RCPT", "personne1@example.org", ["NOTIFY=NEVER\r\nRSET"], "ascii")


def test_a_plain_address_is_quoted_as_aiosmtplib_quotes_it() -> None:
    import random

    from aiosmtplib.email import quote_address

    rng = random.Random(7)
    local, domain = "aZ09!#$%&'*+/=?^_`{|}~.-", "b0.-"
    plain = [
        "".join(rng.choice(local) for _ in range(rng.randint(1, 8)))
        + "@"
        + "".join(rng.choice(domain) for _ in range(rng.randint(1, 6)))
        for _ in range(20_000)
    ]
    others = ['"a b"@example.org', "Élise@exemple.fr", "a(b)@example.org", "<a@example.org>"]
    for address in plain + others:
        encoding = "ascii" if address.isascii() else "utf-8"
        assert smtpwire.quoted(address, encoding) == quote_address(address).encode(encoding)
    assert smtpwire.command(b"RCPT", "x.y@example.org", [], "ascii") == (
        b"RCPT TO:<x.y@example.org>\r\n"
    )

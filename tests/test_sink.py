"""The local sink: a real aiosmtpd server storing each message in a Maildir."""

from __future__ import annotations

import asyncio
import mailbox
import os
import signal
import smtplib
import stat
import subprocess
import sys
import threading
from email.message import EmailMessage
from pathlib import Path

from campaign.sink import MaildirHandler, Remote, message_id_of, read_log, serve
from tests.conftest import RunningSink


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "collectif@example.org"
    msg["To"] = f"personne{n}@example.org"
    msg["Subject"] = f"Lettre {n} — é"
    msg["Message-ID"] = f"<m{n}@example.org>"
    msg.set_content("Bonjour\n.ligne qui commence par un point\n")
    return msg


def test_sink_stores_each_message_in_a_private_maildir_and_logs_it(tmp_path: Path) -> None:
    maildir = tmp_path / "sink"
    handler = MaildirHandler(maildir, log=tmp_path / "received.tsv")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ports: list[int] = []
    ready = threading.Event()

    def on_ready(port: int) -> None:
        ports.append(port)
        ready.set()

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        await serve(handler, port=0, on_ready=on_ready, stop=stop)

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()))
    thread.start()
    assert ready.wait(10)
    with smtplib.SMTP("127.0.0.1", ports[0]) as client:
        for n in (1, 2):
            client.send_message(message(n))
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()

    box = mailbox.Maildir(str(maildir))
    stored = sorted(str(m["Message-ID"]) for m in box)
    assert stored == ["<m1@example.org>", "<m2@example.org>"]
    assert any(".ligne qui commence" in m.get_payload() for m in box)  # dot-unstuffed
    assert stat.S_IMODE(maildir.stat().st_mode) == 0o700
    received = read_log(tmp_path / "received.tsv")
    assert [r.message_id for r in received] == ["<m1@example.org>", "<m2@example.org>"]
    assert received[0].recipients == ("personne1@example.org",)
    assert received[0].at <= received[1].at


def test_message_id_of_reads_only_the_headers() -> None:
    raw = b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <not@this>\r\n"
    assert message_id_of(raw) == "<a@b>"
    assert message_id_of(b"Subject: x\r\n\r\nbody") == ""


def test_sink_command_runs_until_sigterm_and_says_where_messages_are(tmp_path: Path) -> None:
    maildir = tmp_path / "boite"
    process = subprocess.Popen(
        [sys.executable, "-m", "campaign.cli", "sink", "--port", "0", "--maildir", str(maildir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "sink listening on 127.0.0.1:" in line
        port = int(line.split("127.0.0.1:")[1].split(",")[0])
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.send_message(message(1))
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert f"sink stopped: 1 message stored in {maildir}/new" in rest
    assert len(list((maildir / "new").iterdir())) == 1


def test_a_message_the_sink_bounces_is_not_counted_as_stored(tmp_path: Path) -> None:
    # It said "42 messages stored" over a Maildir of 41: the rebond.* one went back as a bounce.
    maildir = tmp_path / "boite"
    with RunningSink(maildir, remote=Remote(tmp_path / "mailbox")) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port) as client:
            client.send_message(message(1), to_addrs=["rebond.personne1@example.org"])
            client.send_message(message(2))
        stored = sink.stored
    assert stored == len(list((maildir / "new").iterdir())) == 1
    assert len(list((tmp_path / "mailbox" / "new").iterdir())) == 1  # the bounce


def test_the_log_of_the_sink_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    from campaign.sink import MaildirHandler

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would lock other users (and daemons) out
    handler = MaildirHandler(tmp_path / "maildir", log=shared / "sink.log")
    handler.close()
    assert shared.stat().st_mode & 0o7777 == 0o1777
    assert (shared / "sink.log").stat().st_mode & 0o777 == 0o600

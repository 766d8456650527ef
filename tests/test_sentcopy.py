"""A copy of each message in Sent (mailbox.save_sent) into a local Maildir, sent through aiosmtpd."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from campaign import ledger
from campaign.compose import dot_stuffed
from campaign.ledger import Ledger, State
from campaign.sentcopy import META_KEY, message_id_in, unstuffed
from campaign.settings import load_settings
from tests.smtp_server import FaultyServer, Stored, make_project
from tests.test_send import cli, send, states


def _project(root: Path, port: int, save_sent: str, *, recipients: int = 3) -> Path:
    settings = make_project(root, port=port, recipients=recipients)
    with settings.open("a", encoding="utf-8") as handle:
        handle.write(
            f"mailbox:\n  maildir: mailbox\n  save_sent: {save_sent}\n  save_sent_wait: 0.3s\n"
        )
    return settings


def _sent_files(root: Path) -> list[Path]:
    return sorted((root / "mailbox" / ".Sent" / "cur").glob("*"))


def _copies(settings: Path) -> dict[str, str]:
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        return {email: state for email, _, state, _ in log.copies(["pending", "done", "failed"])}


def test_unstuffing_gives_back_the_message_file() -> None:
    raw = b"Subject: x\r\n\r\n.a line with a dot\r\n..two\r\nend\r\n"
    assert unstuffed(dot_stuffed(raw)) == raw
    assert (
        message_id_in(b"Message-ID: <a.b@example.org>\r\n\r\nMessage-ID: <c@d>")
        == "a.b@example.org"
    )


def test_always_files_the_exact_bytes_the_server_received_with_the_seen_flag(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always")
        report = send(settings)
    assert report.tally.sent == 3 and report.copies is not None
    assert (report.copies.saved, report.copies.failed) == (3, 0)
    files = _sent_files(tmp_path)
    assert len(files) == 3 and all(f.name.endswith(":2,S") for f in files)
    received = {s.message_id: s.data.replace(b"\r\n", b"\n") for s in server.stored}
    filed = {message_id_in(f.read_bytes()): f.read_bytes() for f in files}
    assert {k.strip("<>"): v for k, v in received.items()} == filed
    assert set(_copies(settings).values()) == {"done"}
    assert not list((tmp_path / "outbox" / "mini" / "sent-copies").glob("*.eml"))


def test_never_files_nothing(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "never")
        report = send(settings)
    assert report.tally.sent == 3 and report.copies is None
    assert not _sent_files(tmp_path) and not _copies(settings)


def test_auto_appends_when_the_provider_does_not_file_sent_mail(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "auto")
        report = send(settings)
    assert report.copies is not None and report.copies.saved == 3
    assert not report.copies.provider_files and len(_sent_files(tmp_path)) == 3
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        assert log.meta(META_KEY) == "append"  # later runs do not look again


def test_auto_appends_nothing_when_the_provider_files_sent_mail_like_gmail(
    tmp_path: Path,
) -> None:
    sent = tmp_path / "mailbox" / ".Sent"

    def file_it(stored: Stored) -> None:  # the provider's own copy, as Gmail makes it
        for sub in ("tmp", "new", "cur"):
            (sent / sub).mkdir(parents=True, exist_ok=True)
        name = stored.message_id.strip("<>").split("@")[0]
        (sent / "cur" / f"{name}.provider:2,S").write_bytes(stored.data)

    with FaultyServer(on_store=file_it) as server:
        settings = _project(tmp_path, server.port, "auto")
        report = send(settings)
    assert report.tally.sent == 3 and report.copies is not None
    assert report.copies.provider_files and report.copies.saved == 0
    assert len(_sent_files(tmp_path)) == 3  # the provider's, none of ours
    assert not _copies(settings)
    assert not list((tmp_path / "outbox" / "mini" / "sent-copies").glob("*.eml"))  # unspooled
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        assert log.meta(META_KEY) == "provider"


def test_an_append_failure_resends_nothing_and_the_copies_are_saved_later(
    tmp_path: Path,
) -> None:
    (tmp_path / "mailbox").mkdir()
    (tmp_path / "mailbox" / ".Sent").write_text("not a folder")  # the mailbox refuses
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always")
        report = send(settings)
        assert report.tally.sent == 3 and report.exit_code == 0
        assert report.copies is not None and report.copies.failed == 3
        assert set(states(settings).values()) == {State.SENT}  # the messages stay sent
        status = json.loads(cli(settings, "status", "mini", "--json").output)
        assert status["sent_copies_not_saved"] == 3
        (tmp_path / "mailbox" / ".Sent").unlink()
        again = send(settings)  # nothing left to send: only the copies are retried
        assert again.tally.sent == 0 and again.copies is not None
        assert again.copies.saved == 3
    assert len(server.stored) == 3  # never a second message
    assert len(_sent_files(tmp_path)) == 3
    assert set(_copies(settings).values()) == {"done"}
    status = json.loads(cli(settings, "status", "mini", "--json").output)
    assert status["sent_copies_not_saved"] == 0


def test_inbox_retries_the_copies_an_earlier_send_could_not_save(tmp_path: Path) -> None:
    (tmp_path / "mailbox").mkdir()
    (tmp_path / "mailbox" / ".Sent").write_text("not a folder")
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always", recipients=2)
        assert send(settings).copies.failed == 2  # type: ignore[union-attr]
    (tmp_path / "mailbox" / ".Sent").unlink()
    result = json.loads(cli(settings, "inbox", "mini", "--json").output)
    assert result["sent_copies"]["saved"] == 2
    assert len(_sent_files(tmp_path)) == 2 and len(server.stored) == 2


def test_a_crash_between_the_record_and_the_append_never_makes_two_copies(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always", recipients=2)
        send(settings)
        files = _sent_files(tmp_path)
        assert len(files) == 2
        # As if the process died after the APPEND of the first copy and before its `done`,
        # and after the record of the second copy but before its APPEND.
        log_path = tmp_path / "outbox" / "mini" / "delivery.sqlite"
        spool = tmp_path / "outbox" / "mini" / "sent-copies"
        spool.mkdir(exist_ok=True)
        with Ledger(log_path) as log:
            rows = log.copies(["done"])
            for email, mid, _, folder in rows:
                log.apply([ledger.sent_copy(email, mid, "pending", folder, 1.0)])
        layout = load_settings(settings).campaign("mini").layout
        by_id = {message_id_in(f.read_bytes()): f for f in files}
        for email, mid, _, _ in rows:
            shutil.copy(by_id[mid], layout.sent_copy(email))
        second = next(f for f in files if message_id_in(f.read_bytes()) == rows[1][1])
        second.unlink()  # its APPEND never happened
        again = send(settings)
    assert again.copies is not None and again.copies.saved == 2
    assert len(_sent_files(tmp_path)) == 2  # the first found in Sent, the second appended once
    assert sorted(message_id_in(f.read_bytes()) for f in _sent_files(tmp_path)) == sorted(
        mid for _, mid, _, _ in rows
    )
    assert len(server.stored) == 2


def test_the_copy_is_spooled_as_the_250_is_handled_before_the_thread_gets_to_it(
    tmp_path: Path,
) -> None:
    # The log records the message `sent` in a later turn of the loop; the copier's thread may be
    # minutes behind (a slow IMAP server). Spooled in the handler of the 250's event, the copy
    # survives a run killed in between.
    from campaign.dispatch import Event, EventKind
    from campaign.sentcopy import SentCopier

    settings = _project(tmp_path, 9, "always")
    layout = load_settings(settings).campaign("mini").layout
    copier = SentCopier(load_settings(settings), layout)  # its thread is never started
    email = "personne0001@example.org"
    data = dot_stuffed(b"Message-ID: <m1@example.org>\r\n\r\n.a dot\r\n")
    copier._bytes[email] = data  # what the job's message gave when it was sent
    copier.watching(None)(Event(EventKind.DONE, key=email, state=State.SENT))
    assert layout.sent_copy(email).read_bytes() == unstuffed(data)


def test_a_copy_a_killed_run_only_spooled_is_saved_by_the_next_send(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always", recipients=3)
        send(settings)
        # As if the run was killed after the 250 of the third message was recorded, while the
        # copier's thread had not yet recorded its copy: spooled, no row, not in Sent.
        layout = load_settings(settings).campaign("mini").layout
        with Ledger(layout.log) as log:
            email, mid, _, _ = log.copies(["done"])[2]
            log.conn.execute("DELETE FROM sent_copies WHERE email = ?", (email,))
        (filed,) = [f for f in _sent_files(tmp_path) if message_id_in(f.read_bytes()) == mid]
        shutil.move(filed, layout.sent_copy(email))
        status = json.loads(cli(settings, "status", "mini", "--json").output)
        assert status["sent_copies_not_saved"] == 1  # the organiser is told before the next run
        again = send(settings)
    assert again.copies is not None and (again.copies.saved, again.copies.failed) == (1, 0)
    assert len(server.stored) == 3  # the message itself is not sent again
    assert sorted(message_id_in(f.read_bytes()) for f in _sent_files(tmp_path)).count(mid) == 1
    assert set(_copies(settings).values()) == {"done"} and len(_copies(settings)) == 3
    assert not layout.sent_copy(email).exists()
    assert (
        json.loads(cli(settings, "status", "mini", "--json").output)["sent_copies_not_saved"] == 0
    )


def test_a_spool_that_cannot_be_written_stops_no_send(tmp_path: Path) -> None:
    # The spool is written as the 250's event is handled; a disk fault there must not end the
    # run: the messages stay sent once each, and the copies are said not saved.
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, "always")
        (tmp_path / "outbox" / "mini").mkdir(parents=True)
        (tmp_path / "outbox" / "mini" / "sent-copies").write_text("not a folder")
        report = send(settings)
    assert report.tally.sent == 3 and report.exit_code == 0
    assert len(server.stored) == 3
    assert report.copies is not None and report.copies.saved == 0 and report.copies.errors

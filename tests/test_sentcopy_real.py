"""save_sent against a real Dovecot (IMAP APPEND), the messages sent through aiosmtpd."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from campaign import ledger
from campaign.ledger import Ledger, State
from campaign.settings import load_settings
from tests.mailservers import USERS, Dovecot
from tests.smtp_server import FaultyServer, make_project
from tests.test_send import cli, send, states

USER = "collectif@example.org"


def _project(root: Path, port: int, dovecot: Dovecot, *, sent: str = "", n: int = 3) -> Path:
    settings = make_project(root, port=port, recipients=n)
    folders = f"\n  folders: {{sent: {sent}}}" if sent else ""
    with settings.open("a", encoding="utf-8") as handle:
        handle.write(
            f"mailbox:\n  imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, security: none,"
            f" username: {USER}, password_env: CAMPAIGN_IMAP_PASSWORD}}\n"
            f"  save_sent: always{folders}\n"
        )
    return settings


def _sent(dovecot: Dovecot) -> dict[int, dict[bytes, Any]]:
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False, timeout=10)
    try:
        client.login(USER, USERS[USER])
        client.select_folder("Sent", readonly=True)
        uids = client.search("ALL")
        return dict(client.fetch(uids, ["FLAGS", "BODY.PEEK[]"])) if uids else {}
    finally:
        client.logout()


@pytest.fixture
def imap(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    dovecot.clear()
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", USERS[USER])
    return dovecot


def test_always_appends_to_the_sent_folder_the_bytes_the_server_received_seen(
    tmp_path: Path, imap: Dovecot
) -> None:
    with FaultyServer() as server:
        report = send(_project(tmp_path, server.port, imap))
    assert report.tally.sent == 3 and report.copies is not None
    assert (report.copies.saved, report.copies.folder) == (3, "Sent")  # found by \Sent
    copies = _sent(imap)
    assert len(copies) == 3
    assert all(b"\\Seen" in data[b"FLAGS"] for data in copies.values())
    assert sorted(d[b"BODY[]"] for d in copies.values()) == sorted(s.data for s in server.stored)


def test_an_append_refused_resends_nothing_and_inbox_saves_the_copy_later(
    tmp_path: Path, imap: Dovecot
) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, imap, sent="Nulle-part", n=2)
        report = send(settings)
        assert report.tally.sent == 2 and report.copies is not None
        assert report.copies.failed == 2 and report.exit_code == 0
        assert set(states(settings).values()) == {State.SENT}
        status = json.loads(cli(settings, "status", "mini", "--json").output)
        assert status["sent_copies_not_saved"] == 2
        # The organiser names the right folder; inbox retries the copies, never the messages.
        text = settings.read_text(encoding="utf-8").replace("Nulle-part", "Sent")
        settings.write_text(text, encoding="utf-8")
        result = cli(settings, "inbox", "mini", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["sent_copies"]["saved"] == 2
    assert len(server.stored) == 2 and len(_sent(imap)) == 2
    status = json.loads(cli(settings, "status", "mini", "--json").output)
    assert status["sent_copies_not_saved"] == 0


def test_a_copy_recorded_but_not_known_to_be_appended_is_looked_for_first(
    tmp_path: Path, imap: Dovecot
) -> None:
    with FaultyServer() as server:
        settings = _project(tmp_path, server.port, imap, n=2)
        send(settings)
        assert len(_sent(imap)) == 2
        layout = load_settings(settings).campaign("mini").layout
        # A crash after the APPEND, before `done`: the log says pending, the bytes are spooled.
        by_id = {s.message_id.strip("<>"): s.data for s in server.stored}
        with Ledger(layout.log) as log:
            for email, mid, _, folder in log.copies(["done"]):
                log.apply([ledger.sent_copy(email, mid, "pending", folder, 1.0)])
                layout.sent_copy(email).parent.mkdir(parents=True, exist_ok=True)
                layout.sent_copy(email).write_bytes(by_id[mid])
        again = send(settings)
    assert again.copies is not None and again.copies.saved == 2
    assert len(_sent(imap)) == 2  # found in Sent: not appended a second time
    assert len(server.stored) == 2

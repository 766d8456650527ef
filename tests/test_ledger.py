"""The delivery log: states and transitions, recovery after a crash, durability, export."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from campaign import ledger
from campaign.errors import StateError, UsageError
from campaign.ledger import Entry, Ledger, State
from campaign.logwriter import LedgerWriter
from campaign.status import export_deliveries, neutralise

NOW = 1_800_000_000.0


def entry(n: int, name: str | None = None) -> Entry:
    return Entry(f"Personne{n}@Example.org", n + 1, name or f"Personne {n}", f"<id{n}@example.org>")


@pytest.fixture
def log(tmp_path: Path) -> Ledger:
    opened = Ledger(tmp_path / "outbox" / "c" / "delivery.sqlite")
    opened.enqueue([entry(1), entry(2), entry(3)], [], NOW)
    return opened


def test_new_recipients_are_pending_and_keyed_by_lower_case_address(log: Ledger) -> None:
    assert log.counts()["pending"] == 3
    found = log.get("PERSONNE1@example.org")
    assert found is not None
    assert found.address == "Personne1@Example.org"
    assert found.message_id == "<id1@example.org>"


def test_a_new_log_makes_the_campaigns_message_id_salt_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    with Ledger(path) as first:
        salt = first.id_salt()
    assert len(salt) == 32 and int(salt, 16) >= 0
    with Ledger(path) as again:
        assert again.id_salt() == salt  # every attempt of a message keeps its Message-ID
    with Ledger(tmp_path / "other.sqlite") as other:
        assert other.id_salt() != salt


def test_a_log_that_queued_before_salts_keeps_the_ids_it_holds(log: Ledger) -> None:
    assert log.id_salt() == ""  # its recipients were queued under unsalted Message-IDs
    assert log.id_salt() == ""


def test_the_log_is_private_and_in_wal_mode(log: Ledger) -> None:
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    assert log.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_full_transaction_is_recorded_step_by_step(log: Ledger) -> None:
    key = "personne1@example.org"
    log.apply([ledger.begin(key, NOW)])
    row = log.get(key)
    assert row is not None and (row.state, row.phase, row.attempts) == (
        State.SENDING,
        "envelope",
        1,
    )
    log.apply([ledger.body_in_flight(key, NOW + 1)])
    assert log.get(key).phase == "body"  # type: ignore[union-attr]
    log.apply([ledger.outcome(key, State.SENT, 250, "OK queued", NOW + 2)])
    row = log.get(key)
    assert row is not None
    assert (row.state, row.phase, row.last_code, row.sent_at) == (State.SENT, None, 250, NOW + 2)
    assert log.sent_times(NOW) == [NOW + 2]


def test_recover_tells_messages_that_never_left_from_those_on_the_wire(log: Ledger) -> None:
    log.apply([ledger.begin("personne1@example.org", NOW)])
    log.apply(
        [
            ledger.begin("personne2@example.org", NOW),
            ledger.body_in_flight("personne2@example.org", NOW),
        ]
    )
    assert log.recover() == (1, 1)
    assert log.get("personne1@example.org").state is State.PENDING  # type: ignore[union-attr]
    unsure = log.get("personne2@example.org")
    assert unsure is not None and unsure.state is State.UNCERTAIN
    assert "before the server replied" in (unsure.last_text or "")
    assert log.recover() == (0, 0)


def test_deferred_recipients_are_due_when_their_retry_time_comes(log: Ledger) -> None:
    key = "personne1@example.org"
    log.apply(
        [
            ledger.begin(key, NOW),
            ledger.outcome(key, State.DEFERRED, 451, "later", NOW, next_attempt_at=NOW + 60),
        ]
    )
    assert key not in {d.email for d in log.due(NOW + 59)}
    assert key in {d.email for d in log.due(NOW + 60)}
    assert log.next_retry() == NOW + 60


def test_requeue_makes_failed_and_uncertain_pending_again(log: Ledger) -> None:
    log.apply([ledger.outcome("personne1@example.org", State.FAILED, 550, "no", NOW)])
    log.apply([ledger.outcome("personne2@example.org", State.UNCERTAIN, None, "drop", NOW)])
    assert log.requeue([State.FAILED]) == 1
    assert log.get("personne1@example.org").state is State.PENDING  # type: ignore[union-attr]
    assert log.get("personne2@example.org").state is State.UNCERTAIN  # type: ignore[union-attr]


def test_suppression_never_overrides_a_sent_recipient(log: Ledger) -> None:
    log.apply([ledger.outcome("personne1@example.org", State.SENT, 250, "ok", NOW)])
    log.enqueue([entry(3)], [entry(1), entry(2)], NOW)
    assert log.get("personne1@example.org").state is State.SENT  # type: ignore[union-attr]
    assert log.get("personne2@example.org").state is State.SUPPRESSED  # type: ignore[union-attr]
    log.enqueue([entry(2)], [], NOW)  # taken off the suppression list
    assert log.get("personne2@example.org").state is State.PENDING  # type: ignore[union-attr]


def test_test_sends_are_recorded_apart(log: Ledger) -> None:
    key = log.add_test_send("relecteur@example.com", "Personne1@Example.org", "<t@x>", NOW)
    log.apply([ledger.begin(key, NOW), ledger.body_in_flight(key, NOW)])
    log.apply([ledger.outcome(key, State.SENT, 250, "ok", NOW + 1)])
    assert log.counts()["sent"] == 0
    assert log.test_sends()[0]["state"] == "sent"
    assert log.sent_times(NOW) == [NOW + 1]  # a test still counts against the provider's cap


def _states(path: Path) -> list[tuple[str]]:
    """The states of personne1 and personne2, as another connection (what is committed) sees them."""
    other = sqlite3.connect(path)
    try:
        return other.execute(
            "SELECT state FROM deliveries WHERE email IN (?, ?) ORDER BY email",
            ("personne1@example.org", "personne2@example.org"),
        ).fetchall()
    finally:
        other.close()


def test_writer_commits_the_steps_of_one_turn_together_before_their_futures_complete(
    log: Ledger,
) -> None:
    writer = LedgerWriter(log.path)

    async def steps() -> list[tuple[str]]:
        futures = [writer.commit([ledger.begin(f"personne{n}@example.org", NOW)]) for n in (1, 2)]
        assert _states(log.path) == [("pending",)] * 2  # handed over, not yet committed
        await asyncio.gather(*futures)
        return _states(log.path)

    assert asyncio.run(steps()) == [("sending",)] * 2
    assert (writer.commits, writer.fsyncs) == (1, 1)  # one transaction, one fsync for both
    writer.close()


def test_a_recorded_step_is_committed_within_the_linger_or_with_the_next_commit(
    log: Ledger,
) -> None:
    from campaign.logwriter import LINGER

    writer = LedgerWriter(log.path)
    first, second = "personne1@example.org", "personne2@example.org"

    async def steps() -> None:
        writer.record([ledger.begin(first, NOW)])
        await asyncio.sleep(LINGER * 4)
        assert _states(log.path) == [("sending",), ("pending",)]  # alone, without an fsync
        assert (writer.commits, writer.fsyncs) == (1, 0)
        writer.record([ledger.outcome(first, State.SENT, 250, "ok", NOW)])
        await writer.commit([ledger.begin(second, NOW)])  # takes the recorded step along
        assert _states(log.path) == [("sent",), ("sending",)]
        assert (writer.commits, writer.fsyncs) == (2, 1)
        writer.record([ledger.outcome(second, State.SENT, 250, "ok", NOW)])

    asyncio.run(steps())  # ends before the linger: the last step is still held …
    writer.close()  # … and committed, durably, when the writer closes
    assert _states(log.path) == [("sent",), ("sent",)]
    assert (writer.commits, writer.fsyncs) == (3, 2)


def test_a_failed_commit_of_recorded_steps_is_said_to_the_next_step_that_waits(
    log: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign import logwriter

    writer = LedgerWriter(log.path)
    commit = logwriter.apply_writes

    def failing(conn: sqlite3.Connection, writes: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def steps() -> None:
        monkeypatch.setattr(logwriter, "apply_writes", failing)
        writer.record([ledger.begin("personne1@example.org", NOW)])
        await asyncio.sleep(logwriter.LINGER * 4)
        monkeypatch.setattr(logwriter, "apply_writes", commit)
        with pytest.raises(StateError, match="disk I/O error"):
            await writer.commit([ledger.begin("personne2@example.org", NOW)])

    asyncio.run(steps())
    writer.close()


def test_a_damaged_log_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="damaged"):
        Ledger(path)
    assert path.read_bytes().startswith(b"this is not sqlite")


def test_a_log_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(StateError, match="newer version"):
        Ledger(path)


def _downgrade_to_version_1(path: Path) -> None:
    """Make `path` look like a log written by version 1 (before the state index)."""
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX deliveries_state")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.commit()
    conn.close()


def test_a_log_of_an_earlier_version_is_upgraded_keeping_every_row_and_a_copy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "delivery.sqlite"
    with Ledger(path) as opened:
        opened.enqueue([entry(1), entry(2)], [], NOW)
        opened.apply([ledger.outcome("personne1@example.org", State.SENT, 250, "ok", NOW)])
    _downgrade_to_version_1(path)
    with Ledger(path) as upgraded:
        assert upgraded.counts()["sent"] == 1
        assert upgraded.counts()["pending"] == 1
        versions = [v for (v,) in upgraded.conn.execute("SELECT version FROM schema_version")]
        assert max(versions) == ledger.SCHEMA_VERSION
        indexes = {n for (n,) in upgraded.conn.execute("SELECT name FROM sqlite_master")}
        assert "deliveries_state" in indexes
    backup = path.with_name("delivery.sqlite.v1.bak")
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    old = sqlite3.connect(backup)
    assert old.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
    assert old.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone() == (1,)
    old.close()


def test_a_log_of_a_version_with_no_upgrade_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    Ledger(path).close()
    _downgrade_to_version_1(path)
    conn = sqlite3.connect(path)
    with pytest.raises(StateError, match="schema 1, which this version cannot upgrade"):
        ledger.upgrade(conn, path, 1, migrations={})
    assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (1,)
    conn.close()


@pytest.mark.parametrize("value", ["=1+1", "+33 1", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_that_could_start_a_formula_are_neutralised(value: str) -> None:
    assert neutralise(value) == "'" + value
    assert neutralise("Noël") == "Noël"
    assert neutralise(3) == 3


def test_export_to_csv_and_xlsx_is_safe_to_open(tmp_path: Path) -> None:
    log = Ledger(tmp_path / "delivery.sqlite")
    log.enqueue([entry(1, name='=HYPERLINK("http://x.example","clic")')], [], NOW)
    csv_path = export_deliveries(log.deliveries(), tmp_path / "log.csv")
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8-sig")))
    assert rows[0]["name"] == '\'=HYPERLINK("http://x.example","clic")'
    assert rows[0]["state"] == "pending"
    xlsx_path = export_deliveries(log.deliveries(), tmp_path / "log.xlsx")
    sheet = load_workbook(xlsx_path).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    cell = sheet.cell(row=2, column=header.index("name") + 1)
    assert cell.data_type == "s"
    assert str(cell.value).startswith("'=")
    queued = sheet.cell(row=2, column=header.index("queued_at") + 1)
    assert isinstance(queued.value, datetime)  # a date Excel sorts and filters as one
    assert queued.value == datetime.fromtimestamp(NOW)
    assert rows[0]["queued_at"] == datetime.fromtimestamp(NOW).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(UsageError, match=r"\.csv or \.xlsx"):
        export_deliveries(log.deliveries(), tmp_path / "log.txt")


def test_an_empty_log_file_is_refused_rather_than_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    path.write_bytes(b"")
    with pytest.raises(StateError, match="empty"):
        Ledger(path)
    assert path.read_bytes() == b""


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="not a delivery log"):
        Ledger(path)
    assert path.read_bytes() == before
    conn = sqlite3.connect(path)
    assert [n for (n,) in conn.execute("SELECT name FROM sqlite_master")] == ["contacts"]
    conn.close()


def test_a_new_log_is_made_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "outbox" / "delivery.sqlite"
    Ledger(path).close()
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert Ledger(path).counts()["pending"] == 0


def test_a_commit_waits_for_the_mark_of_an_envelope_about_to_be_answered(
    log: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign import logwriter

    monkeypatch.setattr(logwriter, "GATHER", 30.0)  # long: only the answer may end the wait
    writer = LedgerWriter(log.path)

    async def steps() -> None:
        envelope = writer.expect()  # the second connection's envelope is on the wire
        first = writer.commit([ledger.begin("personne1@example.org", NOW)])
        await asyncio.sleep(0.05)
        assert not first.done() and writer.fsyncs == 0  # waiting for the other mark
        writer.expected(envelope)
        second = writer.commit([ledger.begin("personne2@example.org", NOW)])
        await asyncio.wait_for(asyncio.gather(first, second), 5)

    asyncio.run(steps())
    assert (writer.commits, writer.fsyncs) == (1, 1)  # both marks, one fsync
    assert _states(log.path) == [("sending",)] * 2
    writer.close()


def test_a_commit_waits_at_most_gather_and_not_for_a_slow_server(log: Ledger) -> None:
    from campaign.logwriter import GATHER

    writer = LedgerWriter(log.path)

    async def steps() -> None:
        loop = asyncio.get_running_loop()
        envelope = writer.expect()  # never answered while the first mark waits
        began = loop.time()
        await writer.commit([ledger.begin("personne1@example.org", NOW)])
        assert loop.time() - began >= GATHER * 0.9  # it waited for the other mark …
        assert writer.fsyncs == 1  # … then went alone
        for _ in range(30):  # a server whose envelopes take 20 ms to be answered
            slow = writer.expect()
            await asyncio.sleep(0.02)
            writer.expected(slow)
        writer.expected(envelope)
        writer.expect()  # another envelope out, just sent: far from being answered
        second = writer.commit([ledger.begin("personne2@example.org", NOW)])
        await asyncio.sleep(0)  # one turn of the loop
        assert writer.fsyncs == 2  # committed at once, without waiting for it
        await second

    asyncio.run(steps())
    writer.close()


@pytest.mark.parametrize(
    "text",
    [
        "disk I/O error",
        "database or disk is full",
        "attempt to write a readonly database",
        "unable to open database file",
    ],
)
def test_a_fault_of_the_disk_is_not_called_a_damaged_log(tmp_path: Path, text: str) -> None:
    from campaign.logschema import state_error

    err = state_error(sqlite3.OperationalError(text), tmp_path / "delivery.sqlite")
    assert text in err.message and "damaged" not in err.message
    assert err.hint is not None and "free space" in err.hint
    damaged = state_error(sqlite3.DatabaseError("file is not a database"), tmp_path / "x")
    assert "damaged" in damaged.message and "backup" in str(damaged.hint)


def test_a_linger_that_ends_during_a_gather_leaves_the_commit_to_the_gather(
    log: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign import logwriter

    monkeypatch.setattr(logwriter, "LINGER", 0.01)
    monkeypatch.setattr(logwriter, "GATHER", 30.0)
    writer = LedgerWriter(log.path)

    async def steps() -> None:
        writer.record([ledger.begin("personne3@example.org", NOW)])  # its linger: 10 ms
        envelope = writer.expect()
        first = writer.commit([ledger.begin("personne1@example.org", NOW)])
        await asyncio.sleep(0.05)  # the linger has come and gone: still one gather, no commit
        assert writer.commits == 0 and not first.done()
        writer.expected(envelope)
        await asyncio.wait_for(writer.commit([ledger.begin("personne2@example.org", NOW)]), 5)
        assert first.done()

    asyncio.run(steps())
    assert (writer.commits, writer.fsyncs) == (1, 1)  # the recorded step went with the marks
    assert _states(log.path) == [("sending",)] * 2
    third = log.get("personne3@example.org")
    assert third is not None and third.state is State.SENDING
    writer.close()

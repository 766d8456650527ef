"""The dispatcher against a provider's limits and outages (aiosmtpd in-process, 127.0.0.1).

A reply about the sender (421, 450 4.7.1 too much mail) slows the run and puts the recipient back
in the queue; it never counts against max_attempts, and the learnt rate is kept for the next run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from campaign.dispatch import about_sender
from campaign.ledger import Ledger, State
from campaign.throttle import Pace
from tests.smtp_server import Fault, FaultyServer, RateLimit, make_project
from tests.test_send import FIRST, cli, delivery, send, states


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (421, "4.7.0 closing", True),
        (450, "4.7.1 Error: too much mail from 127.0.0.1", True),
        (451, "4.7.1 rate limit exceeded, slow down", True),
        (452, "4.3.2 too many connections", True),
        (451, "4.3.0 try again later", False),  # could be about this recipient
        (452, "4.5.3 too many recipients", False),
        (450, "4.2.0 mailbox busy", False),
        (550, "5.7.1 rate limit", False),
    ],
)
def test_reply_about_the_sender_is_told_from_one_about_the_recipient(
    code: int, text: str, expected: bool
) -> None:
    assert about_sender(code, text) is expected


@pytest.mark.parametrize("stage", ["rcpt", "mail", "dot"])
def test_421_puts_the_recipient_back_without_counting_an_attempt(
    tmp_path: Path, stage: str
) -> None:
    fault = Fault(stage, code=421, text="4.7.0 closing")
    if stage != "mail":
        fault.recipient = FIRST
    throttle = "per_minute: null\n  concurrency: 1"
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3, throttle=throttle)
        report = send(settings, wait_retries=True)
        assert set(states(settings).values()) == {State.SENT}
        assert delivery(settings).attempts == 1  # the refused try is not counted
        assert max(server.copies().values()) == 1 and server.copies_to(FIRST) == 1
        assert report.tally.pace is not None and report.tally.pace.refusals == 1


def test_rate_limited_server_slows_the_run_and_nobody_fails(tmp_path: Path) -> None:
    limit = RateLimit(messages=5, window=2.0, close_after=3)
    with FaultyServer(rate=limit) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=20,
            retry="max_attempts: 1\n  backoff: [1h]",  # one refusal counted would fail someone
        )
        report = send(settings)
        assert report.tally.sent == 20 and report.tally.failed == 0
        assert set(states(settings).values()) == {State.SENT}
        assert max(server.copies().values()) == 1
        pace = report.tally.pace
        assert pace is not None and pace.server is not None and pace.rate is not None
        assert limit.refusals == pace.refusals
        assert pace.refusals <= 8, pace
        # measured near the real limit (2.5/s), never above it
        assert 0.8 <= pace.rate <= 2.5 * 1.1, pace
        assert "the server limited us to about" in pace.describe()
        with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
            learnt = log.learnt_rate()
        assert learnt is not None and learnt == pytest.approx(pace.rate)


def test_next_run_starts_from_the_learnt_rate(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        outbox = settings.parent / "outbox" / "mini"
        outbox.mkdir(parents=True)
        with Ledger(outbox / "delivery.sqlite") as log:
            log.keep_learnt_rate(5.0)
        report = send(settings)
        assert report.tally.sent == 4
        times = sorted(s.at for s in server.stored)
        # Paced at 5/s from the start, not a burst (which takes a few ms): 3 gaps of 0.2 s. The
        # span, not each gap: a message late on a loaded machine is followed by one on time.
        assert times[-1] - times[0] >= 3 * 0.2 * 0.85
        assert report.tally.pace is not None and report.tally.pace.start == 5.0


def test_pace_learns_the_window_from_the_probe_that_succeeds() -> None:
    pace = Pace(configured=None)
    for i in range(10):
        pace.accepted(100.0 + i * 0.01)
    pace.refused(100.1)
    assert pace.holding and pace.delay(100.1) == pytest.approx(1.0)
    pace.refused(101.1)
    assert pace.delay(101.1) == pytest.approx(2.0)
    pace.accepted(105.0)  # the server accepted again 5 s after the first of the ten
    assert pace.rate == pytest.approx(10 / 5.0)
    assert not pace.holding


def test_outage_probes_on_a_doubling_backoff_capped_by_probe_interval() -> None:
    pace = Pace(configured=None, max_probe_gap=30.0)
    gaps = []
    now = 0.0
    for _ in range(8):
        pace.unreachable(now)
        gaps.append(pace.delay(now))
        now += gaps[-1]
    assert gaps == [1, 2, 4, 8, 16, 30, 30, 30]
    pace.accepted(now)
    assert pace.report.outages == 1 and pace.report.paused == pytest.approx(now)
    assert pace.rate is None  # an outage says nothing about the rate


def test_server_down_mid_send_is_a_pause_and_nobody_is_sent_twice(tmp_path: Path) -> None:
    import threading
    import time

    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=8,
            smtp="probe_interval: 1s",
            throttle="per_second: 4\n  per_minute: null\n  concurrency: 1",
            retry="max_attempts: 1\n  backoff: [1h]",  # an outage counted would fail someone
        )

        def outage() -> None:
            while len(server.stored) < 3:
                time.sleep(0.005)
            # stored before its 250 is written: let the reply go; the next starts 0.25 s after
            time.sleep(0.08)
            server.down()  # cut every session with none on the wire
            time.sleep(3.0)
            server.up()

        thread = threading.Thread(target=outage)
        thread.start()
        result = cli(settings, "send", "--json")
        thread.join()
    report = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert (report["sent"], report["failed"], report["uncertain"]) == (8, 0, 0)
    assert max(server.copies().values()) == 1 and len(server.stored) == 8
    assert {delivery(settings, f"personne{i:04d}@example.org").attempts for i in range(1, 9)} == {1}
    assert report["server"]["outages"] == 1
    assert 2.0 <= report["server"]["paused_seconds"] <= 6.0
    assert "server unreachable 1×" in report["server"]["summary"]


def test_connection_lost_before_mail_is_answered_costs_no_attempt(tmp_path: Path) -> None:
    # Nothing was said about the recipient yet: reconnect and send it, its one attempt kept.
    with FaultyServer(faults=[Fault("mail", action="drop", times=2)]) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=3,
            throttle="per_minute: null\n  concurrency: 1",
            retry="max_attempts: 1\n  backoff: [1h]",
        )
        report = send(settings)
        assert (report.tally.sent, report.tally.failed, report.tally.deferred) == (3, 0, 0)
        assert server.connections == 3 and max(server.copies().values()) == 1
    assert delivery(settings).attempts == 1


def _body_marks(writes: list[tuple[str, tuple[object, ...]]]) -> list[str]:
    """The recipients whose body mark is among `writes` (ledger.begin with Phase.BODY)."""
    return [
        str(params[-1])
        for sql, params in writes
        if sql.startswith("UPDATE deliveries SET state = 'sending'") and params[0] == "body"
    ]


def test_the_final_dot_waits_for_the_body_mark_to_be_on_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from campaign import logwriter

    durable: dict[str, float] = {}
    commit = logwriter.apply_writes

    def slow_commit(conn: Any, writes: Any) -> None:
        marks = _body_marks(writes)
        if marks:
            time.sleep(0.05)  # a slow disk: the body is on the wire meanwhile, not the dot
        commit(conn, writes)
        for key in marks:
            durable[key] = time.time()

    monkeypatch.setattr(logwriter, "apply_writes", slow_commit)
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=6)
        report = send(settings)
        assert report.tally.sent == 6
        for stored in server.stored:
            (address,) = stored.recipients
            assert durable[address.lower()] <= stored.at, address


def test_a_body_mark_that_cannot_be_written_sends_no_final_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from campaign import logwriter
    from campaign.errors import StateError

    commit = logwriter.apply_writes

    def failing_commit(conn: Any, writes: Any) -> None:
        if _body_marks(writes):
            raise sqlite3.OperationalError("disk I/O error")
        commit(conn, writes)

    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        monkeypatch.setattr(logwriter, "apply_writes", failing_commit)
        with pytest.raises(StateError):
            send(settings)
        assert server.stored == []  # the body went, never its final dot: nothing delivered
        monkeypatch.setattr(logwriter, "apply_writes", commit)
        report = send(settings)
        assert report.tally.sent == 3 and max(server.copies().values()) == 1

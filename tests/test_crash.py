"""Kill `campaign send` at random moments and restart it until done: nobody twice, nobody skipped.

The sink runs in its own process and logs each message it stores with its Message-ID, so the test
counts what was really received, independently of the delivery log it checks.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign.sink import read_log
from tests.smtp_server import make_project

RECIPIENTS = 300
CONCURRENCY = 3


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A `campaign sink` process logging what it stores; yields its port and its log."""
    log = tmp_path / "received.tsv"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "campaign.cli", "sink", "--port", "0",
            "--maildir", str(tmp_path / "sink"), "--log", str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    port = int(line.split("127.0.0.1:")[1].split(",")[0])
    yield port, log
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)


def start_send(settings: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "campaign.cli", "--settings", str(settings), "send", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def log_states(settings: Path) -> dict[str, tuple[str, str | None, str]]:
    """email → (state, phase, message id), read straight from the SQLite file."""
    path = settings.parent / "outbox" / "mini" / "delivery.sqlite"
    if not path.exists():
        return {}
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows = conn.execute("SELECT email, state, phase, message_id FROM deliveries").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    return {email: (state, phase, mid) for email, state, phase, mid in rows}


def wait_for_progress(settings: Path, process: subprocess.Popen[bytes], sent_before: int) -> bool:
    """Wait until the running send has recorded something new; False if it ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        states = log_states(settings)
        if sum(1 for s, _, _ in states.values() if s == "sent") > sent_before:
            return True
        time.sleep(0.02)
    return process.poll() is None


def run_with_interruptions(
    settings: Path, signal_number: int, kills: int, rng: random.Random
) -> tuple[int, list[int]]:
    """Interrupt `kills` sends mid-run, then run to the end; (interruptions, body in flight per kill)."""
    done_kills = 0
    in_flight_bodies: list[int] = []
    for _ in range(kills):
        sent_before = sum(1 for s, _, _ in log_states(settings).values() if s == "sent")
        process = start_send(settings)
        if not wait_for_progress(settings, process, sent_before):
            process.wait(timeout=120)
            break
        time.sleep(rng.uniform(0.0, 0.4))
        if process.poll() is not None:
            break
        process.send_signal(signal_number)
        code = process.wait(timeout=120)
        done_kills += 1
        if signal_number == signal.SIGINT:
            # 130, unless the run had already finished and the signal reached the interpreter
            # as it was exiting (after Python gives SIGINT back to the system): then nothing was
            # left to stop, and the log must say so.
            left = [s for s, _, _ in log_states(settings).values() if s in ("pending", "sending")]
            assert code == 130 or (code == -signal.SIGINT and not left), (code, left)
        in_flight_bodies.append(
            sum(1 for s, p, _ in log_states(settings).values() if s == "sending" and p == "body")
        )
    for _ in range(5):  # then let it finish
        process = start_send(settings)
        code = process.wait(timeout=300)
        if code in (0, 1) and not any(
            s in ("pending", "deferred", "sending") for s, _, _ in log_states(settings).values()
        ):
            break
    return done_kills, in_flight_bodies


def check_outcome(settings: Path, received_log: Path) -> tuple[int, int]:
    states = log_states(settings)
    received = Counter(r.message_id for r in read_log(received_log))
    assert len(states) == RECIPIENTS
    assert max(received.values()) == 1, "a recipient was sent the letter twice"
    sent = [mid for s, _, mid in states.values() if s == "sent"]
    assert all(received[mid] == 1 for mid in sent), "a recipient recorded as sent was not received"
    uncertain = [mid for s, _, mid in states.values() if s == "uncertain"]
    assert {s for s, _, _ in states.values()} <= {"sent", "uncertain"}, "someone was skipped"
    assert set(received) <= set(sent) | set(uncertain)
    return len(sent), len(uncertain)


def project_for(tmp_path: Path, port: int) -> Path:
    return make_project(
        tmp_path / "project",
        port=port,
        recipients=RECIPIENTS,
        throttle=f"per_second: 50\n  per_minute: null\n  per_day: 100000\n"
        f"  concurrency: {CONCURRENCY}\n  messages_per_connection: 40",
        retry="max_attempts: 10\n  backoff: [0s]",
    )


@pytest.mark.slow
def test_sigkill_at_random_moments_never_sends_twice_nor_skips_anyone(
    tmp_path: Path, sink: tuple[int, Path]
) -> None:
    port, received_log = sink
    settings = project_for(tmp_path, port)
    kills, bodies = run_with_interruptions(settings, signal.SIGKILL, 4, random.Random(1))
    assert kills >= 3, "the sends ended before they could be killed"
    assert all(count <= CONCURRENCY for count in bodies)
    sent, uncertain = check_outcome(settings, received_log)
    print(
        f"{kills} kills, bodies on the wire at each: {bodies}; {sent} sent, {uncertain} uncertain"
    )
    assert uncertain <= CONCURRENCY * kills
    assert uncertain == sum(bodies)  # exactly the messages whose body was on the wire at a kill
    assert sent + uncertain == RECIPIENTS


@pytest.mark.slow
def test_sigint_stops_cleanly_and_leaves_nothing_uncertain(
    tmp_path: Path, sink: tuple[int, Path]
) -> None:
    port, received_log = sink
    settings = project_for(tmp_path, port)
    kills, bodies = run_with_interruptions(settings, signal.SIGINT, 3, random.Random(2))
    assert kills >= 2
    assert bodies == [0] * kills  # nothing left on the wire unrecorded
    sent, uncertain = check_outcome(settings, received_log)
    assert uncertain == 0
    assert sent == RECIPIENTS

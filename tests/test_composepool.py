"""Compose workers: the bytes come back in order, a failure or a dead worker falls back to the caller."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from pathlib import Path

import pytest

from campaign import composepool
from campaign.composepool import ComposePool

pytestmark = pytest.mark.skipif(not composepool.available(), reason="compose workers need fork")


def compose(n: int) -> bytes:
    if n == 13:
        raise ValueError("row 13 is bad")
    return f"message {n} from {os.getpid()}".encode()


def test_messages_come_back_composed_by_workers_in_any_order_asked() -> None:
    items = list(range(50))
    pool = ComposePool(compose, items, key=lambda n: n, workers=2, chunk=4, ahead=2)
    try:
        got = {n: pool.take(n) for n in [*range(10), 30, *range(10, 30), *range(31, 50)]}
    finally:
        pool.close()
    assert got[13] is None  # failed in the worker: the caller composes it and reports the error
    for n in items:
        if n != 13:
            text = got[n]
            assert text is not None and text.startswith(f"message {n} from ".encode())
            assert not text.endswith(str(os.getpid()).encode())  # not composed here


def test_a_message_is_given_once_and_unknown_ones_not_at_all() -> None:
    pool = ComposePool(compose, [1, 2, 3], key=lambda n: n, workers=2)
    try:
        assert pool.take(2) is not None
        assert pool.take(2) is None  # taken already (a job put back): composed again by the caller
        assert pool.take(99) is None
    finally:
        pool.close()
    assert pool.take(1) is None  # closed


def test_a_dead_worker_leaves_the_composing_to_the_caller() -> None:
    pool = ComposePool(compose, list(range(40)), key=lambda n: n, workers=2, chunk=2, ahead=1)
    try:
        assert pool.take(0) is not None
        for process in pool._processes:
            os.kill(process.pid or 0, signal.SIGKILL)
            process.join()
        assert [pool.take(n) for n in range(30, 33)] == [None, None, None]
    finally:
        pool.close()


def test_workers_do_not_hold_the_run_lock(tmp_path: Path) -> None:
    """The lock's descriptor is closed in each worker: a killed run never blocks the next one."""
    lock = tmp_path / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    pool = ComposePool(compose, list(range(20)), key=lambda n: n, workers=2, chunk=4)
    try:
        assert pool.take(0) is not None and pool.take(4) is not None  # both workers have started
        os.close(fd)  # the run ends (or dies) while its workers are still there
        other = os.open(lock, os.O_RDWR)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if a worker held it
        os.close(other)
    finally:
        pool.close()


def test_a_run_that_stops_early_does_not_wait_for_its_workers() -> None:
    pool = ComposePool(compose, list(range(400)), key=lambda n: n, workers=2, chunk=8, ahead=4)
    assert pool.take(0) is not None
    time.sleep(0.3)  # the workers have composed ahead and wait to hand their chunks back
    workers = list(pool._processes)
    started = time.perf_counter()
    pool.close()
    assert time.perf_counter() - started < 2
    assert workers and all(not process.is_alive() for process in workers)

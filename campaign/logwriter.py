"""Steps of SMTP transactions → commits of the delivery log, from one thread, grouped and fsynced.

The async engine (`campaign.dispatch`) submits the writes of each step (`campaign.ledger.begin`,
`body_in_flight`, `outcome`) and gets a future back; `LedgerWriter` commits them in the order
they came, several per transaction, and fsyncs when a step needs it to be durable before the
engine goes on (the mark that a body is about to go out). `NullWriter` records nothing
(benchmarks measure what the log costs against it).

With `CAMPAIGN_LOG_TIMING` set to a file, `close` appends one JSON line to it: the seconds the
writer spent committing (and fsyncing), its commits and fsyncs; `bench/send.py` reads it to give
the log's share of a run.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from campaign.logschema import Write, apply_writes, connect, state_error

LINGER = 0.005  # seconds a step without fsync may wait for the next fsynced commit to join

_Item = tuple[Sequence[Write], bool, concurrent.futures.Future[None]]


class Writer(Protocol):
    def submit(
        self, writes: Sequence[Write], *, fsync: bool = True
    ) -> concurrent.futures.Future[None]: ...

    def close(self) -> None: ...


class LedgerWriter:
    """Commit steps from concurrent connections in a thread, grouping those that arrive together.

    Each `submit` returns a future that completes once its writes are committed, in the order they
    were submitted. With `fsync` (the default) the commit is also flushed to the disk, which makes
    every commit before it durable too; without, it survives the process being killed but a power
    cut may lose it until the next fsynced commit. sqlite releases the GIL while it fsyncs, so the
    event loop keeps the other connections going meanwhile.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn = connect(path)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._synchronous = "FULL"
        # Started by the first write, so that a run can fork its compose workers before it.
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.fsyncs = 0
        self.busy = 0.0  # seconds spent committing

    def submit(
        self, writes: Sequence[Write], *, fsync: bool = True
    ) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
            self._thread.start()
        self._queue.put((writes, fsync, future))
        return future

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        self._conn.close()
        timing = os.environ.get("CAMPAIGN_LOG_TIMING")
        if timing:
            record = {"busy": self.busy, "commits": self.commits, "fsyncs": self.fsyncs}
            with open(timing, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            stop = self._gather(batch)
            synchronous = "FULL" if any(fsync for _, fsync, _ in batch) else "NORMAL"
            began = time.perf_counter()
            try:
                if synchronous != self._synchronous:
                    self._conn.execute(f"PRAGMA synchronous = {synchronous}")
                    self._synchronous = synchronous
                apply_writes(self._conn, [w for writes, _, _ in batch for w in writes])
            except BaseException as err:
                failure = (
                    state_error(err, self._path) if isinstance(err, sqlite3.DatabaseError) else err
                )
                for _, _, future in batch:
                    future.set_exception(failure)
            else:
                self.busy += time.perf_counter() - began
                self.commits += 1
                self.fsyncs += synchronous == "FULL"
                for _, _, future in batch:
                    future.set_result(None)

    def _gather(self, batch: list[_Item]) -> bool:
        """Add what else is queued to `batch`; return True if the writer is asked to stop.

        A batch of steps that need no fsync (starts, 250 replies) waits up to `LINGER` seconds
        for one that does, to share its commit rather than make its own: while messages flow,
        one comes every millisecond or so, and the 250s are then fsynced too.
        """
        deadline = None if batch[0][1] else time.monotonic() + LINGER
        while True:
            try:
                left = 0.0 if deadline is None else deadline - time.monotonic()
                more = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            batch.append(more)
            if more[1]:
                deadline = None


class NullWriter:
    """A writer that records nothing: what sending costs without a delivery log (benchmarks)."""

    def submit(
        self, writes: Sequence[Write], *, fsync: bool = True
    ) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_result(None)
        return future

    def close(self) -> None:
        return None

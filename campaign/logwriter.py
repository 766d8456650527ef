"""Steps of SMTP transactions → commits of the delivery log, on the event loop's thread, grouped.

The async engine (`campaign.dispatch`) hands over the writes of each step (`campaign.ledger.begin`,
`outcome`, …). A step the engine must not go past before it is durable (the mark that a body is
about to get its final dot, how a transaction ended) is `commit`ted: the returned future completes
once it, and everything handed over before it, is committed and fsynced. A step whose loss is
harmless (the server's 250: lost in a crash, the message shows as uncertain) is `record`ed: it
joins the next commit, or is committed on its own within `LINGER` seconds.

The commits run on the event loop's own thread, in a callback scheduled by the first step that
needs one, so that every step handed over in the same turn of the loop shares one transaction and
one fsync. A writer thread was tried first: with the loop busy, the thread waited for the GIL
after each of the four statements of a commit (BEGIN, two UPDATEs, COMMIT), which made the
median commit 0.9 ms for a 0.25 ms fsync and the engine ~20 % slower than committing in place
(alternated runs, `docs/performance-send.md`). The loop does wait for the fsync; against a
remote server that time is hidden by the network, and the replies that arrive meanwhile are
handled in the next turn, their steps in one commit.

A commit may also wait a little (at most `GATHER`) for the mark of another connection whose
envelope (MAIL, RCPT, DATA) is on the wire and, judging by how long envelopes take to be answered,
about to come back: the engine tells the writer when an envelope goes out (`expect`) and when it
is answered (`expected`). Against a local server, two connections' marks then share one fsync
(~530 fsyncs for 1,000 messages instead of ~980, the command ~12 % faster); against a remote one,
whose replies take milliseconds, a commit waits only for an envelope nearly answered.

`NullWriter` records nothing (benchmarks measure what the log costs against it). With
`CAMPAIGN_LOG_TIMING` set to a file, `close` appends one JSON line to it: the seconds spent
committing (and fsyncing), the commits and the fsyncs; `bench/send.py` reads it to give the log's
share of a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from campaign.logschema import Write, apply_writes, connect, state_error

LINGER = 0.005  # seconds a recorded step may wait for a commit to join before it is committed alone
GATHER = 0.001  # seconds a commit may wait for the mark of a connection whose envelope is out


class Writer(Protocol):
    def record(self, writes: Sequence[Write]) -> None: ...

    def commit(self, writes: Sequence[Write]) -> asyncio.Future[None]: ...

    def expect(self) -> int: ...

    def expected(self, envelope: int) -> None: ...

    def close(self) -> None: ...


class LedgerWriter:
    """Commit the steps of concurrent connections in order, several per transaction."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn = connect(path)  # synchronous = FULL
        self._synchronous = "FULL"
        self._held: list[Write] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._soon: asyncio.Handle | None = None  # the commit the waiters wait for
        self._linger: asyncio.TimerHandle | None = None  # the commit of recorded steps alone
        self._failure: BaseException | None = None  # a commit of recorded steps failed
        self._out: dict[int, float] = {}  # envelopes on the wire → when each went out
        self._envelopes = 0
        self._exchange = GATHER  # how long an envelope takes to be answered (moving average)
        self._gather: asyncio.TimerHandle | None = None  # a commit waiting for their marks
        self.commits = 0
        self.fsyncs = 0
        self.busy = 0.0  # seconds spent committing

    def record(self, writes: Sequence[Write]) -> None:
        """Hand over `writes` without waiting: committed in order, within `LINGER` seconds."""
        self._held.extend(writes)
        if self._soon is None and self._linger is None and self._gather is None:
            self._linger = asyncio.get_running_loop().call_later(LINGER, self._flush)

    def commit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        """Hand over `writes`; the future completes once they (and all before) are on the disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._held.extend(writes)
        self._waiters.append(future)
        if self._soon is None and self._gather is None:
            self._soon = loop.call_soon(self._flush)
        return future

    def expect(self) -> int:
        """An envelope goes out: its connection will `commit` a mark once it is answered."""
        self._envelopes += 1
        self._out[self._envelopes] = asyncio.get_running_loop().time()
        return self._envelopes

    def expected(self, envelope: int) -> None:
        """That envelope is answered (its mark is handed over next) or failed."""
        loop = asyncio.get_running_loop()
        self._exchange += (loop.time() - self._out.pop(envelope) - self._exchange) / 8
        if self._gather is not None and not self._due(self._gather.when()):
            self._gather.cancel()
            self._gather = None
            self._soon = loop.call_soon(self._flush, False)

    def _due(self, deadline: float) -> bool:
        """Whether an envelope on the wire is likely to be answered by `deadline`."""
        return any(out + self._exchange <= deadline for out in self._out.values())

    def close(self) -> None:
        """Commit what is still held (a run stopped at once), then close the log."""
        try:
            for timer in (self._linger, self._gather):
                if timer is not None:
                    timer.cancel()
            if self._failure is not None:
                raise self._failure
            if self._held:  # the loop has ended: nobody waits for these any more
                try:
                    self._apply(self._held, fsync=True)
                except sqlite3.DatabaseError as err:
                    raise state_error(err, self._path) from err
                self._held = []
        finally:
            self._conn.close()
            timing = os.environ.get("CAMPAIGN_LOG_TIMING")
            if timing:
                record = {"busy": self.busy, "commits": self.commits, "fsyncs": self.fsyncs}
                with open(timing, "a", encoding="utf-8") as out:
                    out.write(json.dumps(record) + "\n")

    def _flush(self, gather: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if gather and self._gather is not None:
            return  # the linger's turn, during a gather: the gather commits it all
        if gather and self._waiters and self._due(loop.time() + GATHER):
            # Another connection's mark is due within a reply: one fsync for both, rather than
            # one each a few hundred microseconds apart. The wait is short, and the first body
            # is being written meanwhile.
            self._soon = None
            self._gather = loop.call_later(GATHER, self._flush, False)
            return
        if self._linger is not None:
            self._linger.cancel()
        if self._gather is not None:
            self._gather.cancel()
        self._soon = self._linger = self._gather = None
        writes, waiters = self._held, self._waiters
        self._held, self._waiters = [], []
        failure, self._failure = self._failure, None
        if failure is None and writes:
            try:
                self._apply(writes, fsync=bool(waiters))
            except sqlite3.DatabaseError as err:
                failure = state_error(err, self._path)
        if waiters:
            # Told in the next turn, once the loop has polled the sockets: a connection the server
            # closed while the loop waited for the disk is then seen closed before its final dot.
            asyncio.get_running_loop().call_soon(_settle, waiters, failure)
        elif failure is not None:
            self._failure = failure  # said to the next step that waits

    def _apply(self, writes: list[Write], *, fsync: bool) -> None:
        synchronous = "FULL" if fsync else "NORMAL"
        began = time.perf_counter()
        if synchronous != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {synchronous}")
            self._synchronous = synchronous
        apply_writes(self._conn, writes)
        self.busy += time.perf_counter() - began
        self.commits += 1
        self.fsyncs += fsync


def _settle(waiters: list[asyncio.Future[None]], failure: BaseException | None) -> None:
    for future in waiters:
        if future.done():  # its task was cancelled (a hard stop)
            continue
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)


class NullWriter:
    """A writer that records nothing: what sending costs without a delivery log (benchmarks)."""

    def record(self, writes: Sequence[Write]) -> None:
        return None

    def commit(self, writes: Sequence[Write]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def expect(self) -> int:
        return 0

    def expected(self, envelope: int) -> None:
        return None

    def close(self) -> None:
        return None

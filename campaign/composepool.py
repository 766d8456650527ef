"""Recipients → their message bytes, composed in worker processes ahead of the sender, in order.

`ComposePool` takes the recipients of a send in the order the dispatcher will ask for them and a
function that composes one message; `take(recipient)` gives what it made (the run's: the message
in pieces, each attachment part every message shares as its index, so that 40 KB of base64 are
not pickled and piped for each message), composed by a worker while earlier messages were on the
wire, or None when the pool did not compose it (asked
twice, out of the batch, or the worker failed): the caller then composes it itself, so an error
is raised, with its place and hint, in the process that reports it.

The workers are forked once the inputs are loaded and the shared parts prepared, and before the
event loop starts: they inherit everything already imported
and computed, so starting one costs a few milliseconds and no import. A worker closes every file
it inherited but its pipe (the run lock's descriptor must not outlive the run), ignores Ctrl-C
(the run decides when to stop) and leaves when its parent is gone. Each worker composes at most
`ahead` chunks of `chunk` messages beyond what the sender has taken: memory stays bounded however
long the campaign. Only where `fork` is safe and cheap (Linux); elsewhere the caller composes in
its own process.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
import os
import random
import signal
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")  # what composing one item gives (a message's pieces)

# Below this many messages composing in the run's own process costs less than starting workers
# (measured in docs/performance-send.md: two workers cost ~20 ms to fork; a message ~1 ms).
MIN_BATCH = 64
CHUNK = 8  # messages per task: one pipe round trip per chunk, not per message
AHEAD = 4  # chunks each worker may have composed or queued beyond what was taken
PARENT_CHECK = 1.0  # seconds between a worker's checks that its parent is still there


def available() -> bool:
    """Whether workers can be forked here (Linux, more than one core)."""
    return sys.platform == "linux" and (os.cpu_count() or 1) > 1


def worker_count() -> int:
    """A worker per core but the sender's own, at most 4.

    The sender (SMTP, the log, progress) keeps a core busy when the server answers fast; with a
    worker on every core the three processes took turns on two cores, and the sender's pauses
    held up every connection (measured in docs/performance-send.md: one worker is 10-15 %
    faster end to end than two on a 2-core machine, and keeps up: composing costs less than
    sending).
    """
    return max(1, min((os.cpu_count() or 1) - 1, 4))


class ComposePool(Generic[T, R]):
    """Compose `items` with `compose` in forked workers, `chunk` at a time, in order."""

    def __init__(
        self,
        compose: Callable[[T], R],
        items: Sequence[T],
        key: Callable[[T], object],
        *,
        workers: int,
        chunk: int = CHUNK,
        ahead: int = AHEAD,
    ) -> None:
        self._key = key
        self._index = {key(item): i for i, item in enumerate(items)}
        self._chunk = chunk
        self._chunks = (len(items) + chunk - 1) // chunk
        self._results: dict[int, list[R | None]] = {}
        self._taken: set[int] = set()
        self._next_task = 0  # the next chunk to hand to a worker
        self._ahead = ahead
        self._pipes: list[Connection] = []
        self._processes: list[mp.process.BaseProcess] = []
        self._pending: list[list[int]] = []  # per worker: the chunks sent, not yet received
        context = mp.get_context("fork")
        parent = os.getpid()
        # Frozen, what the workers inherit is never collected there: a garbage object owning a
        # descriptor (closed in the worker) could close one the worker opened under that number.
        # It stays frozen in the run as well: the inputs and the shared parts live as long as it,
        # and the collections of the send then go over what it makes, not over all it holds.
        gc.freeze()
        self._start(context, compose, items, chunk, parent, workers)
        self._feed()

    def _start(
        self,
        context: Any,
        compose: Callable[[T], R],
        items: Sequence[T],
        chunk: int,
        parent: int,
        workers: int,
    ) -> None:
        for _ in range(max(1, min(workers, self._chunks))):
            mine, theirs = context.Pipe(duplex=True)
            process = context.Process(
                target=_work,
                args=(theirs, mine, compose, items, chunk, parent),
                daemon=True,
                name="campaign-compose",
            )
            process.start()
            theirs.close()
            self._pipes.append(mine)
            self._processes.append(process)
            self._pending.append([])

    def take(self, item: T) -> R | None:
        """What `compose` made of `item`, waiting for its worker if need be; None if not composed."""
        position = self._index.get(self._key(item))
        if position is None or position in self._taken or not self._pipes:
            return None
        self._taken.add(position)
        number, offset = divmod(position, self._chunk)
        try:
            while number not in self._results:
                self._receive(number % len(self._pipes))
        except (EOFError, OSError):
            self.close()  # a worker died: the caller composes the rest itself
            return None
        results = self._results[number]
        data, results[offset] = results[offset], None
        if all(r is None for r in results):
            del self._results[number]  # the chunk is used up: keep memory bounded
        return data

    def close(self) -> None:
        """Stop the workers and reap them; what they composed and nobody took is dropped."""
        pipes, self._pipes = self._pipes, []
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
            pipe.close()
        for process in self._processes:
            process.join(timeout=0.2)
            if process.is_alive():  # blocked handing back chunks nobody will take (a stop)
                process.terminate()
                process.join()
        self._processes = []

    def _receive(self, worker: int) -> None:
        """Read the oldest chunk of `worker` (they come back in the order they were sent)."""
        pipe = self._pipes[worker]
        number = self._pending[worker].pop(0)
        self._results[number] = pipe.recv()
        self._feed()

    def _feed(self) -> None:
        """Hand out the next chunks while their workers have fewer than `ahead` in hand.

        Chunk n always goes to worker n % workers, and each worker sends its chunks back in the
        order it got them: the chunk the sender needs next is at the head of one known pipe.
        """
        workers = len(self._pipes)
        while self._next_task < self._chunks:
            worker = self._next_task % workers
            if len(self._pending[worker]) >= self._ahead:
                return
            self._pipes[worker].send(self._next_task)
            self._pending[worker].append(self._next_task)
            self._next_task += 1


def _work(
    pipe: Connection,
    parents_end: Connection,
    compose: Callable[[T], R],
    items: Sequence[T],
    chunk: int,
    parent: int,
) -> None:
    """A worker: compose each chunk asked for, send the bytes back (None for a failure)."""
    parents_end.close()
    keep = pipe.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    random.seed()  # forked with the parent's state: each worker draws its own boundaries
    with contextlib.suppress(EOFError, OSError):  # the run closed the pipe: it is over
        while True:
            if not pipe.poll(PARENT_CHECK):
                if os.getppid() != parent:
                    return  # the run was killed: nobody will read what we compose
                continue
            number = pipe.recv()
            if number is None:
                return
            out: list[R | None] = []
            for item in items[number * chunk : (number + 1) * chunk]:
                try:
                    out.append(compose(item))
                except Exception:  # the run composes it again itself and reports the error
                    out.append(None)
            pipe.send(out)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536

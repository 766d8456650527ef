"""The send windows: per second, minute, hour and day, all holding at once.

`Throttle` keeps the times at which the server accepted each message over the last day (earlier
runs included, read from the delivery log, so a restart never resets the day) and the number of
messages in flight. A new message may start only when, in every window, the accepted messages
still inside it plus those in flight are fewer than the cap. Counting a message at the moment its
reply arrived (never earlier than the server received it) and starting the next one no sooner than
a window after, no window of the server's own receive times ever holds more than its cap.

The clock is passed in; waiting is the caller's business (`send.py`), so tests run without sleeping.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from campaign.settings import Throttle as ThrottleSettings

DAY = 86400.0


@dataclass(frozen=True)
class Window:
    """At most `cap` messages in any `seconds`-long stretch."""

    name: str
    seconds: float
    cap: int


@dataclass(frozen=True)
class Wait:
    """How long to wait before the next message may start, and which window holds it back.

    `seconds` is `math.inf` when only a message still in flight can free the window: wait for it.
    """

    seconds: float
    window: Window | None = None

    @property
    def ready(self) -> bool:
        return self.seconds <= 0


class DayCapReached(Exception):
    """The day's cap is reached; the run ends rather than sleeping for hours."""

    def __init__(self, sent_today: int, cap: int, next_at: float) -> None:
        self.sent_today = sent_today
        self.cap = cap
        self.next_at = next_at
        when = time.strftime("%H:%M", time.localtime(next_at))
        super().__init__(f"{sent_today} sent today, cap {cap} reached; next possible at {when}")


def windows_from(settings: ThrottleSettings) -> list[Window]:
    """The windows the settings ask for; a rate below one per second becomes one per 1/rate s."""
    found: list[Window] = []
    if settings.per_second is not None:
        rate = settings.per_second
        if rate < 1:
            found.append(Window("second", 1.0 / rate, 1))
        else:
            found.append(Window("second", 1.0, math.floor(rate)))
    for name, seconds, cap in (
        ("minute", 60.0, settings.per_minute),
        ("hour", 3600.0, settings.per_hour),
        ("day", DAY, settings.per_day),
    ):
        if cap is not None:
            found.append(Window(name, seconds, cap))
    return found


class Throttle:
    """Sliding windows over accepted-message times; `clock` gives seconds since the epoch."""

    def __init__(
        self,
        windows: Iterable[Window],
        *,
        history: Iterable[float] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = sorted(windows, key=lambda w: w.seconds)
        self.clock = clock
        self._longest = max((w.seconds for w in self.windows), default=0.0)
        self._done: list[float] = sorted(history)
        self.in_flight = 0
        self._forget(clock())

    def wait(self) -> Wait:
        """How long until a new message may start (0 when it may start now)."""
        now = self.clock()
        self._forget(now)
        longest = Wait(0.0)
        for window in self.windows:
            first = bisect.bisect_right(self._done, now - window.seconds)
            inside = len(self._done) - first
            excess = inside + self.in_flight - window.cap + 1
            if excess <= 0:
                continue
            if excess > inside:
                seconds = math.inf  # only a message in flight finishing can free this window
            else:
                seconds = self._done[first + excess - 1] + window.seconds - now
                # bisect_right already excludes entries exactly `seconds` old: never wait 0 here
                seconds = max(seconds, 1e-6)
            if seconds > longest.seconds:
                longest = Wait(seconds, window)
        return longest

    def start(self) -> None:
        """A message starts now (call only when `wait().ready`)."""
        self.in_flight += 1

    def finish(self, *, counted: bool) -> None:
        """A message in flight ended; `counted` when the server may have accepted it."""
        self.in_flight = max(0, self.in_flight - 1)
        if counted:
            bisect.insort(self._done, self.clock())

    def sent_in(self, window: Window) -> int:
        """How many messages count against `window` now, in flight included."""
        now = self.clock()
        first = bisect.bisect_right(self._done, now - window.seconds)
        return len(self._done) - first + self.in_flight

    def day_cap(self, wait: Wait) -> DayCapReached | None:
        """The day-cap stop for `wait`, when the day window is what holds the next message back."""
        window = wait.window
        if window is None or window.seconds < DAY or math.isinf(wait.seconds):
            return None
        return DayCapReached(self.sent_in(window), window.cap, self.clock() + wait.seconds)

    def _forget(self, now: float) -> None:
        cut = bisect.bisect_right(self._done, now - self._longest)
        if cut:
            del self._done[:cut]

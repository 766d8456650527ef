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
from typing import TYPE_CHECKING

from campaign.i18n import _, listed, number, plural

if TYPE_CHECKING:
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
        super().__init__(
            _("{sent} sent today, cap {cap} reached; next possible at {time}").format(
                sent=sent_today, cap=cap, time=when
            )
        )


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


@dataclass
class PaceReport:
    """What the server's limits and outages did to a run, for `send` and `status` to say."""

    configured: float | None  # messages per second the settings allowed (None: no limit)
    start: float | None  # the rate the run started from (a learnt rate from an earlier run)
    rate: float | None  # the rate the run ended with
    server: float | None  # the server's limit as measured (None: never limited)
    refusals: int = 0  # replies about the sender (rate, connections), not about a recipient
    outages: int = 0  # times the server could not be reached at all
    paused: float = 0.0  # seconds spent waiting for the server to come back

    def as_dict(self) -> dict[str, float | int | str | None]:
        """For `send --json`: rates in messages per second, and the sentence `send` prints."""
        return {
            "configured_rate": self.configured,
            "start_rate": self.start,
            "rate": self.rate,
            "server_rate": self.server,
            "refusals": self.refusals,
            "outages": self.outages,
            "paused_seconds": round(self.paused, 3),
            "summary": self.describe(),
        }

    def describe(self) -> str:
        """E.g. 'the server limited us to about 10/min; throttle lowered from 30 to 10/min'."""
        parts: list[str] = []
        if self.server is not None:
            parts.append(
                _("the server limited us to about {rate}").format(rate=per_minute(self.server))
            )
        if self.rate is not None and self.rate != self.start:
            before = per_minute(self.start or self.configured)
            parts.append(
                _("throttle lowered from {before} to {after}").format(
                    before=before, after=per_minute(self.rate)
                )
            )
        if self.refusals:
            parts.append(plural(self.refusals, "{n} refusal", "{n} refusals"))
        if self.outages:
            parts.append(
                _("server unreachable {n}× ({seconds} s paused)").format(
                    n=self.outages, seconds=number(self.paused)
                )
            )
        return listed(parts)


def per_minute(rate: float | None) -> str:
    if rate is None:
        return _("no limit")
    value = rate * 60
    return _("{n}/min").format(n=number(value, decimals=0 if value >= 10 else 1))


class Pace:
    """The rate the server lets us send at, learnt from its refusals (AIMD); pauses in outages.

    Unlimited (or started from a rate learnt earlier), it lets messages go as the windows allow.
    A refusal about the sender holds every start and lets one probe through after 1 s, 2 s, 3 s…;
    when a probe is accepted, the server's limit is measured as the messages it accepted since the
    last recovery over the time from the first of them to that acceptance (what a sliding window
    of the server lets through), and the pace drops to it (multiplicative decrease when already
    paced). Each run of `INCREASE_EVERY` accepted messages adds 5 % (additive increase), never
    above the settings' own rate. An outage (no connection at all) holds every start and probes on
    a doubling backoff up to `max_probe_gap` seconds; the rate is untouched.
    """

    INCREASE_EVERY = 10

    def __init__(
        self,
        *,
        configured: float | None,
        learnt: float | None = None,
        max_probe_gap: float = 30.0,
    ) -> None:
        self.configured = configured
        self.rate = learnt if learnt is not None else None
        self.max_probe_gap = max_probe_gap
        self.report = PaceReport(configured, self.rate, self.rate, None)
        self.hold_until = 0.0
        self.next_start = 0.0
        self.limited = False  # a refusal is not yet followed by an acceptance
        self.down_since: float | None = None
        self._misses = 0  # consecutive refusals or failed connections
        self._since: list[float] = []  # accepted since the last recovery
        self._streak = 0

    def delay(self, now: float) -> float:
        """Seconds before the next message may start (0: now)."""
        return max(self.hold_until, self.next_start) - now

    @property
    def holding(self) -> bool:
        """A refusal or an outage is not yet over: only one probe at a time."""
        return self.limited or self.down_since is not None

    def started(self, now: float) -> None:
        if self.rate is not None:
            self.next_start = max(now, self.next_start) + 1.0 / self.rate

    def accepted(self, now: float) -> None:
        self.outage_over(now)
        if self.limited:
            self.limited = False
            span = now - self._since[0] if self._since else 0.0
            if len(self._since) >= 2 and span > 0:
                measured = len(self._since) / span
                self.report.server = measured
                lowered = measured if self.rate is None else min(measured, self.rate * 0.7)
                self._set(lowered)
            elif self.rate is not None:
                self._set(self.rate * 0.7)
            self._since = []
            self.next_start = now + (1.0 / self.rate if self.rate else 0.0)
        self._misses = 0
        self._since.append(now)
        self._streak += 1
        if self.rate is not None and self._streak % self.INCREASE_EVERY == 0:
            self._set(self.rate * 1.05)

    def refused(self, now: float) -> None:
        """The server refused a message because of the sender (rate, connections, too much)."""
        self.report.refusals += 1
        self.limited = True
        self._misses += 1
        self._streak = 0
        self.hold_until = max(self.hold_until, now + min(float(self._misses), self.max_probe_gap))

    def unreachable(self, now: float) -> None:
        """No connection could be made (refused, timed out, dropped at the greeting)."""
        if self.down_since is None:
            self.down_since = now
            self.report.outages += 1
        self._misses += 1
        gap = min(2.0 ** (self._misses - 1), self.max_probe_gap)
        self.hold_until = max(self.hold_until, now + gap)

    def outage_over(self, now: float) -> None:
        """An outage going on is over at `now` (the server answered, or the run ends): paused."""
        if self.down_since is not None:
            self.report.paused += now - self.down_since
            self.down_since = None

    def _set(self, rate: float) -> None:
        floor = 1.0 / 60.0  # at least one message a minute
        if self.configured is not None:
            rate = min(rate, self.configured)
        self.rate = max(rate, floor)
        self.report.rate = self.rate


def configured_rate(windows: Iterable[Window]) -> float | None:
    """The steady rate the windows allow (messages per second), None when there is none."""
    rates = [w.cap / w.seconds for w in windows if w.seconds < DAY]
    return min(rates) if rates else None

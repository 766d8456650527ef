"""The send windows, with an injected clock: no window ever holds more than its cap."""

from __future__ import annotations

import math
import random

import pytest

from campaign.settings import Throttle as ThrottleSettings
from campaign.throttle import DAY, DayCapReached, Throttle, Window, windows_from


class Clock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drive(throttle: Throttle, clock: Clock, count: int, *, duration: float = 0.0) -> list[float]:
    """Send `count` messages one after another; each takes `duration`; return accept times."""
    accepted: list[float] = []
    while len(accepted) < count:
        wait = throttle.wait()
        if not wait.ready:
            assert not math.isinf(wait.seconds)
            clock.advance(wait.seconds)
            continue
        throttle.start()
        clock.advance(duration)
        throttle.finish(counted=True)
        accepted.append(clock())
    return accepted


def most_in_any_window(times: list[float], seconds: float) -> int:
    ordered = sorted(times)
    best = 0
    for i, start in enumerate(ordered):
        inside = sum(1 for t in ordered[i:] if t - start < seconds)
        best = max(best, inside)
    return best


def test_windows_come_from_the_settings() -> None:
    settings = ThrottleSettings(per_second=0.5, per_minute=30, per_hour=None, per_day=500)
    assert windows_from(settings) == [
        Window("second", 2.0, 1),
        Window("minute", 60.0, 30),
        Window("day", DAY, 500),
    ]


def test_every_window_holds_at_once() -> None:
    clock = Clock()
    windows = [Window("second", 1.0, 3), Window("minute", 60.0, 20), Window("hour", 3600.0, 50)]
    throttle = Throttle(windows, clock=clock)
    times = drive(throttle, clock, 120, duration=0.01)
    for window in windows:
        assert most_in_any_window(times, window.seconds) <= window.cap
    # and it does not wait more than it must: the hour cap is what spreads 120 messages out
    assert times[-1] - times[0] < 2 * 3600 + 60


def test_first_messages_go_at_once_then_the_minute_window_spaces_them() -> None:
    clock = Clock()
    throttle = Throttle([Window("minute", 60.0, 30)], clock=clock)
    start = clock()
    times = drive(throttle, clock, 31)
    assert times[29] == start
    assert times[30] == pytest.approx(start + 60.0)


def test_messages_in_flight_count_against_the_windows() -> None:
    clock = Clock()
    throttle = Throttle([Window("second", 1.0, 2)], clock=clock)
    throttle.start()
    throttle.start()
    assert math.isinf(throttle.wait().seconds)  # only a message finishing can free the window
    clock.advance(0.3)
    throttle.finish(counted=True)
    # one accepted + one in flight fill the window until the accepted one is a second old
    assert throttle.wait().seconds == pytest.approx(1.0)
    throttle.finish(counted=False)  # refused: it does not count
    assert throttle.wait().ready
    throttle.start()
    assert throttle.wait().seconds == pytest.approx(1.0)  # the accepted one leaves at +1 s


def test_uncounted_messages_free_their_slot_at_once() -> None:
    clock = Clock()
    throttle = Throttle([Window("minute", 60.0, 1)], clock=clock)
    throttle.start()
    throttle.finish(counted=False)
    assert throttle.wait().ready


def test_day_window_counts_what_earlier_runs_sent() -> None:
    clock = Clock()
    earlier = [clock() - 3600 * h for h in (1, 2, 3, 25)]  # the last one is older than a day
    throttle = Throttle([Window("day", DAY, 3)], history=earlier, clock=clock)
    wait = throttle.wait()
    assert wait.seconds == pytest.approx(DAY - 3 * 3600)
    stop = throttle.day_cap(wait)
    assert isinstance(stop, DayCapReached)
    assert stop.sent_today == 3
    assert str(stop).startswith("3 sent today, cap 3 reached; next possible at ")
    assert stop.next_at == pytest.approx(clock() + DAY - 3 * 3600)


def test_a_short_window_is_not_reported_as_the_day_cap() -> None:
    clock = Clock()
    throttle = Throttle([Window("minute", 60.0, 1), Window("day", DAY, 100)], clock=clock)
    drive(throttle, clock, 1)
    wait = throttle.wait()
    assert wait.window == Window("minute", 60.0, 1)
    assert throttle.day_cap(wait) is None


def test_random_durations_and_concurrency_never_exceed_a_cap_at_the_server() -> None:
    rng = random.Random(7)
    clock = Clock()
    windows = [Window("second", 1.0, 4), Window("minute", 60.0, 40)]
    throttle = Throttle(windows, clock=clock)
    in_flight: list[tuple[float, float]] = []  # (finish, the server's receive time) per message
    received: list[float] = []
    while len(received) < 200:
        in_flight.sort()
        wait = throttle.wait()
        if wait.ready and len(in_flight) < 3:
            throttle.start()
            duration = rng.uniform(0.01, 0.8)
            in_flight.append((clock() + duration, clock() + rng.uniform(0, duration)))
            continue
        next_finish = in_flight[0][0] if in_flight else math.inf
        step = min(math.inf if wait.ready else wait.seconds, next_finish - clock())
        clock.advance(max(step, 0.0))
        while in_flight and in_flight[0][0] <= clock():
            received.append(in_flight.pop(0)[1])
            throttle.finish(counted=True)
    for window in windows:
        assert most_in_any_window(received, window.seconds) <= window.cap

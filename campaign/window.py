"""The send window (`throttle.window`) → when a message may start, and when a campaign will finish.

The window is wall-clock time in the campaign's time zone: days of the week, one range of hours,
and the public holidays of a country (the `holidays` package) off. Every function takes the time
as seconds since the epoch and returns the same, so tests pass any instant and the summer-time
change is the time zone database's business, not ours: "08:30" is 08:30 in Paris on either side.

`WindowedThrottle` is how the dispatcher honours the window without knowing of it: it is a
`Throttle` whose `wait()` also says "wait until the window opens". `forecast` estimates the
finish from the window and the caps, for `send` and `status`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from campaign.i18n import N_, _, current_language, number, plural
from campaign.throttle import DAY, DayCapReached, Throttle, Wait, Window

if TYPE_CHECKING:  # `campaign status` forecasts without importing the settings' models
    from campaign.settings import SendWindow as WindowSettings
    from campaign.settings import Throttle as ThrottleSettings


class Caps(Protocol):
    """The caps a forecast needs: `throttle` settings, or what status recorded of them."""

    @property
    def per_second(self) -> float | None: ...

    @property
    def per_minute(self) -> int | None: ...

    @property
    def per_hour(self) -> int | None: ...

    @property
    def per_day(self) -> int | None: ...


# A window that opens on none of the next this many days is taken as never opening.
_SEARCH_DAYS = 400
_DAY_SHORT = [N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun")]
# What the dispatcher's wait shows while the window is closed; cap 0: no count frees it.
CLOSED = Window("send window", DAY, 0)


class NeverOpens(ValueError):
    """No day of the coming year is in the window (every allowed day is a holiday)."""


@dataclass(frozen=True)
class SendWindow:
    """When messages may start, in the wall time of `zone`."""

    days: frozenset[int]  # Monday = 0
    start: int  # minutes after midnight
    end: int
    zone: ZoneInfo
    holidays: Callable[[date], bool] = lambda day: False
    country: str | None = None

    @classmethod
    def from_settings(cls, settings: WindowSettings) -> SendWindow:
        from campaign.settings import parse_hours

        start, end = parse_hours(settings.hours)
        is_holiday: Callable[[date], bool] = _no_holiday
        if settings.holidays:
            import holidays  # only a campaign with a window pays for the import

            country, _, region = settings.holidays.partition("-")
            calendar = holidays.country_holidays(country, subdiv=region or None)
            is_holiday = calendar.__contains__
        return cls(
            days=settings.weekdays,
            start=start,
            end=end,
            zone=ZoneInfo(settings.timezone),
            holidays=is_holiday,
            country=settings.holidays,
        )

    def local(self, t: float) -> datetime:
        """The instant `t` in the window's wall time."""
        return datetime.fromtimestamp(t, self.zone)

    def sending_day(self, day: date) -> bool:
        """Whether the window opens at all on `day`."""
        return day.weekday() in self.days and not self.holidays(day)

    def opening(self, day: date) -> tuple[float, float]:
        """When the window opens and closes on `day` (whether or not it is a sending day)."""
        return self._at(day, self.start), self._at(day, self.end)

    def _at(self, day: date, minutes: int) -> float:
        # The wall time on that day, so that 08:30 stays 08:30 across a change to summer time.
        if minutes >= 24 * 60:
            day, minutes = day + timedelta(days=1), 0
        wall = clock_time(minutes // 60, minutes % 60)
        return datetime.combine(day, wall, tzinfo=self.zone).timestamp()

    def is_open(self, t: float) -> bool:
        """Whether a message may start at `t`."""
        day = self.local(t).date()
        if not self.sending_day(day):
            return False
        opens, closes = self.opening(day)
        return opens <= t < closes

    def next_opening(self, t: float) -> float:
        """`t` itself when the window is open, else when it next opens."""
        day = self.local(t).date()
        for offset in range(_SEARCH_DAYS):
            current = day + timedelta(days=offset)
            if not self.sending_day(current):
                continue
            opens, closes = self.opening(current)
            if t < opens:
                return opens
            if t < closes:
                return t
        raise NeverOpens(_("the send window does not open in the coming year"))

    def closing(self, t: float) -> float:
        """When the window open at `t` closes (call only when `is_open(t)`)."""
        return self.opening(self.local(t).date())[1]

    def describe(self) -> str:
        """The window in a few words: `weekdays 08:30–18:00`."""
        if self.days == frozenset(range(5)):
            days = _("weekdays")
        elif self.days == frozenset(range(7)):
            days = _("every day")
        else:
            days = ", ".join(_(_DAY_SHORT[d]) for d in sorted(self.days))
        return f"{days} {_hhmm(self.start)}–{_hhmm(self.end)}"


def _no_holiday(day: date) -> bool:
    return False


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def window_of(settings: ThrottleSettings) -> SendWindow | None:
    """The settings' send window, or None when messages may start at any time."""
    return SendWindow.from_settings(settings.window) if settings.window is not None else None


def format_opening(when: float, window: SendWindow, language: str | None = None) -> str:
    """`Monday 4 May at 08:30` (English) or `lundi 4 mai à 08:30` (French), in the window's zone.

    `language` defaults to the language of the messages.
    """
    from babel.dates import format_datetime

    language = language or current_language()
    pattern = "EEEE d MMMM 'à' HH:mm" if language.startswith("fr") else "EEEE d MMMM 'at' HH:mm"
    return str(format_datetime(window.local(when), pattern, locale=language))


class WindowClosed(DayCapReached):
    """The send window is closed and the run was asked not to wait (`send --no-wait`)."""

    def __init__(self, next_at: float, window: SendWindow, sent_today: int = 0) -> None:
        self.next_at = next_at
        self.window = window
        self.sent_today = sent_today
        self.cap = 0
        Exception.__init__(
            self, _("next window opens {when}").format(when=format_opening(next_at, window))
        )


class WindowedThrottle(Throttle):
    """A throttle that also keeps every new message inside the send window.

    The dispatcher asks `wait()` before each message: outside the window the answer is "wait until
    it opens" (`CLOSED`), and `day_cap()` turns that wait into `WindowClosed` when the run should
    stop instead (`--no-wait`). Messages in flight when the window closes finish normally.
    """

    def __init__(
        self,
        windows: Iterable[Window],
        *,
        window: SendWindow,
        wait_for_window: bool = True,
        history: Iterable[float] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(windows, history=history, clock=clock)
        self.window = window
        self.wait_for_window = wait_for_window

    def wait(self) -> Wait:
        now = self.clock()
        opens = self.window.next_opening(now)
        if opens > now:
            return Wait(opens - now, CLOSED)
        return super().wait()

    def day_cap(self, wait: Wait) -> DayCapReached | None:
        if wait.window is CLOSED:
            if self.wait_for_window:
                return None
            now = self.clock()
            return WindowClosed(now + wait.seconds, self.window, self.sent_in(CLOSED))
        return super().day_cap(wait)


# Forecast ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forecast:
    """How long `count` messages take within the caps and the window: an estimate."""

    count: int
    starts_at: float
    finishes_at: float
    sending_days: int
    per_day: int | None
    window: str | None  # `weekdays 08:30–18:00`, or None without a window
    now: float

    @property
    def duration(self) -> str:
        """`about 2 days`, `about 3 hours`, `about 12 minutes`, `under a minute`."""
        if self.sending_days > 1:
            return plural(self.sending_days, "about {n} day", "about {n} days")
        seconds = self.finishes_at - self.starts_at
        if seconds < 60:
            return _("under a minute")
        if seconds < 5400:
            return plural(round(seconds / 60), "about {n} minute", "about {n} minutes")
        return plural(round(seconds / 3600), "about {n} hour", "about {n} hours")

    def summary(self) -> str:
        """`711 to send: about 2 days (500/day, weekdays 08:30–18:00)`."""
        per_day = _("{n}/day").format(n=number(self.per_day)) if self.per_day else None
        limits = [part for part in (per_day, self.window) if part]
        why = f" ({', '.join(limits)})" if limits else ""
        return _("{count} to send: {duration}{why}").format(
            count=number(self.count), duration=self.duration, why=why
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "starts_at": self.starts_at,
            "finishes_at": self.finishes_at,
            "sending_days": self.sending_days,
            "per_day": self.per_day,
            "window": self.window,
            "summary": self.summary(),
        }


def rate_per_second(settings: Caps) -> float:
    """The steadiest rate the caps below a day allow (inf when none is set)."""
    rates = [
        cap / seconds
        for cap, seconds in (
            (settings.per_second, 1.0),
            (settings.per_minute, 60.0),
            (settings.per_hour, 3600.0),
        )
        if cap is not None
    ]
    return min(rates, default=math.inf)


def forecast(
    count: int,
    settings: Caps,
    window: SendWindow | None,
    now: float,
    *,
    sent_last_day: int = 0,
) -> Forecast:
    """Estimate when `count` messages are sent, starting at `now`.

    Day by day: each sending day carries what its open hours allow at the steadiest rate, up to
    the day's cap (the first day less what the last 24 hours already sent). The server's speed is
    not known here, so the figure is a lower bound when the caps are generous.
    """
    rate = rate_per_second(settings)
    per_day = settings.per_day
    remaining, t = count, now
    starts_at = finishes_at = now
    days = 0
    budget = (per_day - sent_last_day) if per_day is not None else math.inf
    for _day in range(_SEARCH_DAYS * 2):
        if remaining <= 0:
            break
        start = window.next_opening(t) if window is not None else t
        end = window.closing(start) if window is not None else start + DAY
        room = (end - start) * rate
        carried = int(min(remaining, room + 1e-9, max(budget, 0)))  # 120 s × 1/60 s is 2, not 1.99
        if carried > 0:
            if days == 0:
                starts_at = start
            days += 1
            finishes_at = start + (carried / rate if math.isfinite(rate) else 0.0)
            remaining -= carried
        # The next sending day: after this one closes (or a day on, without a window).
        t = end if window is not None else start + DAY
        budget = per_day if per_day is not None else math.inf
    return Forecast(
        count=count,
        starts_at=starts_at,
        finishes_at=finishes_at,
        sending_days=days,
        per_day=per_day,
        window=window.describe() if window is not None else None,
        now=now,
    )

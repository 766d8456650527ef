"""The send window with an injected clock: a weekend, a public holiday, the change to summer time."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaign.errors import SettingsError
from campaign.inputs import load_inputs
from campaign.ledger import Ledger, State
from campaign.send import SendOptions, send_campaign
from campaign.settings import SendWindow as WindowSettings
from campaign.settings import Throttle as ThrottleSettings
from campaign.settings import load_settings
from campaign.throttle import Window
from campaign.window import (
    CLOSED,
    SendWindow,
    WindowClosed,
    WindowedThrottle,
    forecast,
    format_opening,
)
from tests.smtp_server import FaultyServer, make_project

PARIS = ZoneInfo("Europe/Paris")


def paris(*parts: int) -> float:
    """An instant given as Paris wall time: paris(2026, 5, 4, 8, 30)."""
    return datetime(*parts, tzinfo=PARIS).timestamp()  # type: ignore[misc]


def wall(window: SendWindow, t: float) -> tuple[int, int, int, int]:
    local = window.local(t)
    return local.month, local.day, local.hour, local.minute


def office(**changes: object) -> SendWindow:
    values: dict[str, object] = {
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "hours": "08:30-18:00",
        "timezone": "Europe/Paris",
        "holidays": "FR",
        **changes,
    }
    return SendWindow.from_settings(WindowSettings.model_validate(values))


def test_the_window_opens_and_closes_on_the_minute() -> None:
    window = office()
    monday = (2026, 5, 4)
    assert not window.is_open(paris(*monday, 8, 29) + 59)
    assert window.is_open(paris(*monday, 8, 30))
    assert window.is_open(paris(*monday, 17, 59) + 59)
    assert not window.is_open(paris(*monday, 18, 0))


def test_a_weekend_waits_for_monday_morning() -> None:
    window = office(holidays=None)
    saturday = paris(2026, 5, 9, 11, 0)
    assert not window.is_open(saturday)
    assert wall(window, window.next_opening(saturday)) == (5, 11, 8, 30)
    friday_evening = paris(2026, 5, 8, 18, 0)
    assert wall(window, window.next_opening(friday_evening)) == (5, 11, 8, 30)


def test_a_public_holiday_is_skipped() -> None:
    window = office()
    # Friday 1 May 2026 is Labour Day: after Thursday's close, the next opening is Monday 4 May.
    thursday_evening = paris(2026, 4, 30, 18, 5)
    assert not window.is_open(paris(2026, 5, 1, 10, 0))
    opens = window.next_opening(thursday_evening)
    assert wall(window, opens) == (5, 4, 8, 30)
    assert format_opening(opens, window) == "Monday 4 May at 08:30"
    assert format_opening(opens, window, "fr") == "lundi 4 mai à 08:30"
    # Without the holidays, Friday is a day like any other.
    assert wall(office(holidays=None), office(holidays=None).next_opening(thursday_evening)) == (
        5,
        1,
        8,
        30,
    )


def test_the_change_to_summer_time_keeps_the_wall_clock_hours() -> None:
    window = office()
    # Summer time starts on Sunday 29 March 2026: Paris goes from UTC+1 to UTC+2.
    friday_close = paris(2026, 3, 27, 18, 0)
    opens = window.next_opening(friday_close)
    assert wall(window, opens) == (3, 30, 8, 30)
    assert window.local(opens).utcoffset() != window.local(friday_close).utcoffset()
    assert opens - friday_close == (2 * 24 + 14.5 - 1) * 3600  # one hour shorter weekend
    assert window.closing(opens) - opens == 9.5 * 3600
    # A window across the change itself: the night of the change has one hour fewer.
    night = office(days=["sat", "sun"], hours="00:00-06:00", holidays=None)
    assert night.closing(paris(2026, 3, 29, 0, 0)) - paris(2026, 3, 29, 0, 0) == 5 * 3600


def test_outside_the_window_the_throttle_says_wait_for_the_opening() -> None:
    now = [paris(2026, 5, 2, 10, 0)]  # a Saturday
    throttle = WindowedThrottle(
        [Window("minute", 60.0, 30)], window=office(), wait_for_window=False, clock=lambda: now[0]
    )
    wait = throttle.wait()
    assert wait.window is CLOSED
    assert now[0] + wait.seconds == paris(2026, 5, 4, 8, 30)
    stop = throttle.day_cap(wait)
    assert isinstance(stop, WindowClosed)
    assert str(stop) == "next window opens Monday 4 May at 08:30"
    now[0] = paris(2026, 5, 4, 8, 30)
    assert throttle.wait().ready
    waiting = WindowedThrottle(
        [Window("minute", 60.0, 30)], window=office(), clock=lambda: paris(2026, 5, 2, 10, 0)
    )
    assert waiting.day_cap(waiting.wait()) is None  # `send` without --no-wait sleeps instead


def caps(**changes: object) -> ThrottleSettings:
    values: dict[str, object] = {"per_minute": 30, "per_day": 500, **changes}
    return ThrottleSettings.model_validate(values)


def test_forecast_counts_sending_days_within_the_caps() -> None:
    monday = paris(2026, 5, 4, 9, 0)
    found = forecast(711, caps(), office(), monday)
    assert found.summary() == "711 to send: about 2 days (500/day, weekdays 08:30–18:00)"
    # 500 on Monday, then 211 on Tuesday from 08:30 at one every 2 seconds: done at 08:37.
    assert wall(office(), found.finishes_at) == (5, 5, 8, 37)
    assert abs(found.finishes_at - paris(2026, 5, 5, 8, 30) - 211 * 2) < 1


def test_forecast_skips_the_weekend_and_the_holiday() -> None:
    window = office()
    thursday = paris(2026, 4, 30, 17, 0)  # one hour left today, then Labour Day and a weekend
    found = forecast(700, caps(), window, thursday)
    assert found.sending_days == 2
    local = window.local(found.finishes_at)
    assert (local.month, local.day) == (5, 4)
    # What the last day already sent counts against the first day's cap.
    tired = forecast(700, caps(), window, paris(2026, 5, 4, 9, 0), sent_last_day=450)
    assert tired.sending_days == 3  # 50 on Monday, 500 on Tuesday, 150 on Wednesday
    assert window.local(tired.finishes_at).day == 6


def test_forecast_without_a_window_or_a_day_cap_is_a_matter_of_minutes() -> None:
    found = forecast(100, caps(per_day=None), None, 1_800_000_000.0)
    assert found.summary() == "100 to send: about 3 minutes"
    assert found.finishes_at - found.starts_at == 200


def test_forecast_starts_at_the_next_opening() -> None:
    window = office()
    found = forecast(30, caps(), window, paris(2026, 5, 2, 10, 0))
    assert found.starts_at == paris(2026, 5, 4, 8, 30)
    assert found.summary() == "30 to send: about 1 minute (500/day, weekdays 08:30–18:00)"


BAD_WINDOWS = [
    ("days: [mon, funday]", "throttle.window.days", "'funday' is not a day of the week"),
    ('hours: "18:00-08:30"', "throttle.window.hours", "ends before it starts"),
    ('hours: "8 to 6"', "throttle.window.hours", "is not a range of hours"),
    ("timezone: Europe/Pari", "throttle.window.timezone", "did you mean 'Europe/Paris'"),
    ("holidays: XX", "throttle.window.holidays", "no public holidays are known for 'XX'"),
    ("holiday: FR", "throttle.window.holiday", "did you mean 'holidays'"),
]


@pytest.mark.parametrize(("line", "key", "message"), BAD_WINDOWS)
def test_a_bad_window_names_the_key_and_its_line(
    tmp_path: Path, line: str, key: str, message: str
) -> None:
    settings = make_project(tmp_path, port=2525, throttle=f"per_minute: 30\n  window:\n    {line}")
    with pytest.raises(SettingsError) as caught:
        load_settings(settings)
    text = str(caught.value)
    assert message in text
    assert f"key '{key}'" in text
    expected = settings.read_text().splitlines().index(f"    {line}") + 1
    assert caught.value.place.line == expected


def test_french_day_names_and_regions_are_understood(tmp_path: Path) -> None:
    window = office(days=["lun", "Mardi", "mer"], hours="8h30-18h", holidays="fr-57")
    assert window.describe() == "Mon, Tue, Wed 08:30–18:00"
    # Good Friday is a public holiday in Moselle only.
    assert not window.sending_day(datetime(2026, 4, 3).date())
    assert office().sending_day(datetime(2026, 4, 3).date())


WINDOW = (
    "per_minute: null\n  per_day: 1000\n  window: "
    "{days: [mon, tue, wed, thu, fri], hours: '08:30-18:00', timezone: Europe/Paris, holidays: FR}"
)


def test_send_outside_the_window_starts_nothing_and_says_when_it_opens(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3, throttle=WINDOW)
        campaign = load_settings(settings).campaign("mini")
        saturday = paris(2026, 5, 2, 10, 0)
        report = send_campaign(
            load_inputs(campaign), SendOptions(wait_retries=False), clock=lambda: saturday
        )
        assert report.tally.messages == 0
        assert server.stored == []
        assert report.stopped == "next window opens Monday 4 May at 08:30"
        assert report.next_window == paris(2026, 5, 4, 8, 30)
        assert report.forecast is not None
        assert report.forecast.starts_at == paris(2026, 5, 4, 8, 30)
        assert report.exit_code == 0


def test_send_waits_for_the_opening_then_sends(tmp_path: Path) -> None:
    now = [paris(2026, 5, 4, 8, 29, 50)]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3, throttle=WINDOW)
        campaign = load_settings(settings).campaign("mini")
        report = send_campaign(
            load_inputs(campaign), SendOptions(), clock=lambda: now[0], sleep=sleep
        )
        assert report.tally.sent == 3
        assert len(server.stored) == 3
        assert report.next_window is None
    with Ledger(campaign.outbox / "delivery.sqlite") as log:
        sent = [d.sent_at for d in log.deliveries() if d.state is State.SENT]
    assert len(sent) == 3
    assert all(t is not None and t >= paris(2026, 5, 4, 8, 30) for t in sent)


def test_status_forecasts_the_finish_from_the_window_and_the_caps(tmp_path: Path) -> None:
    from campaign import commands

    throttle = WINDOW.replace("per_minute: null", "per_minute: 1")
    settings = make_project(tmp_path, port=2525, recipients=3, throttle=throttle)
    campaign = load_settings(settings).campaign("mini")
    thursday = paris(2026, 5, 7, 17, 58)  # two minutes left, then Victory Day and a weekend
    found = commands.status(campaign, now=thursday).forecast
    assert found is not None
    assert found.summary() == "3 to send: about 2 days (1000/day, weekdays 08:30–18:00)"
    assert found.finishes_at == paris(2026, 5, 11, 8, 31)
    monday = commands.status(campaign, now=paris(2026, 5, 11, 9, 0)).forecast
    assert monday is not None and monday.as_dict()["summary"] == (
        "3 to send: about 3 minutes (1000/day, weekdays 08:30–18:00)"
    )

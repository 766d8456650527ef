"""`campaign status --report FILE.html`: the organisers' page, read back with html.parser and opened
in headless Chromium with no network (no request may leave it), every untrusted value escaped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import asdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaign import commands
from campaign.errors import UsageError
from campaign.ledger import Entry, Ledger, State, begin, bounced, delivered, noted, outcome
from campaign.settings import Campaign, load_settings
from campaign.throttle import PaceReport
from tests.conftest import cli
from tests.smtp_server import Fault, FaultyServer, make_project

HOSTILE = '<script>alert("pwned")</script>'
CHROMIUM = Path("/usr/bin/chromium")


def campaign_of(settings: Path) -> Campaign:
    return load_settings(settings).campaign("mini")


class Page(HTMLParser):
    """The parts of the report the tests read: table rows by table class, the SVG's hours."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.hours: list[dict[str, str]] = []
        self.rects: list[dict[str, str]] = []
        self.elements: list[tuple[str, dict[str, str]]] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag == "table":
            self._table = values.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "g" and "hour" in values.get("class", ""):
            self.hours.append(values)
        elif tag == "rect":
            self.rects.append(values)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def counts(page: Page) -> dict[str, int]:
    return {row[0]: int(row[1]) for row in page.tables["counts"][1:]}


def test_the_report_of_a_real_send_counts_every_state_and_lists_the_bounces(
    tmp_path: Path,
) -> None:
    faults = [
        Fault(
            "rcpt",
            code=550,
            text=f"5.1.1 no such user {HOSTILE}",
            recipient="personne0002@example.org",
            times=0,
        ),
        Fault(
            "rcpt",
            code=451,
            text="4.7.1 greylisted, come back later",
            recipient="personne0003@example.org",
            times=0,
        ),
        Fault("dot", action="store_drop", recipient="personne0004@example.org"),
    ]
    with FaultyServer(faults=faults) as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=9, suppressed=["personne0009@example.org"]
        )
        sent = cli(settings, "send", "--no-wait")
    assert sent.exit_code == 1, sent.output  # one failed, one uncertain
    log = campaign_of(settings).layout.log
    now = time.time()
    with Ledger(log) as ledger:  # what campaign inbox would record from the mailbox
        ledger.apply(
            [
                bounced(
                    "personne0005@example.org", now, f"550 5.1.1 mailbox unknown {HOSTILE}", "dsn"
                ),
                delivered("personne0006@example.org", now, "dsn"),
                noted("personne0007@example.org", "replied_at", now, "reply"),
                noted("personne0008@example.org", "auto_replied_at", now, "auto-reply"),
                noted("personne0001@example.org", "unsubscribed_at", now, "request"),
            ]
        )
    report = tmp_path / "suivi.html"
    result = cli(settings, "status", "--report", str(report))
    assert result.exit_code == 1, result.output
    assert f"report written to {report}" in " ".join(result.output.split())
    page = parse(report)
    assert counts(page) == {
        "sent": 3,
        "delivered": 1,
        "bounced": 1,
        "replied": 1,
        "auto-replied": 1,
        "asked to unsubscribe": 1,
        "deferred": 1,
        "failed": 1,
        "uncertain": 1,
        "pending": 0,
        "held": 0,
        "suppressed": 1,
    }
    (_header, *rows) = page.tables["bounces"]
    assert rows == [
        ["6", "personne0005@example.org", f"550 5.1.1 mailbox unknown {HOSTILE}", rows[0][3]]
    ]
    reasons = {row[2]: row[1] for row in page.tables["attention"][1:]}
    assert reasons["550 5.1.1 no such user " + HOSTILE] == "failed"
    assert reasons["451 4.7.1 greylisted, come back later"] == "deferred"
    assert all(tag != "script" for tag, _ in page.elements)  # the hostile text stayed text
    assert "&lt;script&gt;" in report.read_text(encoding="utf-8")
    assert (report.stat().st_mode & 0o777) == 0o600  # addresses: for its owner only
    # The server's limits: one run, recorded with its pace.
    (run,) = page.tables["runs"][1:]
    assert run[2] == "5"  # 0001, 0005-0008 accepted (0004's message was kept without a reply)
    assert run[6] == "0" and run[7] == "never"


def _project_with_a_log(tmp_path: Path, hours: list[float]) -> tuple[Campaign, float]:
    """A log made with the ledger API: messages sent at the given hours from a start time."""
    settings = make_project(tmp_path, port=9, recipients=len(hours) + 1)
    campaign = campaign_of(settings)
    start = time.mktime((2026, 5, 4, 9, 0, 0, 0, 0, -1)) + 60  # 09:01 local, a Monday
    entries = [
        Entry(f"personne{i:04d}@example.org", i + 1, None, f"<m{i}@example.org>")
        for i in range(1, len(hours) + 2)
    ]
    with Ledger(campaign.layout.log) as ledger:
        ledger.enqueue(entries, [], start)
        run = ledger.start_run(start)
        for entry, hour in zip(entries, hours, strict=False):
            at = start + hour * 3600
            state = State.FAILED if hour == hours[-1] else State.SENT
            ledger.apply([begin(entry.email, at), outcome(entry.email, state, 250, "ok", at)])
        ledger.end_run(run, start + hours[-1] * 3600, len(hours) - 1, "done")
        ledger.keep_pace(
            run,
            {
                "configured": 1.0,
                "start": None,
                "rate": 0.2,
                "server": 0.2,
                "refusals": 4,
                "outages": 2,
                "paused": 61.0,
            },
        )
        ledger.keep_learnt_rate(0.2)
    return campaign, start + hours[-1] * 3600 + 60


def test_the_timeline_has_one_bar_per_hour_and_the_server_limits_are_told(tmp_path: Path) -> None:
    # Messages at 09:xx (2), 10:xx (1), none at 11:xx, 12:xx (1 sent, 1 failed): 4 hours drawn.
    campaign, now = _project_with_a_log(tmp_path, [0.0, 0.5, 1.2, 3.1, 3.4])
    report = tmp_path / "suivi.html"
    commands.status(campaign, report_to=report, now=now)
    page = parse(report)
    assert [(h["data-hour"], h["data-total"]) for h in page.hours] == [
        ("09:00", "2"),
        ("10:00", "1"),
        ("11:00", "0"),
        ("12:00", "2"),
    ]
    assert [(r["data-outcome"], r["data-count"]) for r in page.rects] == [
        ("sent", "2"),
        ("sent", "1"),
        ("sent", "1"),
        ("failed", "1"),
    ]
    heights = [float(r["height"]) for r in page.rects]
    assert heights[0] == heights[2] + heights[3]  # both 2-message hours reach the top
    (run,) = page.tables["runs"][1:]
    assert run[4:] == ["60/min", "about 12/min, sent at 12/min", "4", "2× (61 s paused)"]
    text = " ".join("".join(page.text).split())
    assert "The next run starts at the rate the server was measured to allow: 12/min." in text
    assert "1 to send:" in text  # the recipient never tried: the forecast of what is left


@pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CAMPAIGN_REAL_SERVERS") != "1",
    reason="chromium is not installed (/usr/bin/chromium)",
)
def test_chromium_renders_the_report_offline_with_no_request(tmp_path: Path) -> None:
    campaign, now = _project_with_a_log(tmp_path, [0.0, 1.0, 2.5])
    report = tmp_path / "suivi.html"
    commands.status(campaign, report_to=report, now=now)
    profile, netlog = tmp_path / "profile", tmp_path / "netlog.json"
    with socket.socket() as dead:  # a proxy that accepts nothing: any request would fail
        dead.bind(("127.0.0.1", 0))
        proxy = dead.getsockname()[1]
        flags = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-features=NetworkTimeServiceQuerying,Translate,OptimizationHints",
            f"--proxy-server=127.0.0.1:{proxy}",
            f"--user-data-dir={profile}",
        ]
        dom = subprocess.run(
            [*flags, f"--log-net-log={netlog}", "--dump-dom", report.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        shot = tmp_path / "shot.png"
        subprocess.run(
            [*flags, f"--screenshot={shot}", "--window-size=1000,900", report.as_uri()],
            capture_output=True,
            timeout=120,
        )
    assert dom.returncode == 0, dom.stderr
    rendered = Page()
    rendered.feed(dom.stdout)
    assert len(rendered.hours) == 3  # 09:00, 10:00, 11:00: one bar per hour, as Chromium built it
    assert counts(rendered)["sent"] == 2
    # Chromium's own log of the network: the page asked for nothing (the browser itself may ask
    # its vendor the time; the control page shows that a request of a page is seen).
    control = tmp_path / "control.html"
    control.write_text('<img src="http://192.0.2.1/tracker.png">', encoding="utf-8")
    subprocess.run(
        [*flags, f"--log-net-log={tmp_path / 'control.json'}", "--dump-dom", control.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert "http://192.0.2.1/tracker.png" in _requested(tmp_path / "control.json")
    assert {u for u in _requested(netlog) if not _browser_own(u)} == set()
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(1_000_000) or []
    green = sum(n for n, (r, g, b) in colours if (r, g, b) == (0x3A, 0x7D, 0x44))
    assert green > 100  # the bars are drawn (the sent colour), not only the text


def _browser_own(url: str) -> bool:
    """A request Chromium makes for itself (network time, updates), whatever page it shows."""
    host = url.split("/")[2] if "://" in url else ""
    return host.endswith((".google.com", ".gstatic.com", ".googleapis.com", ".gvt1.com"))


def _requested(netlog: Path) -> set[str]:
    """Every URL in a Chromium NetLog (a file left unterminated by a killed browser is closed)."""
    text = netlog.read_text(encoding="utf-8").rstrip()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip(",") + "]}")
    return {
        str(event["params"]["url"])
        for event in log.get("events", [])
        if "url" in event.get("params", {})
    }


def test_a_wrong_report_path_is_said_before_any_work(tmp_path: Path) -> None:
    campaign, now = _project_with_a_log(tmp_path, [0.0])
    with pytest.raises(UsageError, match="is a folder"):
        commands.status(campaign, report_to=tmp_path, now=now)
    with pytest.raises(UsageError, match="does not exist") as missing:
        commands.status(campaign, report_to=tmp_path / "nowhere" / "suivi.html", now=now)
    assert "create the folder first" in (missing.value.hint or "")
    with pytest.raises(UsageError, match=r"cannot write suivi\.pdf: --report writes \.html"):
        commands.status(campaign, report_to=tmp_path / "suivi.pdf", now=now)
    result = cli(campaign.settings.path, "status", "--report", str(tmp_path))
    assert result.exit_code == 2
    assert "is a folder" in result.output
    assert "Traceback" not in result.output


def test_no_report_before_the_first_send(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=9, recipients=2)
    with pytest.raises(UsageError, match="nothing to report"):
        commands.status(campaign_of(settings), report_to=tmp_path / "suivi.html")
    assert not (tmp_path / "suivi.html").exists()


def forty_sent_in_one_run(
    campaign: Campaign, seconds: float, pace: PaceReport | None = None
) -> None:
    """A log in which one run of `seconds`, ten minutes ago, sent 40 messages (with its pace)."""
    start = time.time() - 600
    entries = [
        Entry(f"personne{i:04d}@example.org", i + 1, None, f"<m{i}@example.org>")
        for i in range(1, 41)
    ]
    with Ledger(campaign.layout.log) as ledger:
        ledger.enqueue(entries, [], start)
        run = ledger.start_run(start)
        for entry in entries:
            ledger.apply(
                [begin(entry.email, start), outcome(entry.email, State.SENT, 250, "ok", start)]
            )
        ledger.end_run(run, start + seconds, 40, "done")
        if pace is not None:
            ledger.keep_pace(run, asdict(pace))


@pytest.mark.parametrize(("seconds", "rate"), [(0.5, None), (120.0, "20")])
def test_a_rate_is_given_only_over_a_minute_of_sending(
    tmp_path: Path, seconds: float, rate: str | None
) -> None:
    # 40 messages in half a second are not "4,800 a minute" when the throttle allowed 3,000.
    settings = make_project(tmp_path, port=9, recipients=40)
    campaign = campaign_of(settings)
    forty_sent_in_one_run(campaign, seconds)
    shown = " ".join(cli(settings, "status").output.split())
    page = tmp_path / "suivi.html"
    commands.status(campaign, report_to=page)
    text = " ".join("".join(parse(page).text).split())
    if rate is None:
        assert "1 run, 0.5 s sending; 40 in the last 24 h" in shown
        assert "messages/min" not in shown
        assert "Overall: 1 run, 0 s sending." in text and "messages a minute" not in text
    else:
        assert "1 run, 120.0 s sending, 20 messages/min; 40 in the last 24 h" in shown
        assert "Overall: 1 run, 120 s sending, 20 messages a minute." in text


def test_a_pause_for_a_server_down_is_not_counted_as_sending(tmp_path: Path) -> None:
    # A run of 180 s that waited 60 s for the server sent its 40 messages in 120 s: 20 a minute,
    # not 13.3, and status says where the other minute went.
    settings = make_project(tmp_path, port=9, recipients=40)
    campaign = campaign_of(settings)
    forty_sent_in_one_run(
        campaign,
        180,
        PaceReport(configured=None, start=None, rate=None, server=None, outages=1, paused=60.0),
    )
    result = cli(settings, "status")
    shown = " ".join(result.output.split())
    assert (
        "1 run, 120.0 s sending and 60.0 s waiting for the server, 20 messages/min; "
        "40 in the last 24 h" in shown
    ), shown
    report = json.loads(cli(settings, "status", "--json").output)
    assert (report["run_seconds"], report["paused_seconds"], report["per_minute"]) == (120, 60, 20)
    page = tmp_path / "suivi.html"
    commands.status(campaign, report_to=page)
    text = " ".join("".join(parse(page).text).split())
    assert "Overall: 1 run, 120 s sending, 20 messages a minute." in text

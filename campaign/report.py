"""A `StatusReport` + the delivery log → one self-contained HTML page for the organisers.

`status --report FILE.html` writes it: the counts by state and what the mailbox said, the
recipients needing attention grouped by reason, the bounces with their reasons, what the server's
limits did in each run (rate, refusals, outages), the forecast of what is left, and a timeline of
the messages per hour by outcome as an inline SVG bar chart. Nothing in it asks for a file or a
script from anywhere (inline CSS and SVG, a Content-Security-Policy that forbids the rest), so it
opens offline and can be mailed as an attachment.

Every sentence a person reads is in the template, `campaign/assets/report.html.j2` (one place to
translate); this module gives it numbers, dates and the log's own texts. Jinja2 autoescapes every
value: a spreadsheet cell or a server's reply is untrusted text.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.causes import Cause
from campaign.errors import InputError, Place
from campaign.i18n import _, number
from campaign.outbox import check_output_path

if TYPE_CHECKING:
    from campaign.ledger import Ledger
    from campaign.status import StatusReport

TEMPLATE = "report.html.j2"
# The outcomes of the timeline, in the order their bars stack (bottom first), and the states
# that count as each: a delivered or bounced message was sent first.
OUTCOMES = ("sent", "bounced", "deferred", "failed", "uncertain")
_OUTCOME_OF = {
    "sent": "sent",
    "delivered": "sent",
    "bounced": "bounced",
    "deferred": "deferred",
    "failed": "failed",
    "uncertain": "uncertain",
}
# The states in the counts table, in the order the organisers read them.
STATES = (
    "sent",
    "delivered",
    "bounced",
    "replied",
    "auto_replied",
    "unsubscribed",
    "deferred",
    "failed",
    "uncertain",
    "pending",
    "held",
    "suppressed",
)
HOUR = 3600.0
# More hours than this between the first and the last message: only the hours with messages get
# a bar (a month of empty nights would squeeze the chart to nothing).
_MAX_SPAN = 168
# The chart's geometry, in SVG user units.
_BAR, _GAP, _HEIGHT, _LEFT, _BOTTOM, _TOP = 18, 4, 160, 40, 46, 10


@dataclass(frozen=True)
class Segment:
    """One outcome's part of an hour's bar."""

    outcome: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class HourBar:
    """The messages of one hour (local time), stacked by outcome."""

    start: float
    label: str  # "14:00"
    day: str  # "2026-05-07", shown under the first bar of each day
    total: int
    x: float
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Timeline:
    bars: list[HourBar]
    width: float
    height: float
    top: int  # the value of the chart's top line
    baseline: float  # y of the axis
    gaps_hidden: bool  # only the hours with messages are drawn


def hour_of(t: float) -> float:
    """The start of the local hour `t` is in."""
    local = time.localtime(t)
    return time.mktime((*local[:4], 0, 0, *local[6:9]))


def timeline(events: list[tuple[float, str]]) -> Timeline:
    """One bar per hour from the first message to the last, stacked by outcome."""
    per_hour: dict[float, Counter[str]] = {}
    for at, outcome in events:
        per_hour.setdefault(hour_of(at), Counter())[outcome] += 1
    hours = sorted(per_hour)
    gaps_hidden = False
    if hours:
        span: list[float] = []
        t = hours[0]
        while t <= hours[-1] and len(span) <= _MAX_SPAN:
            span.append(t)
            t = hour_of(t + HOUR + 60)  # + 60 s: the summer-time change has no hour twice
        if len(span) <= _MAX_SPAN:
            hours = span
        else:
            gaps_hidden = True
    top = max((sum(c.values()) for c in per_hour.values()), default=0)
    top = max(top, 1)
    bars: list[HourBar] = []
    last_day = ""
    for index, start in enumerate(hours):
        counts = per_hour.get(start, Counter())
        x = _LEFT + index * (_BAR + _GAP)
        y = float(_TOP + _HEIGHT)
        segments: list[Segment] = []
        for outcome in OUTCOMES:
            if counts[outcome]:
                height = counts[outcome] / top * _HEIGHT
                y -= height
                segments.append(Segment(outcome, counts[outcome], round(y, 2), round(height, 2)))
        day = time.strftime("%Y-%m-%d", time.localtime(start))
        bars.append(
            HourBar(
                start=start,
                label=time.strftime("%H:00", time.localtime(start)),
                day="" if day == last_day else day,
                total=sum(counts.values()),
                x=x,
                segments=segments,
            )
        )
        last_day = day
    width = max(_LEFT + len(bars) * (_BAR + _GAP) + 10, 120)  # room for the first day's date
    return Timeline(bars, width, _TOP + _HEIGHT + _BOTTOM, top, _TOP + _HEIGHT, gaps_hidden)


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _per_minute(rate: object) -> str | None:
    """Messages per second → `12/min` (as `send` says it), None when there was no limit."""
    if not isinstance(rate, int | float):
        return None
    from campaign.throttle import per_minute

    return per_minute(float(rate))


def report_context(report: StatusReport, log: Ledger, now: float) -> dict[str, Any]:
    """What the template shows, from the status and the log (no sentence: those are the template's)."""
    deliveries = log.deliveries()
    counts = report.counts_and_facts
    events: list[tuple[float, str]] = []
    for d in deliveries:
        outcome = _OUTCOME_OF.get(d.state.value)
        at = d.sent_at if d.sent_at is not None else d.last_attempt_at
        if outcome is not None and at is not None:
            events.append((at, outcome))
    runs = []
    for run in log.run_details():
        pace = run["pace"] or {}
        runs.append(
            {
                "started": _when(run["started_at"]),
                "ended": _when(run["ended_at"]),
                "sent": run["sent"],
                "outcome": run["outcome"] or "",
                "known": run["pace"] is not None,
                "configured": _per_minute(pace.get("configured")),
                "server": _per_minute(pace.get("server")),
                "ended_rate": _per_minute(pace.get("rate")),
                "refusals": int(pace.get("refusals") or 0),
                "outages": int(pace.get("outages") or 0),
                "paused": round(float(pace.get("paused") or 0.0)),
            }
        )
    forecast = report.forecast
    bounces = [
        (
            b.cause is not Cause.ADDRESS,
            {"row": b.row, "email": b.email, "reason": b.reason, "at": _when(b.at)},
        )
        for b in report.bounces
    ]
    return {
        "campaign": report.campaign,
        "made": _when(now),
        "approval": report.approval,
        "states": [(state, counts.get(state, 0)) for state in STATES],
        "total": len(deliveries),
        "not_sent_yet": len(report.not_sent_yet),
        "not_in_sheet": report.not_in_sheet,
        "delayed": report.delayed,
        "groups": report.groups,
        # The addresses' bounces, and those refused for the campaign's sake (campaign.causes).
        "bounces": [bounce for ours, bounce in bounces if not ours],
        "refused": [bounce for ours, bounce in bounces if ours],
        "searched": report.searched,
        "runs": runs,
        "learnt_rate": _per_minute(log.learnt_rate()),
        "per_minute": None if report.per_minute is None else number(report.per_minute),
        "run_seconds": round(report.run_seconds),
        "first_sent": _when(report.first_sent_at),
        "last_sent": _when(report.last_sent_at),
        "sent_last_24h": report.sent_last_24h,
        "test_sends": report.test_sends,
        "forecast": None
        if forecast is None
        else {
            "count": forecast.count,
            "summary": forecast.summary(),
            "starts": _when(forecast.starts_at),
            "finishes": _when(forecast.finishes_at),
            "per_day": forecast.per_day,
            "window": forecast.window,
        },
        "timeline": timeline(events),
        "outcomes": OUTCOMES,
        "warnings": report.warnings,
    }


def render_report(context: dict[str, Any]) -> str:
    """The page, from the template shipped in campaign/assets (every value escaped)."""
    import jinja2  # only the report pays for it: `campaign status` starts without it
    from markupsafe import Markup, escape

    from campaign.i18n import current_language, ngettext

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("campaign", "assets"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    # The report speaks the language of the run (language: or the locale), like the terminal.
    environment.install_gettext_callables(_, ngettext, newstyle=True)  # type: ignore[attr-defined]
    environment.globals["code"] = lambda text: Markup("<code>%s</code>") % escape(text)
    return environment.get_template(TEMPLATE).render(lang=current_language(), **context)


def check_report_path(path: Path) -> None:
    """Refuse, before any work, a report path that cannot be written."""
    check_output_path(path, (".html", ".htm"), option="--report", example="suivi.html")


def write_report(report: StatusReport, log: Ledger, path: Path, now: float) -> Path:
    """Write the organisers' report to `path` (readable by its owner only: it holds addresses)."""
    check_report_path(path)
    page = render_report(report_context(report, log, now))
    try:
        path.write_text(page, encoding="utf-8")
        path.chmod(0o600)
    except OSError as err:
        raise InputError(
            _("cannot write the report: {reason}").format(reason=err.strerror),
            place=Place(file=str(path)),
            hint=_("choose a folder you can write to"),
        ) from None
    return path

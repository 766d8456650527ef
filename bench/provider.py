"""Benchmark `campaign send` against a provider's limit and an outage (issue 10, §1 and §2).

Each scenario runs the real command as a user runs it (`campaign --settings … send --json`, a
subprocess) against the aiosmtpd fault server of the tests (tests/smtp_server.py), in this process,
on 127.0.0.1:

(a) rate limit: the server accepts 10 messages per sliding 5 s, answers `450 4.7.1 Error: too much
    mail` beyond that and `421` closing after 3 refusals on a connection. 60 messages, settings
    without any throttle of their own (the limit is learnt). Figures: failed (target 0), refusals
    (target ≤ 10), run time against the ideal 60 / (10 / 5 s) = 30 s (target ≤ 1.5×), learnt rate.
(b) outage: 40 messages paced at 2/s (baseline: the same send with no outage, measured in this
    run); the server goes down (stops listening, cuts every session) 5 s into the send for 30 s,
    then comes back on the same port. Figures: failed (target 0), duplicates (target 0), the time
    lost (outage run − baseline) against the outage length (target ≤ 1.5×, i.e. at most 15 s more
    than the outage itself with smtp.probe_interval 5 s).

    .venv/bin/python bench/provider.py [--only rate|outage] [--outage 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.smtp_server import FaultyServer, RateLimit, make_project  # noqa: E402

CAMPAIGN = str(Path(sys.executable).with_name("campaign"))


def send(settings: Path) -> tuple[dict[str, Any], float]:
    """Run `campaign send --json`; its report and the wall-clock seconds of the whole command."""
    started = time.perf_counter()
    done = subprocess.run(
        [CAMPAIGN, "--settings", str(settings), "send", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.exit(f"campaign send failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return report, seconds


def duplicates(server: FaultyServer) -> int:
    return sum(n - 1 for n in server.copies().values() if n > 1)


def rate_limit(messages: int = 60, per: int = 10, window: float = 5.0) -> dict[str, Any]:
    limit = RateLimit(messages=per, window=window, close_after=3)
    with tempfile.TemporaryDirectory() as tmp, FaultyServer(rate=limit) as server:
        settings = make_project(
            Path(tmp),
            port=server.port,
            recipients=messages,
            throttle="per_minute: null\n  per_day: 100000\n  concurrency: 2",
            retry="max_attempts: 3\n  backoff: [1h]",
        )
        report, seconds = send(settings)
        ideal = messages / (per / window)
        pace = report.get("server") or {}
        return {
            "sent": report["sent"],
            "failed": report["failed"],
            "deferred": report["deferred"],
            "refusals (server)": limit.refusals,
            "refusals (campaign)": pace.get("refusals"),
            "duplicates": duplicates(server),
            "connections": server.connections,
            "seconds": round(seconds, 1),
            "ideal seconds": ideal,
            "ratio to ideal": round(seconds / ideal, 2),
            "learnt rate /min": round(pace["rate"] * 60, 1) if pace.get("rate") else None,
            "server's limit /min": per / window * 60,
            "summary": pace.get("summary"),
        }


def outage(messages: int = 40, rate: float = 2.0, down_for: float = 30.0) -> dict[str, Any]:
    throttle = f"per_second: {rate}\n  per_minute: null\n  per_day: 100000\n  concurrency: 2"
    smtp = "probe_interval: 5s"
    with tempfile.TemporaryDirectory() as tmp:
        with FaultyServer() as server:
            settings = make_project(
                Path(tmp) / "baseline", port=server.port, recipients=messages,
                throttle=throttle, smtp=smtp,
            )  # fmt: skip
            _, baseline = send(settings)
        with FaultyServer() as server:
            settings = make_project(
                Path(tmp) / "outage", port=server.port, recipients=messages,
                throttle=throttle, smtp=smtp,
            )  # fmt: skip

            def cut() -> None:
                time.sleep(5.0)
                server.down()
                time.sleep(down_for)
                server.up()

            thread = threading.Thread(target=cut)
            thread.start()
            report, seconds = send(settings)
            thread.join()
            stored = len(server.stored)
            dupes = duplicates(server)
        pace = report.get("server") or {}
        lost = seconds - baseline
        return {
            "sent": report["sent"],
            "failed": report["failed"],
            "deferred": report["deferred"],
            "uncertain": report["uncertain"],
            "stored by the server": stored,
            "duplicates": dupes,
            "outages seen": pace.get("outages"),
            "paused seconds (campaign)": pace.get("paused_seconds"),
            "baseline seconds": round(baseline, 1),
            "seconds": round(seconds, 1),
            "outage seconds": down_for,
            "time lost": round(lost, 1),
            "lost / outage": round(lost / down_for, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["rate", "outage"])
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the server is down")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    if args.only in (None, "rate"):
        results["rate limit (10 per 5 s, 421 after 3 refusals), 60 messages"] = rate_limit()
    if args.only in (None, "outage"):
        results[f"{args.outage:.0f} s outage in a send of 40 at 2/s"] = outage(down_for=args.outage)
    for title, figures in results.items():
        print(f"\n{title}")
        for key, value in figures.items():
            print(f"  {key:28} {value}")
        for target, met in verdicts(figures):
            print(f"  target {target:21} {'met' if met else 'MISSED'}")


def verdicts(figures: dict[str, Any]) -> list[tuple[str, bool]]:
    """The issue's targets for the figures of one scenario."""
    found = [("0 failed", figures["failed"] == 0), ("0 duplicates", figures["duplicates"] == 0)]
    if "ratio to ideal" in figures:
        found.append(("refusals <= 10", figures["refusals (server)"] <= 10))
        found.append(("time <= 1.5x ideal", figures["ratio to ideal"] <= 1.5))
    if "lost / outage" in figures:
        found.append(("time lost <= 1.5x", figures["lost / outage"] <= 1.5))
    return found


if __name__ == "__main__":
    main()

"""Soak `campaign send`: a faulty SMTP server in its own process, the sender killed with SIGKILL.

    .venv/bin/python bench/soak.py [--recipients 10000] [--kills 10] [--concurrency 4]
                                   [--fault-rate 0.05] [--seed 1] [--keep DIR]

Writes a throw-away project (`tests.smtp_server.make_project`: a short text letter, fictional
recipients at example.org, no PDF) and starts the test server of `tests/smtp_server.py` in a child
process. That server fails about `fault-rate` of the commands at random: 421 at MAIL, 451 at RCPT,
451 / a drop / a drop after the 354 at DATA, and 451 / a drop / "store then drop" at the final dot.
`campaign send` runs as a child process too and is killed with SIGKILL `kills` times at random
moments, then restarted until a run ends with nothing left to send. Retries wait 0.05 s.

At the end the delivery log and the server's stored copies are compared, and `campaign status
--json` is asked for the uncertain recipients. Printed: recipients, stored copies, duplicates,
skipped, uncertain (split into those a kill left and those a drop after the body left), failed,
restarts, wall time. Targets (issue 6): 0 skipped, 0 duplicates among `sent`, uncertain left by
kills ≤ concurrency × kills, every uncertain listed by `campaign status`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.smtp_server import Fault, FaultyServer, make_project  # noqa: E402

KILLED_TEXT = "interrupted after the message was transmitted"


@dataclass
class RandomFault(Fault):
    """A fault that fires on a random share `rate` of the commands of its stage."""

    rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def applies(self, stage: str, recipients: list[str]) -> bool:
        if self.stage != stage or self.rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


def random_faults(rate: float, seed: int) -> list[Fault]:
    """About `rate` of the commands of each stage fail, in the ways a real server fails."""
    rng = random.Random(seed)
    third = rate / 3
    return [
        RandomFault("mail", code=421, text="4.7.0 closing", rate=rate, rng=rng),
        RandomFault("rcpt", code=451, text="4.3.0 try again later", rate=rate, rng=rng),
        RandomFault("data", code=451, text="4.3.0 busy", rate=third, rng=rng),
        RandomFault("data", action="drop", rate=third, rng=rng),
        RandomFault("data", action="after_354", rate=third, rng=rng),
        RandomFault("dot", code=451, text="4.3.0 queue full", rate=third, rng=rng),
        RandomFault("dot", action="drop", rate=third, rng=rng),
        RandomFault("dot", action="store_drop", rate=third, rng=rng),
    ]


def serve(rate: float, seed: int) -> None:
    """The server process: print the port, serve until stdin closes, then print what it stored."""
    with FaultyServer(faults=random_faults(rate, seed)) as server:
        print(server.port, flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        copies = dict(server.copies())
        faults = sum(f.fired for f in server.state.faults)
    print(json.dumps({"copies": copies, "faults": faults}), flush=True)


@dataclass
class SoakResult:
    recipients: int
    stored: int
    duplicates: int
    duplicates_among_sent: int
    sent_without_copy: int
    skipped: int
    sent: int
    failed: int
    uncertain: int
    uncertain_after_kill: int
    uncertain_after_drop: int
    uncertain_listed: int
    restarts: int
    kills: int
    runs: int
    faults: int
    concurrency: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.skipped == 0
            and self.duplicates_among_sent == 0
            and self.sent_without_copy == 0
            and self.uncertain_after_kill <= self.concurrency * self.kills
            and self.uncertain_listed == self.uncertain
        )


def run_soak(
    root: Path,
    *,
    recipients: int,
    kills: int,
    concurrency: int = 4,
    fault_rate: float = 0.05,
    seed: int = 1,
    kill_after: tuple[float, float] = (0.3, 4.0),
    max_runs: int = 200,
    per_second: int | None = None,
) -> SoakResult:
    """Send `recipients` messages through a faulty server, killing the sender `kills` times.

    `per_second` throttles the sender, so that the kills fall in the middle of the sending
    whatever the machine's speed (the short soak of `make test`); the bench runs unthrottled.
    """
    rng = random.Random(seed)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--fault-rate", str(fault_rate), "--seed", str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # aiosmtpd logs every dropped session
        text=True,
        cwd=REPO,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        settings = make_project(
            root,
            port=port,
            recipients=recipients,
            throttle=(
                f"per_second: {per_second or 'null'}\n  per_minute: null\n  per_day: null\n"
                f"  concurrency: {concurrency}\n  messages_per_connection: 50"
            ),
            retry="max_attempts: 25\n  backoff: [0.05s]",
        )
        command = [sys.executable, "-m", "campaign.cli", "--settings", str(settings)]
        started = time.perf_counter()
        killed = runs = 0
        while runs < max_runs:
            runs += 1
            sender = subprocess.Popen(
                [*command, "send", "mini", "--quiet"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=root,
            )
            if killed < kills:
                try:
                    sender.wait(timeout=rng.uniform(*kill_after))
                except subprocess.TimeoutExpired:
                    os.kill(sender.pid, signal.SIGKILL)
                    sender.wait()
                    killed += 1
                    continue
            _, errors = sender.communicate(timeout=3600)
            if sender.returncode not in (0, 1):
                raise RuntimeError(f"send exited {sender.returncode}: {errors.decode()[-2000:]}")
            if _open_count(root) == 0:
                break
        seconds = time.perf_counter() - started
        status = subprocess.run(
            [*command, "status", "mini", "--json"], capture_output=True, text=True, cwd=root
        )
        listed = {
            item["email"].lower()
            for item in json.loads(status.stdout)["attention"]
            if item["state"] == "uncertain"
        }
        server.stdin.close()
        report = json.loads(server.stdout.read())
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    copies: Counter[str] = Counter(report["copies"])
    rows = _log_rows(root)
    states = Counter(state for _, state, _, _ in rows)
    uncertain = [(email, text) for email, state, _, text in rows if state == "uncertain"]
    after_kill = sum(1 for _, text in uncertain if text and KILLED_TEXT in text)
    return SoakResult(
        recipients=recipients,
        stored=sum(copies.values()),
        duplicates=sum(1 for n in copies.values() if n > 1),
        duplicates_among_sent=sum(
            1 for _, state, mid, _ in rows if state == "sent" and copies[mid] > 1
        ),
        sent_without_copy=sum(
            1 for _, state, mid, _ in rows if state == "sent" and copies[mid] == 0
        ),
        skipped=sum(
            1
            for _, state, mid, _ in rows
            if copies[mid] == 0 and state not in ("failed", "uncertain")
        )
        + (recipients - len(rows)),
        sent=states["sent"],
        failed=states["failed"],
        uncertain=len(uncertain),
        uncertain_after_kill=after_kill,
        uncertain_after_drop=len(uncertain) - after_kill,
        uncertain_listed=len(listed & {email for email, _ in uncertain}),
        restarts=runs - 1,
        kills=killed,
        runs=runs,
        faults=int(report["faults"]),
        concurrency=concurrency,
        seconds=seconds,
    )


def _log_rows(root: Path) -> list[tuple[str, str, str, str | None]]:
    with sqlite3.connect(root / "outbox" / "mini" / "delivery.sqlite") as conn:
        return list(conn.execute("SELECT email, state, message_id, last_text FROM deliveries"))


def _open_count(root: Path) -> int:
    path = root / "outbox" / "mini" / "delivery.sqlite"
    if not path.exists():
        return 1
    with sqlite3.connect(path) as conn:
        query = "SELECT count(*) FROM deliveries WHERE state IN ('pending', 'deferred', 'sending')"
        return int(conn.execute(query).fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kill-after", type=float, nargs=2, default=(1.0, 8.0))
    parser.add_argument("--keep", type=Path, help="Build the project here and keep it.")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    if args.serve:
        serve(args.fault_rate, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        result = run_soak(
            root,
            recipients=args.recipients,
            kills=args.kills,
            concurrency=args.concurrency,
            fault_rate=args.fault_rate,
            seed=args.seed,
            kill_after=tuple(args.kill_after),
        )
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
        return
    rate = result.recipients / result.seconds * 60 if result.seconds else 0.0
    print(f"recipients          {result.recipients}")
    print(f"stored copies       {result.stored}")
    print(f"duplicates          {result.duplicates} ({result.duplicates_among_sent} among sent)")
    print(f"sent without a copy {result.sent_without_copy}")
    print(f"skipped             {result.skipped}")
    print(f"sent / failed       {result.sent} / {result.failed}")
    print(
        f"uncertain           {result.uncertain} ({result.uncertain_after_kill} left by kills, "
        f"limit {result.concurrency * result.kills}; {result.uncertain_after_drop} by drops "
        f"after the body); {result.uncertain_listed} listed by campaign status"
    )
    print(f"server faults       {result.faults}")
    print(f"restarts            {result.restarts} ({result.kills} after SIGKILL)")
    print(f"wall time           {result.seconds:.1f} s ({rate:.0f} recipients/min)")
    print("target met" if result.ok else "TARGET MISSED")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()

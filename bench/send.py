"""Benchmark sending: 1,000 messages with a 30 KB PDF each to a local sink in its own process.

Measured in the same run, against the same sink:
  baseline   one connection per message, sequential, with smtplib (how the mailmerge CLI sends)
  campaign   `Dispatcher` over `concurrency` connections, unthrottled, with the delivery log
  no log     the same with a writer that records nothing, to see what the log costs

Messages are composed once beforehand (composition is the same work for every variant) and only the
SMTP part is timed. Prints messages/s, the ratio to the baseline, connections per message and the
delivery log's share of the run time.

    .venv/bin/python bench/send.py [--messages 1000] [--concurrency 8] [--repeat 3]
                                   [--dot-latency MS]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from campaign.compose import compose_message, wire_bytes
from campaign.dispatch import Dispatcher, Job
from campaign.inputs import load_inputs
from campaign.ledger import Entry, Ledger
from campaign.logwriter import LedgerWriter, NullWriter, Writer
from campaign.settings import Retry, Smtp, load_settings
from campaign.throttle import Throttle

LETTER = """---
subject: "Votre lettre, {{ prenom }}"
---
Madame, Monsieur {{ nom }},

Veuillez trouver ci-joint notre lettre[^1] au sujet de l’arrêté du 21 avril 2020.

[^1]: Arrêté du 21 avril 2020 complétant l’arrêté du 23 mars 2020.
"""


def make_project(root: Path, count: int) -> Path:
    (root / "letters").mkdir(parents=True)
    (root / "recipients").mkdir()
    (root / "letters" / "bench.md").write_text(LETTER, encoding="utf-8")
    rows = [f"Prénom{i},Nom{i},bench{i:05d}@example.org" for i in range(count)]
    (root / "recipients" / "people.csv").write_text(
        "prenom,nom,email\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    settings = root / "settings.yaml"
    settings.write_text(
        """sender: {name: Collectif Données de santé, email: collectif@example.org}
campaigns:
  bench:
    letter: letters/bench.md
    recipients: recipients/people.csv
    email_column: email
    to_name: "{{ prenom }} {{ nom }}"
    attach_pdf: false
""",
        encoding="utf-8",
    )
    return settings


def thirty_kb_pdf() -> bytes:
    """A real one-page PDF, padded with a PDF comment to 30 KB of incompressible bytes."""
    from weasyprint import HTML

    pdf: bytes = HTML(
        string="<h1>Lettre</h1><p>" + "Texte de la lettre. " * 200 + "</p>"
    ).write_pdf()
    missing = 30 * 1024 - len(pdf)
    if missing > 0:
        noise = base64.b64encode(random.Random(1).randbytes(missing))[: missing - 2]
        pdf += b"\n%" + noise
    return pdf


SINK = """
import asyncio, sys
from pathlib import Path
from campaign.sink import MaildirHandler, serve

delay = float(sys.argv[2])

class Handler(MaildirHandler):
    async def handle_DATA(self, server, session, envelope):
        if delay:
            await asyncio.sleep(delay)  # a server that takes time to queue each message
        return await super().handle_DATA(server, session, envelope)

def ready(port):
    print(f"sink listening on 127.0.0.1:{port},", flush=True)

asyncio.run(serve(Handler(Path(sys.argv[1])), port=0, on_ready=ready))
"""


def start_sink(folder: Path, delay: float) -> tuple[subprocess.Popen[str], int]:
    """`campaign.sink` in its own process; `delay` seconds before each reply to the final dot."""
    process = subprocess.Popen(
        [sys.executable, "-c", SINK, str(folder), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, int(line.split("127.0.0.1:")[1].split(",")[0])


def baseline(port: int, messages: list[tuple[str, str, bytes]]) -> float:
    """One connection per message, one after another (smtplib, like mailmerge)."""
    started = time.perf_counter()
    for sender, recipient, raw in messages:
        with smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail(sender, [recipient], raw)
    return time.perf_counter() - started


def campaign_run(
    port: int,
    messages: list[tuple[str, str, bytes]],
    wired: list[bytes],
    *,
    concurrency: int,
    folder: Path,
    with_log: bool,
) -> tuple[float, int]:
    """The campaign dispatcher, unthrottled; returns (seconds, connections)."""
    ledger_path = folder / f"delivery-{time.monotonic_ns()}.sqlite"
    log = Ledger(ledger_path)
    log.enqueue((Entry(r, i, None, f"<{i}@x>") for i, (_, r, _) in enumerate(messages)), [], 0.0)
    writer: Writer = LedgerWriter(ledger_path) if with_log else NullWriter()
    jobs = [
        Job(recipient.lower(), sender, recipient, (lambda data=data: data))
        for (sender, recipient, _), data in zip(messages, wired, strict=True)
    ]
    dispatcher = Dispatcher(
        smtp=Smtp(host="127.0.0.1", port=port),
        retry=Retry(),
        throttle=Throttle([]),
        writer=writer,
        concurrency=concurrency,
        per_connection=100,
    )

    async def main() -> float:
        started = time.perf_counter()
        await dispatcher.run(jobs)
        await dispatcher.close()
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    writer.close()
    if isinstance(writer, LedgerWriter):
        print(
            f"    (log: {writer.commits} commits, {writer.fsyncs} fsynced, for {len(messages)} messages)"
        )
    if with_log:
        assert log.counts()["sent"] == len(messages), log.counts()
    log.close()
    return seconds, dispatcher.tally.connections


def fsync_latency(folder: Path, count: int = 200) -> float:
    """The median time of one fsynced SQLite commit in `folder`, in ms (what the log waits for)."""
    import sqlite3
    import statistics

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        conn = sqlite3.connect(Path(tmp) / "fsync.sqlite", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (n INTEGER)")
        times = []
        for n in range(count):
            started = time.perf_counter()
            conn.execute("INSERT INTO t VALUES (?)", (n,))
            times.append(time.perf_counter() - started)
        conn.close()
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--dot-latency",
        type=float,
        default=0.0,
        help="ms the sink waits before answering the final dot (0: loopback at full speed)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each variant; the best counts"
    )
    args = parser.parse_args()

    root_for_fsync = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = make_project(root / "project", args.messages)
        inputs = load_inputs(load_settings(settings).campaign("bench"))
        pdf = thirty_kb_pdf()
        messages: list[tuple[str, str, bytes]] = []
        wired: list[bytes] = []
        for recipient in inputs.recipients.ready:
            composed = compose_message(inputs, recipient, pdf=pdf)
            messages.append(("collectif@example.org", recipient.email, composed.as_bytes()))
            wired.append(wire_bytes(composed))
        size = sum(len(m[2]) for m in messages) / len(messages)
        print(f"{len(messages)} messages of {size / 1024:.1f} KB (PDF {len(pdf) / 1024:.1f} KB)")

        sink, port = start_sink(root / "sink", args.dot_latency / 1000)
        try:
            results: dict[str, list[float]] = {"baseline": [], "campaign": [], "no log": []}
            connections = 0
            for _ in range(args.repeat):
                results["baseline"].append(baseline(port, messages))
                seconds, connections = campaign_run(
                    port, messages, wired, concurrency=args.concurrency, folder=root, with_log=True
                )
                results["campaign"].append(seconds)
                seconds, _ = campaign_run(
                    port, messages, wired, concurrency=args.concurrency, folder=root, with_log=False
                )
                results["no log"].append(seconds)
        finally:
            sink.terminate()
            sink.wait(timeout=30)

    n = len(messages)
    fsync_ms = fsync_latency(root_for_fsync)
    best = {name: min(times) for name, times in results.items()}
    rate = {name: n / seconds for name, seconds in best.items()}
    print(
        f"concurrency {args.concurrency}, best of {args.repeat} runs each, sink in its own process,"
        f" {args.dot_latency:g} ms before the reply to the final dot;"
        f" fsync of the log takes {fsync_ms:.2f} ms (median) on this disk now"
    )
    for name in ("baseline", "campaign", "no log"):
        print(f"  {name:9} {best[name]:6.2f} s  {rate[name]:7.0f} msgs/s")
    ratio = rate["campaign"] / rate["baseline"]
    share = (best["campaign"] - best["no log"]) / best["campaign"]
    print(f"ratio campaign / baseline: {ratio:.2f}x (target >= 3x)")
    print(
        f"connections per message: {connections / n:.4f} ({connections} for {n}; "
        f"target < 1 per 50 = 0.02)"
    )
    print(f"delivery log share of run time: {share * 100:.1f}% (target < 10%)")


if __name__ == "__main__":
    main()

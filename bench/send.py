"""Benchmark the whole `campaign send` command against the `mailmerge` command, both to smtp-sink.

Measured in the same run: 1,000 recipients of an email campaign shaped like merci-signataires, the
same 30 KB PDF attached to every message (settings-level `attachments` for campaign, ATTACHMENT for
mailmerge), both sent to Postfix's `smtp-sink` in its own process. Each command runs as a user runs
it (a subprocess: start-up, inputs, approval check, composing, sending, log); rendering the PDF,
the proof pack and the approval are set-up, done once, outside the timing. mailmerge comes from
PyPI, installed into a throw-away venv; when it cannot be installed the bench says so and falls
back to a stdlib stand-in (email package + smtplib, one connection per message, as mailmerge does).

Each command runs once untimed first (Python writes its bytecode cache then, as on a user's
machine after the first run: this sandbox sets PYTHONDONTWRITEBYTECODE, so the bench lifts it
and puts the cache in its temporary folder), then `--repeat` times, alternating.

Printed: msg/s of each (best and median of `--repeat` runs, alternating), the ratio, CPU per
message (getrusage of the children), connections per message (the command's own JSON report;
mailmerge opens one per message), the delivery log's share (seconds its writer spent committing,
from CAMPAIGN_LOG_TIMING, over the command's wall time), and the SMTP-only figure (in-process:
the same messages composed beforehand, sent by the same engine with and without the log).

When `eatmydata` is installed (Debian package `eatmydata`), `campaign send` also runs under it,
alternating with the two others: every fsync becomes a no-op, so the difference between the two
commands' times is what the log's durability costs the command on its critical path (the writer's
busy seconds also count the statements, which run with or without fsyncs).

The sink's dump folder goes to /dev/shm when there is one: on a shared disk, the sink's 45 MB per
run of files slowed the log's fsyncs by a factor of 2–3 (the sink is the test server, not what is
measured).

    .venv/bin/python bench/send.py [--messages 1000] [--repeat 5] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINK = "/usr/sbin/smtp-sink"
EATMYDATA = shutil.which("eatmydata")
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def thirty_kb_pdf() -> bytes:
    from weasyprint import HTML

    pdf: bytes = HTML(string="<h1>Note</h1><p>" + "Texte. " * 200 + "</p>").write_pdf()
    missing = 30 * 1024 - len(pdf)
    if missing > 0:
        pdf += b"\n%" + base64.b64encode(random.Random(1).randbytes(missing))[: missing - 2]
    return pdf


def make_campaign(root: Path, count: int, port: int, pdf: bytes, concurrency: int) -> None:
    (root / "letters").mkdir(parents=True)
    (root / "recipients").mkdir()
    shutil.copy(ROOT / "letters" / "merci-signataires.md", root / "letters")
    (root / "letters" / "note-annexe.pdf").write_bytes(pdf)
    rows = ["Prénom;Nom;Fonction;Organisation;Courriel"] + [
        f"Prénom{i};Nom{i};Fonction;Org;signataire{i:04d}@example.org" for i in range(count)
    ]
    (root / "recipients" / "signataires.csv").write_text(
        "\r\n".join(rows) + "\r\n", encoding="cp1252"
    )
    (root / "settings.yaml").write_text(
        f"""sender: {{name: Collectif Données de santé, email: collectif@example.org,
  reply_to: contact@example.org}}
smtp: {{host: 127.0.0.1, port: {port}, security: none, timeout: 30s}}
throttle: {{per_second: null, per_minute: null, per_day: 100000, concurrency: {concurrency},
  messages_per_connection: 100}}
retry: {{max_attempts: 3, backoff: [1h]}}
campaigns:
  merci-signataires:
    letter: letters/merci-signataires.md
    recipients: recipients/signataires.csv
    email_column: Courriel
    to_name: "{{{{ prenom }}}} {{{{ nom }}}}"
    attach_pdf: false
    attachments: [letters/note-annexe.pdf]
""",
        encoding="utf-8",
    )


def make_mailmerge(root: Path, count: int, port: int, pdf: bytes) -> None:
    root.mkdir()
    (root / "note-annexe.pdf").write_bytes(pdf)
    rows = ["email,prenom,nom"] + [
        f"signataire{i:04d}@example.org,Prénom{i},Nom{i}" for i in range(count)
    ]
    (root / "mailmerge_database.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    body = (ROOT / "letters" / "merci-signataires.md").read_text(encoding="utf-8")
    body = body.split("---", 2)[2].replace("{{ prenom }}", "{{prenom}}")
    (root / "mailmerge_template.txt").write_text(
        "TO: {{prenom}} {{nom}} <{{email}}>\n"
        "SUBJECT: Merci aux lanceurs d’alerte : merci d’alerter à nouveau l’Europe\n"
        "FROM: Collectif Données de santé <collectif@example.org>\n"
        "REPLY-TO: contact@example.org\nATTACHMENT: note-annexe.pdf\n\n" + body,
        encoding="utf-8",
    )
    (root / "mailmerge_server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nsecurity = Never\n", encoding="utf-8"
    )


# The stand-in when mailmerge cannot be installed: what mailmerge does per message (render the
# template, build the message with the email package, one SMTP connection), with the stdlib.
STAND_IN = """
import csv, smtplib, sys
from email.message import EmailMessage
from pathlib import Path
template = Path("mailmerge_template.txt").read_text(encoding="utf-8")
head, body = template.split("\\n\\n", 1)
pdf = Path("note-annexe.pdf").read_bytes()
port = int(sys.argv[1])
for row in csv.DictReader(open("mailmerge_database.csv", encoding="utf-8")):
    fill = lambda t: t.replace("{{prenom}}", row["prenom"]).replace("{{nom}}", row["nom"]).replace(
        "{{email}}", row["email"])
    m = EmailMessage()
    for line in fill(head).splitlines():
        key, _, value = line.partition(": ")
        if key != "ATTACHMENT":
            m[key.title()] = value
    m.set_content(fill(body))
    m.add_attachment(pdf, maintype="application", subtype="pdf", filename="note-annexe.pdf")
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.send_message(m)
"""


def install_mailmerge(root: Path) -> list[str] | None:
    """The mailmerge command in a throw-away venv, or None (said on the terminal) if it fails."""
    venv = root / "mm-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "mailmerge"],
            check=True,
            stderr=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as err:
        print(f"!! mailmerge could not be installed ({err}); the baseline is a stdlib stand-in")
        return None
    return [str(venv / "bin" / "mailmerge"), "--no-dry-run", "--no-limit"]


def timed(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the children) and stdout of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run(
        command, cwd=cwd, check=True, stdout=subprocess.PIPE, text=True, env=env
    ).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def smtp_only(project: Path, with_log: bool) -> float:
    """Seconds for the engine to send the campaign's messages composed beforehand (in-process)."""
    from campaign.compose import Composer, dot_stuffed, load_attachments
    from campaign.dispatch import Dispatcher, Job, run_dispatcher
    from campaign.inputs import load_inputs
    from campaign.ledger import Ledger
    from campaign.logwriter import LedgerWriter, NullWriter, Writer
    from campaign.send import _entry
    from campaign.settingsfile import read_settings
    from campaign.throttle import Throttle, windows_from

    settings = read_settings(project / "settings.yaml")
    inputs = load_inputs(settings.campaign("merci-signataires"))
    shared = load_attachments(inputs)
    composer = Composer(inputs)
    ready = inputs.recipients.ready
    blobs = [dot_stuffed(composer.compose(r, attachments=shared)) for r in ready]
    sender = settings.sender.email
    jobs = [
        Job(r.email.lower(), sender, r.email, (lambda b=b: b))
        for r, b in zip(ready, blobs, strict=True)
    ]
    layout = inputs.campaign.layout
    for old in layout.log.parent.glob("delivery.sqlite*"):
        old.unlink()
    with Ledger.for_campaign(layout) as log:
        log.enqueue((_entry(inputs, r) for r in ready), (), time.time())
        writer: Writer = LedgerWriter(log.path) if with_log else NullWriter()
        dispatcher = Dispatcher(
            smtp=settings.smtp,
            retry=settings.retry,
            throttle=Throttle(windows_from(settings.throttle)),
            writer=writer,
            concurrency=settings.throttle.concurrency,
            per_connection=settings.throttle.messages_per_connection,
        )
        rounds = iter([jobs])
        started = time.perf_counter()
        asyncio.run(run_dispatcher(dispatcher, lambda: next(rounds, None), wait_retries=False))
        seconds = time.perf_counter() - started
        writer.close()
    assert dispatcher.tally.sent == len(jobs), dispatcher.tally
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--concurrency", type=int, default=2, help="throttle.concurrency (default: the default, 2)"
    )
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("installing mailmerge into a throw-away venv ...", flush=True)
        mailmerge = install_mailmerge(root)
        port = free_port()
        pdf = thirty_kb_pdf()
        make_campaign(root / "campaign", n, port, pdf, args.concurrency)
        make_mailmerge(root / "mailmerge", n, port, pdf)
        if mailmerge is None:
            (root / "mailmerge" / "stand_in.py").write_text(STAND_IN, encoding="utf-8")
            mailmerge = [sys.executable, "stand_in.py", str(port)]
        baseline = "mailmerge" if "stand_in.py" not in mailmerge else "stand-in"
        campaign = [str(BIN / "campaign"), "--quiet"]
        for step in (["proof", "--rows", "2"], ["approve", "--by", "Bench"]):  # set-up, once
            subprocess.run(
                [*campaign, *step], cwd=root / "campaign", check=True, stdout=subprocess.DEVNULL
            )
        shm = Path("/dev/shm")
        dumps = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() else root, prefix="sink-"))
        root.chmod(0o755)  # smtp-sink writes as `nobody`
        dumps.chmod(0o777)
        sink = subprocess.Popen(
            [SINK, "-u", "nobody", "-d", f"{dumps}/%M", f"127.0.0.1:{port}", "256"]
        )
        time.sleep(0.3)
        runs: dict[str, list[tuple[float, float]]] = {"campaign send": [], baseline: []}
        shares: list[float] = []
        undurable: list[float] = []
        per_connection: list[float] = []
        timing = root / "log-timing.jsonl"
        # As a user's machine runs both: compiled bytecode cached after the first run (this
        # sandbox sets PYTHONDONTWRITEBYTECODE, which would recompile campaign's own modules,
        # installed editable, on every start). The cache goes to the bench's temporary folder.
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        plain["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        env = {**plain, "CAMPAIGN_LOG_TIMING": str(timing)}
        outbox = root / "campaign" / "outbox" / "merci-signataires"
        try:
            for first in [True] + [False] * args.repeat:  # the first run of each only warms up
                for old in outbox.glob("delivery.sqlite*"):
                    old.unlink()
                timing.unlink(missing_ok=True)
                wall, cpu, out = timed([*campaign, "send", "--json"], root / "campaign", env)
                if not first:
                    runs["campaign send"].append((wall, cpu))
                report = json.loads(out)
                assert report["sent"] == n, report
                busy = sum(json.loads(line)["busy"] for line in timing.read_text().splitlines())
                if not first:
                    per_connection.append(report["connections"] / n)
                    shares.append(busy / wall)
                with sqlite3.connect(outbox / "delivery.sqlite") as db:
                    sent = db.execute("SELECT count(*) FROM deliveries WHERE state='sent'")
                    assert sent.fetchone()[0] == n
                if EATMYDATA and not first:  # the same command, every fsync a no-op
                    for old in outbox.glob("delivery.sqlite*"):
                        old.unlink()
                    command = [EATMYDATA, *campaign, "send", "--json"]
                    undurable.append(timed(command, root / "campaign", plain)[0])
                wall, cpu, _ = timed(mailmerge, root / "mailmerge", plain)
                if not first:
                    runs[baseline].append((wall, cpu))
                shutil.rmtree(dumps, ignore_errors=True)  # the sink's files: not kept
                dumps.mkdir(exist_ok=True)
                dumps.chmod(0o777)
            engine = smtp_only(root / "campaign", with_log=False)
            engine_log = smtp_only(root / "campaign", with_log=True)
        finally:
            sink.terminate()
            sink.wait(timeout=30)
            shutil.rmtree(dumps, ignore_errors=True)
    print(
        f"{n} messages, 30 KB PDF each, {args.repeat} runs each (alternating), to smtp-sink, "
        f"concurrency {args.concurrency}"
    )
    best = {}
    for name, results in runs.items():
        walls = [w for w, _ in results]
        fastest = min(results)
        best[name] = fastest[0]
        print(
            f"  {name:14} best {fastest[0]:5.2f} s {n / fastest[0]:5.0f} msg/s"
            f"  median {statistics.median(walls):5.2f} s {n / statistics.median(walls):5.0f} msg/s"
            f"  {fastest[1] / n * 1000:4.1f} ms CPU/msg"
        )
    ratio = best[baseline] / best["campaign send"]
    print(f"ratio campaign send / {baseline} (best): {ratio:.2f}x (target >= 3x, moonshot 5x)")
    medians = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    print(f"ratio (medians): {medians[baseline] / medians['campaign send']:.2f}x")
    print(f"connections per message: {min(per_connection):.4f} (target < 0.02; {baseline}: 1)")
    print(f"delivery log's share of the command: {min(shares):.1%} (target < 10 %)")
    if undurable:
        durable = medians["campaign send"]
        cost = (durable - statistics.median(undurable)) / durable
        print(
            f"  its durability on the critical path: {cost:.1%} of the median command "
            f"(under eatmydata, fsync a no-op: median {statistics.median(undurable):.2f} s "
            f"against {durable:.2f} s)"
        )
    else:
        print("  (install eatmydata to measure what the log's fsyncs cost the command itself)")
    print(
        f"SMTP only (composed beforehand, in-process): {n / engine:.0f} msg/s without the log, "
        f"{n / engine_log:.0f} msg/s with it"
    )


if __name__ == "__main__":
    main()

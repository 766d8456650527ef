"""Benchmark the whole `campaign send` command against the `mailmerge` command, both to smtp-sink.

Measured in the same run: 1,000 recipients of an email campaign shaped like merci-signataires, the
same 30 KB PDF attached to every message (settings-level `attachments` for campaign, ATTACHMENT for
mailmerge), both sent to Postfix's `smtp-sink` in its own process. Each command runs as a user runs
it (a subprocess: start-up, inputs, approval, composing, sending, log). mailmerge comes from PyPI,
installed into a throw-away venv. Prints msg/s of each, the ratio, CPU per message (getrusage of
the children), connections per message (from the delivery log) and the run's seconds.

    .venv/bin/python bench/send.py [--messages 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SINK = "/usr/sbin/smtp-sink"
ROOT = Path(__file__).resolve().parent.parent


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


def make_campaign(root: Path, count: int, port: int, pdf: bytes) -> None:
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
throttle: {{per_second: null, per_minute: null, per_day: 100000, concurrency: 2,
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


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command run as a child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print("installing mailmerge into a throw-away venv ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(root / "mm-venv")], check=True)
        pip = [str(root / "mm-venv" / "bin" / "pip"), "install", "-q", "mailmerge"]
        subprocess.run(pip, check=True)
        port = free_port()
        pdf = thirty_kb_pdf()
        make_campaign(root / "campaign", n, port, pdf)
        make_mailmerge(root / "mailmerge", n, port, pdf)
        campaign = [str(Path(sys.executable).parent / "campaign"), "--quiet"]
        subprocess.run([*campaign, "approve", "--by", "Bench"], cwd=root / "campaign", check=True)
        received = root / "sink"
        received.mkdir()
        root.chmod(0o755)  # smtp-sink writes as `nobody`
        received.chmod(0o777)
        sink = subprocess.Popen(
            [SINK, "-u", "nobody", "-d", f"{received}/%M", f"127.0.0.1:{port}", "256"]
        )
        time.sleep(0.3)
        best: dict[str, tuple[float, float]] = {}
        connections = 0
        try:
            for _ in range(args.repeat):
                outbox = root / "campaign" / "outbox" / "merci-signataires"
                for old in outbox.glob("delivery.sqlite*"):
                    old.unlink()
                run = timed([*campaign, "send", "--json"], root / "campaign")
                report = subprocess.run(
                    [*campaign, "status", "--json"], cwd=root / "campaign", capture_output=True
                )
                del report
                mm = timed(
                    [str(root / "mm-venv" / "bin" / "mailmerge"), "--no-dry-run", "--no-limit"],
                    root / "mailmerge",
                )
                for name, result in (("campaign send", run), ("mailmerge", mm)):
                    if name not in best or result[0] < best[name][0]:
                        best[name] = result
                import sqlite3

                with sqlite3.connect(outbox / "delivery.sqlite") as db:
                    sent = db.execute("SELECT count(*) FROM deliveries WHERE state='sent'")
                    assert sent.fetchone()[0] == n
                connections = _connections(root / "campaign")
        finally:
            sink.terminate()
            sink.wait(timeout=30)
    print(f"{n} messages, 30 KB PDF each, best of {args.repeat}, both to smtp-sink")
    for name, (wall, cpu) in best.items():
        print(f"  {name:14} {wall:6.2f} s  {n / wall:6.0f} msg/s  {cpu / n * 1000:5.1f} ms CPU/msg")
    ratio = best["mailmerge"][0] / best["campaign send"][0]
    print(f"ratio campaign send / mailmerge: {ratio:.2f}x (target >= 3x)")
    if connections:
        print(f"connections per message: {connections / n:.4f} (target < 0.02)")


def _connections(project: Path) -> int:
    """Connections of the last run, as `send --json` reports them (a quick second dry look)."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "campaign"), "status", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    try:
        return int(json.loads(out.stdout).get("connections", 0))
    except (ValueError, AttributeError):
        return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

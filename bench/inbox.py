"""campaign inbox on a 10,000-message IMAP mailbox (a real Dovecot), cold then incremental.

The mailbox: 10,000 messages, of which `--relevant` (default 300) are about the campaign (half
bounces that return the whole message, half replies and out-of-office answers); the others are
ordinary mail, some with a 30 KB attachment. Baseline, measured in the same run: fetch every
message whole (BODY.PEEK[]) and classify it. Then `scan_inbox` cold (the triage headers of every
message; of the reports, only their status and returned-headers parts), then incrementally after
20 new messages.

    .venv/bin/python bench/inbox.py [--messages 10000] [--relevant 300]
"""

from __future__ import annotations

import argparse
import base64
import os
import pwd
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from campaign.bounces import classify, parse_message  # noqa: E402
from campaign.inbox import scan_inbox  # noqa: E402
from campaign.ledger import Entry, Ledger, State, outcome  # noqa: E402
from campaign.settings import load_settings  # noqa: E402
from tests.mailservers import MAIL_USER, USERS, running  # noqa: E402

USER = "collectif@example.org"
CORPUS = REPO / "tests" / "data" / "bounces"
ATTACHMENT = base64.encodebytes(os.urandom(30_000)).decode()


def ordinary(n: int) -> bytes:
    body = f"Bonjour,\n\nmessage ordinaire numéro {n}.\n" * 20
    if n % 4:
        return (
            f"From: Quelqu'un {n} <personne{n}@example.net>\nTo: {USER}\nSubject: Sujet {n}\n"
            f"Date: Tue, 12 May 2020 09:00:00 +0200\nMessage-ID: <ordinary-{n}@example.net>\n"
            f"Content-Type: text/plain; charset=utf-8\n\n{body}"
        ).encode()
    return (
        f"From: Quelqu'un {n} <personne{n}@example.net>\nTo: {USER}\nSubject: Document {n}\n"
        f"Date: Tue, 12 May 2020 09:00:00 +0200\nMessage-ID: <ordinary-{n}@example.net>\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n\n--b\n'
        f"Content-Type: text/plain; charset=utf-8\n\n{body}\n--b\nContent-Type: application/pdf\n"
        f"Content-Transfer-Encoding: base64\n\n{ATTACHMENT}\n--b--\n"
    ).encode()


def relevant(n: int, mid: str, email: str) -> bytes:
    old = "<0f3a9c2e71b84d5a9e6c1b2d3f4a5b6c.hopitaux-2020-05@example.org>"
    name = "gmail.eml" if n % 2 else "french-out-of-office.eml"
    data = (CORPUS / name).read_bytes().replace(old.encode(), mid.encode())
    data = data.replace(b"jean.dupont@example.com", email.encode())
    if n % 2:  # a bounce returning the whole message, its attachment included
        data = data.replace(b"Madame, Monsieur,\n", b"Madame, Monsieur,\n" + ATTACHMENT.encode())
    return data


def fill(folder: Path, messages: list[bytes], start: int) -> None:
    owner = pwd.getpwnam(MAIL_USER)
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        os.chown(folder / sub, owner.pw_uid, owner.pw_gid)
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    for i, data in enumerate(messages, start):
        path = folder / "new" / f"{1589000000 + i}.M{i}P1.bench"
        path.write_bytes(data)
        os.chown(path, owner.pw_uid, owner.pw_gid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--relevant", type=int, default=300)
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    try:
        for name in ("letters", "recipients"):
            shutil.copytree(REPO / name, project / name)
        with running(postfix=False) as (dovecot, _):
            settings_text = (REPO / "settings.yaml").read_text(encoding="utf-8")
            settings_text = settings_text.replace(
                "  maildir: outbox/mailbox",
                f"  imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, security: none, "
                f"username: {USER}, password_env: BENCH_IMAP_PASSWORD}}",
            )
            (project / "settings.yaml").write_text(settings_text, encoding="utf-8")
            os.environ["BENCH_IMAP_PASSWORD"] = USERS[USER]
            campaign = load_settings(project / "settings.yaml").campaign("hopitaux-2020-05")
            entries = [
                Entry(f"d{i}@example.org", i + 2, None, f"<{i:032x}.hopitaux-2020-05@example.org>")
                for i in range(args.relevant + 20)
            ]
            with Ledger.for_campaign(campaign.layout) as log:
                log.enqueue(entries, [], 1.0)
                log.apply([outcome(e.email, State.SENT, 250, "ok", 1.0) for e in entries])
            every = max(1, args.messages // args.relevant)
            messages = []
            k = 0
            for n in range(args.messages):
                if n % every == 0 and k < args.relevant:
                    messages.append(relevant(k, entries[k].message_id, entries[k].email))
                    k += 1
                else:
                    messages.append(ordinary(n))
            inbox = dovecot.maildir(USER)
            fill(inbox, messages, 0)
            size = sum(len(m) for m in messages)
            print(f"mailbox: {len(messages)} messages ({size / 1e6:.1f} MB), {k} relevant")

            from imapclient import IMAPClient

            client = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False)
            client.login(USER, USERS[USER])
            client.select_folder("INBOX", readonly=True)  # Dovecot indexes the new files once
            uids = client.search("ALL")
            started = time.perf_counter()
            kinds = 0
            for chunk in range(0, len(uids), 500):
                fetched = client.fetch(uids[chunk : chunk + 500], ["BODY.PEEK[]"])
                for data in fetched.values():
                    kinds += classify(parse_message(data[b"BODY[]"])).kind.value != "other"
            baseline = time.perf_counter() - started
            client.logout()
            print(f"baseline, every message fetched whole: {baseline:.2f} s ({kinds} classified)")

            cold = scan_inbox(campaign)
            print(
                f"campaign inbox, cold: {cold.seconds:.2f} s: read {cold.read}, "
                f"{cold.fetched} whole, {cold.counts}"
            )
            news = [
                relevant(k + i, entries[k + i].message_id, entries[k + i].email) for i in range(20)
            ]
            fill(inbox, news, len(messages))
            warm = scan_inbox(campaign)
            print(
                f"campaign inbox, incremental (20 new): {warm.seconds:.2f} s: read {warm.read}, "
                f"{warm.fetched} whole"
            )
            print(f"ratio: cold scan {baseline / cold.seconds:.1f}x faster than fetching all whole")
    finally:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`campaign purge` deletes a campaign's personal data; `status` warns when it is kept too long.

The campaign really sends to the project's own sink (a Maildir) and really writes a dry run; the
letters and proofs are stand-in files (rendering is tested in test_render.py and test_proofs.py).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from campaign.outbox import Layout, run_lock, write_private
from tests.conftest import RunningSink, cli
from tests.smtp_server import make_project

OTHER = b"From: a@example.com\r\nMessage-ID: <other@example.com>\r\n\r\nnot ours\r\n"


def sent_project(tmp_path: Path) -> tuple[Path, Path]:
    """A project whose 3 messages went to the sink, with a dry run, letters and proofs on disk."""
    sink = tmp_path / "outbox" / "sink"
    with RunningSink(sink) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        assert cli(settings, "send", "--quiet").exit_code == 0
    assert cli(settings, "send", "--dry-run", "--quiet").exit_code == 0
    outbox = tmp_path / "outbox" / "mini"
    write_private(outbox / "letters" / "0002-prenom1-nom1.pdf", b"%PDF-1.7 stand-in")
    write_private(outbox / "letters" / ".manifest.json", b"{}")
    write_private(outbox / "proofs" / "proofs.pdf", b"%PDF-1.7 stand-in")
    write_private(outbox / "print" / "mini-print.pdf", b"%PDF-1.7 stand-in")
    write_private(sink / "new" / "1700000000.other.example", OTHER)
    return settings, outbox


def sink_messages(tmp_path: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tmp_path / "outbox" / "sink" / "new").iterdir())]


def test_purge_deletes_personal_data_and_this_campaigns_sink_copies_but_keeps_the_log(
    tmp_path: Path,
) -> None:
    settings, outbox = sent_project(tmp_path)
    assert len(list((outbox / "dry-run").glob("*.eml"))) == 3
    assert len(sink_messages(tmp_path)) == 4

    result = cli(settings, "purge", "mini", "--yes")

    assert result.exit_code == 0, result.output
    assert "deleted 10 files" in result.output  # 3 .eml, 2 letters files, proofs, print, 3 copies
    for folder in ("letters", "proofs", "print", "dry-run"):
        assert not (outbox / folder).exists()
    assert sink_messages(tmp_path) == [OTHER]  # another campaign's message is kept
    assert (outbox / "delivery.sqlite").exists()
    status = cli(settings, "status", "mini", "--json")
    assert '"sent": 3' in status.output  # the log still says who was sent what


def test_purge_all_deletes_the_delivery_log_too(tmp_path: Path) -> None:
    settings, outbox = sent_project(tmp_path)
    result = cli(settings, "purge", "mini", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert not (outbox / "delivery.sqlite").exists()
    assert not (outbox / "delivery.sqlite-wal").exists()
    assert sink_messages(tmp_path) == [OTHER]
    assert "nothing sent yet" in cli(settings, "status", "mini").output


def test_purge_without_a_terminal_or_yes_refuses_and_deletes_nothing(tmp_path: Path) -> None:
    settings, _ = sent_project(tmp_path)
    before = sorted(p for p in (tmp_path / "outbox").rglob("*") if p.is_file())
    result = cli(settings, "purge", "mini")
    assert result.exit_code == 2
    assert "needs a confirmation" in result.output
    assert "--yes" in result.output
    assert sorted(p for p in (tmp_path / "outbox").rglob("*") if p.is_file()) == before


def _purge_in_a_terminal(
    settings: Path, *answers: bytes, french: bool = False, extra: tuple[str, ...] = ()
) -> tuple[int, str]:
    """Run `campaign purge mini` on a pseudo-terminal and type each answer at each prompt."""
    leader, follower = pty.openpty()
    env = None
    if french:  # a French desktop: LANG only
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
        env["LANG"] = "fr_FR.UTF-8"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "campaign.cli",
            "--settings",
            str(settings),
            "purge",
            "mini",
            *extra,
        ],
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break  # the child closed the terminal
            if not chunk:
                break
            seen += chunk
            asked = seen.count(b"[y/N]") + seen.count(b"[o/N]")
            if pending and asked > len(answers) - len(pending):
                os.write(leader, pending.pop(0) + b"\n")
        elif process.poll() is not None:
            break
    code = process.wait(timeout=30)
    os.close(leader)
    return code, seen.decode("utf-8", "replace")


def test_purge_asks_in_a_terminal_and_a_no_deletes_nothing(tmp_path: Path) -> None:
    settings, outbox = sent_project(tmp_path)
    code, shown = _purge_in_a_terminal(settings, b"n")
    assert "Delete 7 files under outbox/mini and 3 copies in the local sink?" in shown
    assert code == 1
    assert "nothing deleted" in shown
    assert len(sink_messages(tmp_path)) == 4
    assert (outbox / "letters").exists()

    code, shown = _purge_in_a_terminal(settings, b"y")
    assert code == 0, shown
    assert not (outbox / "letters").exists()
    assert sink_messages(tmp_path) == [OTHER]


def test_purge_asks_in_french_and_warns_that_the_log_is_what_prevents_a_second_letter(
    tmp_path: Path,
) -> None:
    settings, outbox = sent_project(tmp_path)
    # "o" is a French yes; "peut-être" is no answer: the question is asked again.
    code, shown = _purge_in_a_terminal(
        settings, "peut-être".encode(), b"o", french=True, extra=("--all",)
    )
    flat = " ".join(shown.split())
    assert "[o/N]" in shown and "[y/N]" not in shown
    assert "répondez o (oui) ou n (non)" in flat
    assert "le journal d’envoi compte 3 destinataires déjà servis" in flat
    assert "campaign send mini leur enverrait de nouveau" in flat
    assert code == 0, shown
    assert not (outbox / "delivery.sqlite").exists()


def test_purge_yes_still_says_the_log_of_sent_recipients_is_gone(tmp_path: Path) -> None:
    settings, _ = sent_project(tmp_path)
    result = cli(settings, "purge", "mini", "--all", "--yes")
    assert result.exit_code == 0, result.output
    assert "the delivery log records 3 recipients already sent" in " ".join(result.output.split())
    kept = cli(settings, "purge", "mini", "--yes")  # without --all: nothing to say about the log
    assert "already sent" not in kept.output


def test_purge_waits_for_no_one_while_a_send_runs(tmp_path: Path) -> None:
    settings, outbox = sent_project(tmp_path)
    with run_lock(Layout(outbox), campaign="mini", action="sent"):
        result = cli(settings, "purge", "mini", "--yes")
    assert result.exit_code == 2
    assert f"campaign mini is being sent by process {os.getpid()} since" in result.output
    assert (outbox / "letters").exists()


def test_purge_of_an_empty_outbox_says_so(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    result = cli(settings, "purge", "mini")  # no confirmation needed: nothing to delete
    assert result.exit_code == 0
    assert "no personal data to delete" in result.output


def _with_retention(settings: Path, days: int) -> None:
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("campaigns:", f"retention_days: {days}\ncampaigns:", 1))


def test_status_warns_when_personal_data_is_older_than_retention_days(tmp_path: Path) -> None:
    settings, outbox = sent_project(tmp_path)
    _with_retention(settings, 30)
    old = outbox / "proofs" / "proofs.pdf"
    forty_days_ago = time.time() - 40 * 86400
    os.utime(old, (forty_days_ago, forty_days_ago))

    result = cli(settings, "status", "mini")

    assert "personal data older than retention_days (30) remains" in result.output
    assert "outbox/mini/proofs/proofs.pdf is 40 days old" in result.output
    assert "campaign purge mini" in result.output
    cli(settings, "purge", "mini", "--yes")
    assert "retention_days" not in cli(settings, "status", "mini").output


def test_status_is_quiet_about_data_younger_than_retention_days(tmp_path: Path) -> None:
    settings, outbox = sent_project(tmp_path)
    _with_retention(settings, 30)
    ten_days_ago = time.time() - 10 * 86400
    for path in outbox.rglob("*.pdf"):
        os.utime(path, (ten_days_ago, ten_days_ago))
    result = cli(settings, "status", "mini")
    assert result.exit_code == 0
    assert "retention_days" not in result.output

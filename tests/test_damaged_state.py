"""Damaged or busy state under outbox/: one run at a time, and a clear error or a safe repair.

A second `send` or `render` while one runs refuses at once; a lock left by a killed process never
blocks. A truncated, foreign, locked or newer delivery log is a `StateError` (exit 2) and nothing
is sent; a half-written PDF is rendered again; a hand-edited approval.json is refused or reported.
Never a traceback, never a second copy of a message the log records as sent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pypdf
import pytest
from click.testing import Result

from tests.conftest import cli, said
from tests.smtp_server import Fault, FaultyServer, make_project

LOG = ("outbox", "mini", "delivery.sqlite")


def clean_exit(result: Result, code: int) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert result.exit_code == code, result.output


# --- one run at a time ------------------------------------------------------------------------


def test_second_send_render_or_dry_run_refuses_at_once_and_a_killed_run_never_blocks(
    tmp_path: Path,
) -> None:
    # Each MAIL waits 2 s, so the first send is surely still running when the others start.
    with FaultyServer(faults=[Fault("mail", action="delay", seconds=2.0, times=4)]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        first = subprocess.Popen(
            [sys.executable, "-m", "campaign.cli", "--settings", str(settings), "send", "--quiet"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while server.connections == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.connections > 0
            for command in (
                ["send"],
                ["render"],
                ["proof"],
                ["send", "--dry-run"],
                ["purge", "--yes"],
            ):
                started = time.monotonic()
                result = cli(settings, *command)
                clean_exit(result, 2)
                assert re.search(
                    rf"campaign mini is being sent by process {first.pid} since \d\d:\d\d",
                    said(result),
                ), result.output
                assert time.monotonic() - started < 5  # at once, not after the first run
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        again = cli(settings, "send", "--quiet")  # the dead run's lock does not block
        clean_exit(again, 0)
        assert sorted(server.copies().values()) == [1, 1, 1]


# --- the delivery log ---------------------------------------------------------------------


def _sent_project(tmp_path: Path, server: FaultyServer, recipients: int = 4) -> Path:
    settings = make_project(tmp_path, port=server.port, recipients=recipients)
    clean_exit(cli(settings, "send", "--quiet"), 0)
    assert len(server.stored) == recipients
    return settings


def _replace_log(tmp_path: Path, data: bytes) -> Path:
    log = tmp_path.joinpath(*LOG)
    for suffix in ("-wal", "-shm"):
        Path(f"{log}{suffix}").unlink(missing_ok=True)
    log.write_bytes(data)
    return log


@pytest.mark.parametrize("damage", ["half", "garbage"])
def test_damaged_delivery_log_is_a_clear_error_and_nothing_is_resent(
    tmp_path: Path, damage: str
) -> None:
    with FaultyServer() as server:
        settings = _sent_project(tmp_path, server)
        good = tmp_path.joinpath(*LOG).read_bytes()
        _replace_log(tmp_path, good[: len(good) // 2] if damage == "half" else b"\x07" * 8192)
        for command in (["send"], ["status"], ["send", "--retry-failed"]):
            result = cli(settings, *command)
            clean_exit(result, 2)
            assert "delivery log is damaged or not a delivery log" in said(result)
            assert "restore it from a backup" in said(result)
        # check still checks the inputs, and names the log among its findings.
        checked = cli(settings, "check", "--json")
        clean_exit(checked, 1)
        found = json.loads(checked.output)
        assert found["recipients"] == 4 and found["errors"] == 1, found
        [problem] = found["problems"]
        assert problem["severity"] == "error"
        assert "delivery log is damaged or not a delivery log" in problem["message"]
        assert problem["file"] == str(tmp_path.joinpath(*LOG))
        assert "restore it from a backup" in problem["hint"]
        assert len(server.stored) == 4


def test_delivery_log_truncated_to_nothing_is_refused_rather_than_started_afresh(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = _sent_project(tmp_path, server)
        _replace_log(tmp_path, b"")
        result = cli(settings, "send")
        assert len(server.stored) == 4  # nobody gets the letter twice
    clean_exit(result, 2)
    assert "delivery log" in said(result)


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        log = tmp_path.joinpath(*LOG)
        log.parent.mkdir(parents=True)
        with sqlite3.connect(log) as conn:
            conn.execute("CREATE TABLE contacts (name TEXT)")
            conn.execute("INSERT INTO contacts VALUES ('not ours')")
        conn.close()
        result = cli(settings, "send")
        assert server.stored == []
    clean_exit(result, 2)
    assert "not a delivery log" in said(result)
    with sqlite3.connect(log) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"contacts"}


def test_foreign_table_called_deliveries_is_a_clear_error(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        log = tmp_path.joinpath(*LOG)
        log.parent.mkdir(parents=True)
        with sqlite3.connect(log) as conn:
            conn.execute("CREATE TABLE deliveries (id INTEGER PRIMARY KEY, who TEXT)")
        conn.close()
        for command in (["send"], ["status"]):
            result = cli(settings, *command)
            clean_exit(result, 2)
            assert "not a delivery log" in said(result)
        assert server.stored == []


def test_log_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = _sent_project(tmp_path, server, recipients=2)
        with sqlite3.connect(tmp_path.joinpath(*LOG)) as conn:
            conn.execute("UPDATE schema_version SET version = 99")
        conn.close()
        result = cli(settings, "send")
        assert len(server.stored) == 2
    clean_exit(result, 2)
    assert "written by a newer version (schema 99)" in said(result)


_HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_log_locked_by_another_program_is_a_clear_error(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = _sent_project(tmp_path, server, recipients=2)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(tmp_path.joinpath(*LOG))],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            result = cli(settings, "send", "--retry-failed")
        finally:
            holder.kill()
            holder.wait()
        assert len(server.stored) == 2
    clean_exit(result, 2)
    assert "locked" in said(result)


# --- letters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["half-written", "same size, other bytes"])
def test_damaged_pdf_is_rendered_again(few_project: Path, damage: str) -> None:
    settings = few_project / "settings.yaml"
    clean_exit(cli(settings, "render", "--jobs", "1", "--quiet"), 0)
    letters = few_project / "outbox" / "hopitaux-2020-05" / "letters"
    victim = sorted(letters.glob("*.pdf"))[1]
    good = victim.read_bytes()
    if damage == "half-written":
        victim.write_bytes(good[: len(good) // 2])
    else:
        victim.write_bytes(good[:-200] + b"\0" * 200)

    result = cli(settings, "render", "--jobs", "1", "--quiet")

    clean_exit(result, 0)
    assert "1 rendered, 2 unchanged" in said(result)
    assert len(pypdf.PdfReader(victim).pages) >= 1
    assert victim.stat().st_mode & 0o777 == 0o600


def test_leftover_temporary_file_of_a_killed_render_is_removed(few_project: Path) -> None:
    settings = few_project / "settings.yaml"
    letters = few_project / "outbox" / "hopitaux-2020-05" / "letters"
    letters.mkdir(parents=True)
    leftover = letters / ".0002-x.pdf.abc123.tmp"
    leftover.write_bytes(b"%PDF-1.7 half")
    clean_exit(cli(settings, "render", "--jobs", "1", "--quiet"), 0)
    assert not leftover.exists()


# --- approval.json ------------------------------------------------------------------------------


def _approved_project(tmp_path: Path, server: FaultyServer) -> tuple[Path, Path]:
    settings = make_project(tmp_path, port=server.port, recipients=2)
    settings.write_text(
        settings.read_text().replace("approval: {required: false}", "approval: {required: true}")
    )
    clean_exit(cli(settings, "proof", "--quiet"), 0)
    clean_exit(cli(settings, "approve", "--by", "Maître Dupont"), 0)
    return settings, tmp_path / "outbox" / "mini" / "approval.json"


def _edit(path: Path, change: str) -> None:
    text = path.read_text(encoding="utf-8")
    if change == "truncated":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
        return
    data = json.loads(text)
    record = data["approvals"][-1]
    if change == "field removed":
        del record["by"]
    elif change == "wrong type":
        record["recipients"] = "two"
    elif change == "unknown field":
        record["approved"] = True
    elif change == "other campaign":
        data["campaign"] = "hopitaux-2020-05"
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    "change", ["truncated", "field removed", "wrong type", "unknown field", "other campaign"]
)
def test_hand_edited_approval_is_a_clear_error_and_sends_nothing(
    tmp_path: Path, change: str
) -> None:
    with FaultyServer() as server:
        settings, approval = _approved_project(tmp_path, server)
        _edit(approval, change)
        result = cli(settings, "send")
        status = cli(settings, "status")
        assert server.stored == []
    clean_exit(result, 2)
    assert "approval" in said(result)
    assert "campaign approve" in said(result)  # the hint says how to get out
    clean_exit(status, 0)  # status still reports, naming the problem
    assert "approval:" in said(status)


def test_approval_whose_fingerprint_was_edited_is_refused_as_changed_content(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings, approval = _approved_project(tmp_path, server)
        data = json.loads(approval.read_text(encoding="utf-8"))
        data["approvals"][-1]["fingerprint"] = "0" * 64
        approval.write_text(json.dumps(data), encoding="utf-8")
        result = cli(settings, "send")
        assert server.stored == []
    clean_exit(result, 1)
    assert "content changed since Maître Dupont approved it" in said(result)


def test_approval_file_is_private_and_survives_a_second_approval(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings, approval = _approved_project(tmp_path, server)
        clean_exit(cli(settings, "approve", "--by", "Camille"), 0)
        clean_exit(cli(settings, "send", "--quiet"), 0)
        assert len(server.stored) == 2
    history = json.loads(approval.read_text(encoding="utf-8"))["approvals"]
    assert [a["by"] for a in history] == ["Maître Dupont", "Camille"]
    assert approval.stat().st_mode & 0o777 == 0o600
    assert os.stat(approval.parent).st_mode & 0o777 == 0o700


def _no_file_growth() -> None:
    """In the child: no file may grow past 2 KB (writes beyond fail with EFBIG, as on a full disk)."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


@pytest.mark.parametrize("log", ["new", "existing"])
def test_a_log_that_cannot_be_written_is_said_to_be_the_disk_s_fault(
    tmp_path: Path, log: str
) -> None:
    from campaign.ledger import Ledger

    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        if log == "existing":
            Ledger(tmp_path.joinpath(*LOG)).close()  # made; the run's first write will fail
        result = subprocess.run(
            [sys.executable, "-m", "campaign.cli", "--settings", str(settings), "send", "--quiet"],
            capture_output=True,
            text=True,
            preexec_fn=_no_file_growth,  # the child only lowers its own file-size limit
            timeout=120,
            check=False,
        )
        assert server.stored == []  # nothing sent without a log to record it
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "could not be written or read" in result.stderr
    assert "damaged" not in result.stderr
    assert "free space" in result.stderr

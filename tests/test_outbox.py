"""The outbox: private files, atomic writes, one run at a time, finding personal data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from campaign.errors import StateError
from campaign.outbox import (
    Layout,
    delete_files,
    oldest_personal_file,
    personal_files,
    private_dir,
    run_lock,
    sink_files,
    write_private,
)


def test_written_files_are_owner_only(tmp_path: Path) -> None:
    target = write_private(tmp_path / "out" / "deep" / "letter.pdf", b"%PDF-1.7")
    assert target.read_bytes() == b"%PDF-1.7"
    assert target.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out" / "deep").stat().st_mode & 0o777 == 0o700


def test_private_dir_makes_the_parents_it_creates_private_too(tmp_path: Path) -> None:
    # A first run made outbox/ 0755 (only outbox/<campaign> was 0700), though README says 0700.
    tmp_path.chmod(0o755)
    private_dir(tmp_path / "outbox" / "hopitaux-2020-05")
    assert (tmp_path / "outbox").stat().st_mode & 0o777 == 0o700
    assert tmp_path.stat().st_mode & 0o777 == 0o755  # a folder that was there is left alone


def test_private_dir_tightens_an_existing_open_folder(tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    private_dir(folder)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    write_private(tmp_path / "a.txt", "one")
    write_private(tmp_path / "a.txt", "two")
    assert (tmp_path / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_second_run_is_refused_with_pid_and_time(tmp_path: Path) -> None:
    with run_lock(Layout(tmp_path), campaign="hopitaux-2020-05", action="sent"):
        with pytest.raises(StateError) as caught:
            with run_lock(Layout(tmp_path), campaign="hopitaux-2020-05", action="sent"):
                pass
    message = str(caught.value)
    assert f"campaign hopitaux-2020-05 is being sent by process {os.getpid()} since" in message
    with run_lock(Layout(tmp_path), campaign="hopitaux-2020-05", action="sent"):
        pass  # released after the first run


_HOLDER = """
import sys, time
from pathlib import Path
from campaign.outbox import Layout, run_lock
with run_lock(Layout(Path(sys.argv[1])), campaign="c", action="rendered"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateError, match=f"process {holder.pid}"):
            with run_lock(Layout(tmp_path), campaign="c", action="rendered"):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(Layout(tmp_path), campaign="c", action="rendered"):
        pass


def test_personal_files_and_deletion_stay_inside_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox" / "c"
    write_private(outbox / "letters" / "2-dupont.pdf", b"x")
    write_private(outbox / "proofs" / "index.html", b"x")
    write_private(outbox / "delivery.sqlite", b"x")
    write_private(outbox / "delivery.sqlite.v1.bak", b"x")
    outside = tmp_path / "keep.txt"
    outside.write_text("not ours")
    files = personal_files(Layout(outbox))
    assert {p.name for p in files} == {"2-dupont.pdf", "index.html"}
    assert {p.name for p in personal_files(Layout(outbox), include_log=True)} == {
        "2-dupont.pdf",
        "index.html",
        "delivery.sqlite",
        "delivery.sqlite.v1.bak",
    }
    assert delete_files([*files, outside], root=outbox) == 2
    assert outside.exists()
    assert not (outbox / "letters").exists()
    assert (outbox / "delivery.sqlite").exists()


def test_oldest_personal_file_reports_its_age(tmp_path: Path) -> None:
    old = write_private(tmp_path / "letters" / "old.pdf", b"x")
    write_private(tmp_path / "letters" / "new.pdf", b"x")
    ten_days_ago = time.time() - 10 * 86400
    os.utime(old, (ten_days_ago, ten_days_ago))
    found = oldest_personal_file(Layout(tmp_path))
    assert found is not None
    assert found[0] == old
    assert 9.9 < found[1] < 10.1


def test_sink_files_match_on_message_id(tmp_path: Path) -> None:
    new = tmp_path / "sink" / "new"
    new.mkdir(parents=True)
    (new / "1").write_text(
        "Subject: a\nMessage-ID: <one@example.org>\n\nbody Message-ID: <two@example.org>\n"
    )
    (new / "2").write_text("Message-ID: <two@example.org>\n\nbody\n")
    found = sink_files(tmp_path / "sink", {"<two@example.org>"})
    assert [p.name for p in found] == ["2"]

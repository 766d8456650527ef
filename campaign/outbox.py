"""The outbox: private folders and files for everything the tool writes, and one run at a time.

Everything under outbox/ holds personal data, so folders are created 0700 and files 0600. Files are
written atomically (temporary file, fsync, rename): a crash leaves the old file or the new one, never
half of one. `run_lock` takes an OS lock on the campaign's outbox, which a crash releases.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaign.errors import Place, StateError

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only; tighten it if it already exists."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if path.stat().st_mode & 0o777 != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: bytes | str) -> Path:
    """Write `data` to `path` atomically, readable by the owner only."""
    private_dir(path.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def run_lock(folder: Path, *, campaign: str, action: str) -> Iterator[None]:
    """Hold the campaign's lock while a command runs; a second run refuses at once.

    The lock is `flock` on `<folder>/.lock`: the OS releases it when the process dies, so a lock
    left by a crash never blocks the next run.
    """
    private_dir(folder)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise StateError(
                f"campaign {campaign} is being {holder.get('action', 'used')} by process "
                f"{holder.get('pid', '?')} since {holder.get('since', '?')}",
                place=Place(file=str(path)),
                hint="wait for that run to finish, or stop it (Ctrl-C) before starting another",
            ) from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "action": action, "since": time.strftime("%H:%M")}
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


# The folders of a campaign's outbox that hold copies of personal data (letters, emails, proofs).
PERSONAL_DATA = ("letters", "print", "proofs", "dry-run")
DELIVERY_FILES = ("delivery.sqlite", "delivery.sqlite-wal", "delivery.sqlite-shm", "approval.json")


def personal_files(folder: Path, *, include_log: bool = False) -> list[Path]:
    """The files under a campaign's outbox that hold personal data (the log too if asked)."""
    found: list[Path] = []
    for name in PERSONAL_DATA:
        target = folder / name
        if target.is_dir():
            found += sorted(p for p in target.rglob("*") if p.is_file() or p.is_symlink())
    if include_log:
        found += [folder / name for name in DELIVERY_FILES if (folder / name).exists()]
        found += sorted(folder.glob("delivery.sqlite.v*.bak"))  # copies kept by log upgrades
    return found


def sink_files(sink: Path, message_ids: set[str]) -> list[Path]:
    """The messages of the local sink's Maildir whose Message-ID is one of `message_ids`."""
    if not sink.is_dir() or not message_ids:
        return []
    found: list[Path] = []
    for path in sorted(sink.rglob("*")):
        if path.is_file() and path.parent.name in {"new", "cur"}:
            head = path.read_bytes()[:16384].decode("utf-8", "replace")
            for line in head.splitlines():
                if not line:
                    break  # end of the headers
                if line.lower().startswith("message-id:"):
                    if line.split(":", 1)[1].strip() in message_ids:
                        found.append(path)
                    break
    return found


def delete_files(paths: list[Path], *, root: Path) -> int:
    """Delete `paths` (never anything outside `root`) and the folders they leave empty."""
    deleted = 0
    base = root.resolve()
    for path in paths:
        if not path.absolute().is_relative_to(base) and not path.resolve().is_relative_to(base):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            deleted += 1
    for path in sorted({p.parent for p in paths}, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.resolve().is_relative_to(base) and path.resolve() != base:
                path.rmdir()  # only succeeds when empty
    return deleted


def oldest_personal_file(folder: Path) -> tuple[Path, float] | None:
    """The oldest file holding personal data in a campaign's outbox, with its age in days."""
    files = personal_files(folder)
    if not files:
        return None
    oldest = min(files, key=lambda p: p.lstat().st_mtime)
    return oldest, (time.time() - oldest.lstat().st_mtime) / 86400


@dataclass
class Purge:
    """What `campaign purge` deletes: the campaign's personal files and the sink's copies."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    sink: Path | None = None
    sink_copies: list[Path] = field(default_factory=list)
    include_log: bool = False
    unmatched: str | None = None  # why the sink's copies could not be found, if they could not

    @property
    def total(self) -> int:
        return len(self.files) + len(self.sink_copies)

    def execute(self) -> int:
        """Delete the files; return how many were deleted."""
        deleted = delete_files(self.files, root=self.folder)
        if self.sink is not None:
            deleted += delete_files(self.sink_copies, root=self.sink)
        return deleted


def plan_purge(folder: Path, sink: Path, *, include_log: bool) -> Purge:
    """Find a campaign's personal data, and the sink's copies of the messages its log records."""
    from campaign.ledger import LEDGER_NAME, Ledger  # the log imports this module

    plan = Purge(folder, personal_files(folder, include_log=include_log), sink, [], include_log)
    log = folder / LEDGER_NAME
    if log.exists() and sink.is_dir():
        try:
            with Ledger(log) as opened:
                ids = {d.message_id for d in opened.deliveries()}
                ids |= {str(t["message_id"]) for t in opened.test_sends()}
        except StateError as err:
            plan.unmatched = err.message
        else:
            plan.sink_copies = sink_files(sink, ids)
    return plan

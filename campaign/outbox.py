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

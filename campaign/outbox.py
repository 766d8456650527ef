"""The outbox: private folders and files for everything the tool writes, and one run at a time.

Everything under outbox/ holds personal data, so folders are created 0700 and files 0600. Files are
written atomically (temporary file, fsync, rename): a crash leaves the old file or the new one, never
half of one. `run_lock` takes an OS lock on the campaign's outbox, which a crash releases.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaign.errors import Place, StateError
from campaign.i18n import _, pgettext

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by the owner only; tighten it if it already exists.

    The parents it creates are private too (`outbox/` itself, on a first run); a parent that was
    already there is left as it is.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for folder in (path, *missing):
        if folder.stat().st_mode & 0o777 != DIR_MODE:
            folder.chmod(DIR_MODE)
    return path


def check_output_path(path: Path, suffixes: tuple[str, ...], *, option: str, example: str) -> None:
    """Refuse, before any work, a file named on the command line that cannot be written: a
    folder, a suffix the command does not write, a folder that does not exist (exit 2)."""
    from campaign.errors import Place, UsageError

    place = Place(file=str(path), option=option)
    if path.is_dir():
        raise UsageError(
            _("{path} is a folder").format(path=path),
            place=place,
            hint=_("name a file inside it, e.g. {example}").format(
                example=f"{option} {path / example}"
            ),
        )
    if path.suffix.lower() not in suffixes:
        kinds = (" " + _("or") + " ").join(suffixes)
        raise UsageError(
            _("cannot write {name}: {option} writes {kinds} files").format(
                name=path.name, option=option, kinds=kinds
            ),
            place=place,
            hint=_("name a file ending in {kinds}, e.g. {example}").format(
                kinds=kinds, example=f"{option} {example}"
            ),
        )
    if not path.parent.is_dir():
        raise UsageError(
            _("the folder {path} does not exist").format(path=path.parent),
            place=place,
            hint=_("create the folder first, or name a file in an existing one"),
        )


def write_private(path: Path, data: bytes | str, *, durable: bool = True) -> Path:
    """Write `data` to `path` atomically, readable by the owner only.

    `durable=False` skips the fsync: the file is whole or absent after a killed process, but
    may be lost in a power cut (the Sent copies' spool, written on the sending loop).
    """
    private_dir(path.parent)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def run_lock(layout: Layout, *, campaign: str, action: str) -> Iterator[None]:
    """Hold the campaign's lock while a command runs; a second run refuses at once.

    The lock is `flock` on the layout's `.lock`: the OS releases it when the process dies, so a
    lock left by a crash never blocks the next run.
    """
    private_dir(layout.root)
    path = layout.lock
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            raise StateError(
                _("campaign {campaign} is being {action} by process {pid} since {since}").format(
                    campaign=campaign,
                    action=action_in_progress(str(holder.get("action", "used"))),
                    pid=holder.get("pid", "?"),
                    since=holder.get("since", "?"),
                ),
                place=Place(file=str(path)),
                hint=_("wait for that run to finish, or stop it (Ctrl-C) before starting another"),
            ) from None
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "action": action, "since": time.strftime("%H:%M")}
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def action_done(action: str) -> str:
    """A command's action as in "campaign X cannot be {action}" (the lock file keeps the English)."""
    return {
        "rendered": pgettext("cannot be", "rendered"),
        "proofed": pgettext("cannot be", "proofed"),
        "approved": pgettext("cannot be", "approved"),
        "sent": pgettext("cannot be", "sent"),
        "sent (dry run)": pgettext("cannot be", "sent (dry run)"),
    }.get(action, action)


def action_in_progress(action: str) -> str:
    """A command's action as in "campaign X is being {action} by process N"."""
    return {
        "used": pgettext("is being", "used"),
        "rendered": pgettext("is being", "rendered"),
        "proofed": pgettext("is being", "proofed"),
        "approved": pgettext("is being", "approved"),
        "sent": pgettext("is being", "sent"),
        "sent (dry run)": pgettext("is being", "sent (dry run)"),
        "inspected": pgettext("is being", "inspected"),
        "purged": pgettext("is being", "purged"),
        "scanned (inbox)": pgettext("is being", "scanned (inbox)"),
    }.get(action, action)


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class Layout:
    """Where a campaign's files are under `outbox/<campaign>/`: the one description of the outbox.

    Every module that reads or writes there, and `purge`, takes its paths from here.
    """

    root: Path

    @property
    def letters(self) -> Path:
        """One PDF per recipient, and the render manifest."""
        return self.root / "letters"

    @property
    def manifest(self) -> Path:
        """What each PDF was rendered from (input hash) and what it holds (size and hash)."""
        return self.letters / ".manifest.json"

    @property
    def print(self) -> Path:
        return self.root / "print"

    @property
    def proofs(self) -> Path:
        return self.root / "proofs"

    @property
    def proofs_manifest(self) -> Path:
        """The fingerprint of the content the proof pack shows."""
        return self.proofs / "manifest.json"

    @property
    def dry_run(self) -> Path:
        return self.root / "dry-run"

    @property
    def sent_copies(self) -> Path:
        """The bytes of each message whose copy for Sent is not saved yet (save_sent)."""
        return self.root / "sent-copies"

    def sent_copy(self, email: str) -> Path:
        """Where the bytes of `email`'s copy for Sent wait until it is saved."""
        digest = hashlib.sha256(email.lower().encode()).hexdigest()[:32]
        return self.sent_copies / f"{digest}.eml"

    def spooled_copies(self) -> set[str]:
        """The file names of the copies for Sent waiting in `sent_copies`."""
        try:
            return {path.name for path in self.sent_copies.iterdir()}
        except FileNotFoundError:
            return set()

    @property
    def log(self) -> Path:
        """The delivery log (SQLite)."""
        return self.root / "delivery.sqlite"

    @property
    def approval(self) -> Path:
        """The reviewers' sign-offs."""
        return self.root / "approval.json"

    @property
    def status_settings(self) -> Path:
        """What `status` needs of the settings, kept by the last one (campaign.recorded)."""
        return self.root / ".status-settings.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def personal_folders(self) -> tuple[Path, ...]:
        """The folders that hold copies of personal data (letters, emails, proofs)."""
        return (self.letters, self.print, self.proofs, self.dry_run, self.sent_copies)

    @property
    def delivery_files(self) -> tuple[Path, ...]:
        """The delivery log (with SQLite's side files) and the approvals: who was sent what."""
        log = self.log
        sides = (log.with_name(log.name + "-wal"), log.with_name(log.name + "-shm"))
        return (log, *sides, self.approval)

    def log_backups(self) -> list[Path]:
        """The copies that upgrades of the delivery log keep (`delivery.sqlite.v1.bak`)."""
        return sorted(self.root.glob(f"{self.log.name}.v*.bak"))


def sink_folder(outbox: Path) -> Path:
    """The local sink's Maildir: `outbox/sink/`, shared by every campaign of the settings."""
    return outbox / "sink"


def personal_files(layout: Layout, *, include_log: bool = False) -> list[Path]:
    """The files under a campaign's outbox that hold personal data (the log too if asked)."""
    found: list[Path] = []
    for target in layout.personal_folders:
        if target.is_dir():
            found += sorted(p for p in target.rglob("*") if p.is_file() or p.is_symlink())
    if include_log:
        found += [path for path in layout.delivery_files if path.exists()]
        found += layout.log_backups()
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


def oldest_personal_file(layout: Layout) -> tuple[Path, float] | None:
    """The oldest file holding personal data in a campaign's outbox, with its age in days."""
    files = personal_files(layout)
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
    # Recipients the delivery log says were sent to: with the log gone, a send would write again.
    served: int = 0

    @property
    def total(self) -> int:
        return len(self.files) + len(self.sink_copies)

    def execute(self) -> int:
        """Delete the files; return how many were deleted."""
        deleted = delete_files(self.files, root=self.folder)
        if self.sink is not None:
            deleted += delete_files(self.sink_copies, root=self.sink)
        return deleted


def plan_purge(layout: Layout, sink: Path, *, include_log: bool, message_ids: set[str]) -> Purge:
    """Find a campaign's personal data, and the sink's copies of the messages `message_ids`."""
    return Purge(
        layout.root,
        personal_files(layout, include_log=include_log),
        sink,
        sink_files(sink, message_ids),
        include_log,
    )

"""The delivery log's file: its SQL schema, the upgrades of older logs, and connections to it.

`campaign.ledger` reads and writes the log through these; a new version of the schema adds one
function to `MIGRATIONS` (each keeps every row) and bumps `SCHEMA_VERSION`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from campaign.errors import Place, StateError
from campaign.i18n import _

SCHEMA_VERSION = 5

Write = tuple[str, tuple[Any, ...]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    email TEXT PRIMARY KEY,          -- lower-cased address: the recipient's identity
    address TEXT NOT NULL,           -- the address as the spreadsheet writes it
    row INTEGER,
    name TEXT,
    state TEXT NOT NULL,
    phase TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_text TEXT,
    message_id TEXT NOT NULL,
    queued_at REAL NOT NULL,
    first_attempt_at REAL,
    last_attempt_at REAL,
    sent_at REAL,
    next_attempt_at REAL,
    bounced_at REAL,
    bounce_reason TEXT,
    delivered_at REAL,
    delayed_at REAL,
    replied_at REAL,
    auto_replied_at REAL,
    evidence TEXT,
    person TEXT,                     -- a digest of the row's cells but the address (readdressed)
    readdressed_from TEXT,           -- held: the address the same person was already sent at
    unsubscribed_at REAL             -- asked to unsubscribe (List-Unsubscribe), a fact of inbox
);
CREATE INDEX IF NOT EXISTS deliveries_sent_at ON deliveries (sent_at);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state);
CREATE TABLE IF NOT EXISTS test_sends (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL,
    source_email TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    phase TEXT,
    last_code INTEGER,
    last_text TEXT,
    started_at REAL NOT NULL,
    sent_at REAL
);
CREATE TABLE IF NOT EXISTS mailbox_scans (
    folder TEXT PRIMARY KEY,         -- "imap:INBOX", "maildir:.Sent"
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,       -- IMAP: the last UID read; Maildir: a high-water mtime (ns)
    recent TEXT NOT NULL DEFAULT '', -- Maildir: names of the files at the high-water mark
    scanned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sent_copies (
    email TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,             -- pending (recorded before APPEND), done, failed
    folder TEXT NOT NULL,
    at REAL NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at REAL,
    sent INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
"""


def _add_state_index(conn: sqlite3.Connection) -> None:
    """Version 1 → 2: index the state, which every run and `status` select on."""
    conn.execute("CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state)")


MAILBOX_COLUMNS = (
    "bounced_at REAL",
    "bounce_reason TEXT",
    "delivered_at REAL",
    "delayed_at REAL",
    "replied_at REAL",
    "auto_replied_at REAL",
    "evidence TEXT",
)


def _add_mailbox(conn: sqlite3.Connection) -> None:
    """Version 2 → 3: what the mailbox says (campaign inbox), its scan positions, Sent copies."""
    _add_columns(conn, MAILBOX_COLUMNS)
    for table in ("mailbox_scans", "sent_copies"):
        conn.execute(_table_sql(table))


READDRESS_COLUMNS = ("person TEXT", "readdressed_from TEXT")


def _add_readdress(conn: sqlite3.Connection) -> None:
    """Version 3 → 4: who each row is besides its address, to hold a letter already sent to the
    same person at an earlier address (campaign.ledger, `Ledger.hold_readdressed`)."""
    _add_columns(conn, READDRESS_COLUMNS)


UNSUBSCRIBE_COLUMNS = ("unsubscribed_at REAL",)


def _add_unsubscribed(conn: sqlite3.Connection) -> None:
    """Version 4 → 5: the date a recipient asked to unsubscribe (campaign inbox), a fact beside
    replied_at, so that `status` and its exports say it."""
    _add_columns(conn, UNSUBSCRIBE_COLUMNS)


def _add_columns(conn: sqlite3.Connection, columns: Sequence[str]) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(deliveries)")}
    for column in columns:
        if column.split()[0] not in present:
            conn.execute(f"ALTER TABLE deliveries ADD COLUMN {column}")


def _table_sql(table: str) -> str:
    """The CREATE TABLE statement of `table` in the current schema."""
    start = _SCHEMA.index(f"CREATE TABLE IF NOT EXISTS {table} (")
    return _SCHEMA[start : _SCHEMA.index(");", start) + 1]


# The upgrades of the delivery log: MIGRATIONS[n] turns a version-n log into version n + 1 and
# keeps every row. Add one each time SCHEMA_VERSION goes up.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_state_index,
    2: _add_mailbox,
    3: _add_readdress,
    4: _add_unsubscribed,
}


def upgrade(
    conn: sqlite3.Connection,
    path: Path,
    version: int,
    *,
    migrations: dict[int, Callable[[sqlite3.Connection], None]] = MIGRATIONS,
    target: int = SCHEMA_VERSION,
) -> Path:
    """Bring a log of an earlier `version` up to `target`, after keeping a copy of it.

    The copy (`delivery.sqlite.v1.bak`, owner-only) is made with SQLite's backup API, so it is
    consistent even in WAL mode; each step runs in its own transaction with its version stamp.
    """
    missing = [v for v in range(version, target) if v not in migrations]
    if missing:
        raise StateError(
            _("the delivery log has schema {version}, which this version cannot upgrade").format(
                version=version
            ),
            place=Place(file=str(path)),
            hint=_("upgrade it with the campaign version that wrote it first, or restore a backup"),
        )
    backup = path.with_name(f"{path.name}.v{version}.bak")
    copy = sqlite3.connect(str(backup))
    try:
        conn.backup(copy)
    finally:
        copy.close()
    os.chmod(backup, 0o600)
    for step in range(version, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[step](conn)
            conn.execute("INSERT INTO schema_version VALUES (?)", (step + 1,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return backup


def create(path: Path) -> None:
    """Make a new, empty delivery log atomically: an empty file is never one of ours."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    conn = sqlite3.connect(str(temporary), isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("PRAGMA journal_mode = WAL")
    except BaseException:
        conn.close()
        for leftover in (temporary, Path(f"{temporary}-journal"), Path(f"{temporary}-wal")):
            leftover.unlink(missing_ok=True)  # a half-made log is nobody's
        raise
    conn.close()
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


# SQLite's words for a fault of the disk or of the file's permissions (SQLITE_IOERR, SQLITE_FULL,
# SQLITE_READONLY, SQLITE_CANTOPEN), not of the log's contents.
_DISK_FAULTS = (
    "disk I/O error",
    "database or disk is full",
    "readonly database",
    "unable to open database file",
)


def state_error(err: sqlite3.DatabaseError, path: Path) -> StateError:
    """A SQLite failure on the log, said for the organiser."""
    if "locked" in str(err) or "busy" in str(err):
        return StateError(
            _("the delivery log is locked by another program"),
            place=Place(file=str(path)),
            hint=_("close whatever has it open (a SQLite browser?), then run the command again"),
        )
    if isinstance(err, sqlite3.OperationalError) and any(
        known in str(err) for known in _DISK_FAULTS
    ):
        # The disk's fault, not the log's: calling the log damaged would send the organiser to
        # a backup for nothing.
        return StateError(
            _("the delivery log could not be written or read: {error}").format(error=err),
            place=Place(file=str(path)),
            hint=_(
                "check the disk that holds it (free space, write permission, a drive removed), "
                "then run the command again: the log keeps what it had recorded"
            ),
        )
    return StateError(
        _("the delivery log is damaged or not a delivery log: {error}").format(error=err),
        place=Place(file=str(path)),
        hint=_("restore it from a backup; never delete it, it records who was sent what"),
    )


def connect(path: Path) -> sqlite3.Connection:
    """Open the log (WAL since `_create`), fsyncing every commit; explicit transactions."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5)
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def apply_writes(conn: sqlite3.Connection, writes: Sequence[Write]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in writes:
            conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")

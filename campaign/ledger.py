"""The delivery log: one SQLite row per recipient, its state and how it got there.

`outbox/<campaign>/delivery.sqlite` (WAL) holds, for every recipient ever queued, its state,
attempts, last SMTP reply, Message-ID and times. Recipients removed from the spreadsheet stay in it. The states and their transitions:

    pending ──begin──▶ sending/envelope ──354 received──▶ sending/body ──250──▶ sent
       ▲                    │ 4xx, drop, timeout                │ 4xx        ▶ deferred (retry later)
       │                    ▼                                   │ 5xx        ▶ failed
       └── due ─────── deferred ◀── interrupted before 354      │ drop, kill ▶ uncertain
                                                                ▼
    suppressed: on the suppression list, never sent.
    held: never tried, because the same person (display name, or every other cell of the row)
    was already sent the letter at an address no longer to be sent; pending again only with
    `send --resend-readdressed` (`hold_readdressed`, `release_held`).

After the 250, `campaign inbox` adds what the mailbox says (`campaign.inbox`): a permanent failure
report makes a sent (or uncertain) recipient `bounced`, a delivery report `delivered`; a reply, an
auto-reply or a request to unsubscribe is a fact with its date (`replied_at`, `auto_replied_at`,
`unsubscribed_at`), not a state, and never its text. Any of them proves an `uncertain` message
left, which then becomes `sent` with its evidence; so does its copy in the Sent folder. The scan
positions (UIDVALIDITY, last UID per folder) and the copies appended to Sent (`sent_copies`:
recorded before the APPEND, so a crash never appends twice) are kept here too.

Each step is committed before the SMTP step that depends on it: the mark that the body is going
out is committed *and fsynced*, in one statement with the start of the transaction, before the
final dot is sent (the body goes meanwhile; a crash before the mark is durable leaves the
recipient pending or deferred: without its final dot the server has no message); the server's
250 is committed without holding the connection up, within a few milliseconds, usually in the
next fsynced commit (lost in a crash, the message shows as uncertain: it was in flight). So after a crash at any moment (kill -9, power cut) `recover`
knows which messages never left (safe to send again) and which were on the wire without a
recorded reply (`uncertain`: never resent automatically). Test sends (`--test-to`) are kept in
their own table. `LedgerWriter` commits the steps of concurrent connections on the event loop,
several per transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from campaign.errors import Place, StateError
from campaign.i18n import N_, _
from campaign.logschema import MAILBOX_COLUMNS, READDRESS_COLUMNS, UNSUBSCRIBE_COLUMNS
from campaign.logschema import SCHEMA_VERSION as SCHEMA_VERSION
from campaign.logschema import Write as Write
from campaign.logschema import apply_writes as apply_writes
from campaign.logschema import connect as connect
from campaign.logschema import create as _create
from campaign.logschema import state_error as state_error
from campaign.logschema import upgrade as upgrade
from campaign.outbox import Layout, private_dir


class State(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    SUPPRESSED = "suppressed"
    BOUNCED = "bounced"  # a permanent failure report came back (campaign inbox)
    DELIVERED = "delivered"  # a delivery report came back (campaign inbox)
    HELD = "held"  # the same person was already sent the letter at another address


# The states as a person reads them, in the language of the run (the log, `--json` and the
# English of the exports keep the names themselves).
STATE_NAMES = {
    "pending": N_("pending"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "deferred": N_("deferred"),
    "failed": N_("failed"),
    "uncertain": N_("uncertain"),
    "suppressed": N_("suppressed"),
    "bounced": N_("bounced"),
    "delivered": N_("delivered"),
    "held": N_("held"),
}


def state_name(state: str) -> str:
    """The name of a delivery state in the current language: `envoyé` for `sent` in French."""
    known = STATE_NAMES.get(state)
    return _(known) if known else state


# States in which the message left: they count against the provider's day cap.
LEFT = ("sent", "uncertain", "bounced", "delivered")


class Phase(StrEnum):
    ENVELOPE = "envelope"  # MAIL, RCPT, DATA: nothing of the message has left yet
    BODY = "body"  # the server said 354; the message is (being) transmitted


@dataclass(frozen=True)
class Delivery:
    """One recipient's row of the delivery log."""

    email: str
    address: str
    row: int | None
    name: str | None
    state: State
    phase: str | None
    attempts: int
    last_code: int | None
    last_text: str | None
    message_id: str
    queued_at: float
    first_attempt_at: float | None
    last_attempt_at: float | None
    sent_at: float | None
    next_attempt_at: float | None
    bounced_at: float | None = None
    bounce_reason: str | None = None
    delivered_at: float | None = None
    delayed_at: float | None = None
    replied_at: float | None = None
    auto_replied_at: float | None = None
    evidence: str | None = None
    person: str | None = None  # a digest of the row's cells but the address (`person_key`)
    readdressed_from: str | None = None  # held, or sent once released: the earlier address
    unsubscribed_at: float | None = None  # asked to unsubscribe (List-Unsubscribe): inbox


@dataclass(frozen=True)
class Entry:
    """A recipient to queue: its address, row, display name, Message-ID and who it is."""

    address: str
    row: int | None
    name: str | None
    message_id: str
    person: str | None = None  # `person_key` of its row: the same person at another address

    @property
    def email(self) -> str:
        return self.address.lower()


@dataclass(frozen=True)
class Held:
    """A recipient held because the letter already reached the same person at `earlier`."""

    row: int | None
    address: str
    earlier: str
    sent_at: float | None  # when the letter went to `earlier`


def held_advice(campaign: str) -> str:
    """What the organiser can do about a held row: send it after all, or correct the row."""
    return _(
        "if the earlier address no longer reaches them, {command} sends the letter to the new "
        "one; if it is a mistake, correct the row"
    ).format(command=f"campaign send {campaign} --resend-readdressed")


class Ledger:
    """The delivery log of one campaign, opened for reading and for the steps of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        if not path.exists():
            try:
                _create(path)
            except sqlite3.DatabaseError as err:  # a full disk, a drive removed: said, not raised
                raise state_error(err, path) from None
        elif path.stat().st_size == 0:
            raise StateError(
                _("the delivery log is empty (truncated?): it no longer says who was sent what"),
                place=Place(file=str(path)),
                hint=_("restore it from a backup; never delete it, it records who was sent what"),
            )
        conn: sqlite3.Connection | None = None
        try:
            conn = self.conn = connect(path)
            self._check()
        except sqlite3.DatabaseError as err:
            if conn is not None:
                conn.close()
            raise state_error(err, path) from None
        except StateError:
            if conn is not None:
                conn.close()
            raise

    @classmethod
    def for_campaign(cls, layout: Layout) -> Ledger:
        return cls(layout.log)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        """Refuse a file that is not a delivery log of this version: never adopt or rewrite it."""
        tables = {
            name
            for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        hint = _("restore it from a backup; never delete it, it records who was sent what")
        if not tables:
            raise StateError(
                _("the delivery log is empty (truncated?): it no longer says who was sent what"),
                place=Place(file=str(self.path)),
                hint=hint,
            )
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(deliveries)")}
        # The columns every version has; those of later versions are added by `upgrade`.
        later = {c.split()[0] for c in (*MAILBOX_COLUMNS, *READDRESS_COLUMNS, *UNSUBSCRIBE_COLUMNS)}
        wanted = {f.name for f in fields(Delivery)} - later
        if not {"schema_version", "deliveries", "test_sends", "runs"} <= tables or not (
            wanted <= columns
        ):
            raise StateError(
                _("this file is not a delivery log of campaign"),
                place=Place(file=str(self.path)),
                hint=_("move it away if it is yours; the delivery log is made on the first send"),
            )
        found = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
        if found[0] is not None and found[0] < SCHEMA_VERSION:
            upgrade(self.conn, self.path, int(found[0]))
            found = (SCHEMA_VERSION,)
        if found[0] is None or found[0] > SCHEMA_VERSION:
            raise StateError(
                _("the delivery log was written by a newer version (schema {version})").format(
                    version=found[0]
                ),
                place=Place(file=str(self.path)),
                hint=_("upgrade campaign before sending this campaign"),
            )
        if self.path.stat().st_mode & 0o777 != 0o600:
            self.path.chmod(0o600)

    def apply(self, writes: Sequence[Write]) -> None:
        """Commit `writes` as one durable transaction."""
        try:
            apply_writes(self.conn, writes)
        except sqlite3.DatabaseError as err:
            raise state_error(err, self.path) from None

    # Queueing and recovery ------------------------------------------------------------------

    def enqueue(self, ready: Iterable[Entry], suppressed: Iterable[Entry], now: float) -> None:
        """Add new recipients as pending, refresh row and name, and mark the suppressed ones."""
        writes: list[Write] = []
        for entry in ready:
            writes.append(
                (
                    "INSERT INTO deliveries"
                    " (email, address, row, name, state, message_id, queued_at, person)"
                    " VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT (email) DO UPDATE SET"
                    " row = excluded.row, name = excluded.name, address = excluded.address,"
                    " person = excluded.person,"
                    " state = CASE state WHEN 'suppressed' THEN 'pending' ELSE state END",
                    (
                        entry.email,
                        entry.address,
                        entry.row,
                        entry.name,
                        entry.message_id,
                        now,
                        entry.person,
                    ),
                )
            )
        for entry in suppressed:
            writes.append(
                (
                    "INSERT INTO deliveries (email, address, row, name, state, message_id, queued_at)"
                    " VALUES (?, ?, ?, ?, 'suppressed', ?, ?) ON CONFLICT (email) DO UPDATE SET"
                    " state = CASE WHEN state IN ('pending', 'deferred', 'failed', 'held')"
                    " THEN 'suppressed' ELSE state END",
                    (entry.email, entry.address, entry.row, entry.name, entry.message_id, now),
                )
            )
        self.apply(writes)

    def recover(self) -> tuple[int, int]:
        """Settle what a crashed run left `sending`: (safe to send again, uncertain)."""
        safe = self.conn.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sending' AND phase = 'envelope'"
        ).fetchone()[0]
        unsure = self.conn.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sending' AND phase IS NOT 'envelope'"
        ).fetchone()[0]
        self.apply(
            [
                (
                    "UPDATE deliveries SET state = 'pending', phase = NULL, last_text ="
                    " 'interrupted before the message was transmitted; safe to send again'"
                    " WHERE state = 'sending' AND phase = 'envelope'",
                    (),
                ),
                (
                    "UPDATE deliveries SET state = 'uncertain', phase = NULL, last_text ="
                    " 'interrupted after the message was transmitted, before the server replied'"
                    " WHERE state = 'sending'",
                    (),
                ),
                (
                    "UPDATE test_sends SET state = CASE phase WHEN 'envelope' THEN 'deferred'"
                    " ELSE 'uncertain' END, phase = NULL WHERE state = 'sending'",
                    (),
                ),
            ]
        )
        return safe, unsure

    def requeue(self, states: Iterable[State]) -> int:
        """Make recipients in `states` (failed, uncertain) pending again; return how many."""
        wanted = [s.value for s in states]
        if not wanted:
            return 0
        marks = ", ".join("?" for _ in wanted)
        count = self.conn.execute(
            f"SELECT count(*) FROM deliveries WHERE state IN ({marks})",  # noqa: S608
            wanted,
        ).fetchone()[0]
        self.apply(
            [
                *_keep_earlier_sends(f"state IN ({marks})", tuple(wanted)),
                (
                    f"UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL"  # noqa: S608
                    f" WHERE state IN ({marks})",
                    tuple(wanted),
                ),
            ]
        )
        return int(count)

    def requeue_bounced(self, emails: Iterable[str]) -> int:
        """Make these `bounced` recipients pending again, their bounce forgotten (its reason is
        the organiser's to put right: campaign.causes); return how many."""
        bounced = {d.email for d in self.deliveries("state = 'bounced'")}
        wanted = sorted(bounced & {email.lower() for email in emails})
        writes: list[Write] = []
        for email in wanted:
            writes += _keep_earlier_sends("email = ?", (email,))
            writes.append(
                (
                    "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = NULL,"
                    " bounced_at = NULL, bounce_reason = NULL WHERE email = ?",
                    (email,),
                )
            )
        if writes:
            self.apply(writes)
        return len(wanted)

    def hold_readdressed(self, ready: Iterable[str]) -> int:
        """Hold, as `held`, the recipients never tried whose person the letter already reached at
        another address; return how many are held now.

        A person is the same when the display name is (`name`), or every cell of the row but the
        address (`person`), and the earlier address is no longer among the `ready` ones (lower-
        cased): it left the spreadsheet or joined the suppression list. Reached means the message
        left and nothing says it failed: sent, delivered or uncertain (bounced and failed did
        not reach anyone). A recipient released once (`release_held`) is never held again.
        """
        ready = set(ready)
        reached = self._reached_elsewhere(ready)
        writes: list[Write] = []
        if reached:
            for d in self.deliveries(
                "state = 'pending' AND first_attempt_at IS NULL AND readdressed_from IS NULL"
            ):
                if d.email in ready and (earlier := _earlier(reached, d.name, d.person)):
                    writes.append(
                        (
                            "UPDATE deliveries SET state = 'held', readdressed_from = ?"
                            " WHERE email = ? AND state = 'pending'",
                            (earlier.address, d.email),
                        )
                    )
        if writes:
            self.apply(writes)
        return int(
            self.conn.execute("SELECT count(*) FROM deliveries WHERE state = 'held'").fetchone()[0]
        )

    def held(self, ready: Iterable[str]) -> list[Held]:
        """The held recipients still in the spreadsheet (`ready`, lower-cased), with the earlier
        address and when the letter went there."""
        ready = set(ready)
        rows = self.conn.execute(
            "SELECT held.email, held.row, held.address, held.readdressed_from, earlier.sent_at"
            " FROM deliveries AS held LEFT JOIN deliveries AS earlier"
            " ON earlier.email = lower(held.readdressed_from)"
            " WHERE held.state = 'held' AND held.readdressed_from IS NOT NULL"
            " ORDER BY held.row, held.email"
        )
        return [Held(*found) for email, *found in rows if email in ready]

    def would_hold(
        self, ready: Sequence[str], who: Callable[[str], tuple[int | None, str | None, str | None]]
    ) -> list[Held]:
        """Read only (`campaign check`): the rows `send` will hold, held already or not yet in
        the log, by the rule of `hold_readdressed`. `ready` are the sheet's ready addresses;
        `who(address)` gives its row, display name and `person_key`, asked only of the rows that
        may be held (none, unless the letter reached someone at an address gone from the sheet).
        """
        emails = {address.lower() for address in ready}
        found = self.held(emails)
        reached = self._reached_elsewhere(emails)
        if reached:
            logged = {d.email: d for d in self.deliveries()}
            for address in ready:
                d = logged.get(address.lower())
                if d is not None and (
                    d.state is not State.PENDING
                    or d.first_attempt_at is not None
                    or d.readdressed_from is not None
                ):
                    continue  # tried, held already, or released once: not held again
                row, name, person = who(address)
                if earlier := _earlier(reached, name, person):
                    found.append(Held(row, address, earlier.address, earlier.sent_at))
        return sorted(found, key=lambda h: (h.row is None, h.row or 0, h.address))

    def _reached_elsewhere(self, ready: set[str]) -> dict[tuple[str, str], Delivery]:
        """Whom the letter reached (sent, delivered, uncertain) at an address no longer among
        `ready`, by each of their person keys."""
        reached: dict[tuple[str, str], Delivery] = {}
        for d in self.deliveries(_REACHED):
            if d.email not in ready:
                for key in _person_keys(d.name, d.person):
                    reached.setdefault(key, d)
        return reached

    def release_unreached(self) -> int:
        """Make pending again the held rows whose earlier letter turns out not to have reached
        the person (a bounce read since, the earlier row sent again); return how many.

        Held means "the letter already reached this person": once that is no longer so, the new
        address is the only way to them, and `send` sends it without `--resend-readdressed`.
        """
        if not self.conn.execute(
            "SELECT 1 FROM deliveries WHERE state = 'held' LIMIT 1"
        ).fetchone():
            return 0  # nothing held: no write, no fsync
        before = self.conn.total_changes
        self.apply(
            [
                (
                    "UPDATE deliveries SET state = 'pending', readdressed_from = NULL"  # noqa: S608
                    " WHERE state = 'held' AND lower(readdressed_from) NOT IN (SELECT email"
                    f" FROM deliveries WHERE {_REACHED})",
                    (),
                )
            ]
        )
        return self.conn.total_changes - before

    def release_held(self) -> int:
        """Make the held recipients pending (`send --resend-readdressed`); return how many."""
        before = self.conn.total_changes
        self.apply([("UPDATE deliveries SET state = 'pending' WHERE state = 'held'", ())])
        return self.conn.total_changes - before

    # Reading ---------------------------------------------------------------------------------

    def deliveries(self, where: str = "1", params: Sequence[Any] = ()) -> list[Delivery]:
        cursor = self.conn.execute(
            f"SELECT * FROM deliveries WHERE {where} ORDER BY row, email",  # noqa: S608
            tuple(params),
        )
        return [_delivery(row) for row in cursor]

    def get(self, email: str) -> Delivery | None:
        found = self.deliveries("email = ?", (email.lower(),))
        return found[0] if found else None

    def due(self, now: float) -> list[Delivery]:
        """Recipients to try now: pending, and deferred whose retry time has come."""
        return self.deliveries(
            "state = 'pending' OR (state = 'deferred' AND next_attempt_at <= ?)", (now,)
        )

    def next_retry(self) -> float | None:
        value = self.conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries WHERE state = 'deferred'"
        ).fetchone()[0]
        return None if value is None else float(value)

    def counts(self) -> dict[str, int]:
        counts = {state.value: 0 for state in State}
        for state, count in self.conn.execute(
            "SELECT state, count(*) FROM deliveries GROUP BY state"
        ):
            counts[state] = count
        return counts

    def facts(self) -> dict[str, int]:
        """How many recipients replied, auto-replied, had a delay notice or asked to unsubscribe
        (campaign inbox)."""
        row = self.conn.execute(
            "SELECT count(replied_at), count(auto_replied_at), count(delayed_at),"
            " count(unsubscribed_at) FROM deliveries"
        ).fetchone()
        return {
            "replied": row[0],
            "auto_replied": row[1],
            "delayed": row[2],
            "unsubscribed": row[3],
        }

    def scan_position(self, folder: str) -> ScanPosition | None:
        """Where the last `campaign inbox` stopped reading `folder`, or None before the first."""
        row = self.conn.execute(
            "SELECT uidvalidity, last_uid, recent FROM mailbox_scans WHERE folder = ?", (folder,)
        ).fetchone()
        if row is None:
            return None
        return ScanPosition(int(row[0]), int(row[1]), frozenset(filter(None, row[2].split("\n"))))

    def sent_copy(self, email: str) -> str | None:
        """The state of the copy of `email`'s message in Sent: pending, done, failed, or None."""
        row = self.conn.execute(
            "SELECT state FROM sent_copies WHERE email = ?", (email.lower(),)
        ).fetchone()
        return None if row is None else str(row[0])

    def sent_times(self, since: float) -> list[float]:
        """Times of every message that may count against the provider's cap since `since`."""
        sql = (
            f"SELECT {_SENT_AT} FROM deliveries WHERE {_LEFT} AND {_SENT_AT} >= ?"  # noqa: S608
            " UNION ALL SELECT coalesce(sent_at, started_at) FROM test_sends"
            " WHERE state IN ('sent', 'uncertain') AND coalesce(sent_at, started_at) >= ?"
        )
        params: tuple[float, ...] = (since, since)
        if self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'earlier_sends'"
        ).fetchone():  # made by the first requeue of a row that had left: a read writes nothing
            sql += " UNION ALL SELECT sent_at FROM earlier_sends WHERE sent_at >= ?"
            params += (since,)
        return sorted(float(t) for (t,) in self.conn.execute(sql, params))

    def test_sends(self) -> list[dict[str, Any]]:
        cursor = self.conn.execute("SELECT * FROM test_sends ORDER BY id")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    # Runs and test sends --------------------------------------------------------------------

    def start_run(self, now: float) -> int:
        with self.conn:
            cursor = self.conn.execute("INSERT INTO runs (started_at) VALUES (?)", (now,))
        return int(cursor.lastrowid or 0)

    def end_run(self, run: int, now: float, sent: int, outcome: str) -> None:
        self.apply(
            [
                (
                    "UPDATE runs SET ended_at = ?, sent = ?, outcome = ? WHERE id = ?",
                    (now, sent, outcome, run),
                )
            ]
        )

    # Small facts kept between runs (the learnt rate, save_sent's detection): a table made on
    # first use, so older logs need no migration.
    def meta(self, key: str) -> str | None:
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def keep_meta(self, key: str, value: str) -> None:
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def id_salt(self) -> str:
        """The campaign's own part of its Message-IDs (`compose.message_id`), made with the log.

        Random, so that another mailing under the same campaign name gets other IDs; kept, so that
        every attempt of a message has the same one. A log that queued recipients before salts
        existed keeps none: the IDs it holds stay those of its messages.
        """
        salt = self.meta("message_id_salt")
        if salt is None:
            queued = self.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
            salt = "" if queued else secrets.token_hex(16)
            self.keep_meta("message_id_salt", salt)
        return salt

    def learnt_rate(self) -> float | None:
        """Messages per second the server allowed when last limited, or None."""
        value = self.meta("learnt_rate")
        return None if value is None else float(value)

    def keep_learnt_rate(self, rate: float) -> None:
        self.keep_meta("learnt_rate", repr(float(rate)))

    def copies(self, states: Iterable[str]) -> list[tuple[str, str, str, str]]:
        """The copies for Sent in `states`: (email, message_id, state, folder), oldest first."""
        wanted = list(states)
        marks = ", ".join("?" * len(wanted))
        rows = self.conn.execute(
            "SELECT email, message_id, state, folder FROM sent_copies"  # noqa: S608
            f" WHERE state IN ({marks}) ORDER BY at",
            wanted,
        )
        return [(str(a), str(b), str(c), str(d)) for a, b, c, d in rows]

    def unrecorded_copies(self, layout: Layout) -> list[str]:
        """Recipients the server accepted whose copy for Sent is spooled but has no row: a run
        killed while its copier's thread was behind (`campaign.sentcopy`)."""
        spooled = layout.spooled_copies()
        if not spooled:
            return []
        rows = {email for email, *_ in self.copies(["pending", "failed", "done"])}
        return [
            d.email
            for d in self.deliveries("sent_at IS NOT NULL")
            if d.email not in rows and layout.sent_copy(d.email).name in spooled
        ]

    def keep_pace(self, run: int, pace: dict[str, Any]) -> None:
        """What the server's limits did to run `run` (throttle.PaceReport's fields), for status."""
        with self.conn:
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"pace:{run}", json.dumps(pace))
            )

    def run_details(self) -> list[dict[str, Any]]:
        """Every run, oldest first: id, start, end, sent, outcome and its pace (or None)."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        paces = {
            key.removeprefix("pace:"): value
            for key, value in self.conn.execute(
                "SELECT key, value FROM meta WHERE key LIKE 'pace:%'"
            )
        }
        rows = self.conn.execute(
            "SELECT id, started_at, ended_at, sent, outcome FROM runs ORDER BY id"
        )
        return [
            {
                "id": run,
                "started_at": started,
                "ended_at": ended,
                "sent": sent,
                "outcome": outcome,
                "pace": json.loads(paces[str(run)]) if str(run) in paces else None,
            }
            for run, started, ended, sent, outcome in rows
        ]

    def add_test_send(self, address: str, source: str, message_id: str, now: float) -> int:
        with self.conn:
            cursor = self.conn.execute(
                "INSERT INTO test_sends (address, source_email, message_id, state, started_at)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (address, source.lower(), message_id, now),
            )
        return int(cursor.lastrowid or 0)


# The steps of one SMTP transaction, as writes for `Ledger.apply` or `LedgerWriter.commit`.
# `key` is the recipient's lower-cased address, or the id of a test send.


def begin(key: str | int, now: float, phase: Phase = Phase.ENVELOPE) -> Write:
    """The start of a transaction at `now`; with `phase=Phase.BODY`, its body mark as well."""
    if isinstance(key, int):
        return (
            "UPDATE test_sends SET state = 'sending', phase = ? WHERE id = ?",
            (phase.value, key),
        )
    return (
        "UPDATE deliveries SET state = 'sending', phase = ?, attempts = attempts + 1,"
        " first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ? WHERE email = ?",
        (phase.value, now, now, key),
    )


def put_back(key: str | int, code: int | None, text: str) -> Write:
    """Undo a transaction's attempt: the server refused it because of the sender, not this
    recipient (a rate limit), so the recipient goes back to the queue with its attempts untouched.
    """
    if isinstance(key, int):
        return ("UPDATE test_sends SET state = 'pending', phase = NULL WHERE id = ?", (key,))
    return (
        "UPDATE deliveries SET state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'pending' END,"
        " phase = NULL, attempts = max(attempts - 1, 0), last_code = ?, last_text = ?"
        " WHERE email = ?",
        (code, text[:500], key),
    )


def body_in_flight(key: str | int, now: float) -> Write:
    table, column = ("test_sends", "id") if isinstance(key, int) else ("deliveries", "email")
    return (f"UPDATE {table} SET phase = 'body' WHERE {column} = ?", (key,))  # noqa: S608


def outcome(
    key: str | int,
    state: State,
    code: int | None,
    text: str,
    now: float,
    *,
    next_attempt_at: float | None = None,
) -> Write:
    """The write that records how a transaction ended."""
    sent_at = now if state is State.SENT else None
    if isinstance(key, int):
        return (
            "UPDATE test_sends SET state = ?, phase = NULL, last_code = ?, last_text = ?,"
            " sent_at = coalesce(?, sent_at) WHERE id = ?",
            (state.value, code, text[:500], sent_at, key),
        )
    return (
        "UPDATE deliveries SET state = ?, phase = NULL, last_code = ?, last_text = ?,"
        " sent_at = coalesce(?, sent_at), next_attempt_at = ? WHERE email = ?",
        (state.value, code, text[:500], sent_at, next_attempt_at, key),
    )


@dataclass(frozen=True)
class ScanPosition:
    """Where a scan of one folder stopped: a new UIDVALIDITY means every UID changed meaning."""

    uidvalidity: int
    last_uid: int
    recent: frozenset[str] = frozenset()


# What the mailbox says, as writes. Each keeps the first date it learnt; a report about a message
# also proves it left, so an `uncertain` recipient becomes `sent` (or bounced/delivered) with it.
_PROVEN = "evidence = CASE WHEN state = 'uncertain' THEN ? ELSE evidence END"


def scan_position(folder: str, position: ScanPosition, now: float) -> Write:
    return (
        "INSERT INTO mailbox_scans (folder, uidvalidity, last_uid, recent, scanned_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (folder) DO UPDATE SET"
        " uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid,"
        " recent = excluded.recent, scanned_at = excluded.scanned_at",
        (folder, position.uidvalidity, position.last_uid, "\n".join(sorted(position.recent)), now),
    )


def bounced(email: str, at: float, reason: str, evidence: str) -> Write:
    """A permanent failure report: `bounced`, with the remote server's diagnostic."""
    return (
        f"UPDATE deliveries SET {_PROVEN}, state = 'bounced',"  # noqa: S608
        " bounced_at = coalesce(bounced_at, ?), bounce_reason = ?"
        " WHERE email = ? AND state IN ('sent', 'uncertain', 'delivered', 'bounced')",
        (evidence, at, reason[:500], email.lower()),
    )


def delivered(email: str, at: float, evidence: str) -> Write:
    """A delivery report (`delivered` or `relayed`): the message reached the recipient's server."""
    return (
        f"UPDATE deliveries SET {_PROVEN}, state = 'delivered',"  # noqa: S608
        " delivered_at = coalesce(delivered_at, ?)"
        " WHERE email = ? AND state IN ('sent', 'uncertain')",
        (evidence, at, email.lower()),
    )


def noted(email: str, column: str, at: float, evidence: str) -> Write:
    """A fact with its date (`replied_at`, `auto_replied_at`, `delayed_at`, `unsubscribed_at`):
    proof it left."""
    if column not in {"replied_at", "auto_replied_at", "delayed_at", "unsubscribed_at"}:
        raise ValueError(column)
    return (
        f"UPDATE deliveries SET {_PROVEN}, {column} = coalesce({column}, ?),"  # noqa: S608
        " state = CASE WHEN state = 'uncertain' THEN 'sent' ELSE state END"
        " WHERE email = ? AND state IN ('sent', 'uncertain', 'delivered', 'bounced')",
        (evidence, at, email.lower()),
    )


def resolved(email: str, evidence: str) -> Write:
    """An `uncertain` message found in the Sent folder: it left, it is `sent`."""
    return (
        "UPDATE deliveries SET state = 'sent', evidence = ?, sent_at = coalesce(sent_at,"
        " last_attempt_at) WHERE email = ? AND state = 'uncertain'",
        (evidence, email.lower()),
    )


def searched(email: str, what: str) -> Write:
    """An `uncertain` message for which the mailbox had no evidence: say what was searched."""
    return (
        "UPDATE deliveries SET evidence = ? WHERE email = ? AND state = 'uncertain'",
        (what, email.lower()),
    )


def sent_copy(
    email: str, message_id: str, state: str, folder: str, now: float, error: str = ""
) -> Write:
    """The copy of a message for Sent: `pending` (committed before its APPEND), `done`, `failed`."""
    return (
        "INSERT INTO sent_copies (email, message_id, state, folder, at, error)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET state = excluded.state,"
        " at = excluded.at, error = excluded.error,"
        " folder = CASE WHEN excluded.folder = '' THEN folder ELSE excluded.folder END",
        (email.lower(), message_id, state, folder, now, error[:500] or None),
    )


def _person_keys(name: str | None, person: str | None) -> list[tuple[str, str]]:
    """The keys that say two rows are one person: the display name, the other cells' digest."""
    keys = []
    if name and (spoken := _spoken(name)):
        keys.append(("name", spoken))
    if person:
        keys.append(("person", person))
    return keys


# The letter reached the person: it left and nothing says it failed (a bounce or a refusal did
# not reach anyone). What holds a new address for the same person (`Ledger.hold_readdressed`).
REACHED = (State.SENT, State.DELIVERED, State.UNCERTAIN)
_REACHED = f"state IN ({', '.join(repr(state.value) for state in REACHED)})"
# A message that left counts against the provider's caps (`Ledger.sent_times`) from when it left.
_LEFT = "state IN ('sent', 'uncertain', 'bounced', 'delivered')"
_SENT_AT = "coalesce(sent_at, last_attempt_at)"
# When a row that left is queued again (`--resend-uncertain`, `--retry-bounced`), its first send
# still counts for the day: its time is kept here (only the time: no address to purge). A table
# made on first use, so older logs need no migration.
_EARLIER_SENDS = "CREATE TABLE IF NOT EXISTS earlier_sends (sent_at REAL NOT NULL)"


def _keep_earlier_sends(where: str, params: tuple[Any, ...]) -> list[Write]:
    """The writes that keep the send time of the rows `where` selects, before they are requeued."""
    return [
        (_EARLIER_SENDS, ()),
        (
            f"INSERT INTO earlier_sends SELECT {_SENT_AT} FROM deliveries"  # noqa: S608
            f" WHERE ({where}) AND {_LEFT} AND {_SENT_AT} IS NOT NULL",
            params,
        ),
    ]


def _earlier(
    reached: Mapping[tuple[str, str], Delivery], name: str | None, person: str | None
) -> Delivery | None:
    """Where the letter already reached this person (`Ledger._reached_elsewhere`), if it did."""
    return next((reached[k] for k in _person_keys(name, person) if k in reached), None)


def _spoken(text: str) -> str:
    """Text as a person compares it: no case, single spaces."""
    return " ".join(text.casefold().split())


def person_key(values: Mapping[str, str], address: str) -> str | None:
    """A digest of a row's cells other than its address, or None when they are all empty.

    Compared as a person reads them (case, spaces): a corrected address in an unchanged row
    gives the same digest, so the log knows the letter already reached that person.
    """
    address = address.casefold()
    cells = sorted(
        (_spoken(header), spoken)
        for header, text in values.items()
        if (spoken := _spoken(str(text))) and spoken != address
    )
    if not cells:
        return None
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode()).hexdigest()[:32]


def _delivery(row: Sequence[Any]) -> Delivery:
    values = list(row)
    values[4] = State(values[4])
    return Delivery(*values)

"""Messages the SMTP server accepted → a copy of each in the sender's Sent folder (`save_sent`).

Most providers do not file what is sent through SMTP (Gmail and Microsoft 365 do), so the
collective's mailbox has no trace of its own letters. `SentCopier` takes, after each 250, the
bytes that went after DATA, and in a thread of its own, with its own mailbox connection, appends
them without the SMTP dot-stuffing to the Sent folder (IMAP APPEND with \\Seen; in a Maildir,
`.Sent/cur` with the S flag): sending never waits for the mailbox.

- `always`: every message is copied. `auto`: after the first 250, the copier looks for that
  Message-ID in Sent for `mailbox.save_sent_wait` seconds; found, the provider files sent mail
  itself and nothing is appended (a second copy would be noise); not found, every message is
  copied. The answer is kept in the log's meta, so later runs do not look again. `never`: nothing.
- Never twice, never a resend, not lost to a killed run: the bytes go to
  `outbox/<campaign>/sent-copies/` on the run's own thread as the 250 is handled, before the log
  can record the message `sent`, so a run killed while the thread is behind leaves them there
  (not fsynced, which would hold up every connection: a power cut may lose the last few). The
  thread records the copy `pending` in the log's `sent_copies` (fsynced) before its APPEND, then
  `done` or `failed`. A copy left pending or only spooled (a crash) or failed (the mailbox
  refused it, or could not be reached) is retried by the next `send` or `inbox`, and first
  looked for in Sent by its Message-ID: there already, it is done without a second APPEND. Only
  the copy is ever retried; the message itself stays `sent`.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from campaign import ledger
from campaign.dispatch import Event, EventKind, Job, Progress
from campaign.i18n import N_, _
from campaign.ledger import Ledger, State
from campaign.mailbox import Box, open_mailbox
from campaign.outbox import Layout, write_private
from campaign.settings import Settings

PROBE_EVERY = 0.5  # seconds between two looks for the first message in Sent (save_sent: auto)
PROVIDER, APPEND = "provider", "append"  # what `auto` found, kept in the log's meta
META_KEY = "save_sent_auto"

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>\r\n]+)>", re.MULTILINE | re.IGNORECASE)
_STUFFED = re.compile(rb"(?<=\n)\.\.")

Rounds = Callable[[], Sequence[Job] | float | None]


def unstuffed(data: bytes) -> bytes:
    """The message as the server stores it: the bytes after DATA without the final dot and the
    dots doubled at line starts (RFC 5321 §4.5.2): the inverse of `compose.dot_stuffed`."""
    if data.endswith(b"\r\n.\r\n"):
        data = data[:-3]
    if data.startswith(b".."):
        data = data[1:]
    return _STUFFED.sub(b".", data)


def message_id_in(data: bytes) -> str:
    """The Message-ID of a message (without <>), read from its header block."""
    end = data.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(data[: end if end >= 0 else len(data)])
    return found.group(1).decode("ascii", "replace") if found else ""


@dataclass
class CopyReport:
    """What the copies for Sent came to in one run (or one `inbox`)."""

    mode: str = "never"
    folder: str | None = None
    saved: int = 0  # appended (or found already there) in this run
    failed: int = 0  # not saved in this run: retried by the next send or inbox
    provider_files: bool = False  # save_sent: auto found the provider files sent mail itself
    errors: list[str] = field(default_factory=list)  # distinct reasons, for the report

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "folder": self.folder,
            "saved": self.saved,
            "not_saved": self.failed,
            "provider_files_sent_mail": self.provider_files,
            "errors": self.errors,
        }


class Copies:
    """The copies of one campaign: spool, record, look for, append. Used from one thread."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        log: Ledger,
        opener: Callable[[], Box],
        *,
        owned: bool = True,  # False: the caller's open mailbox, which the caller closes
    ) -> None:
        config = settings.mailbox
        self.mode = config.save_sent if config is not None else "never"
        self.wait = config.save_sent_wait if config is not None else 0.0
        self.layout = layout
        self.log = log
        self.opener = opener
        self.report = CopyReport(self.mode)
        self.decision = log.meta(META_KEY) if self.mode == "auto" else APPEND
        self.report.provider_files = self.decision == PROVIDER
        self.owned = owned
        self._box: Box | None = None
        self._broken: str | None = None  # the mailbox could not be opened: fail fast after that

    def box(self) -> tuple[Box, str]:
        """The open mailbox and its Sent folder; an exception says why there is none."""
        if self._broken is not None:
            raise OSError(self._broken)
        try:
            if self._box is None:
                self._box = self.opener()
            folder = self._box.sent_folder()
        except Exception as err:  # DeliveryError, an IMAP or socket error: the copy waits
            self._broken = _reason(err)
            self.close()
            raise OSError(self._broken) from None
        if folder is None:
            self._broken = _("the mailbox has no Sent folder: set mailbox.folders.sent")
            raise OSError(self._broken)
        self.report.folder = folder
        return self._box, folder

    def close(self) -> None:
        if self._box is not None and self.owned:
            box, self._box = self._box, None
            with contextlib.suppress(Exception):  # a connection already gone: nothing to close
                box.close()

    def spool(self, email: str) -> Path:
        return self.layout.sent_copy(email)

    def add(self, email: str, raw: bytes) -> None:
        """A message just accepted (as the server stores it, spooled or not): copy it if due."""
        mid = message_id_in(raw)
        if (
            self.mode == "never"
            or self.decision == PROVIDER
            or (self.decision is None and self._provider_files(mid))
        ):
            self.spool(email).unlink(missing_ok=True)  # the provider files it: no copy to make
            return
        if not self.spool(email).exists():
            write_private(self.spool(email), raw)
        with contextlib.suppress(OSError):
            self.box()  # to record the folder; a mailbox that cannot be opened fails below
        folder = self.report.folder or ""
        self.log.apply([ledger.sent_copy(email, mid, "pending", folder, time.time())])
        self._append(email, mid, raw, look_first=False)

    def retry(self) -> None:
        """Save the copies an earlier run left pending or failed (never twice: look first)."""
        if self.mode == "never" or self.decision == PROVIDER:
            return
        recorded = self.log.copies(["pending", "failed"])
        for email, mid, _state, _error in recorded + self._only_spooled():
            path = self.spool(email)
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                # The log keeps the English; the run's report says it in the run's language.
                error = N_("its bytes are gone from the outbox (purged?): it cannot be saved")
                self.log.apply([ledger.sent_copy(email, mid, "failed", "", time.time(), error)])
                self._failed(_(error))
                continue
            self._append(email, mid, raw, look_first=True)

    def _only_spooled(self) -> list[tuple[str, str, str, str]]:
        """The copies a killed run spooled but did not record, now recorded pending."""
        found = []
        for email in self.log.unrecorded_copies(self.layout):
            try:
                mid = message_id_in(self.spool(email).read_bytes())
            except OSError:
                continue  # gone meanwhile: nothing to save
            self.log.apply([ledger.sent_copy(email, mid, "pending", "", time.time())])
            found.append((email, mid, "pending", ""))
        return found

    def _append(self, email: str, mid: str, raw: bytes, *, look_first: bool) -> None:
        # Two tries: a connection idle through a long wait (retries, the send window) may have
        # been closed by the server. The second looks first: the APPEND may have landed.
        for last in (False, True):
            try:
                box, folder = self.box()
                if not (look_first and mid and mid in box.find(folder, [mid])):
                    box.append(folder, raw)
                break
            except Exception as err:  # the mailbox refused or dropped: the copy waits, not the mail
                error = _reason(err)
                if self._broken is None:
                    self.close()  # the connection may be half-way through a command: start afresh
                if not last and self._broken is None and self.owned:
                    look_first = True
                    continue
                where = self.report.folder or ""
                self.log.apply([ledger.sent_copy(email, mid, "failed", where, time.time(), error)])
                self._failed(error)
                return
        self.log.apply([ledger.sent_copy(email, mid, "done", folder, time.time())])
        self.spool(email).unlink(missing_ok=True)
        self.report.saved += 1

    def _failed(self, error: str) -> None:
        self.report.failed += 1
        if error not in self.report.errors:
            self.report.errors.append(error)

    def _provider_files(self, mid: str) -> bool:
        """save_sent: auto, first message: does the provider file it in Sent by itself?"""
        try:
            box, folder = self.box()
            deadline = time.monotonic() + self.wait
            while True:
                if mid and mid in box.find(folder, [mid]):
                    self.decision = PROVIDER
                    break
                if time.monotonic() >= deadline:
                    self.decision = APPEND
                    break
                time.sleep(PROBE_EVERY)
        except Exception:  # no mailbox now: decide on a later run, copy this one meanwhile
            return False
        self.log.keep_meta(META_KEY, self.decision)
        self.report.provider_files = self.decision == PROVIDER
        return self.decision == PROVIDER


def _reason(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return " ".join(str(message).split())[:300]


class SentCopier:
    """The copies of one `send` run, made in a thread fed by the run's events."""

    def __init__(
        self,
        settings: Settings,
        layout: Layout,
        *,
        opener: Callable[[], Box] | None = None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.opener = opener or (lambda: open_mailbox(settings))
        self.report = CopyReport()
        self._queue: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._in_flight: dict[str, Callable[[], bytes]] = {}
        self._bytes: dict[str, bytes] = {}
        self._thread = threading.Thread(target=self._run, name="sent-copier", daemon=True)

    def start(self) -> None:
        """Start the thread: only once the compose workers have forked (campaign.composepool),
        so that no child inherits a thread's locks."""
        self._thread.start()

    def rounds(self, rounds: Rounds) -> Rounds:
        """Wrap the run's rounds so each job's bytes are kept until its transaction ends."""

        def wrapped() -> Sequence[Job] | float | None:
            plan = rounds()
            if isinstance(plan, float) or plan is None:
                return plan
            for job in plan:
                if isinstance(job.key, str):
                    job.message = self._keeping(job.key, job.message)
            return plan

        return wrapped

    def _keeping(self, key: str, message: Callable[[], bytes]) -> Callable[[], bytes]:
        def kept() -> bytes:
            data = message()
            self._bytes[key] = data
            return data

        return kept

    def watching(self, progress: Progress | None) -> Progress:
        """Pass events on; after each 250, spool the message's bytes and queue them for the thread.

        Spooled here, on the run's thread, as the 250 is handled: the log records the message
        `sent` in a later turn of the loop, so a run killed while the thread is behind still
        leaves the copy for the next `send` or `inbox` (`Copies.retry`).
        """

        def on_event(event: Event) -> None:
            if event.kind is EventKind.DONE and isinstance(event.key, str):
                data = self._bytes.pop(event.key, None)
                if data is not None and event.state is State.SENT:
                    raw = unstuffed(data)
                    if not self.report.provider_files:  # set by the thread (auto)
                        # A spool that cannot be written (a full disk) must not stop the send:
                        # the thread tries again, and says why the copy is not saved.
                        with contextlib.suppress(OSError):
                            write_private(self.layout.sent_copy(event.key), raw, durable=False)
                    self._queue.put((event.key, raw))
            if progress is not None:
                progress(event)

        return on_event

    def close(self) -> CopyReport:
        """Wait for the copies queued so far, then stop the thread; what they came to."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self.report

    def _run(self) -> None:
        copies: Copies | None = None
        try:
            with Ledger.for_campaign(self.layout) as log:
                copies = Copies(self.settings, self.layout, log, self.opener)
                self.report = copies.report
                copies.retry()
                while (item := self._queue.get()) is not None:
                    copies.add(*item)
        except Exception as err:  # the log itself failed: nothing more to copy in this run
            self.report.errors.append(_reason(err))
            while self._queue.get() is not None:
                self.report.failed += 1
        finally:
            if copies is not None:
                copies.close()


def retry_copies(settings: Settings, layout: Layout, log: Ledger, box: Box) -> CopyReport:
    """`inbox`: save the copies earlier runs left pending or failed, with the open mailbox."""
    copies = Copies(settings, layout, log, lambda: box, owned=False)
    copies.retry()
    return copies.report

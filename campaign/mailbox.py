"""The sender's mailbox (`mailbox:` in settings.yaml) → the messages that arrived since a position.

Two kinds, one interface (`Box`): an IMAP account read with imapclient, or a local Maildir (the
embedded default, where `campaign sink` files its bounces). Reading is read-only: IMAP folders are
opened with EXAMINE and read with BODY.PEEK, so not even the \\Seen flag changes; a Maildir's files
are only opened for reading. The one write is `append` (a copy in Sent, `save_sent`).

`arrivals` reads cheaply first: for every new message, the few headers `campaign.bounces.triage`
needs (BODY.PEEK[HEADER.FIELDS ...]); `fetch` then reads whole only the messages that need it
(bounces). BODYSTRUCTURE is not asked for every message: Dovecot parses each message whole to
answer it, which made the first scan as slow as fetching everything (docs/mailbox.md). A position is
UIDVALIDITY and the last UID read (IMAP), or a high-water file time and the names at it (Maildir,
which has no UIDs): the next scan reads only what came after.
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import time
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from campaign.bounces import TRIAGE_HEADERS
from campaign.errors import (
    DeliveryError,
    Place,
    ServerSettingsError,
    SettingsError,
    unknown_host,
)
from campaign.i18n import _, quoted
from campaign.ledger import ScanPosition
from campaign.settings import Imap, Mailbox, Settings

FETCH_CHUNK = 500  # UIDs per FETCH command: long enough to amortise, short enough for a line
HEADER_CHUNK = 2000  # UIDs per FETCH of triage headers (a range: the command stays short)
_FETCH_UID = re.compile(rb"\(.*\bUID (\d+)")
MAILDIR_MARGIN_NS = 5_000_000_000  # files this close to the high-water mark are re-listed


@dataclass(frozen=True)
class Arrival:
    """A message that arrived in a folder: its id there, its triage headers, and its size."""

    uid: int | str  # IMAP UID, or the Maildir file's unique name
    headers: bytes
    size: int
    report: bool = False  # BODYSTRUCTURE says multipart/report
    received: float | None = None  # IMAP INTERNALDATE or the file's time


class Box(Protocol):
    kind: str

    def sent_folder(self) -> str | None: ...

    def arrivals(
        self, folder: str, position: ScanPosition | None
    ) -> tuple[list[Arrival], ScanPosition]: ...

    def fetch(
        self, folder: str, uids: Sequence[int | str], *, reports: Collection[int | str] = ()
    ) -> dict[int | str, bytes]: ...

    def find(self, folder: str, message_ids: Iterable[str]) -> set[str]: ...

    def append(self, folder: str, data: bytes) -> None: ...

    def close(self) -> None: ...


def open_mailbox(settings: Settings) -> Box:
    """Open the mailbox the settings name; a SettingsError when there is none."""
    config = settings.mailbox
    if config is None:
        raise SettingsError(
            _("no mailbox is configured"),
            place=Place(file=str(settings.path), key="mailbox"),
            hint=(
                _(
                    "add mailbox: with imap: {host: ..., username: ..., password_env: ...} or maildir: PATH"
                )
            ),
        )
    if config.maildir is not None:
        return MaildirBox(settings.resolve(config.maildir), config)
    assert config.imap is not None
    return ImapBox(config.imap, config)


# IMAP ---------------------------------------------------------------------------------------


class ImapBox:
    """An IMAP account, read-only except for APPEND to Sent."""

    kind = "imap"

    def __init__(self, imap: Imap, config: Mailbox) -> None:
        from imapclient import IMAPClient

        self.config = config
        password = imap.password()
        if password is not None and imap.security == "none" and not imap.is_loopback:
            raise ServerSettingsError(
                _("refusing to send the password for {username} unencrypted to {host}").format(
                    username=imap.username, host=imap.host
                ),
                place=Place(key="mailbox.imap.security"),
                hint=_("set mailbox.imap.security to tls or starttls"),
            )
        context = None
        if imap.security != "none":
            cafile = str(imap.cert_bundle) if imap.cert_bundle else None
            context = ssl.create_default_context(cafile=cafile)
        where = f"{imap.host}:{imap.real_port}"
        try:
            self.client = IMAPClient(
                imap.host,
                port=imap.real_port,
                ssl=imap.security == "tls",
                ssl_context=context,
                timeout=imap.timeout,
            )
            try:
                if imap.security == "starttls":
                    self.client.starttls(context)
                self._login(imap, password or "")
            except BaseException:
                with contextlib.suppress(Exception):
                    self.client.shutdown()  # a refused login leaves no connection open
                raise
        except ssl.SSLCertVerificationError as err:
            raise ServerSettingsError(
                _("the TLS certificate of {address} was rejected: {why}").format(
                    address=where, why=err.verify_message or err.reason
                ),
                place=Place(key="mailbox.imap.host"),
                hint=_("for a private certificate authority set mailbox.imap.cert_bundle"),
            ) from None
        except OSError as err:
            examples = "outlook.office365.com, ssl0.ovh.net"
            unknown = unknown_host(imap.host, "mailbox.imap.host", examples, err)
            if unknown is not None:
                raise unknown from None
            raise DeliveryError(
                _("cannot reach the mailbox at {address}: {error}").format(
                    address=where, error=err
                ),
                place=Place(key="mailbox.imap.host"),
                hint=_("check mailbox.imap.host, port and security"),
            ) from None
        except ServerSettingsError:
            raise
        except Exception as err:  # imapclient's LoginError, IMAP4.error...
            token = imap.auth != "auto"
            raise ServerSettingsError(
                _("{address} refused the login of {username}: {error}").format(
                    address=where, username=imap.username, error=err
                ),
                place=Place(
                    key="mailbox.imap.password_command" if token else "mailbox.imap.username"
                ),
                hint=_(
                    "the token printed by {password_command} may have expired or lack the IMAP permission: run it again (or re-authorise the account)"
                ).format(password_command=quoted(imap.password_command))
                if token
                else _("check mailbox.imap.username and the password"),
            ) from None
        self._selected: str | None = None

    def _login(self, imap: Imap, secret: str) -> None:
        """LOGIN with the password, or AUTHENTICATE with the OAuth2 token if the server offers it."""
        if imap.auth == "auto":
            self.client.login(imap.username, secret)
            return
        offered = sorted(
            c.decode("ascii", "replace")[5:].upper()
            for c in self.client.capabilities()
            if c.upper().startswith(b"AUTH=")
        )
        if imap.auth.upper() not in offered:
            raise ServerSettingsError(
                _("{address} does not offer AUTH {mechanism} (it offers {mechanisms})").format(
                    address=f"{imap.host}:{imap.real_port}",
                    mechanism=imap.auth.upper(),
                    mechanisms=" ".join(offered) or "-",
                ),
                place=Place(key="mailbox.imap.auth"),
                hint=_(
                    "set mailbox.imap.auth to one of the mechanisms offered (or auto for a password)"
                ),
            )
        if imap.auth == "xoauth2":
            self.client.oauth2_login(imap.username, secret)
        else:
            self.client.oauthbearer_login(imap.username, secret)

    def sent_folder(self) -> str | None:
        if self.config.folders.sent:
            return self.config.folders.sent
        from imapclient.imapclient import SENT

        found = self.client.find_special_folder(SENT)  # RFC 6154 \Sent, then usual names
        return str(found) if found else None

    def _examine(self, folder: str) -> dict[bytes, Any]:
        info: dict[bytes, Any] = self.client.select_folder(folder, readonly=True)
        self._selected = folder
        return info

    def arrivals(
        self, folder: str, position: ScanPosition | None
    ) -> tuple[list[Arrival], ScanPosition]:
        info = self._examine(folder)
        validity = int(info.get(b"UIDVALIDITY", 0))
        last = position.last_uid if position and position.uidvalidity == validity else 0
        ranges = self._new_ranges(info, last)
        # Only the triage headers: not BODYSTRUCTURE (Dovecot then parses each message whole,
        # as slow as fetching them all), not INTERNALDATE (imapclient's date parsing alone cost
        # as much as the fetch). And read with imaplib, which imapclient runs on: imapclient's
        # parser of 10,000 FETCH responses took 3 times what the server took (docs/mailbox.md).
        wanted = f"(BODY.PEEK[HEADER.FIELDS ({' '.join(TRIAGE_HEADERS)})])"
        found: list[Arrival] = []
        imap = self.client._imap
        for first, end in ranges:
            # imapclient sets imaplib's debug level to 5, which logs every line read (at DEBUG,
            # filtered out later): 20,000 calls for 10,000 messages. Not for this one command.
            level, imap.debug = imap.debug, 0
            try:
                status, data = imap.uid("FETCH", f"{first}:{end}", wanted)
            finally:
                imap.debug = level
            if status != "OK":
                raise DeliveryError(
                    _("the mailbox refused to list {folder}: {reply}").format(
                        folder=folder, reply=repr(data)
                    )[:300],
                    place=Place(key="mailbox.folders.inbox"),
                )
            headers = _fetched_headers(data)
            # `UID n:m` also returns the last message when its UID is below n: filter it out.
            found += [Arrival(u, headers[u], 0) for u in sorted(headers) if first <= u <= end]
        top = max([last, *(int(a.uid) for a in found)])
        return found, ScanPosition(validity, top)

    def _new_ranges(self, info: dict[bytes, Any], last: int) -> list[tuple[int, int]]:
        """UID ranges that cover every message after `last`, HEADER_CHUNK UIDs or messages each.

        From UIDNEXT when the UIDs are dense (no SEARCH: one round trip and 10,000 numbers fewer);
        a message that arrives meanwhile gets a UID past it and is read by the next scan.
        """
        following = int(info.get(b"UIDNEXT", 0))
        exists = int(info.get(b"EXISTS", 0))
        if following > last and following - last <= 2 * exists + HEADER_CHUNK:
            return [
                (start, min(start + HEADER_CHUNK, following) - 1)
                for start in range(last + 1, following, HEADER_CHUNK)
            ]
        uids = sorted(int(u) for u in self.client.search(["UID", f"{last + 1}:*"]))
        uids = [u for u in uids if u > last]
        return [
            (uids[i], uids[min(i + HEADER_CHUNK, len(uids)) - 1])
            for i in range(0, len(uids), HEADER_CHUNK)
        ]

    def fetch(
        self, folder: str, uids: Sequence[int | str], *, reports: Collection[int | str] = ()
    ) -> dict[int | str, bytes]:
        """The messages `uids`, whole; of those in `reports` (multipart/report), only the parts a
        report's classification reads, rebuilt into one message (see `_REPORT_PARTS`)."""
        if self._selected != folder:
            self._examine(folder)
        result: dict[int | str, bytes] = {}
        partial = sorted(int(u) for u in uids if u in reports)
        for start in range(0, len(partial), FETCH_CHUNK):
            chunk = partial[start : start + FETCH_CHUNK]
            for uid, data in self.client.fetch(chunk, list(_REPORT_PARTS)).items():
                rebuilt = _rebuilt_report(data)
                if rebuilt is not None:
                    result[int(uid)] = rebuilt
        numbers = [int(u) for u in uids if int(u) not in result]
        for start in range(0, len(numbers), FETCH_CHUNK):
            chunk = numbers[start : start + FETCH_CHUNK]
            for uid, data in self.client.fetch(chunk, ["BODY.PEEK[]"]).items():
                result[int(uid)] = bytes(data.get(b"BODY[]", b""))
        return result

    def find(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        """The Message-IDs (without <>) of `message_ids` that `folder` holds."""
        self._examine(folder)
        found: set[str] = set()
        for mid in message_ids:
            if self.client.search(["HEADER", "Message-ID", f"<{mid}>"]):
                found.add(mid)
        return found

    def append(self, folder: str, data: bytes) -> None:
        from imapclient import SEEN

        self.client.append(folder, data, flags=(SEEN,))

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # already gone: nothing to close cleanly
            self.client.shutdown()


# A delivery status notification (RFC 3464) is a multipart/report of three parts: the text for a
# person, the message/delivery-status fields, the returned message or its headers. Classifying it
# needs the fields and the returned headers, not the returned letter and its PDF: those parts are
# fetched with a cap, which cut the bytes read for a bounce with an attachment by ten.
_REPORT_PARTS = (
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[1]<0.8192>",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[2]<0.65536>",
    "BODY.PEEK[3.MIME]",
    "BODY.PEEK[3]<0.16384>",
)


def _rebuilt_report(data: dict[bytes, Any]) -> bytes | None:
    """One message from the parts `_REPORT_PARTS` fetched, or None to fetch it whole instead."""
    from campaign.bounces import parse_headers

    def part(name: str) -> bytes:
        value = data.get(name.encode())
        return bytes(value) if isinstance(value, bytes) else b""

    top = part("BODY[HEADER]")
    boundary = parse_headers(top).get_boundary()
    if not top or not boundary:
        return None
    out = [top]
    for n in (1, 2, 3):
        mime, body = part(f"BODY[{n}.MIME]"), data.get(f"BODY[{n}]<0>".encode())
        if not mime.strip() or not isinstance(body, bytes):
            continue
        out += [b"--", boundary.encode(), b"\r\n", mime, body, b"\r\n"]
    out += [b"--", boundary.encode(), b"--\r\n"]
    return b"".join(out)


def _fetched_headers(data: list[Any]) -> dict[int, bytes]:
    """UID → header bytes from imaplib's answer to `UID FETCH (BODY.PEEK[HEADER.FIELDS ...])`.

    Each message comes as a (b'7 (UID 12 BODY[HEADER.FIELDS (...)] {310}', literal) pair, then
    b')'; a message with none of the fields may come as a quoted "" instead of a literal.
    """
    found: dict[int, bytes] = {}
    for item in data:
        meta, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, b"")
        if not isinstance(meta, bytes) or b"BODY[" not in meta:
            continue  # the closing b')' of a literal, or an unsolicited FETCH of flags
        match = _FETCH_UID.search(meta)
        if match is not None:
            found[int(match.group(1))] = bytes(literal or b"")
    return found


# Maildir ------------------------------------------------------------------------------------


class MaildirBox:
    """A Maildir++ folder tree: `INBOX` is the top folder, `.Sent` and others are subfolders."""

    kind = "maildir"

    def __init__(self, root: Path, config: Mailbox) -> None:
        self.root = root
        self.config = config

    def _folder(self, folder: str) -> Path:
        if folder.upper() == "INBOX":
            return self.root
        return self.root / (folder if folder.startswith(".") else "." + folder)

    def sent_folder(self) -> str | None:
        return self.config.folders.sent or ".Sent"

    def _files(self, folder: str) -> list[tuple[int, str, Path]]:
        base = self._folder(folder)
        found: list[tuple[int, str, Path]] = []
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(base / sub))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    mtime = entry.stat().st_mtime_ns
                except FileNotFoundError:
                    continue  # moved from new/ to cur/ meanwhile: seen under cur/
                found.append((mtime, entry.name.split(":", 1)[0], Path(entry.path)))
        found.sort()
        return found

    def arrivals(
        self, folder: str, position: ScanPosition | None
    ) -> tuple[list[Arrival], ScanPosition]:
        base = self._folder(folder)
        validity = zlib.crc32(str(base.resolve()).encode())  # another folder, another validity
        if position is not None and position.uidvalidity != validity:
            position = None
        mark = position.last_uid if position else -1
        seen = position.recent if position else frozenset()
        found: list[Arrival] = []
        newest = mark
        for mtime, name, path in self._files(folder):
            # A file a little older than the mark but not seen was renamed in after the last
            # scan (written before it): it is new. Older than the margin, it was read before.
            if mtime < mark - MAILDIR_MARGIN_NS or name in seen:
                continue
            try:
                headers, size = _head(path)
            except FileNotFoundError:
                continue
            found.append(Arrival(name, headers, size, received=mtime / 1e9))
            newest = max(newest, mtime)
        # Remember every name close to the new mark: those are the ones the next scan re-lists.
        recent = frozenset(
            name for mtime, name, _ in self._files(folder) if mtime >= newest - MAILDIR_MARGIN_NS
        )
        return found, ScanPosition(validity, newest, recent)

    def fetch(
        self, folder: str, uids: Sequence[int | str], *, reports: Collection[int | str] = ()
    ) -> dict[int | str, bytes]:
        wanted = {str(u) for u in uids}
        result: dict[int | str, bytes] = {}
        for _stamp, name, path in self._files(folder):
            if name in wanted:
                result[name] = path.read_bytes()
        return result

    def find(self, folder: str, message_ids: Iterable[str]) -> set[str]:
        from campaign.bounces import parse_headers

        wanted = set(message_ids)
        found: set[str] = set()
        for _stamp, _name, path in self._files(folder):
            headers = parse_headers(_head(path)[0])
            mid = str(headers.get("Message-ID", "")).strip().strip("<>")
            if mid in wanted:
                found.add(mid)
        return found

    def append(self, folder: str, data: bytes) -> None:
        """File a copy the Maildir way (tmp/, then cur/ with the Seen flag)."""
        base = self._folder(folder)
        for sub in ("tmp", "new", "cur"):
            (base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time():.6f}.P{os.getpid()}R{os.urandom(4).hex()}.campaign"
        temporary = base / "tmp" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.replace(b"\r\n", b"\n"))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, base / "cur" / f"{name}:2,S")

    def close(self) -> None:
        return None


def _head(path: Path) -> tuple[bytes, int]:
    """The header block of a message file (up to the first blank line) and the file's size."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = b""
        while True:
            chunk = handle.read(16384)
            if not chunk:
                return head, size
            head += chunk
            for mark in (b"\n\n", b"\r\n\r\n"):
                end = head.find(mark)
                if end >= 0:
                    return head[: end + len(mark)], size

"""One message of the mailbox → what it says about a campaign message: its `Verdict`.

Takes the message's headers (enough to triage: `triage`) or the whole message (`classify`) and
gives its kind, the campaign references it carries and, for a delivery report, one `Report` per
recipient with the remote server's diagnostic:

- a delivery status notification (RFC 3464: `multipart/report; report-type=delivery-status`),
  per recipient `Action: failed` (a bounce when the status is 5.x.x), `delayed`, `delivered` or
  `relayed`;
- a non-standard bounce (qmail, Exim, old Exchange...), recognised by GNU Mailman's detectors
  (flufl.bounce), whose diagnostic is the first line that reads like an SMTP refusal;
- an auto-reply: RFC 3834 `Auto-Submitted: auto-replied`, `X-Autoreply`, `X-Autorespond`,
  `Precedence: auto_reply` (or bulk/junk on an answer), Exchange's out-of-office
  (`X-Auto-Response-Suppress`, "Automatic reply:"), "Réponse automatique", "Absence";
- a reply from a person: anything else that answers a campaign message.

The references are every Message-ID the message names (In-Reply-To, References, the headers of
the returned `message/rfc822` or `text/rfc822-headers` part, or quoted in the text of a bounce)
and the DSN's `Original-Envelope-Id` (RFC 3461 ENVID); `campaign.inbox` keeps those of the
campaign. Nothing here reads the text of a reply beyond its headers: the tool keeps the fact.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from enum import StrEnum
from urllib.parse import parse_qs, unquote, urlsplit

from flufl.bounce import all_failures


class Kind(StrEnum):
    BOUNCE = "bounce"  # a permanent failure
    DELAYED = "delayed"  # a delay notice: still trying, not a bounce
    DELIVERED = "delivered"  # a delivery (or relay) report
    AUTO_REPLY = "auto_reply"  # an out-of-office or other RFC 3834 answer
    REPLY = "reply"  # a person answered
    OTHER = "other"  # says nothing about a campaign message


# The headers `triage` needs: what the IMAP scan fetches first for every message.
TRIAGE_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Content-Type",
    "Return-Path",
    "Auto-Submitted",
    "X-Autoreply",
    "X-Autorespond",
    "X-Auto-Response-Suppress",
    "Precedence",
    "X-Failed-Recipients",
)

_MESSAGE_ID = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")
_ADDRESS_TYPE = re.compile(r"^\s*[A-Za-z0-9-]+\s*;\s*")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REFUSAL = re.compile(r"\b5\d\d[ -]|\b5\.\d{1,3}\.\d{1,3}\b")
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer|mdaemon)@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|delivery (has )?failed|failure notice"
    r"|returned mail|mail delivery failed|delivery failure|non remis|non distribu"
    r"|échec de (la )?(remise|distribution)|could not be delivered|rejected:",
    re.I,
)
# Subject prefixes of out-of-office replies, in the languages the recipients write.
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?reply|autoreply|auto:|out of (the )?office"
    r"|réponse automatique|reponse automatique|absence|absent|abwesenheit|respuesta automática"
    r"|risposta automatica|vacation|congés)",
    re.I,
)


# Every word of the headers that `triage` (and the regular expressions above) can react to, as
# bytes: a header block with none of them, no RFC 2047 encoded word ("=?") and no recipient in
# its From is ordinary mail, skipped without parsing (most of a mailbox; tests check this is a
# superset of `triage` on the corpus).
_SIGNS = re.compile(  # on the lower-cased bytes: 8 times faster than re.IGNORECASE here
    rb"report|x-failed|daemon|postmaster|mailer|auto|precedence|out of|absen|abwesenheit"
    rb"|vacation|cong|deliver|distribu|failure|failed|returned|non remis|chec|rejected"
    rb"|in-reply-to|references|=\?"
)
_FROM_FIELD = re.compile(rb"(?:^|\n)from:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")
_ADDRESS_BYTES = re.compile(rb"[^\s<>\"',;:()]+@[^\s<>\"',;:()]+")


def worth_reading(headers: bytes, senders: Container[str]) -> bool:
    """Whether a message's triage headers may say anything about a campaign message: a sign
    `triage` reacts to, or a From among `senders` (the recipients, whose answers are replies)."""
    low = headers.lower()
    if _SIGNS.search(low):
        return True
    field = _FROM_FIELD.search(low)
    if field is None:
        return False
    return any(a.decode("ascii", "replace") in senders for a in _ADDRESS_BYTES.findall(field[1]))


@dataclass(frozen=True)
class Report:
    """One recipient of a delivery status notification (RFC 3464 §2.3)."""

    recipient: str  # Original-Recipient if given, else Final-Recipient: the address we sent to
    action: str  # failed, delayed, delivered, relayed, expanded
    status: str  # e.g. 5.1.1
    diagnostic: str  # the remote server's words (Diagnostic-Code), or the status


@dataclass(frozen=True)
class Verdict:
    """What one message of the mailbox says."""

    kind: Kind
    how: str  # rfc3464, flufl.bounce, rfc3834, header, subject, reply, none
    sender: str = ""  # the From address, lower-cased
    date: float | None = None
    message_ids: tuple[str, ...] = ()  # every Message-ID it names, without <>
    envids: tuple[str, ...] = ()
    reports: tuple[Report, ...] = ()
    addresses: tuple[str, ...] = ()  # failed addresses a non-standard bounce names
    arrived: float | None = None  # the DSN's Arrival-Date: when the reporting MTA got the message

    @property
    def reason(self) -> str:
        """The diagnostic of the first failed recipient, for the bounce list."""
        for report in self.reports:
            if report.action == "failed":
                return report.diagnostic
        return self.reports[0].diagnostic if self.reports else ""


def parse_headers(data: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(data)


def parse_message(data: bytes) -> Message:
    return BytesParser(policy=compat32).parsebytes(data)


def header_text(message: Message, name: str) -> str:
    """A header decoded (RFC 2047) to text, "" if absent or undecodable."""
    value = message.get(name)
    if value is None:
        return ""
    if isinstance(value, Header):
        # Raw 8-bit bytes (RFC 6532 UTF-8 headers, or a client that does not encode): the
        # parser keeps them as "unknown-8bit", which str() turns into replacement characters.
        raw = b"".join(
            part if isinstance(part, bytes) else part.encode("ascii", "replace")
            for part, _charset in decode_header(value)
        )
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("cp1252", errors="replace")
    try:
        return " ".join(str(make_header(decode_header(str(value)))).split())
    except (UnicodeError, LookupError, ValueError):
        return " ".join(str(value).split())


def references(message: Message) -> list[str]:
    """The Message-IDs of In-Reply-To and References, without <>, in order."""
    found: list[str] = []
    for name in ("In-Reply-To", "References"):
        for value in message.get_all(name, []):
            found += _MESSAGE_ID.findall(str(value))
    return found


# What a mail client writes when its "Unsubscribe" button follows a `mailto:` List-Unsubscribe
# without a subject of its own (RFC 2369 §3.2 lets the URI name one: then it must be that one).
_UNSUBSCRIBE_SUBJECT = re.compile(
    r"^\s*(unsubscribe|d[ée]sinscri(ption|re)|d[ée]sabonne(ment|r)|se d[ée]sabonner"
    r"|se d[ée]sinscrire|stop)\s*$",
    re.I,
)


def unsubscribe_target(uri: str | None) -> tuple[str, str] | None:
    """The address and subject a `mailto:` List-Unsubscribe asks for (address lower-cased,
    subject folded as `_folded`, "" when it names none); None for an `https:` one or none."""
    if not uri or not uri.lower().startswith("mailto:"):
        return None
    parts = urlsplit(uri)
    address = unquote(parts.path).strip().lower()
    fields = {key.lower(): values for key, values in parse_qs(parts.query).items()}
    subject = next(iter(fields.get("subject", [])), "")
    return address, _folded(subject)


def asks_to_unsubscribe(message: Message, target: tuple[str, str]) -> bool:
    """Whether `message` is the request a List-Unsubscribe `mailto:` makes: sent to its address,
    with its subject (or, when it names none, a subject that says "unsubscribe")."""
    address, subject = target
    to = {found.lower() for _name, found in getaddresses([header_text(message, "To")])}
    if address not in to:
        return False
    said = _folded(header_text(message, "Subject"))
    return said == subject if subject else bool(_UNSUBSCRIBE_SUBJECT.match(said))


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def sender_of(message: Message) -> str:
    return parseaddr(header_text(message, "From"))[1].lower()


def date_of(message: Message) -> float | None:
    return _date(message.get("Date"))


def _date(value: object) -> float | None:
    """An RFC 5322 date (a Date header, a DSN's Arrival-Date) as a timestamp, or None."""
    if value is None:
        return None
    try:
        return parsedate_to_datetime(str(value)).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def auto_reply_sign(message: Message) -> str | None:
    """Why the headers say this is an automatic answer (RFC 3834 and the usual others), or None."""
    submitted = header_text(message, "Auto-Submitted").lower()
    if submitted.startswith("auto-replied"):
        return "Auto-Submitted: auto-replied"
    if message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None:
        return "X-Autoreply"
    precedence = header_text(message, "Precedence").lower()
    if precedence == "auto_reply":
        return "Precedence: auto_reply"
    suppress = header_text(message, "X-Auto-Response-Suppress").lower()
    subject = header_text(message, "Subject")
    if suppress and _AUTO_SUBJECT.match(subject):
        return "Exchange out-of-office"
    if _AUTO_SUBJECT.match(subject):
        return "subject: " + subject[:40]
    if precedence in {"bulk", "junk"} and references(message):
        return f"Precedence: {precedence}"  # vacation(1) answers this way
    if submitted.startswith("auto-notified"):
        return "Auto-Submitted: auto-notified"
    return None


def bounce_sign(message: Message) -> str | None:
    """Why the headers say this may be a bounce or a delivery report, or None."""
    content_type = message.get_content_type()
    if content_type == "multipart/report":
        return "multipart/report"
    if message.get("X-Failed-Recipients") is not None:
        return "X-Failed-Recipients"
    sender = sender_of(message)
    if _DAEMON.match(sender):
        return "From: " + sender
    if str(message.get("Return-Path", "")).strip() == "<>" and _BOUNCE_SUBJECT.search(
        header_text(message, "Subject")
    ):
        return "null sender"
    if _BOUNCE_SUBJECT.search(header_text(message, "Subject")) and not references(message):
        return "subject"
    if header_text(message, "Auto-Submitted").lower().startswith("auto-generated"):
        return "Auto-Submitted: auto-generated"
    return None


def _strong_bounce_sign(message: Message) -> bool:
    """A report's format, an MTA's header or a mail daemon's address: no person writes these."""
    return (
        message.get_content_type() == "multipart/report"
        or message.get("X-Failed-Recipients") is not None
        or bool(_DAEMON.match(sender_of(message)))
    )


def triage(headers: Message) -> Kind | None:
    """From the headers alone: BOUNCE if the whole message must be read to know, else the kind
    the headers already tell (AUTO_REPLY, REPLY), or None when it answers nothing (no reference).

    An auto-reply is recognised before a bounce: some out-of-office replies come from a null
    sender, and one counted as a bounce would put a present director on the suppression list.
    """
    if _strong_bounce_sign(headers):
        return Kind.BOUNCE  # Postfix and Exim mark their bounces Auto-Submitted: auto-replied too
    if auto_reply_sign(headers) is not None:
        return Kind.AUTO_REPLY
    if bounce_sign(headers) is not None:
        return Kind.BOUNCE
    if references(headers):
        return Kind.REPLY
    return None


def classify(message: Message) -> Verdict:
    """Classify a whole message."""
    sender, date = sender_of(message), date_of(message)
    refs = references(message)
    if message.get_content_type() == "multipart/report":
        verdict = _dsn(message, sender, date, refs)
        if verdict is not None:
            return verdict
    if _strong_bounce_sign(message):
        verdict = _nonstandard(message, sender, date, refs)
        if verdict is not None:
            return verdict
    auto = auto_reply_sign(message)
    if auto is not None:
        return Verdict(Kind.AUTO_REPLY, auto, sender, date, tuple(_unique(refs)))
    if bounce_sign(message) is not None:
        verdict = _nonstandard(message, sender, date, refs)
        if verdict is not None:
            return verdict
    if refs:
        return Verdict(Kind.REPLY, "reply", sender, date, tuple(_unique(refs)))
    return Verdict(Kind.OTHER, "none", sender, date)


def _dsn(message: Message, sender: str, date: float | None, refs: list[str]) -> Verdict | None:
    """An RFC 3464 report: its per-recipient fields and the returned message's Message-ID."""
    reports: list[Report] = []
    envids: list[str] = []
    returned: list[str] = []
    arrived: float | None = None
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/delivery-status", "message/global-delivery-status"):
            blocks = _status_blocks(part)
            if blocks:
                envid = str(blocks[0].get("Original-Envelope-Id", "")).strip()
                if envid:
                    envids.append(envid)
                arrived = arrived or _date(blocks[0].get("Arrival-Date"))
            for block in blocks[1:] or blocks:
                report = _report(block)
                if report is not None:
                    reports.append(report)
        elif content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                returned += _MESSAGE_ID.findall(str(inner.get("Message-ID", "")))
                returned += references(inner)
        elif content_type in ("text/rfc822-headers", "message/global-headers"):
            headers = HeaderParser(policy=compat32).parsestr(_text(part))
            returned += _MESSAGE_ID.findall(str(headers.get("Message-ID", "")))
    if not reports:
        return None
    actions = {r.action for r in reports}
    if "failed" in actions:
        kind = Kind.BOUNCE
    elif "delayed" in actions:
        kind = Kind.DELAYED
    elif actions & {"delivered", "relayed", "expanded"}:
        kind = Kind.DELIVERED
    else:
        return None
    ids = _unique([*returned, *refs])
    return Verdict(
        kind, "rfc3464", sender, date, tuple(ids), tuple(envids), tuple(reports), arrived=arrived
    )


def _status_blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part: per-message first, then recipients."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # Some MTAs write the part base64-encoded: the email package then leaves it as text.
    text = _text(part)
    return [HeaderParser(policy=compat32).parsestr(group) for group in re.split(r"\n\s*\n", text)]


def _report(block: Message) -> Report | None:
    action = str(block.get("Action", "")).strip().lower()
    if not action:
        return None
    recipient = _address(block.get("Original-Recipient")) or _address(block.get("Final-Recipient"))
    status = str(block.get("Status", "")).strip()
    found = _STATUS.search(status)
    status = found.group(0) if found else status
    if action == "failed" and status.startswith("4"):
        action = "delayed"  # a "failed" with a transient status is not a permanent failure
    diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
    diagnostic = _ADDRESS_TYPE.sub("", diagnostic) or f"status {status}"
    if status and status not in diagnostic:
        diagnostic = f"{status} {diagnostic}"  # Postfix's own failures: "X-Postfix; User unknown"
    return Report(recipient, action, status, diagnostic[:500])


def _address(value: object) -> str:
    if value is None:
        return ""
    text = _ADDRESS_TYPE.sub("", " ".join(str(value).split()))
    return text.strip().strip("<>").lower()


def _nonstandard(
    message: Message, sender: str, date: float | None, refs: list[str]
) -> Verdict | None:
    """A bounce in a vendor's own format: flufl.bounce names the addresses, the text the ID."""
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector choking on a malformed message: treat it as unrecognised
        temporary, permanent = frozenset(), frozenset()
    text = "\n".join(_text(part) for part in message.walk() if not part.is_multipart())
    quoted = _MESSAGE_ID.findall(text)
    ids = tuple(_unique([*quoted, *refs]))
    diagnostic = _diagnostic(text)
    if permanent:
        addresses = tuple(sorted(a.decode("ascii", "replace").lower() for a in permanent))
        reports = tuple(
            Report(a, "failed", _status_in(diagnostic, "5"), diagnostic) for a in addresses
        )
        return Verdict(Kind.BOUNCE, "flufl.bounce", sender, date, ids, (), reports, addresses)
    if temporary:
        addresses = tuple(sorted(a.decode("ascii", "replace").lower() for a in temporary))
        reports = tuple(
            Report(a, "delayed", _status_in(diagnostic, "4"), diagnostic) for a in addresses
        )
        return Verdict(Kind.DELAYED, "flufl.bounce", sender, date, ids, (), reports, addresses)
    if ids and _SMTP_REFUSAL.search(text):
        # Unknown format, but it quotes our message and an SMTP refusal: a bounce.
        return Verdict(
            Kind.BOUNCE,
            "quoted",
            sender,
            date,
            ids,
            (),
            (Report("", "failed", "5.0.0", diagnostic),),
        )
    return None


def _diagnostic(text: str) -> str:
    for line in text.splitlines():
        line = " ".join(line.split())
        if _SMTP_REFUSAL.search(line) and len(line) > 8:
            return line[:500]
    return "undeliverable (no diagnostic given)"


def _status_in(text: str, klass: str) -> str:
    found = _STATUS.search(text)
    return found.group(0) if found and found.group(1) == klass else f"{klass}.0.0"


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")
    raw = part.get_payload()
    return raw if isinstance(raw, str) else ""


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def addresses_of(message: Message, name: str) -> list[str]:
    return [a.lower() for _, a in getaddresses([str(v) for v in message.get_all(name, [])]) if a]

"""Recipient + merged letter → `EmailMessage`, ready for SMTP.

Each message is multipart/alternative (plain text and HTML) with the recipient's PDF letter and the
campaign's shared attachments. Addresses are built with `email.headerregistry.Address` from validated
parts, never by formatting strings, and every value that reaches a header is stripped of control
characters, so a spreadsheet cell can neither add a recipient nor inject a header. The Message-ID is
derived from the campaign and the recipient's address: it is the same on every retry, which lets the
receiving side recognise a resent copy.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime
from pathlib import Path

from campaign.errors import InputError, Place
from campaign.inputs import Inputs
from campaign.recipients import Recipient

# C0 and C1 controls, DEL and the Unicode line separators: none may reach a header.
_HEADER_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FILENAME_FORBIDDEN = re.compile(r'[\\/:*?"<>|]')
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Attachment:
    """A file attached to a message: its name as the recipient sees it, and its bytes."""

    filename: str
    data: bytes
    maintype: str = "application"
    subtype: str = "pdf"


def header_text(value: str) -> str:
    """Make `value` safe for a header: control characters become spaces, whitespace collapses."""
    return " ".join(_HEADER_CONTROL.sub(" ", value).split())


def make_address(display_name: str, email: str) -> Address:
    """Build an address from a display name and a validated address, never by parsing a string."""
    username, _, domain = email.rpartition("@")
    if not username or not domain:
        raise InputError(f"not an email address: {email!r}")
    try:
        domain.encode("ascii")
    except UnicodeEncodeError:
        domain = domain.encode("idna").decode("ascii")
    return Address(display_name=header_text(display_name), username=username, domain=domain)


def message_id(campaign: str, email: str, domain: str) -> str:
    """The Message-ID of `campaign`'s message to `email`: the same on every attempt."""
    digest = hashlib.sha256(f"{campaign}\0{email.lower()}".encode()).hexdigest()[:32]
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", campaign).strip("-") or "campaign"
    return f"<{digest}.{slug}@{domain}>"


def test_message_id(domain: str) -> str:
    """A fresh Message-ID for a test send, so a real send later is never taken for a duplicate."""
    return f"<test.{uuid.uuid4().hex}@{domain}>"


def attachment_name(inputs: Inputs, recipient: Recipient) -> str:
    """The PDF's file name as the recipient sees it, e.g. `lettre-hopitaux – Élise Noël.pdf`."""
    stem = inputs.letter.path.stem if inputs.letter is not None else "lettre"
    name = inputs.to_name_for(recipient)
    base = f"{stem} – {name}" if name else stem
    return header_text(_FILENAME_FORBIDDEN.sub(" ", base))[:150] + ".pdf"


def load_attachments(inputs: Inputs) -> list[Attachment]:
    """Read the campaign's shared attachments once, for every message."""
    campaign = inputs.campaign
    found: list[Attachment] = []
    for path in campaign.config.attachments:
        target = campaign.path(path)
        try:
            data = target.read_bytes()
        except OSError as err:
            raise InputError(
                f"cannot read the attachment: {err.strerror}",
                place=Place(file=campaign.settings.display(path)),
            ) from None
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        found.append(Attachment(header_text(Path(path).name), data, maintype, subtype))
    return found


def compose_message(
    inputs: Inputs,
    recipient: Recipient,
    *,
    pdf: bytes | None = None,
    attachments: list[Attachment] | None = None,
    test_to: str | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """Compose one recipient's email: text + HTML, their PDF letter, the shared attachments."""
    campaign = inputs.campaign
    sender = campaign.settings.sender
    merged_recipient = inputs.merged(recipient)
    merged = merged_recipient.email
    if merged is None:
        raise InputError("the campaign has no letter to send", place=Place(key="letter"))
    subject = header_text(merged_recipient.subject)
    domain = sender.email.rpartition("@")[2]

    message = EmailMessage(policy=SMTP)
    message["From"] = make_address(sender.name, sender.email)
    if test_to is not None:
        message["To"] = make_address("", test_to)
        message["Subject"] = TEST_PREFIX + subject
        message["Message-ID"] = test_message_id(domain)
    else:
        message["To"] = make_address(merged_recipient.to_name, recipient.email)
        message["Subject"] = subject
        message["Message-ID"] = message_id(campaign.name, recipient.email, domain)
    if sender.reply_to:
        message["Reply-To"] = make_address(sender.name, sender.reply_to)
    message["Date"] = format_datetime(now or datetime.now().astimezone())
    unsubscribe = campaign.config.list_unsubscribe
    if unsubscribe:
        target = header_text(unsubscribe).strip("<>")
        message["List-Unsubscribe"] = f"<{target}>"
        if target.startswith("https:"):
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    # quoted-printable keeps the message 7-bit: no server needs 8BITMIME to carry it
    message.set_content(merged.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(
        _html_document(merged.html, subject),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    if pdf is not None:
        message.add_attachment(
            pdf, maintype="application", subtype="pdf", filename=attachment_name(inputs, recipient)
        )
    for item in attachments or []:
        message.add_attachment(
            item.data, maintype=item.maintype, subtype=item.subtype, filename=item.filename
        )
    return message


def _html_document(body: str, title: str) -> str:
    if body.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        return body
    return (
        '<!DOCTYPE html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


def envelope(message: EmailMessage) -> tuple[str, str]:
    """The envelope sender and recipient of a composed message, from its own headers."""
    sender = message["From"].addresses[0].addr_spec
    recipient = message["To"].addresses[0].addr_spec
    return sender, recipient


def needs_smtputf8(address: str) -> bool:
    """Whether an address can only travel with SMTPUTF8 (RFC 6531): a non-ASCII local part."""
    return not address.rpartition("@")[0].isascii()


def envelope_address(address: str) -> str:
    """The address for MAIL FROM / RCPT TO: an international domain written in ASCII (IDNA)."""
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


def message_bytes(message: EmailMessage) -> bytes:
    """The message as a file: UTF-8 headers (RFC 6532) only when an address needs them."""
    utf8 = any(
        needs_smtputf8(a.addr_spec)
        for key in ("From", "To")
        if message[key] is not None
        for a in message[key].addresses
    )
    return message.as_bytes(policy=SMTPUTF8 if utf8 else SMTP)


def wire_bytes(message: EmailMessage) -> bytes:
    """The message as sent after DATA: CRLF lines, dot-stuffed, ending with the final dot."""
    raw = message_bytes(message)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return _DOT_AT_LINE_START.sub(b"..", raw) + b".\r\n"


def eml_name(recipient: Recipient) -> str:
    """The dry-run file of a recipient: `0007-jeanne.dupont-example.org.eml`."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", recipient.email.replace("@", "-"))
    return f"{recipient.row:04d}-{safe[:80]}.eml"

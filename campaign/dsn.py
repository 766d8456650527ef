"""`smtp.dsn` + a recipient's key → the RFC 3461 parameters of its MAIL and RCPT commands.

A server that advertises DSN in its EHLO answer is asked, per message, for the delivery reports the
organiser wants (`NOTIFY=`), to return only the headers (`RET=HDRS`: a bounce then does not carry
the whole letter and its PDF back), with the envelope id `ENVID=` carrying the recipient's key in
the log (the Message-ID's left part: the address's hash and the campaign) and the original
recipient `ORCPT=rfc822;ADDR`. The report that comes back names both (`Original-Envelope-Id`,
`Original-Recipient`), which `campaign.inbox` matches first. A server without DSN gets nothing
extra: RFC 3461 forbids the parameters there (most servers answer 555), and the run's report says
once that delivery reports were not available.

Both parameters are xtext (RFC 3461 §4): printable ASCII except `+` and `=`, the rest as `+XX`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from campaign.i18n import _

Setting = Literal["never", "failure", "success"]

# What each setting asks for (RFC 3461 §4.1): NEVER alone, or the events to be told about.
NOTIFY: dict[str, str] = {
    "never": "NEVER",
    "failure": "FAILURE,DELAY",
    "success": "SUCCESS,FAILURE,DELAY",
}

ENVID_MAX = 100  # RFC 3461 §4.4: a server may refuse a longer ENVID


class Extensions(Protocol):
    """What the dispatcher's SMTP client tells of the server's EHLO (aiosmtplib.SMTP)."""

    def supports_extension(self, extension: str, /) -> bool: ...


def xtext(value: str) -> str:
    """`value` in RFC 3461 xtext: `!`..`~` except `+` and `=` as they are, every other byte `+XX`."""
    out: list[str] = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (0x2B, 0x3D):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


def xtext_decode(value: str) -> str:
    """The text an xtext stands for (a DSN's Original-Envelope-Id is written as it was sent)."""
    raw = bytearray()
    i = 0
    while i < len(value):
        char = value[i]
        hexa = value[i + 1 : i + 3]
        if char == "+" and len(hexa) == 2 and all(c in "0123456789ABCDEFabcdef" for c in hexa):
            raw.append(int(hexa, 16))
            i += 3
            continue
        raw += char.encode("utf-8")
        i += 1
    return raw.decode("utf-8", "replace")


def envelope_id(message_id: str) -> str:
    """The ENVID of a campaign message: its Message-ID's left part, the recipient's key in the log
    (`<hash of the address>.<campaign>`), at most 100 characters."""
    return message_id.strip().strip("<>").split("@", 1)[0][:ENVID_MAX]


@dataclass
class DsnRequest:
    """The delivery reports a run asks for, and whether the server could be asked at all."""

    setting: Setting
    envid: Callable[[str | int], str]  # a job's key → its envelope id (not yet xtext)
    offered: bool = False  # a connection's server advertised DSN
    unavailable: bool = False  # a connection's server did not: nothing was asked there

    def options(
        self, client: Extensions, key: str | int, recipient: str
    ) -> tuple[list[str], list[str]]:
        """The MAIL and RCPT parameters for one message on `client`'s connection."""
        if not client.supports_extension("dsn"):
            self.unavailable = True
            return [], []
        self.offered = True
        mail = ["RET=HDRS", f"ENVID={xtext(self.envid(key))}"]
        rcpt = [f"NOTIFY={NOTIFY[self.setting]}"]
        if recipient.isascii():
            # An SMTPUTF8 address would need the utf-8 address type (RFC 6533): ORCPT is optional,
            # and the report's Final-Recipient names the address anyway.
            rcpt.append(f"ORCPT=rfc822;{xtext(recipient)}")
        return mail, rcpt

    @property
    def note(self) -> str | None:
        """What the run's report says once when a server could not be asked for reports."""
        if not self.unavailable:
            return None
        if self.offered:
            text = _(
                "the SMTP server does not offer DSN (RFC 3461): no delivery reports were "
                "requested on some connections"
            )
        else:
            text = _(
                "the SMTP server does not offer DSN (RFC 3461): no delivery reports were requested"
            )
        return text + " (smtp.dsn)"


def request_for(setting: Setting | None, envid: Callable[[str | int], str]) -> DsnRequest | None:
    """The run's request, or None when `smtp.dsn` is not set (the server's own defaults)."""
    return None if setting is None else DsnRequest(setting, envid)

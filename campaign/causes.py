"""A bounce's remote diagnostic → whose fault it is: the address's, or the campaign's.

A permanent failure report (`campaign.bounces`) says why the recipient's server refused the
message. Most say the address is wrong (no such user, no such domain, a mailbox disabled or
full): the address joins the suppression list. Some say the fault is the campaign's, the same
for every recipient of that server, and the address was fine: the sender's domain failed SPF,
DKIM or DMARC; the sending server is on a block list, has a poor reputation or no reverse DNS;
the message was taken for spam, or its content or size refused. Those must not cost the
director the letter: `campaign inbox` leaves the address off the suppression list and says what
to put right, and `campaign send --retry-bounced` sends to them again.

The enhanced status code decides where it settles the question (RFC 3463, RFC 7372 and the IANA
registry); otherwise the words of the big providers' refusals do, in English or in French.
Imports nothing heavy: the quick `status` path uses it.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Cause(StrEnum):
    """Whose a permanent failure is: the address's, or the campaign's (the same for everyone)."""

    ADDRESS = "address"  # no such user or domain, mailbox disabled or full: suppressed
    AUTHENTICATION = "authentication"  # the sender's domain failed SPF, DKIM or DMARC
    SERVER = "server"  # the sending server: a block list, its reputation, its reverse DNS
    CONTENT = "content"  # the message: taken for spam, its content or its size refused


_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


def without_addresses(reply: str) -> str:
    """A server's reply with each address in it written `<address>`: the same refusal for many
    recipients reads the same, and is grouped (`status`, `inbox`)."""
    return _ADDRESS.sub("<address>", reply).strip()


def _codes(*details: str) -> str:
    """Enhanced status codes 5.x.y as a pattern that an IP address or a longer code never
    matches: `_codes("1.1")` finds "550 5.1.1" but not "10.5.1.17"."""
    return r"(?<![\d.])5\.(?:" + "|".join(d.replace(".", r"\.") for d in details) + r")(?!\d|\.\d)"


# Enhanced status codes (RFC 3463, RFC 7372, the IANA registry) that settle the question alone:
# the recipient's address or mailbox (X.1.1 bad mailbox, X.1.2 bad system, X.1.3 bad syntax,
# X.1.6 moved, X.1.10 null MX, X.2.1 disabled, X.2.2 full, X.2.4 list expansion).
_ADDRESS_STATUS = re.compile(_codes("1.1", "1.2", "1.3", "1.6", "1.10", "2.1", "2.2", "2.4"))
# The sender's domain: X.7.20-X.7.24 (DKIM, SPF), X.7.26 (several checks failed), X.7.27 (the
# sender's domain has a null MX), Microsoft 365's 5.7.509 (DMARC), and the words for them.
_AUTHENTICATION = re.compile(
    _codes("7.20", "7.21", "7.22", "7.23", "7.24", "7.26", "7.27", "7.509")
    + r"|\bspf\b|sender policy framework|\bdkim\b|domainkeys|\bdmarc\b|unauthenticated"
    r"|authentication (check|fail)|not authenticated|does not pass .{0,40}verification"
    r"|non authentifi|(é|e)chec de l.authentification",  # French servers' words
    re.I,
)
# The provider's server rather than the organiser's domain: on a block list (DNSBL), refused for
# its address's reputation, without reverse DNS (X.7.25); Microsoft 365's 5.7.6xx and 5.7.7xx.
_SERVER = re.compile(
    _codes("7.25", r"7.[67]\d\d")
    + r"|blocked using|block ?list|black ?list|blacklisted|spamhaus|spamcop|barracuda|sorbs"
    r"|uceprotect|\bdnsbl\b|\brbl\b|reputation|banned sending ip|reverse dns|\bptr\b|\brdns\b"
    r"|cannot find your hostname|liste (noire|de blocage)|r(é|e)putation|dns inverse",
    re.I,
)
# The message: its size (X.2.3, X.3.4), or taken for spam, a virus, a breach of content policy.
_CONTENT = re.compile(
    _codes("2.3", "3.4") + r"|\bspam\b|unsolicited|\bjunk\b|\bbulk\b|phish|virus|malware"
    r"|content (filter|polic|rejected|presents)|message content|message (size|length) exceeds"
    r"|message too (large|big)|for policy reasons"
    r"|pourriel|ind(é|e)sirable|message trop (gros|volumineux)",
    re.I,
)


def cause_of(reason: str) -> Cause:
    """Whose fault a permanent failure report says it is, from the remote server's words.

    A status about the address or mailbox settles it; otherwise words or codes about the
    sender's authentication, the sending server or the message make it the campaign's; anything
    else (a bare "5.7.1 delivery not authorised", an access list of the recipient's) stays the
    address's, as every bounce was before this distinction.
    """
    if _ADDRESS_STATUS.search(reason):
        return Cause.ADDRESS
    for cause, words in (
        (Cause.AUTHENTICATION, _AUTHENTICATION),
        (Cause.SERVER, _SERVER),
        (Cause.CONTENT, _CONTENT),
    ):
        if words.search(reason):
            return cause
    return Cause.ADDRESS

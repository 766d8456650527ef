"""email-validator's reasons for refusing an address → the reader's language.

email-validator (2.x) says in English why an address is not valid ("An email address must have an
@-sign."); a French organiser reads it inside a French message of `check`, of the settings or of
`--test-to`. `reason(err)` gives the same sentence from the catalogs: each sentence the library
writes is a msgid here, word for word, its `{placeholders}` standing for what the library fills in
(the characters it found, a count, the text of the idna or ipaddress library, kept as they are);
a sentence this list does not know (a newer email-validator) is shown as the library wrote it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from campaign.i18n import N_, _, ngettext, number

if TYPE_CHECKING:
    from email_validator import EmailNotValidError

# The sentences of email-validator 2.x, as it writes them. Where two match, the first wins.
_SENTENCES = (
    N_("An email address must have an @-sign."),
    N_("There must be something before the @-sign."),
    N_("There must be something after the @-sign."),
    N_("An email address cannot have two periods in a row."),
    N_("An email address cannot have a period and a hyphen next to each other."),
    N_("An email address cannot start with a period."),
    N_("An email address cannot have a period immediately before the @-sign."),
    N_("An email address cannot have a period immediately after the @-sign."),
    N_("An email address cannot have a hyphen immediately after the @-sign."),
    N_("An email address cannot end with a period."),
    N_("An email address cannot end with a hyphen."),
    N_(
        "An email address cannot have two letters followed by two dashes immediately after the "
        "@-sign or after a period, except Punycode."
    ),
    N_("There can't be anything after the email address."),
    N_("The email address contains an invalid character."),
    N_("The email address contains invalid characters before the @-sign."),
    N_("The email address contains invalid characters before the @-sign: {chars}."),
    N_("The email address contains invalid characters in quotes before the @-sign: {chars}."),
    N_("The email address contains invalid characters after the @-sign after IDNA encoding."),
    N_("The email address contains unsafe characters: {chars}."),
    N_("The email address is not valid ASCII."),
    N_('The email address has the "small commercial at" character instead of a regular at-sign.'),
    N_(
        'The email address has the "full-width" at-sign (@) character instead of a regular at-sign.'
    ),
    N_("Internationalized characters before the @-sign are not supported."),
    N_("Internationalized characters before the @-sign are not supported: {chars}."),
    N_("Quoting the part before the @-sign is not allowed here."),
    N_("Extra character(s) found after close quote: {chars}"),
    N_("A display name and angle brackets around the email address are not permitted here."),
    N_(
        "An open angle bracket at the start of the email address has to be followed by a close "
        "angle bracket at the end."
    ),
    N_("The display name contains invalid characters when not quoted: {chars}."),
    N_("A bracketed IP address after the @-sign is not allowed here."),
    N_(
        "The part after the @-sign is a special-use or reserved name that cannot be used with "
        "email."
    ),
    N_("The part after the @-sign is not valid. It should have a period."),
    N_("The part after the @-sign is not valid. It is not within a valid top-level domain."),
    N_("The part after the @-sign contains invalid characters: {chars}."),
    N_(
        "The part after the @-sign contains invalid characters after Unicode normalization: "
        "{chars}."
    ),
    N_("The part after the @-sign contains invalid characters in brackets: {chars}."),
    N_("The part after the @-sign contains an invalid address literal tag in brackets."),
    N_(
        "The part after the @-sign in brackets is not an IPv4 address and has no address literal "
        "tag."
    ),
    N_("The IPv6 address in brackets after the @-sign is not valid (It has a zone index)."),
    N_("The IPv6 address in brackets after the @-sign is not valid ({detail})."),
    N_(
        "The address in brackets after the @-sign is not valid: It is not an IPv4 address "
        "({detail}) or is missing an address literal tag."
    ),
    N_("The part after the @-sign contains invalid characters ({detail})."),
    N_("The part after the @-sign is invalid ({detail})."),
    N_("The part after the @-sign is not valid IDNA ({detail})."),
    N_(
        "The part after the @-sign became invalid after normalizing to international characters "
        "({detail})."
    ),
    N_("The email address is too long before the @-sign {length}."),
    N_("The email address is too long after the @-sign {length}."),
    N_("The email address is too long {length}."),
    N_("After the @-sign, periods cannot be separated by so many characters {length}."),
)


def _matcher(sentence: str) -> re.Pattern[str]:
    """The sentence with each `{name}` standing for any text, captured under that name."""
    parts = re.split(r"\{(\w+)\}", sentence)
    return re.compile(
        "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+)" for i, part in enumerate(parts)
        )
    )


_MATCHERS = tuple((_matcher(sentence), sentence) for sentence in _SENTENCES)
_NORMALISED = re.compile(r"After Unicode normalization: (?P<rest>.+)")
_TOO_MANY = re.compile(r"\((?P<low>\d+)(?:-(?P<high>\d+))? (?P<unit>character|byte)s? too many\)")


def reason(err: EmailNotValidError | str) -> str:
    """Why email-validator refused an address, in the current language."""
    text = str(err)
    normalised = _NORMALISED.fullmatch(text)
    if normalised:
        return _("After Unicode normalization: {reason}").format(
            reason=reason(normalised.group("rest"))
        )
    for pattern, msgid in _MATCHERS:
        found = pattern.fullmatch(text)
        if found:
            fields = found.groupdict()
            if "length" in fields:
                fields["length"] = _length(fields["length"])
            return _(msgid).format(**fields)
    return text


def _length(text: str) -> str:
    """`(3 characters too many)` in the current language; other details as they are."""
    found = _TOO_MANY.fullmatch(text)
    if not found:
        return text
    high = int(found.group("high") or found.group("low"))
    count = (
        number(high)
        if found.group("high") is None
        else f"{number(int(found.group('low')))}-{number(high)}"
    )
    if found.group("unit") == "byte":
        return ngettext("({n} byte too many)", "({n} bytes too many)", high).format(n=count)
    return ngettext("({n} character too many)", "({n} characters too many)", high).format(n=count)

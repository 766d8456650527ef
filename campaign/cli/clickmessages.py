"""The messages of click itself that a person reads (usage, help headings, usage errors), for the catalogs.

click translates its own texts with the stdlib's `gettext.gettext`, through the text domain of the
program: `campaign.cli` makes that domain `campaign` (`gettext.textdomain`), so click reads its
French from our catalog, in the environment's language like `--help`. This module is never
imported: it only lists click's msgids (exactly as click 8 writes them) so that `make catalogs`
extracts them and the test of the catalogs wants their French.
"""

from __future__ import annotations

from campaign.i18n import N_

CLICK_MESSAGES = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Show this message and exit."),
    N_("Aborted!"),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing command."),
    N_("No such command {name!r}."),
    N_("No such option {name!r}."),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("Option {name!r} does not take a value."),
    N_("default: {default}"),
    N_("required"),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is a file."),
    N_("file"),
    N_("directory"),
    N_("path"),
    N_("Do you want to continue?"),
)


def _plural_messages(n: int) -> tuple[str, ...]:
    """click's messages that agree with a number (the extractor reads them from here)."""
    from campaign.i18n import ngettext

    return (
        ngettext(
            "Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", n
        ),
        ngettext(
            "Option {name!r} requires an argument.",
            "Option {name!r} requires {nargs} arguments.",
            n,
        ),
        ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", n),
    )

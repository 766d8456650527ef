"""What every `campaign` command shares: the context (settings, quiet), the error handler that
turns the tool's errors into a message and an exit code, and click's help in the command order."""

from __future__ import annotations

import functools
import gettext
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from campaign import i18n
from campaign.cli.output import err_console, print_problems
from campaign.cli.output import escape as _escape
from campaign.errors import CampaignError, CheckFailed
from campaign.i18n import _, quoted

if TYPE_CHECKING:
    from campaign.settings import Campaign, Settings

F = TypeVar("F", bound=Callable[..., Any])


class WholeNumber(click.IntRange):
    """`click.IntRange` named in the organiser's words: click calls it "integer range", which its
    message "'abc' is not a valid integer range." kept in English inside a French sentence."""

    @property
    def name(self) -> str:  # type: ignore[override]  # read when the error is said, in its language
        return _("whole number")


# click translates its own texts (Usage:, Options, its usage errors) with the stdlib's gettext in the
# program's text domain: ours, whose catalogs hold them (campaign.cli.clickmessages).
gettext.bindtextdomain(i18n.DOMAIN, str(i18n.LOCALE_DIR))
gettext.textdomain(i18n.DOMAIN)


def reports_errors(command: F) -> F:
    """Turn the tool's own errors into a message and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CampaignError as err:
            if isinstance(err, CheckFailed):
                print_problems(err.problems)
            _name_the_settings_file(err, args)
            err_console.print("[bold red]" + _("error:") + f"[/] {_escape(str(err))}")
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            err_console.print(_("interrupted"))
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _name_the_settings_file(err: CampaignError, args: tuple[Any, ...]) -> None:
    """A settings error found late (a password variable unset at send time, an unknown host)
    names its key but not its file: say which settings.yaml, as the errors found on loading do."""
    from dataclasses import replace

    from campaign.errors import SettingsError

    context = next((a for a in args if isinstance(a, Context)), None)
    if isinstance(err, SettingsError) and err.place.key and not err.place.file and context:
        from campaign.settings import DEFAULT_SETTINGS

        err.place = replace(err.place, file=str(context.settings_path or DEFAULT_SETTINGS))


class Context:
    """What every command receives: where the settings are, and how to print."""

    def __init__(self, settings_path: Path | None, *, quiet: bool) -> None:
        self.settings_path = settings_path
        self.quiet = quiet

    def settings(self) -> Settings:
        # Imported here: `campaign --help` need not pay for pydantic and email-validator.
        # Loading them also sets the language of the messages (`language:`, else the locale).
        from campaign.settings import DEFAULT_SETTINGS, load_settings

        return load_settings(self.settings_path or DEFAULT_SETTINGS)

    def campaign(self, name: str | None) -> Campaign:
        return self.settings().campaign(name)


pass_context = click.make_pass_decorator(Context)


class _Formatter(click.HelpFormatter):
    """click's help, with the space French puts before a colon ("Options :")."""

    def write_heading(self, heading: str) -> None:
        colon = " :" if i18n.current_language() == "fr" else ":"
        self.write(f"{'':>{self.current_indent}}{heading}{colon}\n")


class _Context(click.Context):
    formatter_class = _Formatter


class _Command(click.Command):
    context_class = _Context


# click quotes the names and values in its usage errors with repr ('--limit', 'abc'), in its code.
_REPR_QUOTED = re.compile(r"'([^'\s][^']*)'")


def _requoted(err: click.UsageError) -> click.UsageError:
    """click's usage error quoted as the language quotes: « --limit », « abc » in French."""
    if i18n.current_language() == "en":
        return err
    text = _REPR_QUOTED.sub(lambda found: quoted(found.group(1)), err.format_message())
    return click.UsageError(text, err.ctx)  # exit code 2, as every usage error of click


class _InOrder(click.Group):
    """Lists the commands in the order they are used, not alphabetically; says click's usage
    errors with the language's quotes."""

    context_class = _Context
    command_class = _Command

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as err:  # the group's own options
            raise _requoted(err) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # a command unknown, or its options and arguments
            raise _requoted(err) from None

    ORDER = (
        "init",
        "check",
        "render",
        "proof",
        "approve",
        "send",
        "inbox",
        "status",
        "sink",
        "purge",
    )

    def list_commands(self, ctx: click.Context) -> list[str]:
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(self.commands, key=lambda name: rank.get(name, len(rank)))


CAMPAIGN_HELP = _(
    "CAMPAIGN is a key of campaigns: in settings.yaml; without it, the command takes "
    "default_campaign, or the only campaign there is."
)
# Metavars are words of the help like any other: a French organiser reads `[CAMPAGNE]`, `--by NOM`.
CAMPAIGN_ARG = click.argument("campaign_name", metavar="[{}]".format(_("CAMPAIGN")), required=False)
QUIET = click.option(
    "-q", "--quiet", "quiet", is_flag=True, help=_("No progress bar; print the summary.")
)

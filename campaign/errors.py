"""The exception tree of `campaign`, and `Problem`, one finding of `campaign check`.

    CampaignError                 every error the tool reports to its user (never a traceback)
     ├── UsageError               a wrong command line: exit 2
     ├── SettingsError            settings.yaml is missing, malformed or invalid: exit 2
     │    └── ServerSettingsError the server shows a setting is wrong (TLS mode, CA, login): exit 2
     ├── InputError               a letter, spreadsheet or attachment cannot be used as it is: exit 1
     │    ├── TemplateError       a Jinja2/Markdown template is malformed or fails for a row
     │    └── CheckFailed         `check` finds errors, so a command that needs clean inputs stops
     ├── StateError               a file under outbox/ is damaged, locked or foreign: exit 2
     └── DeliveryError            sending must stop (refused send): exit 1
          ├── ApprovalError       the content differs from what reviewers approved: exit 1
          └── ServerSettingsError (also a SettingsError, so exit 2)

Every error carries the place it is about (file, line or spreadsheet row, column) and a hint, and
prints them first, the way compilers do: ``recipients/x.xlsx, row 14, column "Courriel": ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from campaign.i18n import _, labelled, quoted


@dataclass(frozen=True)
class Place:
    """Where a problem is: a file, and a line (text files) or a row and column (spreadsheets)."""

    file: str | None = None
    line: int | None = None
    row: int | None = None
    column: str | None = None
    key: str | None = None  # a setting, e.g. smtp.port
    option: str | None = None  # a command-line option, e.g. --port

    def __str__(self) -> str:
        parts: list[str] = []
        if self.file:
            parts.append(self.file)
        if self.line is not None:
            parts.append(_("line {line}").format(line=self.line))
        if self.key:
            parts.append(_("key {key}").format(key=quoted(self.key)))
        if self.option:
            parts.append(_("option {option}").format(option=self.option))
        if self.row is not None:
            parts.append(_("row {row}").format(row=self.row))
        if self.column:
            parts.append(_("column {column}").format(column=quoted(self.column)))
        return ", ".join(parts)


class CampaignError(Exception):
    """Root of every error the tool reports to its user; `exit_code` is what the command returns."""

    exit_code = 1

    def __init__(
        self, message: str, *, place: Place | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.place = place or Place()
        self.hint = hint

    def __str__(self) -> str:
        where = str(self.place)
        text = labelled(where, self.message) if where else self.message
        return text + "\n  " + _("hint:") + f" {self.hint}" if self.hint else text


class UsageError(CampaignError):
    """The command line asks for something that does not exist or does not fit together."""

    exit_code = 2


class SettingsError(CampaignError):
    """settings.yaml is missing, is not YAML, or holds an unknown key or a wrong value."""

    exit_code = 2


class InputError(CampaignError):
    """A letter, spreadsheet or attachment named by the settings cannot be used."""


class TemplateError(InputError):
    """A template is malformed, or fails when merged with a row."""


class CheckFailed(InputError):
    """`check` finds errors: render, proof, approve and send refuse until they are fixed.

    Carries the problems (errors first), so that the command line can print them as `check` does.
    """

    def __init__(self, message: str, *, problems: list[Problem], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems


class StateError(CampaignError):
    """A file the tool keeps under outbox/ is damaged, locked by another run, or not ours."""

    exit_code = 2


class DeliveryError(CampaignError):
    """Sending must stop: authentication refused, TLS certificate rejected, send refused."""


class ApprovalError(DeliveryError):
    """The content to be sent is not the content the reviewers approved."""


class ServerSettingsError(SettingsError, DeliveryError):
    """What the server answered shows a setting is wrong: the TLS mode of the port, the certificate
    authority, the login, a password or token refused. The run stops once, before (or instead of)
    any message, and nobody's attempts are spent; exit 2 like every settings error.
    """


def unknown_host(
    host: str, key: str, examples: str, cause: BaseException | None
) -> ServerSettingsError | None:
    """The settings error for a host name the resolver says does not exist, else None.

    getaddrinfo's EAI_NONAME or EAI_NODATA: a typo in the settings. Not EAI_AGAIN (a resolver that
    cannot be reached, e.g. no network): that is an outage to wait for.
    """
    import socket

    missing = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}
    if not isinstance(cause, socket.gaierror) or cause.errno not in missing:
        return None
    return ServerSettingsError(
        _("no server is called {host}: the DNS does not know this name").format(host=host),
        place=Place(key=key),
        hint=_(
            "check the spelling of {key} against the provider's documentation (e.g. {examples})"
        ).format(key=key, examples=examples),
    )


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"

    @property
    def label(self) -> str:
        """The severity as a person reads it (`--json` keeps the value itself)."""
        return _("error") if self is Severity.ERROR else _("warning")


@dataclass(frozen=True)
class Problem:
    """One finding of `campaign check`: what is wrong, where, and what to do about it."""

    severity: Severity
    message: str
    place: Place = field(default_factory=Place)
    hint: str | None = None

    @classmethod
    def error(cls, message: str, place: Place | None = None, hint: str | None = None) -> Problem:
        return cls(Severity.ERROR, message, place or Place(), hint)

    @classmethod
    def warning(cls, message: str, place: Place | None = None, hint: str | None = None) -> Problem:
        return cls(Severity.WARNING, message, place or Place(), hint)

    @classmethod
    def from_error(cls, err: CampaignError) -> Problem:
        return cls(Severity.ERROR, err.message, err.place, err.hint)

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "severity": self.severity.value,
            "file": self.place.file,
            "line": self.place.line,
            "row": self.place.row,
            "column": self.place.column,
            "key": self.place.key,
            "message": self.message,
            "hint": self.hint,
        }

    def __str__(self) -> str:
        where = str(self.place)
        text = labelled(where, labelled(self.severity.label, self.message))
        return f"{text} ({self.hint})" if self.hint else text


class HelperError(ValueError):
    """A template helper (`date_fr`, …) refused its argument; its message is for the organiser."""

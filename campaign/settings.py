"""settings.yaml → a validated, typed `Settings`.

Every default of the tool lives here, once. A wrong settings file is reported with the key at fault
and its line in settings.yaml (`SettingsError`, exit 2), never with a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import Annotated, Any, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from campaign.emailreasons import reason
from campaign.errors import Place, SettingsError
from campaign.i18n import _, quoted
from campaign.outbox import Layout

DEFAULT_SETTINGS = Path("settings.yaml")
DEFAULT_SUPPRESSION = Path("recipients/suppression.csv")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Turn `30s`, `2m`, `1h`, `1.5` (seconds) into seconds."""
    if isinstance(value, bool):
        raise ValueError(_("expected a duration such as 30s, 2m or 1h"))
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            _("{value} is not a duration such as 30s, 2m or 1h").format(value=quoted(value))
        )
    number, unit = match.groups()
    return float(number) * _UNIT_SECONDS[unit or "s"]


Duration = Annotated[float, BeforeValidator(parse_duration)]


def refuse_clear_password(data: Any, variable: str) -> Any:
    """A section's validator: a password written in settings.yaml is refused, with the way out."""
    if isinstance(data, dict) and "password" in data:
        raise ValueError(
            _(
                "a password must not be written in settings.yaml; "
                "use password_env: {variable} and export that variable"
            ).format(variable=variable)
        )
    return data


def is_loopback_host(host: str) -> bool:
    """Whether `host` is this machine: `localhost` or a loopback address (127.0.0.0/8, ::1).

    A name such as 127.0.0.1.example.com only looks like one: it is parsed, not prefix-tested.
    """
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def read_secret(env: str | None, command: str | None, *, key: str) -> str | None:
    """A password (or token) from the environment variable `env` or the organiser's `command`."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise SettingsError(
                _("the environment variable {name} is not set").format(name=env),
                place=Place(key=f"{key}.password_env"),
                hint=_("export {name}=... before running the command").format(name=env),
            )
        return value
    if command:
        try:
            done = subprocess.run(  # the organiser's own command, e.g. `pass show smtp`
                shlex.split(command), capture_output=True, text=True, check=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise SettingsError(
                _("the password command failed: {error}").format(error=type(err).__name__),
                place=Place(key=f"{key}.password_command"),
            ) from None
        return done.stdout.rstrip("\n")
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Section):
    name: str
    email: str
    reply_to: str | None = None
    address: str | None = None  # the postal address printed in a formal letter's letterhead

    @property
    def domain(self) -> str:
        """The domain of `email`: in Message-IDs and ENVIDs, and named where SPF/DKIM/DMARC fail."""
        return self.email.rpartition("@")[2]

    @field_validator("email", "reply_to")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError as err:
            raise ValueError(
                _("{value} is not an email address: {error}").format(
                    value=quoted(value), error=reason(err)
                )
            ) from err


class Smtp(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password_env: str | None = None
    password_command: str | None = None
    timeout: Duration = 30.0
    data_timeout: Duration = 600.0  # RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot
    cert_bundle: Path | None = None  # relative to settings.yaml
    helo_name: str | None = None  # default: the machine's FQDN, else its address literal
    # The login mechanism: auto (PLAIN, else LOGIN, as the server offers), or one named; xoauth2
    # and oauthbearer send an OAuth2 access token printed by password_command (e.g. oama).
    auth: Literal["auto", "plain", "login", "xoauth2", "oauthbearer"] = "auto"
    # A server that cannot be reached is a pause: probe at most this far apart, give up after that.
    probe_interval: Duration = 30.0
    outage_limit: Duration = 600.0
    # RFC 3461 delivery reports asked of a server that offers DSN: `failure` (NOTIFY=FAILURE,DELAY),
    # `success` (also SUCCESS), `never` (NOTIFY=NEVER: no report at all, the provider's default off).
    dsn: Literal["never", "failure", "success"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_clear_password(cls, data: Any) -> Any:
        return refuse_clear_password(data, "CAMPAIGN_SMTP_PASSWORD")

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def password(self) -> str | None:
        """Return the SMTP password from the environment variable or command the settings name."""
        return read_secret(self.password_env, self.password_command, key="smtp")


class Window(_Section):
    """An envelope's window, in mm from the sheet's top-left corner (DL: 110, 45, 90 × 40)."""

    left: float = Field(default=110.0, ge=0, le=210)
    top: float = Field(default=45.0, ge=0, le=297)
    width: float = Field(default=90.0, gt=10, le=210)
    height: float = Field(default=40.0, gt=10, le=297)


WINDOW_PRESETS = {"DL": Window()}


def _window(value: Any) -> Any:
    """`window: DL` names a preset; otherwise left, top, width and height in mm."""
    if isinstance(value, str):
        if value.strip().upper() not in WINDOW_PRESETS:
            raise ValueError(
                _(
                    "unknown window {value}: name a preset ({presets}) "
                    "or give left, top, width and height in mm"
                ).format(value=quoted(value), presets=", ".join(WINDOW_PRESETS))
            )
        return WINDOW_PRESETS[value.strip().upper()]
    return value


class PageLayout(_Section):
    """The letter's page: where the envelope's window is (`layout.window`)."""

    window: Annotated[Window, BeforeValidator(_window)] = Field(default_factory=Window)


_DAY_NAMES = {
    **{name: i for i, name in enumerate(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])},
    # French organisers may write the days the way they say them.
    **{name: i for i, name in enumerate(["lun", "mar", "mer", "jeu", "ven", "sam", "dim"])},
}
_HOURS = re.compile(r"^\s*(\d{1,2})[:h](\d{2})?\s*[-–]\s*(\d{1,2})[:h](\d{2})?\s*$")


def parse_hours(value: str) -> tuple[int, int]:
    """Turn `08:30-18:00` (or `8h30-18h`) into minutes after midnight: (510, 1080)."""
    match = _HOURS.match(value)
    if not match:
        raise ValueError(
            _('{value} is not a range of hours such as "08:30-18:00"').format(value=quoted(value))
        )
    start_h, start_m, end_h, end_m = (int(part or 0) for part in match.groups())
    for hour, minute in ((start_h, start_m), (end_h, end_m)):
        if hour > 24 or minute > 59 or (hour == 24 and minute):
            raise ValueError(
                _("{value} names an hour that does not exist").format(value=quoted(value))
            )
    start, end = start_h * 60 + start_m, end_h * 60 + end_m
    if start >= end:
        raise ValueError(
            _("{value} ends before it starts; a window must open and close on the same day").format(
                value=quoted(value)
            )
        )
    return start, end


class SendWindow(_Section):
    """When messages may start: days of the week, hours of the day, public holidays off."""

    days: list[str] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"])
    hours: str = "08:30-18:00"
    timezone: str = "Europe/Paris"
    holidays: str | None = None

    @field_validator("days")
    @classmethod
    def _known_days(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                _("no day is given: name at least one, e.g. {days}").format(
                    days="[mon, tue, wed, thu, fri]"
                )
            )
        for day in value:
            if str(day).strip().lower()[:3] not in _DAY_NAMES:
                raise ValueError(
                    _("{day} is not a day of the week; write {days}").format(
                        day=quoted(day), days="mon, tue, wed, thu, fri, sat, sun"
                    )
                )
        return [str(day).strip().lower()[:3] for day in value]

    @field_validator("hours")
    @classmethod
    def _valid_hours(cls, value: str) -> str:
        parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            close = get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
            also = " " + _("(did you mean {name}?)").format(name=quoted(close[0])) if close else ""
            raise ValueError(
                _("unknown time zone {value}{also}; write one such as Europe/Paris").format(
                    value=quoted(value), also=also
                )
            ) from None
        return value

    @field_validator("holidays")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import holidays

        country, _dash, region = value.strip().upper().partition("-")
        supported = holidays.list_supported_countries()
        if country not in supported:
            raise ValueError(
                _(
                    "no public holidays are known for {value}; write a country code such as FR"
                ).format(value=quoted(value))
            )
        regions = {str(r).upper(): str(r) for r in supported[country]}
        if region and region not in regions:
            raise ValueError(
                _("{country} has no region {region}; the regions are: {regions}").format(
                    country=country, region=quoted(region), regions=", ".join(supported[country])
                )
            )
        return f"{country}-{regions[region]}" if region else country

    @property
    def weekdays(self) -> frozenset[int]:
        """The days as numbers, Monday = 0."""
        return frozenset(_DAY_NAMES[day] for day in self.days)


class Imap(_Section):
    """The IMAP account where replies and bounces arrive: the same rules as `smtp`."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # 993 with tls, else 143
    security: Literal["none", "starttls", "tls"] = "tls"
    username: str
    password_env: str | None = None
    password_command: str | None = None
    cert_bundle: Path | None = None
    timeout: Duration = 30.0
    # auto: LOGIN with the password; xoauth2/oauthbearer: AUTHENTICATE with an OAuth2 access
    # token that password_command prints (Microsoft 365 and Gmail refuse passwords over IMAP).
    auth: Literal["auto", "xoauth2", "oauthbearer"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _no_clear_password(cls, data: Any) -> Any:
        return refuse_clear_password(data, "CAMPAIGN_IMAP_PASSWORD")

    @model_validator(mode="after")
    def _token_from_a_command(self) -> Imap:
        if self.auth != "auto" and not self.password_command:
            # A token expires within the hour: read again for each run, never kept in a variable.
            raise ValueError(
                _("auth: {auth} needs a password_command that prints a fresh access token").format(
                    auth=self.auth
                )
            )
        return self

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def real_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    def password(self) -> str | None:
        """The IMAP password, from the environment variable or command the settings name."""
        return read_secret(self.password_env, self.password_command, key="mailbox.imap")


class Folders(_Section):
    inbox: str = "INBOX"
    sent: str | None = None  # default: the RFC 6154 \Sent folder; `.Sent` in a Maildir


class Mailbox(_Section):
    """Where replies and bounces arrive (`campaign inbox`), and where a copy of each send goes."""

    imap: Imap | None = None
    maildir: Path | None = None  # relative to settings.yaml
    folders: Folders = Field(default_factory=Folders)
    save_sent: Literal["auto", "always", "never"] = "auto"
    # save_sent: auto looks this long for the first message in Sent (the provider filing it).
    save_sent_wait: Duration = 10.0

    @model_validator(mode="after")
    def _one_kind(self) -> Mailbox:
        if (self.imap is None) == (self.maildir is None):
            raise ValueError(
                _("give either {imap} or {maildir}").format(
                    imap="imap: {host: ..., username: ...}", maildir="maildir: PATH"
                )
            )
        return self


class Throttle(_Section):
    per_second: float | None = Field(default=None, gt=0)
    per_minute: int | None = Field(default=30, gt=0)
    per_hour: int | None = Field(default=None, gt=0)
    per_day: int | None = Field(default=500, gt=0)
    concurrency: int = Field(default=2, ge=1, le=64)
    messages_per_connection: int = Field(default=100, ge=1)
    window: SendWindow | None = None  # no window: send at any hour


class Retry(_Section):
    max_attempts: int = Field(default=5, ge=1)
    backoff: list[Duration] = Field(default_factory=lambda: [30.0, 120.0, 600.0, 1800.0])


class Approval(_Section):
    required: bool = True


class CampaignSettings(_Section):
    letter: Path
    recipients: Path
    email_column: str = "email"
    to_name: str | None = None
    subject: str | None = None
    # The attached letter's file name as the recipient sees it, a template (".pdf" is added);
    # without it, the letter file's name and the display name: `lettre – Élise Noël.pdf`.
    pdf_name: str | None = None
    email_body: Path | None = None
    attach_pdf: bool = True
    attachments: list[Path] = Field(default_factory=list)
    # Files per recipient: the column whose cells list them (`;`-separated), relative to the folder.
    attachments_column: str | None = None
    attachments_folder: Path = Path()
    required_columns: list[str] = Field(default_factory=list)
    suppression: Path = DEFAULT_SUPPRESSION
    list_unsubscribe: str | None = None
    pdf_variant: Literal["pdf/a-3b", "pdf/a-3a", "pdf/ua-1"] | None = None
    allow_special_domains: bool = False
    approval: Approval = Field(default_factory=Approval)
    # The language the letter is written in: the proof pack speaks it to the reviewers.
    lang: Literal["fr", "en"] = "fr"

    @field_validator("list_unsubscribe")
    @classmethod
    def _unsubscribe_uri(cls, value: str | None) -> str | None:
        """A `mailto:` address (its subject, if any, tells the requests from replies) or an
        `https:` page: what RFC 2369 allows in the header, and what mail clients follow."""
        if value is None:
            return None
        from urllib.parse import quote, unquote, urlsplit

        # The header holds an ASCII URI (RFC 6068): « se désinscrire » as typed becomes
        # se%20d%C3%A9sinscrire, not an RFC 2047 encoded word that no mail client follows.
        target = quote(value.strip().strip("<>").strip(), safe="!#$%&'()*+,/:;=?@[]~")
        lowered = target.lower()
        if lowered.startswith("https://") and len(target) > len("https://"):
            return target
        if lowered.startswith("mailto:"):
            address = unquote(urlsplit(target).path).strip()
            try:
                validate_email(address, check_deliverability=False)
            except EmailNotValidError as err:
                raise ValueError(
                    _("{value} is not an email address: {error}").format(
                        value=quoted(address), error=reason(err)
                    )
                ) from err
            return target
        raise ValueError(
            _(
                "{value} is neither a mailto: address nor an https: page; write e.g. {example}"
            ).format(value=quoted(value), example="mailto:contact@example.org?subject=unsubscribe")
        )


class Typography(_Section):
    # The space before ":" — fine: narrow no-break space (Le Robert); word: a full no-break
    # space (Imprimerie nationale). docs/typography.md says why "fine" is the default.
    colon: Literal["fine", "word"] = "fine"


class Settings(_Section):
    sender: Sender
    smtp: Smtp = Field(default_factory=Smtp)
    throttle: Throttle = Field(default_factory=Throttle)
    retry: Retry = Field(default_factory=Retry)
    layout: PageLayout = Field(default_factory=PageLayout)
    mailbox: Mailbox | None = None
    typography: Typography = Field(default_factory=Typography)
    outbox: Path = Path("outbox")
    # The language of the messages (fr or en); None: the locale's (LC_ALL, LC_MESSAGES, LANG).
    language: Literal["fr", "en"] | None = None
    retention_days: int | None = Field(default=None, gt=0)
    default_campaign: str | None = None
    campaigns: dict[str, CampaignSettings]

    # Set by `load_settings`: the folder settings.yaml is in; relative paths are relative to it.
    root: Path = Path()
    path: Path = DEFAULT_SETTINGS

    def resolve(self, path: Path) -> Path:
        """Return `path` as it is on disk: relative paths are relative to settings.yaml's folder."""
        return path if path.is_absolute() else self.root / path

    def display(self, path: Path) -> str:
        """Return `path` the way the organiser wrote it or sees it from the project folder."""
        try:
            return str(self.resolve(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def campaign(self, name: str | None) -> Campaign:
        """Return the campaign called `name`, or the only/default one when `name` is None."""
        if name is None:
            if self.default_campaign:
                name = self.default_campaign
            elif len(self.campaigns) == 1:
                name = next(iter(self.campaigns))
            else:
                raise SettingsError(
                    _("several campaigns are defined; say which one"),
                    place=Place(file=str(self.path), key="campaigns"),
                    hint=_(
                        "name one of: {names} (or set default_campaign in settings.yaml)"
                    ).format(names=", ".join(self.campaigns)),
                )
        if name not in self.campaigns:
            raise SettingsError(
                _("no campaign called {name}").format(name=quoted(name)),
                place=Place(file=str(self.path), key="campaigns"),
                hint=_("the campaigns are: {names}").format(names=", ".join(self.campaigns)),
            )
        return Campaign(name=name, settings=self, config=self.campaigns[name])


@dataclass(frozen=True)
class Campaign:
    """One campaign of the settings, with its paths resolved."""

    name: str
    settings: Settings
    config: CampaignSettings

    @property
    def outbox(self) -> Path:
        return self.settings.resolve(self.settings.outbox) / self.name

    @property
    def layout(self) -> Layout:
        """Where this campaign's files are under the outbox."""
        return Layout(self.outbox)

    def path(self, path: Path) -> Path:
        return self.settings.resolve(path)


def load_settings(path: Path = DEFAULT_SETTINGS) -> Settings:
    """Read and validate settings.yaml; every fault is a `SettingsError` naming its key and line."""
    from campaign.settingsfile import read_settings

    return read_settings(path)

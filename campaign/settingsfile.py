"""settings.yaml → a validated `Settings`: every fault found is a `SettingsError` with its key and line.

The models of the sections live in `campaign.settings`; this module reads the file, maps each
pydantic error back to the YAML line it came from, and checks what a model alone cannot (the
campaigns' names, the files they name, that those stay inside the project).
"""

from __future__ import annotations

import re
from difflib import get_close_matches
from pathlib import Path
from typing import get_args

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from campaign.errors import Place, SettingsError
from campaign.i18n import _, labelled, quoted
from campaign.settings import (
    DEFAULT_SETTINGS,
    CampaignSettings,
    Settings,
)
from campaign.yamlerrors import explain as explain_yaml


def read_settings(path: Path = DEFAULT_SETTINGS) -> Settings:
    """Read and validate settings.yaml; every fault is a `SettingsError` naming its key and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError(
            _("{path}: settings file not found").format(path=path),
            hint=_("run the command from the project folder, or pass {option}").format(
                option="--settings " + _("FILE")
            ),
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(
            _("{path}: cannot read the settings file ({error})").format(path=path, error=err)
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        said = explain_yaml(err)
        raise SettingsError(
            _("not valid YAML: {problem}").format(problem=said.problem),
            place=Place(file=str(path), line=said.line),
            hint=said.hint,
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(
            _("settings.yaml must be a mapping of keys ({keys})").format(
                keys="sender:, smtp:, campaigns: ..."
            ),
            place=Place(file=str(path)),
        )
    _speak(data.get("language"))
    lines = _key_lines(node)
    smtp = data.get("smtp")
    if isinstance(smtp, dict) and "password" in smtp:
        raise SettingsError(
            _("a password must not be written in settings.yaml"),
            place=Place(file=str(path), line=lines.get(("smtp", "password")), key="smtp.password"),
            hint=_(
                "delete it, put it in an environment variable and name that variable with "
                "{setting} (or give a password_command)"
            ).format(setting="password_env: CAMPAIGN_SMTP_PASSWORD"),
        )
    root = path.resolve().parent
    try:
        settings = Settings.model_validate({**data, "root": root, "path": path})
    except ValidationError as err:
        raise _settings_error(err, path, lines) from None
    if "root" in data or "path" in data:
        key = "root" if "root" in data else "path"
        raise SettingsError(
            _("unknown key {key}").format(key=quoted(key)),
            place=Place(file=str(path), line=lines.get((key,)), key=key),
        )
    _check_campaigns(settings, lines)
    _check_paths(settings, lines)
    return _resolve_cert_bundles(settings)


def _resolve_cert_bundles(settings: Settings) -> Settings:
    """A relative cert_bundle names a file beside settings.yaml, not in the current folder."""
    smtp, mailbox = settings.smtp, settings.mailbox
    if smtp.cert_bundle is not None:
        smtp = smtp.model_copy(update={"cert_bundle": settings.resolve(smtp.cert_bundle)})
    if mailbox is not None and mailbox.imap is not None and mailbox.imap.cert_bundle is not None:
        imap = mailbox.imap.model_copy(
            update={"cert_bundle": settings.resolve(mailbox.imap.cert_bundle)}
        )
        mailbox = mailbox.model_copy(update={"imap": imap})
    return settings.model_copy(update={"smtp": smtp, "mailbox": mailbox})


def _speak(language: object) -> None:
    """Speak the settings' language from now on, before validating: its errors are in it too."""
    from campaign.i18n import LANGUAGES, use_language

    if isinstance(language, str) and language in LANGUAGES:
        use_language(language)


_CAMPAIGN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def _check_campaigns(settings: Settings, lines: dict[tuple[str, ...], int]) -> None:
    """At least one campaign, each named so it can be a folder of outbox/, and a real default."""
    shown = str(settings.path)
    if not settings.campaigns:
        raise SettingsError(
            _("no campaign is defined"),
            place=Place(file=shown, line=lines.get(("campaigns",)), key="campaigns"),
            hint=_("add one under campaigns: with at least its letter: and recipients:"),
        )
    for name in settings.campaigns:
        if not _CAMPAIGN_NAME.match(name):
            raise SettingsError(
                _("campaign name {name} cannot be used as a folder name").format(name=quoted(name)),
                place=Place(
                    file=shown, line=lines.get(("campaigns", name)), key=f"campaigns.{name}"
                ),
                hint=_(
                    "use letters, digits, '-', '_' and '.', starting with a letter or digit, "
                    "e.g. {example}"
                ).format(example="hopitaux-2020-05"),
            )
    default = settings.default_campaign
    if default is not None and default not in settings.campaigns:
        raise SettingsError(
            _("default_campaign names no campaign: {name}").format(name=quoted(default)),
            place=Place(file=shown, line=lines.get(("default_campaign",)), key="default_campaign"),
            hint=_("the campaigns are: {names}").format(names=", ".join(settings.campaigns)),
        )


def _settings_error(
    err: ValidationError, path: Path, lines: dict[tuple[str, ...], int]
) -> SettingsError:
    messages: list[str] = []
    first_place: Place | None = None
    for item in err.errors():
        loc = tuple(str(part) for part in item["loc"])
        key = ".".join(loc) or "(top level)"
        line = _nearest_line(loc, lines)
        if item["type"] == "extra_forbidden":
            text = _("unknown key {key}").format(key=quoted(loc[-1]))
            allowed = _allowed_keys(loc[:-1])
            close = get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
            if close:
                text += " " + _("(did you mean {name}?)").format(name=quoted(close[0]))
            elif allowed:
                text += " " + _("(the keys here are: {keys})").format(keys=", ".join(allowed))
        elif item["type"] == "missing":
            text = _("missing key {key}").format(key=quoted(loc[-1]))
        else:
            text = _pydantic_message(item["type"], item.get("ctx") or {}, str(item["msg"]))
            if item["type"].endswith(("_type", "_parsing")) and not isinstance(
                item.get("input"), dict | list
            ):
                value = item.get("input")  # None: the key is there with nothing after it
                text += " " + (
                    _("(it is empty)")
                    if value is None
                    else _("(not {value})").format(value=quoted(value))
                )
        place = Place(file=str(path), line=line, key=key)
        first_place = first_place or place
        messages.append(labelled(str(place), text))
    hint = None
    if any(str(item["loc"][-1]) == "password" for item in err.errors() if item["loc"]):
        hint = _("put the password in an environment variable and name it with smtp.password_env")
    if len(messages) == 1:
        message = messages[0].split(": ", 1)[1] if first_place else messages[0]
        return SettingsError(message, place=first_place, hint=hint)
    return SettingsError(
        _("{n} problems in the settings:").format(n=len(messages)) + "\n  " + "\n  ".join(messages),
        place=Place(file=str(path)),
        hint=hint,
    )


def _pydantic_message(kind: str, ctx: dict[str, object], message: str) -> str:
    """pydantic's message for an error of type `kind`, in the language of the messages.

    The validators of campaign.settings write their own (translated) text; pydantic's own checks
    (types, bounds, choices) are said again here.
    """
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    known = {
        "int_type": _("expected a whole number"),
        "int_parsing": _("expected a whole number"),
        "int_from_float": _("expected a whole number"),
        "float_type": _("expected a number"),
        "float_parsing": _("expected a number"),
        "bool_type": _("expected true or false"),
        "bool_parsing": _("expected true or false"),
        "string_type": _("expected text"),
        "list_type": _("expected a list, e.g. [a, b]"),
        "dict_type": _("expected keys and values"),
        "model_type": _("expected keys and values"),
        "model_attributes_type": _("expected keys and values"),
        "path_type": _("expected a path"),
    }
    if kind in known:
        return known[kind]
    bounds = {
        "greater_than": _("must be greater than {limit}"),
        "greater_than_equal": _("must be at least {limit}"),
        "less_than": _("must be less than {limit}"),
        "less_than_equal": _("must be at most {limit}"),
    }
    if kind in bounds:
        limit = next(iter(ctx.values()), "")
        return bounds[kind].format(limit=limit)
    if kind == "literal_error":
        # pydantic joins the choices in English: "'none', 'starttls' or 'tls'".
        choices = str(ctx.get("expected", "")).replace(" or ", " " + _("or") + " ")
        return _("expected {choices}").format(choices=choices)
    return message


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """The keys a settings section accepts, e.g. ('smtp',) → host, port, ...; [] if unknown."""
    model: type[BaseModel] = Settings
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if model is Settings and part == "campaigns":
            if not parts:
                return []
            parts.pop(0)  # the campaign's own name
            model = CampaignSettings
            continue
        field_info = model.model_fields.get(part)
        annotation = field_info.annotation if field_info else None
        # An optional section (`window: SendWindow | None`): its keys are the section's.
        annotation = next(
            (a for a in get_args(annotation) if isinstance(a, type) and a is not type(None)),
            annotation,
        )
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    hidden = {"root", "path"} if model is Settings else set()
    return [name for name in model.model_fields if name not in hidden]


def _check_paths(settings: Settings, lines: dict[tuple[str, ...], int]) -> None:
    """Every file a campaign names must exist and stay inside the project folder."""
    problems: list[SettingsError] = []
    for name, config in settings.campaigns.items():
        named: list[tuple[str, Path]] = [
            ("letter", config.letter),
            ("recipients", config.recipients),
        ]
        if config.email_body is not None:
            named.append(("email_body", config.email_body))
        named += [(f"attachments.{i}", p) for i, p in enumerate(config.attachments)]
        if config.attachments_column is not None:
            folder_loc = ("campaigns", name, "attachments_folder")
            folder = settings.resolve(config.attachments_folder)
            if not _inside(folder, settings.root) or not folder.is_dir():
                problems.append(
                    SettingsError(
                        _("{path} is not a folder of the project").format(
                            path=config.attachments_folder
                        ),
                        place=Place(
                            file=str(settings.path),
                            line=_nearest_line(folder_loc, lines),
                            key=".".join(folder_loc),
                        ),
                        hint=_(
                            "name a folder inside the project that holds the files, e.g. {example}"
                        ).format(example="letters/annexes"),
                    )
                )
        for key, value in named:
            loc = ("campaigns", name, *key.split("."))
            place = Place(
                file=str(settings.path), line=_nearest_line(loc, lines), key=".".join(loc)
            )
            target = settings.resolve(value)
            if not _inside(target, settings.root):
                problems.append(
                    SettingsError(
                        _("{path} is outside the project folder").format(path=value),
                        place=place,
                        hint=_(
                            "copy the file into the project (letters/ or recipients/) "
                            "and name it there"
                        ),
                    )
                )
            elif not target.is_file():
                problems.append(
                    SettingsError(
                        _("file not found: {path}").format(path=value),
                        place=place,
                        hint=_missing_file_hint(value, target, settings.path),
                    )
                )
    if len(problems) == 1:
        raise problems[0]
    if problems:
        # Report every missing file in one pass, so the organiser fixes them all at once.
        raise SettingsError(
            _("{n} problems in the settings:").format(n=len(problems))
            + "\n  "
            + "\n  ".join(labelled(str(p.place), f"{p.message} ({p.hint})") for p in problems),
            place=Place(file=str(settings.path)),
        )


def _missing_file_hint(value: object, target: Path, settings_path: Path) -> str:
    """Where a relative path starts from, and the file of that folder it likely meant."""
    hint = _("check the path; it is relative to the folder of settings.yaml, {folder}").format(
        folder=f"{settings_path.parent or '.'}/"
    )
    try:
        names = [p.name for p in target.parent.iterdir() if p.is_file()]
    except OSError:  # the folder itself is missing
        return hint
    close = get_close_matches(target.name, names, n=1, cutoff=0.5)
    if not close:
        return hint
    meant = Path(str(value)).parent / close[0]
    return _("did you mean {name}? ({then})").format(name=quoted(meant.as_posix()), then=hint)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, links resolved, lies inside `root`."""
    return path.resolve().is_relative_to(root.resolve())


def inside_project(settings: Settings, path: Path) -> bool:
    """Whether `path` (relative to settings.yaml's folder), links resolved, stays in the project."""
    return _inside(settings.resolve(path), settings.root)


def _key_lines(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each key path of the YAML document, e.g. ('smtp', 'port'), to its 1-based line."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(current: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                key = (*prefix, str(key_node.value))
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key)
        elif isinstance(current, yaml.SequenceNode):
            for index, item in enumerate(current.value):
                key = (*prefix, str(index))
                lines[key] = item.start_mark.line + 1
                walk(item, key)

    if node is not None:
        walk(node, ())
    return lines


def _nearest_line(loc: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> int | None:
    """The line of `loc`, or of its nearest enclosing key that the file has."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None

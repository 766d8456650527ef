"""What the last approval and the last status recorded → `campaign status` without reloading.

`approve` records, beside the fingerprint, the SHA-256 of the bytes of every file the approved
content was made from (settings.yaml, the spreadsheet, the suppression list, the letter, the email
body, stylesheets, images and attachments) and the tool's version (`sources`). When every one of
those files still has the same bytes, the fingerprint computed now would be the approved one and
the ready recipients are those the record lists: `status` then takes the approval line and the
recipients' keys from `approval.json` (plain `json`) instead of reading the spreadsheet with
pandas and parsing the templates with Jinja2.

The settings themselves (pydantic, email-validator: alone 4× `import click`) are skipped too: a
status (or approve) that validated settings.yaml keeps what status needs of them in a snapshot,
`outbox/<campaign>/.status-settings.json` (no personal data), with the hash of settings.yaml's
bytes, and whether these settings give the approved content (a changed throttle does not change
it). Any difference (a byte, a file gone, another version, an older record without `sources`, a
send window) and `status` reads everything as before: a shortcut, never a second truth.

This module imports nothing heavy: `campaign status` imports it at start.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign import __version__
from campaign.i18n import _
from campaign.outbox import Layout, write_private

if TYPE_CHECKING:
    from campaign.settings import Campaign
    from campaign.window import Caps

# Bump when the HTML the typesetter builds (or the typography it applies) changes, so that every
# letter is rendered again and approvals name the change (campaign.typeset re-exports it).
LAYOUT_VERSION = "9"
# What a record's sources must say about the tool for the shortcut to hold.
TOOL = f"campaign {__version__}, layout {LAYOUT_VERSION}"
# The defaults of campaign.settings, which this module must not import (a test checks they agree).
DEFAULT_SETTINGS = Path("settings.yaml")
DEFAULT_OUTBOX = "outbox"


@dataclass(frozen=True)
class ReadyKey:
    """A ready recipient as the status needs it: its spreadsheet row and lower-cased address."""

    row: int
    email: str


def when(at: str) -> str:
    """The time of a sign-off, in the organiser's words and clock: 2026-05-07 16:32, as the
    report and the export give the times of sending (the approval keeps it in UTC)."""
    try:
        return datetime.fromisoformat(at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return at


def approved_summary(by: str, at: str, digest: str, *, required: bool) -> str:
    """The status's approval line for content unchanged since `by` approved it."""
    text = _("approved by {name} on {when} (fingerprint {fingerprint}, content unchanged)").format(
        name=by, when=when(at), fingerprint=digest[:12]
    )
    if required:
        return text
    return _("{state} (approval not required by the settings)").format(state=text)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def source_hashes(root: Path, paths: Iterable[Path]) -> dict[str, str]:
    """The bytes' SHA-256 of each file, keyed by its path relative to the project (`root`)."""
    hashes: dict[str, str] = {"": TOOL}
    root = root.resolve()
    for path in paths:
        digest = _digest(path)
        if digest is not None:
            hashes[os.path.relpath(path.resolve(), root)] = digest
    return hashes


@dataclass(frozen=True)
class RecordedCaps:
    """The throttle's caps as the status snapshot keeps them (a `window.Caps`)."""

    per_second: float | None
    per_minute: int | None
    per_hour: int | None
    per_day: int | None


@dataclass(frozen=True)
class StatusSettings:
    """What `status` needs of the settings: from the settings, or from the snapshot of them."""

    name: str
    root: Path  # settings.yaml's folder, resolved
    layout: Layout
    retention_days: int | None
    approval_required: bool
    caps: Caps
    settings_file: Path | None = None  # resolved
    sender_domain: str = ""  # of sender.email: named in the advice about some bounces
    # The approval fingerprint that a full status found these settings' bytes to give: settings
    # changed since the approval in a way that leaves the content as approved (a throttle, say).
    verified: str | None = None

    @classmethod
    def of(cls, campaign: Campaign) -> StatusSettings:
        settings = campaign.settings
        return cls(
            name=campaign.name,
            root=settings.root,
            layout=campaign.layout,
            retention_days=settings.retention_days,
            approval_required=campaign.config.approval.required,
            caps=settings.throttle,
            settings_file=settings.path.resolve(),
            sender_domain=settings.sender.domain,
        )

    def display(self, path: Path) -> str:
        """A path as the organiser sees it from the project folder (as `Settings.display`)."""
        try:
            return str((path if path.is_absolute() else self.root / path).relative_to(self.root))
        except ValueError:
            return str(path)


def recorded_status(view: StatusSettings) -> tuple[str, list[ReadyKey], str] | None:
    """The approval line, the ready recipients and the approved fingerprint, from the last
    sign-off if nothing changed (settings.yaml may have, if `view.verified` vouches for it)."""
    try:
        history: dict[str, Any] = json.loads(view.layout.approval.read_text(encoding="utf-8"))
        last = history["approvals"][-1]
        sources: dict[str, str] = last["sources"]
        if history["campaign"] != view.name or sources.get("") != TOOL:
            return None
        root = view.root.resolve()
        for name, digest in sources.items():
            vouched = view.verified == last["fingerprint"] and (root / name) == view.settings_file
            if name and not vouched and _digest(root / name) != digest:
                return None
        summary = approved_summary(
            last["by"], last["at"], last["fingerprint"], required=view.approval_required
        )
        ready = [ReadyKey(int(v["row"]), str(k)) for k, v in last["rows"].items()]
    except (OSError, ValueError, LookupError, TypeError):
        return None  # no record, a damaged one, an older one: read everything
    return summary, ready, str(last["fingerprint"])


# The snapshot of the settings ------------------------------------------------------------------
# `status` without pydantic: a status that validated settings.yaml keeps what it needs of it in
# outbox/<campaign>/.status-settings.json, with the hash of settings.yaml's bytes. The next status
# finds it from two keys read with plain YAML (outbox, default_campaign) and uses it while the
# bytes are the same. Only for an approved campaign without a send window (a window's forecast
# needs the holidays of the settings' country: that status reads the settings).


def _snapshot(campaign: Campaign, verified: str | None) -> dict[str, Any]:
    from campaign.errors import SettingsError

    settings = campaign.settings
    try:
        default: str | None = settings.campaign(None).name
    except SettingsError:
        default = None
    throttle = settings.throttle
    return {
        "tool": TOOL,
        "settings": str(settings.path.resolve()),
        "sha256": _digest(settings.path),
        "campaign": campaign.name,
        "default": default,
        "outbox": str(campaign.outbox),
        "retention_days": settings.retention_days,
        "approval_required": campaign.config.approval.required,
        "caps": [throttle.per_second, throttle.per_minute, throttle.per_hour, throttle.per_day],
        "verified": verified,
        "sender_domain": settings.sender.domain,
    }


def write_snapshot(campaign: Campaign, verified: str | None) -> None:
    """Keep what the next `status` needs of the settings, for an approved campaign; `verified`:
    the approval's fingerprint when these settings were found to give the approved content."""
    layout = campaign.layout
    target = layout.status_settings
    try:
        if campaign.settings.throttle.window is not None or not layout.approval.exists():
            target.unlink(missing_ok=True)  # a window's forecast needs the settings themselves
            return
        text = json.dumps(_snapshot(campaign, verified), ensure_ascii=False, indent=1) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            write_private(target, text)
    except OSError:
        pass  # a shortcut only: the next status reads the settings


def read_snapshot(settings_path: Path, name: str | None) -> StatusSettings | None:
    """The snapshot of the settings, if it was made from settings.yaml's bytes as they are now."""
    import yaml

    try:
        path = settings_path.resolve()
        data = path.read_bytes()
        raw = yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
        outbox = raw.get("outbox", DEFAULT_OUTBOX)
        asked = name
        if name is None:
            name = raw.get("default_campaign")
            campaigns = raw.get("campaigns")
            if not name and isinstance(campaigns, dict) and len(campaigns) == 1:
                name = next(iter(campaigns))
        if not isinstance(outbox, str) or not isinstance(name, str) or not name:
            return None
        root = path.parent
        folder = (Path(outbox) if Path(outbox).is_absolute() else root / outbox) / name
        snapshot = json.loads(Layout(folder).status_settings.read_text(encoding="utf-8"))
        caps = RecordedCaps(*snapshot["caps"])
        if (
            snapshot["tool"] != TOOL
            or snapshot["settings"] != str(path)
            or snapshot["sha256"] != hashlib.sha256(data).hexdigest()
            or snapshot["campaign"] != name
            or snapshot["outbox"] != str(folder)
            or (asked is None and snapshot["default"] != name)
        ):
            return None
        return StatusSettings(
            name=name,
            root=root,
            layout=Layout(folder),
            retention_days=snapshot["retention_days"],
            approval_required=bool(snapshot["approval_required"]),
            caps=caps,
            settings_file=path,
            verified=snapshot["verified"],
            sender_domain=str(snapshot["sender_domain"]),
        )
    except (OSError, ValueError, LookupError, TypeError, AttributeError, yaml.YAMLError):
        return None

"""Loaded inputs → the approval fingerprint; reviewers' sign-offs → `outbox/<campaign>/approval.json`.

The fingerprint is a SHA-256 over everything that changes what a recipient receives: the letter and
email templates (bytes), the stylesheets and the files they or the letter reference, the front
matter, the subject and display-name templates, the sender, Reply-To, List-Unsubscribe, whether the
PDF is attached, the shared attachments' bytes, and one hash per ready recipient (keyed by the
address, so row order does not matter; cells compared as text, so an .xlsx saved again as .csv with
the same values does not change it). It is computed from the inputs only (no absolute path, no file
date), so it is the same on every run and every machine.

`approve` appends a sign-off to the history; `require_approval` refuses to go on when the current
content differs from the last sign-off, and says what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from campaign import recorded
from campaign.depends import shown_path
from campaign.errors import ApprovalError, Place, StateError, UsageError
from campaign.i18n import N_, _, listed, ngettext, quoted, rows_named
from campaign.inputs import Inputs
from campaign.outbox import write_private
from campaign.recipients import Recipient
from campaign.recorded import LAYOUT_VERSION
from campaign.settings import Campaign

FORMAT = 1
# How many row numbers a change message lists before it sums up the rest.


def _sha256(data: bytes | str) -> str:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(payload).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class RowStamp:
    """One ready recipient in the fingerprint: its spreadsheet row and the hash of its values."""

    row: int
    hash: str


@dataclass(frozen=True)
class Fingerprint:
    """The fingerprint of a campaign's content, with the parts it is made of."""

    digest: str
    components: Mapping[tuple[str, str], str]  # (what, file or "") → hash
    rows: Mapping[str, RowStamp]  # lower-cased email → row and hash

    @property
    def short(self) -> str:
        return self.digest[:12]


def row_hash(recipient: Recipient) -> str:
    """Hash one recipient's address and cells, compared as text whatever the file format."""
    return _sha256(_canonical({"email": recipient.email, "values": dict(recipient.values)}))


def compute_fingerprint(inputs: Inputs) -> Fingerprint:
    """Fingerprint everything that changes what a recipient receives; see the module docstring."""
    campaign = inputs.campaign
    settings = campaign.settings
    config = campaign.config
    parts: dict[tuple[str, str], str] = {}

    for dependency in inputs.dependencies:
        parts[(dependency.kind, dependency.shown)] = dependency.digest
    for letter, what in ((inputs.letter, "letter"), (inputs.email_body, "email body")):
        if letter is not None:
            parts[(f"{what} front matter", shown_path(campaign, letter.path))] = _sha256(
                _canonical(dict(letter.front))
            )
    for index, attachment in enumerate(config.attachments):
        parts[("attachment order", str(index))] = _sha256(shown_path(campaign, attachment))

    subject = config.subject
    if subject is None and inputs.letter is not None:
        subject = inputs.letter.front.get("subject")
    settings_values: dict[str, Any] = {
        "subject": subject,
        "display name (to_name)": config.to_name,
        "sender": [settings.sender.name, settings.sender.email],
        "reply-to": settings.sender.reply_to,
        "list-unsubscribe": config.list_unsubscribe,
        "attach_pdf": config.attach_pdf,
        "pdf_variant": config.pdf_variant,
        # The space before ":" changes every letter and email (typography.colon).
        "typography": settings.typography.model_dump(),
        # The tool's own letter layout: bumped by pdf.py when an upgrade changes how letters look.
        "letter layout (campaign upgraded)": LAYOUT_VERSION if config.attach_pdf else None,
        "spreadsheet columns": sorted(inputs.recipients.headers),
    }
    if config.pdf_name is not None:  # a part only when set: approvals made before it still hold
        settings_values["PDF file name (pdf_name)"] = config.pdf_name
    for what, value in settings_values.items():
        parts[(what, "")] = _sha256(_canonical(value))

    rows = {r.email.lower(): RowStamp(r.row, row_hash(r)) for r in inputs.recipients.ready}
    digest = _sha256(
        _canonical(
            {
                "format": FORMAT,
                "components": sorted([list(key), value] for key, value in parts.items()),
                "rows": sorted((key, stamp.hash) for key, stamp in rows.items()),
            }
        )
    )
    return Fingerprint(digest=digest, components=parts, rows=rows)


# --- the history of sign-offs -------------------------------------------------------------------


class _RowRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int
    hash: str


class _ComponentRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: str
    file: str = ""
    hash: str


class ApprovalRecord(BaseModel):
    """One sign-off: who approved which content, when, with what note."""

    model_config = ConfigDict(extra="forbid")
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    by: str = Field(min_length=1)
    at: str
    note: str | None = None
    recipients: int
    components: list[_ComponentRecord]
    rows: dict[str, _RowRecord]
    # The bytes' hash of every input file and the tool's version (campaign.recorded): lets
    # `status` skip reloading the spreadsheet while nothing changed. Absent in older records.
    sources: dict[str, str] | None = None

    def as_fingerprint(self) -> Fingerprint:
        return Fingerprint(
            digest=self.fingerprint,
            components={(c.what, c.file): c.hash for c in self.components},
            rows={k: RowStamp(v.row, v.hash) for k, v in self.rows.items()},
        )

    @property
    def when(self) -> str:
        """The time of the sign-off, on the organiser's clock: 2026-05-07 16:32."""
        return recorded.when(self.at)


class _History(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = FORMAT
    campaign: str
    approvals: list[ApprovalRecord] = Field(default_factory=list)


def approve_command(name: str | None = None) -> str:
    """The command a hint gives: `campaign approve NAME --by NOM`, its placeholder translated."""
    target = f" {name}" if name else ""
    return f"campaign approve{target} --by {_('NAME')}"


def approval_path(campaign: Campaign) -> Path:
    return campaign.layout.approval


def read_history(campaign: Campaign) -> list[ApprovalRecord]:
    """The sign-offs recorded for a campaign, oldest first; a damaged file is a `StateError`."""
    path = approval_path(campaign)
    shown = shown_path(campaign, path)
    hint = _(
        "restore approval.json from a backup, or move it away and run "
        "campaign proof then campaign approve --by NAME again"
    )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as err:
        raise StateError(
            _("cannot read the approval history: {error}").format(error=err),
            place=Place(file=shown),
            hint=hint,
        ) from None
    try:
        history = _History.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or _("the file")
        raise StateError(
            _("the approval history is damaged ({where}: {error})").format(
                where=where, error=first["msg"]
            ),
            place=Place(file=shown),
            hint=hint,
        ) from None
    if history.campaign != campaign.name:
        raise StateError(
            _("the approval history belongs to campaign {other}, not {name}").format(
                other=quoted(history.campaign), name=quoted(campaign.name)
            ),
            place=Place(file=shown),
            hint=hint,
        )
    return history.approvals


def approve(
    inputs: Inputs,
    *,
    by: str,
    note: str | None = None,
    now: datetime | None = None,
    fingerprint: Fingerprint | None = None,
) -> ApprovalRecord:
    """Append the sign-off of `by` for the current content (`fingerprint`, computed if not given).

    The stage only: `campaign.commands.approve` holds the lock and checks the inputs are clean and
    proofed first.
    """
    campaign = inputs.campaign
    by = " ".join(by.split())
    if not by:
        raise UsageError(
            _("the approver's name is empty"),
            hint=_("say who approves: {command}").format(command=approve_command()),
        )
    history = read_history(campaign)
    current = fingerprint or compute_fingerprint(inputs)
    record = ApprovalRecord(
        fingerprint=current.digest,
        by=by,
        at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        note=note or None,
        recipients=len(current.rows),
        components=[
            _ComponentRecord(what=what, file=file, hash=value)
            for (what, file), value in sorted(current.components.items())
        ],
        rows={k: _RowRecord(row=v.row, hash=v.hash) for k, v in sorted(current.rows.items())},
        sources=recorded.source_hashes(campaign.settings.root, source_files(inputs)),
    )
    document = _History(campaign=campaign.name, approvals=[*history, record])
    write_private(
        approval_path(campaign),
        json.dumps(document.model_dump(), ensure_ascii=False, indent=2) + "\n",
    )
    return record


def source_files(inputs: Inputs) -> list[Path]:
    """Every file whose bytes make the approved content and the ready recipients."""
    campaign = inputs.campaign
    config = campaign.config
    files = [campaign.settings.path, campaign.path(config.recipients)]
    files.append(campaign.path(config.suppression))
    return files + [dependency.path for dependency in inputs.dependencies]


@dataclass(frozen=True)
class ApprovalState:
    """Where a campaign stands: whether approval is required, the last sign-off, what changed."""

    required: bool
    last: ApprovalRecord | None
    changes: list[str]
    fingerprint: Fingerprint
    # Rows approved that are no longer to be sent (left the sheet, suppressed after a bounce):
    # nobody receives anything unapproved, so the approval holds; status says so.
    left: list[int] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.last is not None and not self.changes

    def summary(self) -> str:
        """One line for `campaign status`."""
        if self.last is None:
            text = _("not approved yet")
        elif self.changes:
            text = _(
                "approved by {name} on {when}, but the content changed since: {changes}"
            ).format(name=self.last.by, when=self.last.when, changes=listed(self.changes))
        else:  # the same line as status's shortcut gives (campaign.recorded)
            # The fingerprint the reviewer approved: after a recipient left, the content's own
            # differs (one row fewer), and the line must not name a fingerprint nobody approved.
            text = recorded.approved_summary(
                self.last.by, self.last.at, self.last.fingerprint, required=self.required
            )
            if self.left:
                since = ngettext(
                    "since then {n} recipient no longer to be sent (approved as {rows})",
                    "since then {n} recipients no longer to be sent (approved as {rows})",
                    len(self.left),
                ).format(n=len(self.left), rows=rows_named(self.left))
                text = listed([text, since])
            return text
        if self.required:
            return text
        return _("{state} (approval not required by the settings)").format(state=text)


def approval_state(inputs: Inputs) -> ApprovalState:
    """Compare the current content with the last sign-off."""
    history = read_history(inputs.campaign)
    current = compute_fingerprint(inputs)
    last = history[-1] if history else None
    approved = last.as_fingerprint() if last else None
    changes = describe_changes(approved, current) if approved else []
    left: list[int] = []
    if approved is not None and changes and only_left(approved, current):
        left = sorted(approved.rows[k].row for k in approved.rows.keys() - current.rows.keys())
        changes = []
    return ApprovalState(
        required=inputs.campaign.config.approval.required,
        last=last,
        changes=changes,
        fingerprint=current,
        left=left,
    )


def only_left(approved: Fingerprint, current: Fingerprint) -> bool:
    """Whether the only difference is recipients no longer to be sent: everyone still to be sent
    gets exactly what was approved (same shared parts, same row), so the approval still holds."""
    left = approved.rows.keys() - current.rows.keys()
    return (
        bool(left)
        and approved.components == current.components
        and all(
            key in approved.rows and approved.rows[key].hash == stamp.hash
            for key, stamp in current.rows.items()
        )
    )


def require_approval(inputs: Inputs) -> ApprovalState | None:
    """Refuse (`ApprovalError`) unless the current content is the content last approved.

    A campaign whose settings say `approval: {required: false}` passes without a sign-off (and
    without reading the history): the result is then None.
    """
    if not inputs.campaign.config.approval.required:
        return None
    state = approval_state(inputs)
    campaign = inputs.campaign
    place = Place(file=shown_path(campaign, approval_path(campaign)))
    if state.last is None:
        raise ApprovalError(
            _("campaign {name} is not approved yet").format(name=campaign.name),
            place=place,
            hint=_("run {proof}, have the proofs read, then {approve}").format(
                proof=f"campaign proof {campaign.name}",
                approve=approve_command(campaign.name),
            ),
        )
    if state.changes:
        raise ApprovalError(
            _("the content changed since {name} approved it on {when}:").format(
                name=state.last.by, when=state.last.when
            )
            + "\n  - "
            + "\n  - ".join(state.changes),
            place=place,
            hint=_("run {proof} and have the new proofs approved ({approve})").format(
                proof=f"campaign proof {campaign.name}",
                approve=approve_command(campaign.name),
            ),
        )
    return state


def describe_changes(approved: Fingerprint, current: Fingerprint) -> list[str]:
    """Say, in the organiser's words, what differs between two fingerprints."""
    if approved.digest == current.digest:
        return []
    changes: list[str] = []
    for key in _ordered(set(approved.components) | set(current.components)):
        what, file = key
        if what == "attachment order":
            continue
        before, after = approved.components.get(key), current.components.get(key)
        if before == after:
            continue
        label = _(_COMPONENTS[what]) if what in _COMPONENTS else what
        if before is None:
            change = _("{what} added").format(what=label)
        elif after is None:
            change = _("{what} removed").format(what=label)
        else:
            change = _("{what} changed").format(what=label)
        changes.append(change + (f" ({file})" if file else ""))
    order_before = [f for (w, f) in approved.components if w == "attachment order"]
    order_after = [f for (w, f) in current.components if w == "attachment order"]
    if not changes and (
        [approved.components[("attachment order", i)] for i in order_before]
        != [current.components[("attachment order", i)] for i in order_after]
    ):
        changes.append(_("attachments reordered"))

    changed = sorted(
        current.rows[k].row
        for k in current.rows.keys() & approved.rows.keys()
        if current.rows[k].hash != approved.rows[k].hash
    )
    added = sorted(current.rows[k].row for k in current.rows.keys() - approved.rows.keys())
    removed = sorted(approved.rows[k].row for k in approved.rows.keys() - current.rows.keys())
    if changed:
        changes.append(
            ngettext(
                "{n} recipient changed: {rows}", "{n} recipients changed: {rows}", len(changed)
            ).format(n=len(changed), rows=rows_named(changed))
        )
    if added:
        changes.append(
            ngettext(
                "{n} recipient added: {rows}", "{n} recipients added: {rows}", len(added)
            ).format(n=len(added), rows=rows_named(added))
        )
    if removed:
        changes.append(
            ngettext(
                "{n} recipient removed (approved as {rows})",
                "{n} recipients removed (approved as {rows})",
                len(removed),
            ).format(n=len(removed), rows=rows_named(removed))
        )
    if not changes:
        changes.append(_("the content changed (fingerprint differs)"))
    return changes


_ORDER = [
    "letter template",
    "letter front matter",
    "email body template",
    "email body front matter",
    "stylesheet",
    "image",
    "font",
    "file used by the letter",
    "subject",
    "display name (to_name)",
    "PDF file name (pdf_name)",
    "sender",
    "reply-to",
    "list-unsubscribe",
    "attach_pdf",
    "pdf_variant",
    "letter layout (campaign upgraded)",
    "attachment",
    "spreadsheet columns",
]


# The parts of the fingerprint as a person reads them (the fingerprint keeps the English names).
_COMPONENTS = {
    "letter template": N_("letter template"),
    "letter front matter": N_("letter front matter"),
    "email body template": N_("email body template"),
    "email body front matter": N_("email body front matter"),
    "stylesheet": N_("stylesheet"),
    "image": N_("image"),
    "font": N_("font"),
    "file used by the letter": N_("file used by the letter"),
    "subject": N_("subject"),
    "display name (to_name)": N_("display name (to_name)"),
    "PDF file name (pdf_name)": N_("PDF file name (pdf_name)"),
    "sender": N_("sender"),
    "reply-to": N_("reply-to"),
    "list-unsubscribe": N_("list-unsubscribe"),
    "letter layout (campaign upgraded)": N_("letter layout (campaign upgraded)"),
    "attachment": N_("attachment"),
    "spreadsheet columns": N_("spreadsheet columns"),
    "typography": N_("typography"),
}


def _ordered(keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    rank = {what: i for i, what in enumerate(_ORDER)}
    return sorted(keys, key=lambda k: (rank.get(k[0], len(_ORDER)), k))

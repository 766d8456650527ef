"""The commands of `campaign` as a library: one function per command, each gate and lock taken here.

    check(campaign)                 → CheckReport       validate everything, render nothing
    render(campaign, …)             → Rendered          the PDFs (and the print pack)
    proof(campaign, …)              → ProofPack         the reviewers' pack
    approve(campaign, by=…)         → ApprovalRecord    a sign-off of the proofed content
    send(campaign, options)         → SendReport        the emails, through the delivery log
    inbox(campaign)                 → InboxReport       bounces, replies, uncertain sends resolved
    status(campaign, …)             → StatusReport      the log against the spreadsheet
    purge(campaign, …)              → Purged            the campaign's personal data deleted

The same rules hold for a script as for the command line, because they live here and only here:
every command that writes under the outbox holds the campaign's run lock (`_session`); render,
proof, approve and send refuse while `check` finds errors (`CheckFailed`, exit 1, with the
problems); approve refuses content that the proof pack on disk does not show; send refuses content
that differs from the last approval. The stages they call (`render_letters`, `build_proofs`,
`send_campaign`) take no lock and pass no gate themselves. The CLI parses, calls one of these,
prints the report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from campaign.errors import (
    ApprovalError,
    CampaignError,
    CheckFailed,
    Severity,
    StateError,
    UsageError,
)
from campaign.i18n import _
from campaign.inputs import CheckReport, Inputs, check_inputs, load_inputs
from campaign.outbox import (
    Purge,
    action_done,
    oldest_personal_file,
    plan_purge,
    run_lock,
    sink_folder,
)
from campaign.settings import Campaign

if TYPE_CHECKING:
    from campaign.approval import ApprovalRecord
    from campaign.dispatch import Progress as SendProgress
    from campaign.inbox import InboxReport
    from campaign.pdf import Progress as RenderProgress
    from campaign.pdf import RenderReport
    from campaign.proofs import ProofPack
    from campaign.send import SendOptions, SendReport
    from campaign.status import StatusReport
    from campaign.window import Forecast


@contextlib.contextmanager
def _session(
    campaign: Campaign, action: str, *, clean: bool = True, approved: bool = False
) -> Iterator[Inputs]:
    """Hold the run lock, load the inputs once, and pass the gates the command needs."""
    with run_lock(campaign.layout, campaign=campaign.name, action=action):
        inputs = load_inputs(campaign)
        if clean:
            require_clean(inputs, action=action)
        if approved:
            from campaign.approval import require_approval

            require_approval(inputs)
        yield inputs


def require_clean(inputs: Inputs, *, action: str) -> CheckReport:
    """Refuse (`CheckFailed`) while `check` finds errors in the campaign's inputs."""
    report = check_inputs(inputs)
    if report.errors:
        name = inputs.campaign.name
        raise CheckFailed(
            _("campaign {name} cannot be {action}: {summary}").format(
                name=name, action=action_done(action), summary=report.summary()
            ),
            problems=[p for p in report.problems if p.severity is Severity.ERROR],
            hint=_("fix the errors listed ({command} shows them all), then run it again").format(
                command=f"campaign check {name}"
            ),
        )
    return report


def check(campaign: Campaign) -> CheckReport:
    """Validate settings, letter, recipients and suppression list; dry-merge every letter."""
    return check_inputs(load_inputs(campaign))


@dataclass
class Rendered:
    """What `render` wrote: the letters, and the print pack if asked."""

    report: RenderReport
    print_pack: Path | None = None


def render(
    campaign: Campaign,
    *,
    jobs: int | None = None,
    print_pack: bool = False,
    progress: RenderProgress | None = None,
) -> Rendered:
    """Render every ready recipient's PDF that is missing or stale; optionally the print pack."""
    from campaign import pdf

    with _session(campaign, "rendered") as inputs:
        report = pdf.render_letters(inputs, jobs=jobs, progress=progress)
        packed = pdf.print_pack(inputs) if print_pack and not report.failures else None
    return Rendered(report, packed)


def proof(
    campaign: Campaign,
    *,
    rows: str | None = None,
    extra: int = 0,
    everyone: bool = False,
    progress: RenderProgress | None = None,
) -> ProofPack:
    """Write the reviewers' proof pack for the default sample, the rows asked for, or everyone."""
    from campaign.proofs import build_proofs, choose_sample, parse_rows

    if everyone and rows:
        raise UsageError(
            _("{first} and {second} do not go together").format(first="--all", second="--rows"),
            hint=_("choose one of them"),
        )
    wanted = parse_rows(rows) if rows else None
    with _session(campaign, "proofed") as inputs:
        sample = choose_sample(inputs, rows=wanted, extra=extra, everyone=everyone)
        return build_proofs(inputs, sample, progress=progress)


def approve(campaign: Campaign, *, by: str, note: str | None = None) -> ApprovalRecord:
    """Record that `by` approved the content, once the proof pack on disk shows that content."""
    from campaign.approval import approve as record_approval
    from campaign.approval import compute_fingerprint, read_history
    from campaign.proofs import proofed_fingerprint

    with _session(campaign, "approved") as inputs:
        read_history(campaign)  # a damaged history is said first: nothing can be appended to it
        current = compute_fingerprint(inputs)
        proofed = proofed_fingerprint(campaign)
        if proofed != current.digest:
            state = (
                _("no proof pack") if proofed is None else _("the proof pack shows older content")
            )
            raise ApprovalError(
                _(
                    "cannot approve campaign {name}: {state}; reviewers must read what is approved"
                ).format(name=campaign.name, state=state),
                hint=_("run {command}, have the proofs read, then approve").format(
                    command=f"campaign proof {campaign.name}"
                ),
            )
        return record_approval(inputs, by=by, note=note, fingerprint=current)


def send(
    campaign: Campaign,
    options: SendOptions,
    *,
    progress: SendProgress | None = None,
    clock: Callable[[], float] = time.time,
) -> SendReport:
    """Send (or dry-run, or test-send) the campaign: clean inputs and, for real, approved ones."""
    from campaign.send import send_campaign

    if options.test_to is not None:
        options.test_to = _test_address(options.test_to)
    elif options.count != 1:
        raise UsageError(
            _("{option} goes with {other}: it says how many test letters to send").format(
                option="--count", other="--test-to"
            ),
            hint=f"campaign send {campaign.name} --test-to ADDR --count {options.count}",
        )
    for_real = not options.dry_run and options.test_to is None  # the others need no approval
    if for_real and options.resend_uncertain and campaign.settings.mailbox is not None:
        # Only those still uncertain once the mailbox has spoken: most were in fact delivered.
        inbox(campaign)
    action = "sent (dry run)" if options.dry_run else "sent"
    with _session(campaign, action, approved=for_real) as inputs:
        return send_campaign(inputs, options, progress=progress, clock=clock)


def _test_address(address: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise UsageError(
            _("{option} {address} is not an email address: {error}").format(
                option="--test-to", address=repr(address), error=err
            )
        ) from None


def inbox(campaign: Campaign) -> InboxReport:
    """Read the mailbox since the last scan and record what it says (campaign.inbox)."""
    from campaign.inbox import scan_inbox

    if not campaign.layout.log.exists():
        raise UsageError(
            _("campaign {name} has sent nothing yet: there is nothing to match").format(
                name=campaign.name
            ),
            hint=_("the delivery log is made by the first {command}").format(
                command="campaign send"
            ),
        )
    return scan_inbox(campaign)


def status(
    campaign: Campaign,
    *,
    export: Path | None = None,
    with_sheet: bool = False,
    now: float | None = None,
) -> StatusReport:
    """The delivery log against the spreadsheet as it is now, and where the approval stands."""
    from campaign.approval import approval_state
    from campaign.ledger import Ledger
    from campaign.status import StatusReport, export_deliveries, read_status

    now = time.time() if now is None else now
    layout = campaign.layout
    ready = []
    try:
        inputs = load_inputs(campaign)
        approval = approval_state(inputs).summary()
        ready = inputs.recipients.ready
    except CampaignError as err:
        approval = _("unknown: {error}").format(error=err.message)
    report = StatusReport(campaign.name, layout.log, approval)
    report.warnings = retention_warnings(campaign)
    if not layout.log.exists():
        report.not_sent_yet = [r.row for r in ready]
        report.forecast = _forecast(campaign, report, now)
        if export is not None:
            raise UsageError(
                _("nothing to export: campaign {name} has no delivery log yet").format(
                    name=campaign.name
                ),
                hint=_("the delivery log is made by the first {command}").format(
                    command="campaign send"
                ),
            )
        return report
    with Ledger(layout.log) as log:
        # Settle what a killed run left `sending`, unless a send is running now.
        with (
            contextlib.suppress(StateError),
            run_lock(layout, campaign=campaign.name, action="inspected"),
        ):
            log.recover()
        read_status(report, log, ready, now)
        report.forecast = _forecast(campaign, report, now)
        if export is not None and with_sheet:
            from campaign.export import export_with_sheet

            export_with_sheet(campaign, log.deliveries(), export)
        elif export is not None:
            export_deliveries(log.deliveries(), export)
    return report


def _forecast(campaign: Campaign, report: StatusReport, now: float) -> Forecast | None:
    """When the recipients still to send should be sent, within the caps and the send window."""
    from campaign.window import forecast, window_of

    left = report.counts.get("pending", 0) + report.counts.get("deferred", 0)
    left += len(report.not_sent_yet)
    if not left:
        return None
    throttle = campaign.settings.throttle
    return forecast(left, throttle, window_of(throttle), now, sent_last_day=report.sent_last_24h)


def retention_warnings(campaign: Campaign) -> list[str]:
    """A warning when the outbox keeps personal data longer than `retention_days` allows."""
    days = campaign.settings.retention_days
    oldest = oldest_personal_file(campaign.layout) if days else None
    if not days or oldest is None or oldest[1] <= days:
        return []
    shown = campaign.settings.display(oldest[0])
    return [
        _(
            "personal data older than retention_days ({days}) remains: {path} is {age} days "
            "old; delete it with {command}"
        ).format(
            days=days, path=shown, age=f"{oldest[1]:.0f}", command=f"campaign purge {campaign.name}"
        )
    ]


@dataclass
class Purged:
    """What `purge` found and deleted."""

    plan: Purge
    deleted: int = 0
    confirmed: bool = True
    warnings: list[str] = field(default_factory=list)


def purge(
    campaign: Campaign, *, include_log: bool = False, confirm: Callable[[Purge], bool]
) -> Purged:
    """Delete the campaign's personal data (and the sink's copies) once `confirm(plan)` says yes."""
    from campaign.ledger import Ledger

    layout = campaign.layout
    sink = sink_folder(campaign.settings.resolve(campaign.settings.outbox))
    with run_lock(layout, campaign=campaign.name, action="purged"):
        ids: set[str] = set()
        warnings: list[str] = []
        if layout.log.exists() and sink.is_dir():
            try:
                with Ledger(layout.log) as log:
                    ids = {d.message_id for d in log.deliveries()}
                    ids |= {str(t["message_id"]) for t in log.test_sends()}
            except StateError as err:
                warnings.append(
                    _("the sink's copies cannot be found: {error}").format(error=err.message)
                )
        plan = plan_purge(layout, sink, include_log=include_log, message_ids=ids)
        result = Purged(plan, warnings=warnings)
        if plan.total and not confirm(plan):
            result.confirmed = False
            return result
        result.deleted = plan.execute() if plan.total else 0
    return result

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from campaign.errors import (
    ApprovalError,
    CampaignError,
    CheckFailed,
    Place,
    Problem,
    ServerSettingsError,
    Severity,
    StateError,
    UsageError,
)
from campaign.i18n import _, quoted
from campaign.outbox import (
    Purge,
    action_done,
    oldest_personal_file,
    plan_purge,
    run_lock,
    sink_folder,
)

if TYPE_CHECKING:
    # campaign.inputs brings Jinja2 and pandas: imported by the commands that load the inputs,
    # so that `campaign status` starts without them when nothing changed since the approval.
    from campaign.approval import ApprovalRecord
    from campaign.dispatch import Progress as SendProgress
    from campaign.inbox import InboxReport
    from campaign.inputs import CheckReport, Inputs
    from campaign.ledger import Ledger
    from campaign.pdf import Progress as RenderProgress
    from campaign.pdf import RenderReport
    from campaign.proofs import ProofPack
    from campaign.recorded import StatusSettings
    from campaign.send import SendOptions, SendReport
    from campaign.settings import Campaign
    from campaign.status import Ready, StatusReport
    from campaign.window import Caps, Forecast, SendWindow


@contextlib.contextmanager
def _session(
    campaign: Campaign, action: str, *, clean: bool = True, approved: bool = False
) -> Iterator[Inputs]:
    """Hold the run lock, load the inputs once, and pass the gates the command needs."""
    from campaign.inputs import load_inputs

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
    from campaign.inputs import check_inputs

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
    """Validate settings, letter, recipients and suppression list; dry-merge every letter.

    The smtp section is checked too, offline (no connection, no password command run): only
    `check` does so, since render, proof and approve need no server.
    """
    from dataclasses import replace

    from campaign.inputs import check_inputs, load_inputs
    from campaign.smtpsession import smtp_problems

    inputs = load_inputs(campaign)
    report = check_inputs(inputs)
    settings = campaign.settings
    shown = str(settings.path)
    report.problems += [
        replace(p, place=replace(p.place, file=shown)) for p in smtp_problems(settings.smtp)
    ]
    report.problems += _readdressed(inputs)
    return report


def _readdressed(inputs: Inputs) -> list[Problem]:
    """A warning for each row `send` will hold: the letter already reached that person at an
    address no longer in the sheet (`Ledger.hold_readdressed`). Read only: no log is made."""
    from campaign.ledger import Ledger, held_advice, person_key

    campaign = inputs.campaign
    if not campaign.layout.log.exists() or not inputs.recipients.ready:
        return []
    ready = {r.email: r for r in inputs.recipients.ready}

    def who(address: str) -> tuple[int | None, str | None, str | None]:
        r = ready[address]
        name = inputs.to_name_for(r) if inputs.to_name else None
        return r.row, name, person_key(r.values, r.email)

    try:
        with Ledger(campaign.layout.log) as log:
            held = log.would_hold(list(ready), who)
    except StateError as err:  # damaged, foreign, newer: said among the findings, inputs checked
        return [Problem.from_error(err)]
    shown = campaign.settings.display(campaign.config.recipients)
    hint = held_advice(campaign.name)
    problems = []
    for one in held:
        if one.sent_at is None:
            said = _("the letter already reached this person at {earlier}: send will hold this row")
        else:
            said = _(
                "the letter already reached this person at {earlier} on {when}: send will hold "
                "this row"
            )
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(one.sent_at or 0))
        place = Place(file=shown, row=one.row, column=campaign.config.email_column)
        problems.append(Problem.warning(said.format(earlier=one.earlier, when=when), place, hint))
    return problems


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
        record = record_approval(inputs, by=by, note=note, fingerprint=current)
    from campaign.recorded import write_snapshot

    write_snapshot(campaign, record.fingerprint)  # status needs no settings until they change
    return record


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
        try:
            return send_campaign(inputs, options, progress=progress, clock=clock)
        except ServerSettingsError as err:
            # The SMTP session knows the key at fault; the organiser also wants the file.
            from dataclasses import replace

            err.place = replace(err.place, file=str(campaign.settings.path))
            raise


def _test_address(address: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    from campaign.emailreasons import reason

    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise UsageError(
            _("{option} {address} is not an email address: {error}").format(
                option="--test-to", address=quoted(address), error=reason(err)
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
    report_to: Path | None = None,
    now: float | None = None,
) -> StatusReport:
    """The delivery log against the spreadsheet as it is now, and where the approval stands.

    `export` also writes the log (or, `with_sheet`, the spreadsheet with the outcome) to a file;
    `report_to` writes the organisers' HTML report (campaign.report).
    """
    from campaign.recorded import StatusSettings, write_snapshot
    from campaign.status import export_deliveries
    from campaign.window import window_of

    layout = campaign.layout
    if (export is not None or report_to is not None) and not layout.log.exists():
        if export is not None:
            nothing = _("nothing to export: campaign {name} has no delivery log yet")
        else:
            nothing = _("nothing to report: campaign {name} has no delivery log yet")
        raise UsageError(
            nothing.format(name=campaign.name),
            hint=_("the delivery log is made by the first {command}").format(
                command="campaign send"
            ),
        )
    if report_to is not None:
        from campaign.report import check_report_path

        check_report_path(report_to)  # before any work: a wrong path is said at once
    approval, ready, verified = _approval_and_ready(campaign)

    def then(report: StatusReport, log: Ledger) -> None:
        if export is not None and with_sheet:
            from campaign.export import export_with_sheet

            export_with_sheet(campaign, log.deliveries(), export)
        elif export is not None:
            export_deliveries(log.deliveries(), export)
        if report_to is not None:
            from campaign.report import write_report

            write_report(report, log, report_to, report_now)

    report_now = time.time() if now is None else now
    window = window_of(campaign.settings.throttle)
    report = _status(StatusSettings.of(campaign), approval, ready, report_now, window, then)
    write_snapshot(campaign, verified)  # the next status need not read the settings (recorded)
    return report


def quick_status(
    settings_path: Path | None, name: str | None, *, now: float | None = None
) -> StatusReport | None:
    """`status` without reading settings.yaml or the spreadsheet, or None when it cannot be.

    While settings.yaml has the bytes an earlier status read (its snapshot) and no input file
    changed since the last approval (its record), the answer is the same as `status` gives, for
    a fraction of its start-up (no pydantic, pandas or Jinja2): see campaign.recorded.
    """
    from campaign.recorded import DEFAULT_SETTINGS, read_snapshot, recorded_status

    view = read_snapshot(settings_path or DEFAULT_SETTINGS, name)
    recorded = recorded_status(view) if view is not None else None
    if view is None or recorded is None:
        return None
    approval, ready, _ = recorded
    return _status(view, approval, ready, time.time() if now is None else now, None, None)


def _status(
    view: StatusSettings,
    approval: str,
    ready: Sequence[Ready],
    now: float,
    window: SendWindow | None,
    then: Callable[[StatusReport, Ledger], None] | None,
) -> StatusReport:
    """The status from the log, the ready recipients and the approval line; `then` adds to it."""
    from campaign.ledger import Ledger
    from campaign.status import StatusReport, read_status

    layout = view.layout
    report = StatusReport(view.name, layout.log, approval, sender_domain=view.sender_domain)
    report.warnings = _retention(view)
    if not layout.log.exists():
        report.not_sent_yet = [r.row for r in ready]
        report.forecast = _forecast(view.caps, window, report, now)
        return report
    with Ledger(layout.log) as log:
        # Settle what a killed run left `sending`, unless a send is running now.
        with (
            contextlib.suppress(StateError),
            run_lock(layout, campaign=view.name, action="inspected"),
        ):
            log.recover()
        read_status(report, log, ready, now, layout)
        report.forecast = _forecast(view.caps, window, report, now)
        if then is not None:
            then(report, log)
    return report


def _approval_and_ready(campaign: Campaign) -> tuple[str, Sequence[Ready], str | None]:
    """The approval line, the ready recipients, and the approved fingerprint if the content is
    still the approved one: from the last sign-off's record while none of its files changed
    (campaign.recorded: no spreadsheet to read), else from the inputs."""
    from campaign.recorded import StatusSettings, recorded_status

    recorded = recorded_status(StatusSettings.of(campaign))
    if recorded is not None:
        return recorded
    from campaign.approval import approval_state
    from campaign.inputs import load_inputs

    try:
        inputs = load_inputs(campaign)
        state = approval_state(inputs)
        verified = state.last.fingerprint if state.last is not None and state.approved else None
        return state.summary(), inputs.recipients.ready, verified
    except CampaignError as err:
        return _("unknown: {error}").format(error=err.message), [], None


def _forecast(
    caps: Caps, window: SendWindow | None, report: StatusReport, now: float
) -> Forecast | None:
    """When the recipients still to send should be sent, within the caps and the send window."""
    from campaign.window import forecast

    left = report.counts.get("pending", 0) + report.counts.get("deferred", 0)
    left += len(report.not_sent_yet)
    if not left:
        return None
    return forecast(left, caps, window, now, sent_last_day=report.sent_last_24h)


def retention_warnings(campaign: Campaign) -> list[str]:
    """A warning when the outbox keeps personal data longer than `retention_days` allows."""
    from campaign.recorded import StatusSettings

    return _retention(StatusSettings.of(campaign))


def _retention(view: StatusSettings) -> list[str]:
    days = view.retention_days
    oldest = oldest_personal_file(view.layout) if days else None
    if not days or oldest is None or oldest[1] <= days:
        return []
    shown = view.display(oldest[0])
    return [
        _(
            "personal data older than retention_days ({days}) remains: {path} is {age} days "
            "old; delete it with {command}"
        ).format(
            days=days, path=shown, age=f"{oldest[1]:.0f}", command=f"campaign purge {view.name}"
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
    from campaign.ledger import LEFT, Ledger

    layout = campaign.layout
    sink = sink_folder(campaign.settings.resolve(campaign.settings.outbox))
    with run_lock(layout, campaign=campaign.name, action="purged"):
        ids: set[str] = set()
        served = 0
        warnings: list[str] = []
        if layout.log.exists() and (sink.is_dir() or include_log):
            try:
                with Ledger(layout.log) as log:
                    ids = {d.message_id for d in log.deliveries()}
                    ids |= {str(t["message_id"]) for t in log.test_sends()}
                    if include_log:
                        served = sum(n for state, n in log.counts().items() if state in LEFT)
            except StateError as err:
                warnings.append(
                    _("the sink's copies cannot be found: {error}").format(error=err.message)
                )
        plan = plan_purge(layout, sink, include_log=include_log, message_ids=ids)
        plan.served = served
        result = Purged(plan, warnings=warnings)
        if plan.total and not confirm(plan):
            result.confirmed = False
            return result
        result.deleted = plan.execute() if plan.total else 0
    return result

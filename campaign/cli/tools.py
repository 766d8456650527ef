"""The commands beside the campaign's own steps: `campaign sink` (a local SMTP server that keeps
what it receives) and `campaign purge` (delete the campaign's personal data)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from campaign.cli.base import (
    CAMPAIGN_ARG,
    CAMPAIGN_HELP,
    Context,
    WholeNumber,
    pass_context,
    reports_errors,
)
from campaign.cli.output import ask, console, err_console
from campaign.cli.output import escape as _escape
from campaign.errors import CampaignError
from campaign.i18n import _, labelled, ngettext, number, plural


@click.command(
    short_help=_("Run a local SMTP server that keeps what it receives."),
    help=_("Run a local SMTP server on 127.0.0.1 that stores what it receives as a Maildir.")
    + "\n\n"
    + _(
        "With a mailbox Maildir it also plays the recipients' servers: bounces and "
        "out-of-office replies arrive there, for campaign inbox to read."
    ),
)
@click.option(
    "--port",
    type=WholeNumber(0, 65535),
    metavar=_("PORT"),
    default=8025,
    show_default=True,
    help=_("The port to listen on (0: any free port)."),
)
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    help=_("Where to store messages [outbox/sink next to settings.yaml]."),
)
@click.option(
    "--log",
    "log_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=_("Also append a line per message: receive time, Message-ID, recipients."),
)
@click.option(
    "--mailbox",
    "mailbox_path",
    type=click.Path(path_type=Path, file_okay=False),
    help=_(
        "The sender's mailbox Maildir, where bounces and out-of-office replies go "
        "[mailbox.maildir of the settings]."
    ),
)
@click.option(
    "--bounce",
    default="rebond.*@*",
    metavar=_("PATTERN"),
    show_default=True,
    help=_("Recipients (a pattern) whose server refuses the message and bounces it."),
)
@click.option(
    "--absence",
    default="absence.*@*",
    metavar=_("PATTERN"),
    show_default=True,
    help=_("Recipients (a pattern) who answer with an out-of-office reply."),
)
@pass_context
@reports_errors
def sink(
    ctx: Context,
    port: int,
    maildir: Path | None,
    log_path: Path | None,
    mailbox_path: Path | None,
    bounce: str,
    absence: str,
) -> None:
    from campaign.outbox import sink_folder
    from campaign.sink import Remote, run_sink

    settings = None
    with contextlib.suppress(CampaignError):  # the sink also runs outside a project
        settings = ctx.settings()
    if maildir is None:
        if settings is not None:
            maildir = sink_folder(settings.resolve(settings.outbox))
        else:
            maildir = sink_folder(Path("outbox"))
    configured = settings.mailbox if settings is not None else None
    if mailbox_path is None and settings is not None and configured and configured.maildir:
        mailbox_path = settings.resolve(configured.maildir)
    remote = Remote(mailbox_path, bounce, absence) if mailbox_path is not None else None

    def ready(actual: int) -> None:
        # Scripts wait for "127.0.0.1:PORT" on the first line, in any language.
        click.echo(
            _("sink listening on {address}, storing messages in {folder} (Ctrl-C to stop)").format(
                address=f"127.0.0.1:{actual}", folder=f"{maildir}/new"
            )
        )
        if remote is not None:
            click.echo(
                _(
                    "playing the remote servers: {bounce} bounces, {absence} is away; "
                    "answers go to {folder}"
                ).format(bounce=bounce, absence=absence, folder=f"{remote.mailbox}/new")
            )
        sys.stdout.flush()

    count = run_sink(maildir, port=port, log=log_path, on_ready=ready, remote=remote)
    stopped = ngettext(
        "sink stopped: {n} message stored in {folder}",
        "sink stopped: {n} messages stored in {folder}",
        count,
    )
    click.echo(stopped.format(n=number(count), folder=f"{maildir}/new"))


@click.command(
    short_help=_("Delete the campaign's personal data from the outbox."),
    help=_("Delete the campaign's personal data: PDFs, proofs, dry runs and the sink's copies."),
    epilog=CAMPAIGN_HELP,
)
@CAMPAIGN_ARG
@click.option(
    "--all", "include_log", is_flag=True, help=_("Also delete the delivery log and the approvals.")
)
@click.option("--yes", is_flag=True, help=_("Do not ask for confirmation."))
@pass_context
@reports_errors
def purge(ctx: Context, campaign_name: str | None, include_log: bool, yes: bool) -> None:
    from campaign import commands
    from campaign.errors import UsageError

    campaign = ctx.campaign(campaign_name)
    shown = _escape(campaign.settings.display(campaign.outbox))

    def what(plan: Any) -> str:
        files = plural(len(plan.files), "{n} file", "{n} files")
        copies = plural(len(plan.sink_copies), "{n} copy", "{n} copies")
        if include_log:
            text = _(
                "{files} under {folder} (delivery log included) and {copies} in the local sink"
            )
        else:
            text = _("{files} under {folder} and {copies} in the local sink")
        return text.format(files=files, folder=shown, copies=copies)

    def confirm(plan: Any) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            again = f"campaign purge {campaign.name}{' --all' if include_log else ''} --yes"
            raise UsageError(
                _("purge would delete {files}; it needs a confirmation").format(
                    files=plural(plan.total, "{n} file", "{n} files")
                ),
                hint=_("run it in a terminal, or confirm with {command}").format(command=again),
            )
        return ask(_("Delete {what}?").format(what=what(plan)))

    def forgets(plan: Any) -> str:
        return ngettext(
            "the delivery log records {n} recipient already sent: once it is deleted, a later "
            "{command} would send to them again",
            "the delivery log records {n} recipients already sent: once it is deleted, a later "
            "{command} would send to them again",
            plan.served,
        ).format(n=number(plan.served), command=f"campaign send {campaign.name}")

    def warned_confirm(plan: Any) -> bool:
        if plan.served:
            err_console.print("[yellow]" + _("warning:") + f"[/] {_escape(forgets(plan))}")
        return confirm(plan)

    result = commands.purge(campaign, include_log=include_log, confirm=warned_confirm)
    for warning in result.warnings:
        err_console.print("[yellow]" + _("warning:") + f"[/] {_escape(warning)}")
    if result.plan.total == 0:
        console.print(labelled(f"[bold]{campaign.name}[/]", _("no personal data to delete")))
        return
    if not result.confirmed:
        console.print(_("nothing deleted"))
        sys.exit(1)
    deleted = ngettext("deleted {n} file ({what})", "deleted {n} files ({what})", result.deleted)
    deleted = deleted.format(n=number(result.deleted), what=what(result.plan))
    console.print(labelled(f"[bold]{campaign.name}[/]", deleted))
    if not include_log:
        console.print(
            _(
                "kept the delivery log and approvals (they record who was sent what); "
                "{option} deletes them too"
            ).format(option="--all")
        )

"""Whole commands, as the organiser runs them."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from campaign.cli import main
from tests.conftest import Run


def test_every_command_has_help_text() -> None:
    assert isinstance(main, click.Group)
    for name, command in main.commands.items():
        assert command.help, f"campaign {name} has no help text"
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_check_passes_on_both_sample_campaigns(run: Run) -> None:
    first = run("check", "hopitaux-2020-05")
    assert first.exit_code == 0, first.output
    assert "40 recipients, 40 ready" in first.output
    second = run("check", "merci-signataires")
    assert second.exit_code == 0, second.output
    assert "1 suppressed" in second.output


def test_check_json_counts_rows(run: Run) -> None:
    result = run("check", "merci-signataires", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["recipients"] == 712
    assert report["ready"] == 711
    assert report["suppressed"] == 1
    assert report["errors"] == 0


def test_missing_settings_file_exits_2_without_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--settings", str(tmp_path / "nope.yaml"), "check"])
    assert result.exit_code == 2
    assert "settings file not found" in result.output
    assert "Traceback" not in result.output


def test_unknown_campaign_is_a_usage_error(run: Run) -> None:
    result = run("check", "no-such-campaign")
    assert result.exit_code == 2
    assert "no campaign called 'no-such-campaign'" in result.output
    assert "hopitaux-2020-05" in result.output


def test_quiet_works_before_or_after_the_command_and_keeps_the_summary(run: Run) -> None:
    after = run("proof", "hopitaux-2020-05", "--quiet")
    assert after.exit_code == 0, after.output
    assert "proofs of 7 recipients" in after.output
    assert "why this row" not in after.output  # the sample table is left out
    loud = run("proof", "hopitaux-2020-05")
    assert "why this row" in loud.output
    group_level = run("-q", "proof", "hopitaux-2020-05")
    assert group_level.exit_code == 0, group_level.output
    assert "why this row" not in group_level.output


def test_help_lists_the_commands_in_the_order_they_are_used_with_whole_summaries() -> None:
    result = CliRunner().invoke(main, ["--help"])
    listed = [
        line.split()[0]
        for line in result.output.split("Commands:")[1].splitlines()
        if line.startswith("  ") and line.split()
    ]
    order = [
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
    ]
    assert listed == [name for name in order if name in main.commands]
    assert {"init", "check", "send", "status", "purge"} <= set(listed)
    assert "..." not in result.output.split("Commands:")[1]
    for name in ("check", "send", "status", "inbox", "purge"):
        shown = " ".join(CliRunner().invoke(main, [name, "--help"]).output.split())
        assert "without it, the command takes default_campaign" in shown


def test_help_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, campaign.cli; heavy = [m for m in ('pydantic', 'pandas', 'weasyprint', "
        "'aiosmtplib', 'rich', 'email_validator') if m in sys.modules]; print(heavy)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_a_long_bounced_address_is_never_cut_in_two(capsys: pytest.CaptureFixture[str]) -> None:
    """In a pipe (80 columns) the reason wraps, the address stays whole on its line."""
    from campaign.cli.output import print_inbox
    from campaign.inbox import Bounce, InboxReport

    address = "rebond.marie-christine.de-la-fontaine@hopital-exemple.example.org"
    reason = "550 5.1.1 <" + address + ">: Recipient address rejected: User unknown in table"
    report = InboxReport(campaign="c", mailbox="maildir", bounces=[Bounce(address, reason, 0.0)])
    print_inbox(report)
    lines = capsys.readouterr().out.splitlines()
    assert any(address in line for line in lines), "\n".join(lines)


def test_send_progress_draws_on_a_terminal_and_stays_idle_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io

    from rich.console import Console

    from campaign.cli import output
    from campaign.dispatch import Event, EventKind

    events = [Event(EventKind.START, total=3, text="3 to send")] + [
        Event(EventKind.DONE, key=f"r{i}@example.org") for i in range(3)
    ]
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    monkeypatch.setattr(output.err_console, "_console", terminal)
    with output.SendProgress(disable=False) as progress:
        for event in events:
            progress(event)
        assert progress.bar is not None
        assert progress.bar.tasks[0].completed == 3
        assert progress.bar.tasks[0].total == 3
    assert progress.done == 3
    assert "3/3" in screen.getvalue()

    pipe = io.StringIO()
    monkeypatch.setattr(output.err_console, "_console", Console(file=pipe, force_terminal=False))
    with output.SendProgress(disable=False) as progress:
        for event in events:
            progress(event)
    assert progress.bar is None  # no bar in a pipe, but the forecast is still said
    assert progress.done == 3
    assert pipe.getvalue().strip() == "3 to send"

    quiet = io.StringIO()
    monkeypatch.setattr(output.err_console, "_console", Console(file=quiet, force_terminal=True))
    with output.SendProgress(disable=True) as progress:
        for event in events:
            progress(event)
    assert progress.bar is None and progress.done == 3 and quiet.getvalue() == ""
    assert progress.console is None  # --quiet, --json: no console made at all

"""The commands as a library (`campaign.commands`): the same gates and locks for a script as for
the command line, typed reports, and the front door's defects (each found by a new user)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner, Result

from campaign import commands
from campaign.cli import main
from campaign.errors import ApprovalError, CheckFailed, StateError, UsageError
from campaign.inputs import load_inputs
from campaign.ledger import State
from campaign.outbox import run_lock
from campaign.recipients import Recipient
from campaign.send import SendMode, SendOptions
from campaign.settings import Campaign, load_settings
from tests.conftest import REPO, cli
from tests.smtp_server import Fault, FaultyServer, make_project


def campaign_of(settings: Path, name: str = "mini") -> Campaign:
    return load_settings(settings).campaign(name)


def flat(result: Result) -> str:
    return " ".join(result.output.split())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def needs_approval(settings: Path) -> None:
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("approval: {required: false}", ""), encoding="utf-8")


# --- the gates and the lock, for a script ------------------------------------------------------


def test_a_script_cannot_send_unapproved_content(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        needs_approval(settings)
        with pytest.raises(ApprovalError, match="not approved yet"):
            commands.send(campaign_of(settings), SendOptions())
        assert server.connections == 0
        commands.proof(campaign_of(settings))
        commands.approve(campaign_of(settings), by="Maître Dupont")
        report = commands.send(campaign_of(settings), SendOptions())
        assert report.mode is SendMode.SEND and report.tally.sent == 2
        assert report.exit_code == 0


def test_every_writing_command_refuses_while_another_run_holds_the_lock(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=free_port(), recipients=2)
    campaign = campaign_of(settings)
    with run_lock(campaign.layout, campaign="mini", action="sent"):
        for call in (
            lambda: commands.render(campaign),
            lambda: commands.proof(campaign),
            lambda: commands.approve(campaign, by="x"),
            lambda: commands.send(campaign, SendOptions(dry_run=True)),
            lambda: commands.purge(campaign, confirm=lambda plan: True),
        ):
            with pytest.raises(StateError, match=f"being sent by process {os.getpid()}"):
                call()


def test_one_rule_for_check_errors_render_proof_approve_and_send(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=free_port(), rows=[("A", "B", "pas-une-adresse")])
    campaign = campaign_of(settings)
    for name, call in (
        ("rendered", lambda: commands.render(campaign)),
        ("proofed", lambda: commands.proof(campaign)),
        ("approved", lambda: commands.approve(campaign, by="x")),
        ("sent", lambda: commands.send(campaign, SendOptions())),
        ("sent (dry run)", lambda: commands.send(campaign, SendOptions(dry_run=True))),
    ):
        with pytest.raises(CheckFailed, match=re.escape(f"cannot be {name}:")) as caught:
            call()
        assert caught.value.exit_code == 1
        assert [p.place.row for p in caught.value.problems] == [2]
    for args in (("render",), ("proof",), ("send",), ("approve", "--by", "x")):
        result = cli(settings, *args)
        assert result.exit_code == 1, args
        assert "cannot be" in result.output and "Traceback" not in result.output


# --- send says why, and exits 1 unless everyone due was sent -----------------------------------


def test_send_with_the_server_down_exits_1_and_says_why_once(tmp_path: Path) -> None:
    port = free_port()
    settings = make_project(tmp_path, port=port, recipients=4)
    result = cli(settings, "send", "--no-wait")
    assert result.exit_code == 1, result.output
    text = flat(result)
    assert "0 sent, 0 deferred, 0 failed" in text
    reason = f"connection refused by 127.0.0.1:{port} (is the SMTP server running?)"
    assert f"stopped: 127.0.0.1:{port} unreachable" in text and reason in text
    assert text.count("connection refused") == 1
    report = commands.status(campaign_of(settings))
    assert report.counts["pending"] == 4  # the server's fault: nobody's attempts were spent
    test = cli(settings, "send", "--test-to", "relecture@example.org", "--no-wait")
    assert test.exit_code == 1
    assert reason in flat(test)


def test_count_without_test_to_is_refused(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=free_port(), recipients=2)
    result = cli(settings, "send", "--count", "3")
    assert result.exit_code == 2
    assert "--count goes with --test-to" in flat(result)
    assert not campaign_of(settings).layout.log.exists()


# --- status knows the spreadsheet, groups replies, exports safely ------------------------------


def test_status_lists_rows_not_sent_yet_and_log_entries_gone_from_the_sheet(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        assert cli(settings, "send").exit_code == 0
    sheet = tmp_path / "recipients" / "people.csv"
    lines = sheet.read_text(encoding="utf-8").splitlines()
    lines = [lines[0], *lines[2:], "Zoé,Nouvelle,zoe.nouvelle@example.org"]  # row 2 leaves
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = commands.status(campaign_of(settings))
    assert report.counts["sent"] == 3
    assert report.not_sent_yet == [4]
    assert report.not_in_sheet == ["personne0001@example.org"]
    text = flat(cli(settings, "status"))
    assert "1 not sent yet: in the spreadsheet, not yet in the log (row 4)" in text
    assert "no longer in the spreadsheet (kept, never sent again): personne0001@example.org" in text


def test_status_groups_identical_failures(tmp_path: Path) -> None:
    faults = [Fault("rcpt", code=550, text="5.1.1 mailbox unavailable", times=0)]
    with FaultyServer(faults=faults) as server:
        settings = make_project(tmp_path, port=server.port, recipients=6)
        assert cli(settings, "send").exit_code == 1
    report = commands.status(campaign_of(settings))
    (group,) = report.groups
    assert (group.state, group.code, group.count) == (State.FAILED, 550, 6)
    assert group.rows == [2, 3, 4, 5, 6, 7]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(main, ["--settings", str(settings), "status"])
    assert result.output.count("mailbox unavailable") == 1
    assert "2, 3, 4, 5, 6, 7" in result.output


@pytest.mark.parametrize("name", ["x.csv", "x.xlsx"])
def test_export_into_a_missing_folder_is_a_clear_error(tmp_path: Path, name: str) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=1)
        assert cli(settings, "send").exit_code == 0
    result = cli(settings, "status", "--export", str(tmp_path / "missing" / name))
    assert result.exit_code == 2  # a usage error, as for --report
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    assert "does not exist" in flat(result) and "create the folder first" in flat(result)


# --- the other commands' front door ------------------------------------------------------------


def test_sink_names_the_option_it_cannot_use(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["sink", "--port", "0", "--maildir", str(blocker / "x")])
    assert result.exit_code == 2
    assert "option --maildir" in flat(result) and "Traceback" not in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = CliRunner().invoke(main, ["sink", "--port", str(port), "--maildir", str(tmp_path)])
    assert busy.exit_code == 2
    assert "option --port" in flat(busy) and "key" not in flat(busy)


def test_purge_without_a_terminal_keeps_the_users_flags_in_its_hint(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=free_port(), recipients=2)
    assert cli(settings, "send", "--dry-run").exit_code == 0
    result = cli(settings, "purge", "--all")
    assert result.exit_code == 2
    assert "campaign purge mini --all --yes" in flat(result)
    with pytest.raises(UsageError):  # the library asks its caller, who may refuse
        commands.purge(campaign_of(settings), confirm=_refuse)


def _refuse(plan: object) -> bool:
    raise UsageError("no")


def test_a_misspelt_helper_is_not_called_a_missing_column(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=free_port(), recipients=1)
    letter = tmp_path / "letters" / "mini.md"
    letter.write_text(letter.read_text(encoding="utf-8") + "\n{{ salutaton('Madame') }}\n")
    report = commands.check(campaign_of(settings))
    (problem,) = report.problems
    assert problem.message == "salutaton(...) is not a helper of the letters"
    assert problem.hint == "did you mean salutation(...)?"


def test_the_demo_sends_nothing_when_its_sink_cannot_listen(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "letters", root / "letters")
    with socket.socket() as foreign:  # another program already listens on the port
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        foreign.settimeout(0.5)
        port = foreign.getsockname()[1]
        text = (REPO / "settings.yaml").read_text(encoding="utf-8")
        (root / "settings.yaml").write_text(text.replace("port: 8025", f"port: {port}"))
        _small_sheets(root)
        demo = subprocess.run(
            ["bash", str(REPO / "scripts" / "demo.sh")],
            env={
                **os.environ,
                "CAMPAIGN": f"{sys.executable} -m campaign.cli",
                "SETTINGS": str(root / "settings.yaml"),
                "DEMO_SINK_PORT": str(port),
            },
            capture_output=True,
            text=True,
            timeout=240,
        )
        with pytest.raises(TimeoutError):
            foreign.accept()  # nobody connected to the foreign program
    assert demo.returncode == 1
    assert f"could not listen on 127.0.0.1:{port}" in demo.stderr
    assert "nothing was sent" in demo.stderr


def _small_sheets(root: Path) -> None:
    """Three directors and three signatories: the demo's gates run, quickly."""
    recipients = root / "recipients"
    recipients.mkdir()
    for item in (REPO / "recipients").iterdir():
        target = recipients / item.name
        if item.suffix == ".xlsx":
            book = openpyxl.load_workbook(item)
            assert book.active is not None
            book.active.delete_rows(5, book.active.max_row)
            book.save(target)
        elif item.name == "signataires.csv":
            raw = item.read_bytes().splitlines(keepends=True)
            target.write_bytes(b"".join(raw[:4]))
        else:
            target.write_bytes(item.read_bytes())


def test_a_run_merges_each_recipient_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from campaign.inputs import Inputs

    settings = make_project(tmp_path, port=free_port(), recipients=4)
    calls: list[int] = []
    original = Inputs.context

    def counted(self: Inputs, recipient: Recipient) -> dict[str, object]:
        calls.append(recipient.row)
        return original(self, recipient)

    monkeypatch.setattr(Inputs, "context", counted)
    inputs = load_inputs(campaign_of(settings))
    from campaign.send import send_campaign

    report = send_campaign(inputs, SendOptions(dry_run=True))
    assert report.written == 4
    assert sorted(calls) == [2, 3, 4, 5]  # subject, display name, body and log entry share one

"""smtp.dsn: the RFC 3461 parameters reach the server (aiosmtpd, a real Postfix) and the reports
that come back are matched by their ENVID."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from campaign.dsn import envelope_id, xtext, xtext_decode
from campaign.ledger import Ledger, State
from campaign.settings import load_settings
from tests.conftest import Run, approve_proofed
from tests.mailservers import USERS, Postfix
from tests.smtp_server import FaultyServer, make_project
from tests.test_send import FIRST, send

USER = "collectif@example.org"


def test_xtext_escapes_plus_equals_and_what_is_not_printable_ascii() -> None:
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext("élise@example.org") == "+C3+A9lise@example.org"
    for text in ("a+b=c d", "élise@example.org", "plain.text-1"):
        assert xtext_decode(xtext(text)) == text


def dsn_parameters(mail_args: str) -> list[str]:
    """The parameters of a MAIL FROM argument but SIZE (RFC 1870, declared to every server)."""
    return [word for word in mail_args.split()[1:] if not word.startswith("SIZE=")]


@pytest.mark.parametrize(
    ("setting", "notify"),
    [("never", "NEVER"), ("failure", "FAILURE,DELAY"), ("success", "SUCCESS,FAILURE,DELAY")],
)
def test_a_server_offering_dsn_gets_notify_orcpt_ret_and_envid(
    tmp_path: Path, setting: str, notify: str
) -> None:
    with FaultyServer(dsn=True) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2, smtp=f"dsn: {setting}")
        report = send(settings)
    assert report.tally.sent == 2 and not report.notes
    first = next(s for s in server.stored if s.recipients == [FIRST])
    with Ledger.for_campaign(load_settings(settings).campaign("mini").layout) as log:
        delivery = log.get(FIRST)
    assert delivery is not None and delivery.message_id == first.message_id
    envid = envelope_id(delivery.message_id)
    assert dsn_parameters(first.mail_args) == ["RET=HDRS", f"ENVID={envid}"]
    assert first.rcpt_args[0].split()[1:] == [f"NOTIFY={notify}", f"ORCPT=rfc822;{FIRST}"]
    assert envid.endswith(".mini")  # the recipient's key: the address's hash and the campaign


def test_a_server_without_dsn_gets_nothing_extra_and_the_report_says_so_once(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:  # aiosmtpd answers 555 to parameters it does not know
        settings = make_project(tmp_path, port=server.port, recipients=3, smtp="dsn: success")
        report = send(settings)
    assert report.tally.sent == 3
    assert all(dsn_parameters(s.mail_args) == [] for s in server.stored)
    assert all(s.rcpt_args[0].split()[1:] == [] for s in server.stored)
    assert len(report.notes) == 1 and "does not offer DSN" in report.notes[0]


def test_without_the_setting_nothing_is_asked_even_of_a_dsn_server(tmp_path: Path) -> None:
    with FaultyServer(dsn=True) as server:
        send(make_project(tmp_path, port=server.port, recipients=1))
    assert dsn_parameters(server.stored[0].mail_args) == []
    assert server.stored[0].rcpt_args[0].split()[1:] == []


def test_a_real_postfix_success_report_is_matched_by_its_envid(
    project: Path, run: Run, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot = postfix.dovecot
    sheet = project / "recipients" / "one.csv"
    sheet.write_text(
        "Prénom;Nom;Fonction;Organisation;Courriel\nNathalie;Noël;;;nathalie.noel@example.org\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", USERS[USER])
    settings = project / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8")
        .replace("recipients/signataires.csv", "recipients/one.csv")
        .replace("port: 8025", f"port: {postfix.smtp_port}\n  dsn: success")
        .replace(
            "  maildir: outbox/mailbox",
            f"  imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, security: none, "
            f"username: {USER}, password_env: CAMPAIGN_IMAP_PASSWORD}}",
        ),
        encoding="utf-8",
    )
    assert approve_proofed(run, "merci-signataires", "--by", "t").exit_code == 0
    sent = run("send", "merci-signataires", "-q")
    assert sent.exit_code == 0, sent.output
    deadline = time.monotonic() + 30
    while not dovecot.messages(USER) and time.monotonic() < deadline:
        time.sleep(0.2)
    reports = dovecot.messages(USER)
    assert reports and reports[0].get_content_type() == "multipart/report", postfix.log_since()
    campaign = load_settings(settings).campaign("merci-signataires")
    with Ledger.for_campaign(campaign.layout) as log:
        delivery = log.get("nathalie.noel@example.org")
    assert delivery is not None
    envid = envelope_id(delivery.message_id)
    status_part = next(p for p in reports[0].walk() if p.get_content_type().endswith("status"))
    assert f"Original-Envelope-Id: {envid}" in status_part.as_string()  # Postfix kept it
    result = json.loads(run("inbox", "merci-signataires", "--json").output)
    assert (result["delivered"], result["unmatched"]) == (1, 0)
    with Ledger.for_campaign(campaign.layout) as log:
        after = log.get("nathalie.noel@example.org")
    assert after is not None and after.state is State.DELIVERED

"""campaign inbox against a real Dovecot (IMAP, read-only) and the DSN a real Postfix writes back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from campaign.ledger import Entry, Ledger, State, outcome
from campaign.settings import load_settings
from tests.conftest import DATA, Run, approve_proofed, said
from tests.mailservers import USERS, Dovecot, Postfix, access_token

USER = "collectif@example.org"
MID = "<0f3a9c2e71b84d5a9e6c1b2d3f4a5b6c.hopitaux-2020-05@example.org>"


def _with_imap(project: Path, dovecot: Dovecot, login: str) -> Path:
    """The project's mailbox on the test Dovecot, logging in as USER with `login`'s keys."""
    settings = project / "settings.yaml"
    text = settings.read_text(encoding="utf-8").replace(
        "  maildir: outbox/mailbox",
        f"  imap: {{host: 127.0.0.1, port: {dovecot.imap_port}, security: none, "
        f"username: {USER}, {login}}}",
    )
    settings.write_text(text, encoding="utf-8")
    return settings


def _imap_settings(project: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", USERS[USER])
    _with_imap(project, dovecot, "password_env: CAMPAIGN_IMAP_PASSWORD")


def _client(dovecot: Dovecot):  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=dovecot.imap_port, ssl=False, timeout=10)
    client.login(USER, USERS[USER])
    return client


def test_inbox_reads_dovecot_read_only_and_resolves_an_uncertain_send_from_sent(
    project: Path, run: Run, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.clear()
    _imap_settings(project, dovecot, monkeypatch)
    campaign = load_settings(project / "settings.yaml").campaign("hopitaux-2020-05")
    uncertain_mid = "<1111.hopitaux-2020-05@example.org>"
    with Ledger.for_campaign(campaign.layout) as log:
        log.enqueue(
            [
                Entry("jean.dupont@example.com", 2, "Jean Dupont", MID),
                Entry("paul.martin@example.com", 3, None, uncertain_mid),
            ],
            [],
            1.0,
        )
        log.apply(
            [
                outcome("jean.dupont@example.com", State.SENT, 250, "ok", 1.0),
                outcome("paul.martin@example.com", State.UNCERTAIN, None, "lost", 1.0),
            ]
        )
    client = _client(dovecot)
    try:
        for name in ("postfix.eml", "french-out-of-office.eml", "newsletter.eml", "exim.eml"):
            client.append("INBOX", (DATA / "bounces" / name).read_bytes())
        client.append("Sent", f"Message-ID: {uncertain_mid}\r\nSubject: x\r\n\r\nbody\r\n".encode())
        result = run("inbox", "hopitaux-2020-05", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert (report["mailbox"], report["read"]) == ("imap", 4)
        assert (report["bounced"], report["auto_replied"]) == (2, 1)  # Postfix and Exim
        assert report["fetched"] == 2  # the two bounces; the others by their headers only
        assert report["folders"] == ["INBOX", "Sent"]  # Sent found by its \Sent flag
        assert list(report["resolved_uncertain"]) == ["paul.martin@example.com"]
        client.select_folder("INBOX", readonly=True)
        flags = client.fetch(client.search("ALL"), ["FLAGS"])
        assert all(b"\\Seen" not in data[b"FLAGS"] for data in flags.values())  # BODY.PEEK
        assert len(flags) == 4  # nothing moved or deleted
        again = json.loads(run("inbox", "hopitaux-2020-05", "--json").output)
        assert again["read"] == 0
        client.append("INBOX", (DATA / "bounces" / "human-reply.eml").read_bytes())
        third = json.loads(run("inbox", "hopitaux-2020-05", "--json").output)
        assert (third["read"], third["replied"]) == (1, 1)
    finally:
        client.logout()
    with Ledger.for_campaign(campaign.layout) as log:
        jean = log.get("jean.dupont@example.com")
        paul = log.get("paul.martin@example.com")
        position = log.scan_position("imap:INBOX")
    assert jean is not None and jean.state is State.BOUNCED and jean.replied_at is not None
    assert paul is not None and paul.state is State.SENT and "Sent" in (paul.evidence or "")
    assert position is not None and position.uidvalidity > 0 and position.last_uid == 5


def _thank_you_through(project: Path, postfix: Postfix, rows: str) -> Path:
    """The sample's thank-you campaign to `rows` (CSV lines), through the real Postfix."""
    sheet = project / "recipients" / "few.csv"
    sheet.write_text("Prénom;Nom;Fonction;Organisation;Courriel\n" + rows, encoding="utf-8")
    settings = project / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8")
        .replace("recipients/signataires.csv", "recipients/few.csv")
        .replace("port: 8025", f"port: {postfix.smtp_port}"),
        encoding="utf-8",
    )
    return settings


def test_a_real_postfix_bounce_for_an_unknown_user_is_read_back_and_suppressed(
    project: Path, run: Run, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot = postfix.dovecot
    # Postfix accepts rebond.* (the address looks local), then its delivery agent fails it as a
    # remote server would: Postfix writes the RFC 3464 bounce back to the sender's mailbox.
    transport = postfix.config_dir / "bounce-transport"
    transport.write_text(
        "/^rebond\\./ error:5.1.1 User unknown in virtual mailbox table\n", encoding="utf-8"
    )
    postfix.configure(transport_maps=f"regexp:{transport}", smtpd_reject_unlisted_recipient="no")
    _thank_you_through(
        project,
        postfix,
        "Nathalie;Noël;;;nathalie.noel@example.org\n"
        "Olivier;Chevalier;;;rebond.olivier.chevalier@example.org\n",
    )
    _imap_settings(project, dovecot, monkeypatch)
    assert approve_proofed(run, "merci-signataires", "--by", "t").exit_code == 0
    sent = run("send", "merci-signataires", "-q")
    assert sent.exit_code == 0, sent.output
    deadline = time.monotonic() + 30
    while not dovecot.messages(USER) and time.monotonic() < deadline:
        time.sleep(0.2)
    dsn = dovecot.messages(USER)
    assert dsn and dsn[0].get_content_type() == "multipart/report", postfix.log_since()
    report = json.loads(run("inbox", "merci-signataires", "--json").output)
    assert report["bounced"] == 1
    bounce = report["bounces"][0]
    assert bounce["email"] == "rebond.olivier.chevalier@example.org"
    assert "5.1.1" in bounce["reason"]
    assert report["added_to_suppression"] == ["rebond.olivier.chevalier@example.org"]
    status = json.loads(run("status", "merci-signataires", "--json").output)
    assert status["counts"]["bounced"] == 1 and status["counts"]["sent"] == 1


REFUSED = {"paul.martin@example.com", "claire.dufresne@example.com"}


def _refusing_example_com(project: Path, run: Run, postfix: Postfix, *, at_once: bool) -> Path:
    """The thank-you campaign to one example.org and two example.com recipients, example.com's
    provider refusing the sender's domain for its DMARC policy, as Gmail does: at RCPT
    (`at_once`: Postfix checks the address's transport before it accepts it), or afterwards, as
    an RFC 3464 report that Postfix writes back to the sender's mailbox."""
    transport = postfix.config_dir / "dmarc-transport"
    transport.write_text(
        "/@example\\.com$/ error:5.7.26 Unauthenticated email from example.org is not accepted"
        " due to domain's DMARC policy\n",
        encoding="utf-8",
    )
    postfix.configure(
        transport_maps=f"regexp:{transport}",
        smtpd_reject_unlisted_recipient="yes" if at_once else "no",
    )
    settings = _thank_you_through(
        project,
        postfix,
        "Nathalie;Noël;;;nathalie.noel@example.org\n"
        "Paul;Martin;;;paul.martin@example.com\n"
        "Claire;Dufresne;;;claire.dufresne@example.com\n",
    )
    assert approve_proofed(run, "merci-signataires", "--by", "t").exit_code == 0
    return settings


def _each_once(postfix: Postfix, settings: Path) -> None:
    """Everyone `sent` in the log, with exactly one copy in their Maildir, the logged one."""
    campaign = load_settings(settings).campaign("merci-signataires")
    with Ledger.for_campaign(campaign.layout) as log:
        ids = {d.email: d.message_id.strip("<>") for d in log.deliveries()}
        states = {d.email: d.state for d in log.deliveries()}
    assert states == dict.fromkeys([*REFUSED, "nathalie.noel@example.org"], State.SENT)
    for address in [*REFUSED, "nathalie.noel@example.org"]:
        copies = [str(m["Message-ID"]).strip("<>") for m in postfix.dovecot.messages(address)]
        assert copies == [ids[address]], (address, copies)  # each exactly once


def _resent_once_put_right(run: Run, postfix: Postfix, settings: Path, option: str) -> None:
    """The organiser puts the domain right (here: the provider stops refusing), then sends
    again with `option`: the two refused arrive, and everyone has exactly one copy."""
    postfix.configure(transport_maps="")
    mark = postfix.log_mark()
    again = run("send", "merci-signataires", option, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["sent"] == 2
    postfix.wait_delivered(2, mark=mark, seconds=30)
    _each_once(postfix, settings)


def test_a_real_postfix_refusal_at_rcpt_for_the_senders_domain_is_said_to_be_the_campaigns(
    project: Path, run: Run, postfix: Postfix
) -> None:
    settings = _refusing_example_com(project, run, postfix, at_once=True)
    sent = run("send", "merci-signataires")
    assert sent.exit_code == 1, sent.output
    told = said(sent)
    assert "5.7.26" in told and "Recipient address rejected" in told  # Postfix's own words
    assert (
        "2 recipients did not get the letter because the mail servers found that mail from" in told
    )
    assert "then campaign send merci-signataires --retry-failed sends to them again" in told
    _resent_once_put_right(run, postfix, settings, "--retry-failed")


def test_a_real_postfix_dmarc_refusal_spares_the_addresses_and_retry_bounced_delivers_once(
    project: Path, run: Run, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot = postfix.dovecot
    settings = _refusing_example_com(project, run, postfix, at_once=False)
    _imap_settings(project, dovecot, monkeypatch)
    sent = run("send", "merci-signataires", "-q")
    assert sent.exit_code == 0, sent.output
    deadline = time.monotonic() + 30
    while len(dovecot.messages(USER)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(dovecot.messages(USER)) == 2, postfix.log_since()
    report = json.loads(run("inbox", "merci-signataires", "--json").output)
    assert {b["email"]: b["cause"] for b in report["bounces"]} == dict.fromkeys(
        REFUSED, "authentication"
    )
    assert "5.7.26" in report["bounces"][0]["reason"]
    assert report["added_to_suppression"] == []
    suppression = (project / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    assert not any(address in suppression for address in REFUSED)
    _resent_once_put_right(run, postfix, settings, "--retry-bounced")


def test_a_report_fetched_by_its_parts_is_classified_as_the_whole_message(
    project: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign.bounces import classify, parse_message
    from campaign.mailbox import open_mailbox

    dovecot.clear()
    _imap_settings(project, dovecot, monkeypatch)
    names = [
        n
        for n in sorted(p.name for p in (DATA / "bounces").glob("*.eml"))
        if b"multipart/report" in (DATA / "bounces" / n).read_bytes()
    ]
    client = _client(dovecot)
    try:
        for name in names:
            data = (DATA / "bounces" / name).read_bytes()
            # a returned letter with a large attachment: the part the scan no longer reads whole
            client.append("INBOX", data.replace(b"Madame, Monsieur,\n", b"x" * 60_000 + b"\n"))
    finally:
        client.logout()
    box = open_mailbox(load_settings(project / "settings.yaml"))
    try:
        arrivals, _ = box.arrivals("INBOX", None)
        uids = [a.uid for a in arrivals]
        parts = box.fetch("INBOX", uids, reports=set(uids))
        whole = box.fetch("INBOX", uids)
    finally:
        box.close()
    assert len(uids) == len(names) >= 5
    assert sum(map(len, parts.values())) * 2 < sum(map(len, whole.values()))
    for uid in uids:
        assert len(parts[uid]) <= len(whole[uid])
        by_parts, entire = classify(parse_message(parts[uid])), classify(parse_message(whole[uid]))
        assert by_parts == entire


def test_a_wrong_imap_password_is_a_settings_error_naming_the_key(
    project: Path, run: Run, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    _imap_settings(project, dovecot, monkeypatch)
    monkeypatch.setenv("CAMPAIGN_IMAP_PASSWORD", "not-the-password")
    campaign = load_settings(project / "settings.yaml").campaign("hopitaux-2020-05")
    with Ledger.for_campaign(campaign.layout) as log:
        log.enqueue([Entry("jean.dupont@example.com", 2, "Jean Dupont", MID)], [], 1.0)
    result = run("inbox", "hopitaux-2020-05")
    assert result.exit_code == 2, result.output  # the settings' fault, as for SMTP
    said = " ".join(result.output.split())
    assert "refused the login of collectif@example.org" in said
    assert "mailbox.imap.username" in said
    assert "not-the-password" not in said


def _oauth_settings(project: Path, dovecot: Dovecot, auth: str, token: str) -> None:
    """`mailbox.imap` logging in with an OAuth2 token that a command prints, as `oama` does."""
    printer = project / "token.txt"
    printer.write_text(token + "\n", encoding="utf-8")
    settings = _with_imap(project, dovecot, f"auth: {auth}, password_command: 'cat {printer}'")
    campaign = load_settings(settings).campaign("hopitaux-2020-05")
    with Ledger.for_campaign(campaign.layout) as log:
        log.enqueue([Entry("jean.dupont@example.com", 2, "Jean Dupont", MID)], [], 1.0)


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_inbox_logs_in_with_an_oauth2_token(
    project: Path, run: Run, dovecot: Dovecot, auth: str
) -> None:
    # Microsoft 365 and Gmail take no password over IMAP: the token a command prints, checked
    # here by Dovecot's oauth2 passdb (a JWT validated against its key, no network).
    before = dovecot.log().count(f"user=<{USER}>, method={auth.upper()}")
    _oauth_settings(project, dovecot, auth, access_token(USER))
    result = run("inbox", "hopitaux-2020-05", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mailbox"] == "imap"
    assert dovecot.log().count(f"Login: user=<{USER}>, method={auth.upper()}") == before + 1


def test_a_token_the_server_refuses_is_a_settings_error_about_the_command(
    project: Path, run: Run, dovecot: Dovecot
) -> None:
    token = access_token(USER, key=b"a key the provider does not know")
    _oauth_settings(project, dovecot, "xoauth2", token)
    result = run("inbox", "hopitaux-2020-05")
    assert result.exit_code == 2, result.output  # the settings' fault: nobody's mail is touched
    said = " ".join(result.output.split())
    assert "refused the login of collectif@example.org" in said
    assert "mailbox.imap.password_command" in said and "may have expired" in said
    assert token not in said and token.split(".")[2] not in said  # the token is a secret


def test_an_unsubscribe_request_read_from_dovecot_suppresses_the_address(
    project: Path, run: Run, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over IMAP the scan first fetches the triage headers only: To must be among them.
    dovecot.clear()
    _imap_settings(project, dovecot, monkeypatch)
    settings = project / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    assert text.count("    attach_pdf: true\n") == 1
    settings.write_text(
        text.replace(
            "    attach_pdf: true\n",
            "    attach_pdf: true\n    list_unsubscribe: mailto:collectif@example.org?subject=stop\n",
        ),
        encoding="utf-8",
    )
    campaign = load_settings(settings).campaign("hopitaux-2020-05")
    with Ledger.for_campaign(campaign.layout) as log:
        log.enqueue([Entry("jean.dupont@example.com", 2, "Jean Dupont", MID)], [], 1.0)
        log.apply([outcome("jean.dupont@example.com", State.SENT, 250, "ok", 1.0)])
    client = _client(dovecot)
    try:
        client.append(
            "INBOX",
            b"From: Jean Dupont <jean.dupont@example.com>\r\nTo: collectif@example.org\r\n"
            b"Subject: STOP\r\nMessage-ID: <u1@mx.example.com>\r\n\r\nunsubscribe\r\n",
        )
        report = json.loads(run("inbox", "hopitaux-2020-05", "--json").output)
    finally:
        client.logout()
    assert report["unsubscribed"] == ["jean.dupont@example.com"]
    assert report["replied"] == 0
    suppression = campaign.path(campaign.config.suppression).read_text(encoding="utf-8")
    assert "jean.dupont@example.com" in suppression.splitlines()[-1]

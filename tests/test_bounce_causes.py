"""A bounce that is the campaign's fault (SPF, DKIM, DMARC, a block list, spam) costs no director
the letter: the address stays off the suppression list, the organiser reads what to put right,
and `send --retry-bounced` sends to exactly those again, once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from campaign.causes import Cause, cause_of
from campaign.ledger import Ledger, State
from campaign.settings import load_settings
from campaign.sink import MaildirHandler
from tests.conftest import Run, RunningSink, said
from tests.test_inbox import send_thank_you

# Replies as the big providers write them (addresses and IPs fictional), and whose fault each is.
REPLIES = [
    # The sender's domain failed authentication.
    (
        "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's "
        "DMARC policy. Please contact the administrator of example.org domain.",
        Cause.AUTHENTICATION,
    ),
    (
        "550 5.7.26 This mail has been blocked because the sender is unauthenticated. Senders "
        "must authenticate with either SPF or DKIM.",
        Cause.AUTHENTICATION,
    ),
    (
        "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        Cause.AUTHENTICATION,
    ),
    (
        "550 5.7.509 Access denied, sending domain example.org does not pass DMARC verification "
        "and has a DMARC policy of reject.",
        Cause.AUTHENTICATION,
    ),
    ("550 5.7.1 Email rejected per DMARC policy for example.org", Cause.AUTHENTICATION),
    (
        "550 5.1.0 192.0.2.1 is not allowed to send from <example.org> per its SPF record",
        Cause.AUTHENTICATION,
    ),
    ("5.7.20 No passing DKIM signature found", Cause.AUTHENTICATION),
    # The sending server.
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.15] blocked using zen.spamhaus.org",
        Cause.SERVER,
    ),
    ("550 5.7.606 Access denied, banned sending IP [192.0.2.15].", Cause.SERVER),
    (
        "550 5.7.25 [192.0.2.15] The IP address sending this message does not have a PTR record",
        Cause.SERVER,
    ),
    ("554 5.7.1 Your IP address 192.0.2.15 has a poor reputation", Cause.SERVER),
    ("450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.15]", Cause.SERVER),
    # The message.
    (
        "550-5.7.1 [192.0.2.15] Gmail has detected that this message is likely unsolicited mail.",
        Cause.CONTENT,
    ),
    (
        "552-5.7.0 This message was blocked because its content presents a potential security issue.",
        Cause.CONTENT,
    ),
    ("554 5.7.1 Message rejected as spam by Content Filtering.", Cause.CONTENT),
    ("552 5.3.4 Message size exceeds fixed limit", Cause.CONTENT),
    ("554 5.7.9 Message not accepted for policy reasons.", Cause.CONTENT),
    # French servers say it in French.
    ("550 5.7.1 Message refusé : expéditeur non authentifié (DMARC)", Cause.AUTHENTICATION),
    ("554 5.7.1 Adresse IP 192.0.2.15 sur liste noire", Cause.SERVER),
    ("550 5.7.1 Message refusé : mauvaise réputation de l’adresse IP d’envoi", Cause.SERVER),
    ("550 5.7.1 Message considéré comme indésirable (pourriel)", Cause.CONTENT),
    ("550 5.1.1 Adresse destinataire inconnue", Cause.ADDRESS),
    # The address: suppressed, as before.
    (
        "5.1.1 550 5.1.1 <paul.martin@example.com>: Recipient address rejected: User unknown in "
        "virtual mailbox table",
        Cause.ADDRESS,
    ),
    (
        "550 5.7.1 <paul.martin@example.com>: Recipient address rejected: Access denied",
        Cause.ADDRESS,
    ),
    ("552 5.2.2 Mailbox full", Cause.ADDRESS),
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", Cause.ADDRESS),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        Cause.ADDRESS,
    ),
    ("550 5.7.1 RESOLVER.RST.AuthRequired; authentication required", Cause.ADDRESS),
    ("status 5.1.1", Cause.ADDRESS),  # Postfix's own error transport, no remote words
    ("undeliverable (no diagnostic given)", Cause.ADDRESS),
    # A code inside an IP address or a longer code is not that code.
    ("550 5.7.1 Client host [10.5.1.1] blocked using bl.spamcop.net", Cause.SERVER),
    ("550 5.2.30 whatever", Cause.ADDRESS),
]


@pytest.mark.parametrize(("reply", "cause"), REPLIES)
def test_whose_fault_a_bounce_is_reads_the_status_then_the_words(reply: str, cause: Cause) -> None:
    assert cause_of(reply) is cause


ROWS = [
    ("Nathalie", "Noël", "nathalie.noel@example.org"),
    ("Olivier", "Chevalier", "rebond.olivier.chevalier@example.org"),
    ("Claire", "Dufresne", "claire.dufresne@example.com"),
    ("Paul", "Martin", "paul.martin@example.com"),
]
DMARC = (
    "550-5.7.26 Unauthenticated email from example.org is not accepted due to domain's DMARC "
    "policy. Please contact the administrator of example.org domain if this was a legitimate mail."
)


def dsn(
    recipient: str, message_id: str, reply: str, status: str, *, arrived: float | None = None
) -> bytes:
    """The RFC 3464 report a receiving provider's MTA sends back for `recipient`; `arrived`:
    its Arrival-Date (when that MTA got the message), else none is given."""
    arrival = f"Arrival-Date: {formatdate(arrived, localtime=True)}\n" if arrived else ""
    return f"""Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@mx.example.com>
To: collectif@example.org
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
Message-ID: <{abs(hash(recipient))}.dsn@mx.example.com>
Date: {formatdate(localtime=True)}
MIME-Version: 1.0
Content-Type: multipart/report; boundary="b1"; report-type=delivery-status

--b1
Content-Type: text/plain; charset="UTF-8"

Your message wasn't delivered to {recipient}.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
{arrival}
Final-Recipient: rfc822; {recipient}
Action: failed
Status: {status}
Diagnostic-Code: smtp; {reply}

--b1
Content-Type: text/rfc822-headers

From: Collectif <collectif@example.org>
To: <{recipient}>
Message-ID: {message_id}

--b1--
""".encode()


@pytest.fixture
def refused(project: Path, run: Run) -> Iterator[Path]:
    """The thank-you campaign sent to four rows; the sink bounces rebond.* (User unknown) and
    the recipients' provider refuses two others for the sender's DMARC policy."""
    send_thank_you(project, run, ROWS)
    settings = project / "settings.yaml"
    mailbox = project / "outbox" / "mailbox"
    campaign = load_settings(settings).campaign("merci-signataires")
    with Ledger.for_campaign(campaign.layout) as log:
        for email in ("claire.dufresne@example.com", "paul.martin@example.com"):
            found = log.get(email)
            assert found is not None
            MaildirHandler(mailbox).deliver(dsn(email, found.message_id, DMARC, "5.7.26"))
    yield project


def _state(project: Path, email: str) -> State:
    campaign = load_settings(project / "settings.yaml").campaign("merci-signataires")
    with Ledger.for_campaign(campaign.layout) as log:
        found = log.get(email)
    assert found is not None
    return found.state


def test_a_dmarc_refusal_is_the_campaigns_fault_and_its_addresses_stay_off_the_suppression_list(
    refused: Path, run: Run
) -> None:
    result = run("inbox", "merci-signataires", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    causes = {b["email"]: b["cause"] for b in report["bounces"]}
    assert causes == {
        "rebond.olivier.chevalier@example.org": "address",
        "claire.dufresne@example.com": "authentication",
        "paul.martin@example.com": "authentication",
    }
    assert {b["email"]: b["row"] for b in report["bounces"]}["paul.martin@example.com"] == 5
    assert report["added_to_suppression"] == ["rebond.olivier.chevalier@example.org"]
    suppression = (refused / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    assert "rebond.olivier.chevalier@example.org" in suppression
    assert "paul.martin@example.com" not in suppression
    assert "claire.dufresne@example.com" not in suppression
    assert _state(refused, "paul.martin@example.com") is State.BOUNCED  # it did not arrive


def test_inbox_and_status_say_whose_fault_it_is_and_what_to_do(refused: Path, run: Run) -> None:
    inbox = said(run("inbox", "merci-signataires"))
    assert "bounced: the address (added to the suppression list)" in inbox
    assert "bounced: the campaign's fault, not the address's (not on the suppression list)" in inbox
    assert (
        "the campaign's fault: 2 recipients did not get the letter because the mail servers found that "
        "mail from example.org failed its authentication (SPF, DKIM, DMARC)"
    ) in inbox
    assert (
        "publish the SPF, DKIM and DMARC records your provider documents for example.org" in inbox
    )
    assert "then campaign send merci-signataires --retry-bounced sends to them again" in inbox
    for attempt in range(2):  # the second status takes the quick path (recorded.py)
        result = run("status", "merci-signataires")
        status = said(result)
        assert "2 recipients did not get the letter" in status, (attempt, status)
        assert "records your provider documents for example.org" in status, (attempt, status)
        assert "--retry-bounced" in status
    page = refused / "report.html"
    assert run("status", "merci-signataires", "--report", str(page)).exit_code == 0
    html = page.read_text(encoding="utf-8")
    theirs, ours = html.split('id="refused"')
    assert "rebond.olivier.chevalier@example.org" in theirs and "paul.martin" not in theirs
    assert "paul.martin@example.com" in ours and "claire.dufresne@example.com" in ours
    assert "none of them was added to the suppression list" in ours
    report = json.loads(run("status", "merci-signataires", "--json").output)
    assert sorted(b["cause"] for b in report["bounces"]) == [
        "address",
        "authentication",
        "authentication",
    ]


def test_retry_bounced_sends_again_to_the_campaigns_bounces_only_once_each(
    refused: Path, run: Run
) -> None:
    assert run("inbox", "merci-signataires", "--json").exit_code == 0
    settings = refused / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    again = refused / "outbox" / "sink-again"
    campaign = load_settings(settings).campaign("merci-signataires")
    with Ledger.for_campaign(campaign.layout) as log:
        ids = {
            e: d.message_id
            for e in ("claire.dufresne@example.com", "paul.martin@example.com")
            if (d := log.get(e))
        }
    with RunningSink(again) as sink:
        settings.write_text(
            text.replace(f"port: {text.split('port: ')[1].split()[0]}", f"port: {sink.port}", 1),
            encoding="utf-8",
        )
        plain = run("send", "merci-signataires", "--json")  # without the option: nobody
        assert plain.exit_code == 0, plain.output
        assert json.loads(plain.output)["sent"] == 0
        day = json.loads(run("status", "merci-signataires", "--json").output)["sent_last_24h"]
        result = run("send", "merci-signataires", "--retry-bounced")
        assert result.exit_code == 0, result.output
        assert "2 recipients queued to be sent again" in said(result)
        assert "1 address that bounced for its own sake" in said(result)
        second = run("send", "merci-signataires", "--retry-bounced", "--json")
        assert json.loads(second.output)["sent"] == 0  # delivered now: not again
        status = json.loads(run("status", "merci-signataires", "--json").output)
        assert status["sent_last_24h"] == day + 2  # the first sends still count for the day cap
    arrived = sorted((again / "new").iterdir())
    assert len(arrived) == 2
    heads = [p.read_text(encoding="utf-8", errors="replace") for p in arrived]
    assert sorted(next(mid for mid in ids.values() if mid in h) for h in heads) == sorted(
        ids.values()
    )
    for email in ids:
        assert _state(refused, email) is State.SENT
    assert _state(refused, "rebond.olivier.chevalier@example.org") is State.BOUNCED
    status = json.loads(run("status", "merci-signataires", "--json").output)
    assert status["counts"]["bounced"] == 1 and status["counts"]["sent"] == 3
    assert [b["email"] for b in status["bounces"]] == ["rebond.olivier.chevalier@example.org"]
    # A report about the first send (delayed, then failed days later) arrives after the second
    # send got through: it is about that earlier send, not this one; a new report is.
    mailbox = refused / "outbox" / "mailbox"
    first = time.time() - 3 * 3600
    late = dsn(
        "paul.martin@example.com", ids["paul.martin@example.com"], DMARC, "5.7.26", arrived=first
    )
    MaildirHandler(mailbox).deliver(late)
    report = json.loads(run("inbox", "merci-signataires", "--json").output)
    assert (report["bounced"], report["about_an_earlier_send"]) == (0, 1)
    assert _state(refused, "paul.martin@example.com") is State.SENT
    fresh = dsn(
        "paul.martin@example.com",
        ids["paul.martin@example.com"],
        DMARC,
        "5.7.26",
        arrived=time.time(),
    )
    MaildirHandler(mailbox).deliver(fresh)
    assert json.loads(run("inbox", "merci-signataires", "--json").output)["bounced"] == 1
    assert _state(refused, "paul.martin@example.com") is State.BOUNCED


def test_a_french_organiser_reads_whose_fault_it_is_and_what_to_do(
    refused: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_i18n_cli import FRENCH, speak

    speak(monkeypatch, FRENCH)
    inbox = said(run("inbox", "merci-signataires"))
    assert "rejetés : la campagne en cause, non l’adresse (pas sur la liste d’exclusion)" in inbox
    assert (
        "2 destinataires n’ont pas reçu la lettre car les serveurs de messagerie ont constaté que le courrier "
        "de example.org ne passait pas l’authentification (SPF, DKIM, DMARC)"
    ) in inbox
    assert "puis campaign send merci-signataires --retry-bounced leur envoie" in inbox
    assert "bounced:" not in inbox and "fault" not in inbox


def test_a_refusal_at_rcpt_for_the_senders_domain_says_it_is_the_campaigns_and_retry_failed(
    tmp_path: Path,
) -> None:
    # A relay that passes on the destination's verdict refuses some recipients at once, for the
    # sender's domain: failed (the others go on), and the organiser reads what to put right.
    from tests.conftest import cli
    from tests.smtp_server import Fault, FaultyServer, make_project

    refused = ["personne0001@example.org", "personne0003@example.org"]
    faults = [
        Fault("rcpt", code=550, text="5.7.26 " + DMARC.split(" ", 1)[1], recipient=r, times=0)
        for r in refused
    ] + [Fault("rcpt", code=550, text="5.1.1 User unknown", recipient="personne0004@example.org")]
    with FaultyServer(faults=faults) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        sent = cli(settings, "send")
        assert sent.exit_code == 1, sent.output
        told = said(sent)
        assert (
            "the campaign's fault: 2 recipients did not get the letter because the mail servers "
            "found that mail from example.org failed its authentication (SPF, DKIM, DMARC)"
        ) in told, told
        assert "then campaign send mini --retry-failed sends to them again" in told
        assert "3 recipients did not get" not in told  # the unknown user is its address's
        status = said(cli(settings, "status"))
        assert "2 recipients did not get the letter because the mail servers found" in status
        assert "then campaign send mini --retry-failed" in status
        server.state.faults.clear()  # the domain put right
        again = cli(settings, "send", "--retry-failed", "--json")
    assert json.loads(again.output)["sent"] == 3
    arrived = sorted(m.recipients[0] for m in server.stored)
    assert arrived == [f"personne000{i}@example.org" for i in (1, 2, 3, 4)]  # each once

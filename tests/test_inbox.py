"""campaign inbox against the embedded default: the sink plays the remote servers into a Maildir."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import ClassVar

import pytest

from campaign import ledger
from campaign.ledger import Ledger, State
from campaign.settings import load_settings
from campaign.sink import MaildirHandler, Remote
from tests.conftest import DATA, Run, RunningSink, approve_proofed

ROWS = [
    ("Nathalie", "Noël", "nathalie.noel@example.org"),
    ("Olivier", "Chevalier", "rebond.olivier.chevalier@example.org"),
    ("Claire", "Dufresne", "absence.claire.dufresne@example.org"),
    ("Paul", "Martin", "paul.martin@example.com"),
]


def send_thank_you(project: Path, run: Run, rows: list[tuple[str, str, str]]) -> None:
    """The thank-you campaign to `rows` (first name, last name, address), sent to the sink
    playing the remote servers: bounces and out-of-office answers land in outbox/mailbox."""
    sheet = project / "recipients" / "few-signataires.csv"
    sheet.write_text(
        "Prénom;Nom;Fonction;Organisation;Courriel\n"
        + "".join(f"{first};{last};;;{email}\n" for first, last, email in rows),
        encoding="utf-8",
    )
    settings = project / "settings.yaml"
    text = settings.read_text(encoding="utf-8").replace(
        "recipients/signataires.csv", "recipients/few-signataires.csv"
    )
    remote = Remote(project / "outbox" / "mailbox")
    with RunningSink(project / "outbox" / "sink", remote=remote) as sink:
        settings.write_text(text.replace("port: 8025", f"port: {sink.port}"), encoding="utf-8")
        approved = approve_proofed(run, "merci-signataires", "--by", "test")
        assert approved.exit_code == 0, approved.output
        done = run("send", "merci-signataires", "-q")
        assert done.exit_code == 0, done.output


@pytest.fixture
def sent(project: Path, run: Run) -> Iterator[Path]:
    """The thank-you campaign, four rows, sent to the sink; its answers in outbox/mailbox."""
    send_thank_you(project, run, ROWS)
    yield project


def _inbox(run: Run) -> dict[str, object]:
    result = run("inbox", "merci-signataires", "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def _log(project: Path) -> Ledger:
    campaign = load_settings(project / "settings.yaml").campaign("merci-signataires")
    return Ledger.for_campaign(campaign.layout)


def _reply_of(project: Path, email: str) -> bytes:
    """A person's answer to the message the campaign sent them (In-Reply-To its Message-ID)."""
    with _log(project) as log:
        sent = log.get(email)
    assert sent is not None
    reply = (DATA / "bounces" / "human-reply.eml").read_bytes()
    return reply.replace(b"jean.dupont@example.com", email.encode()).replace(
        b"<0f3a9c2e71b84d5a9e6c1b2d3f4a5b6c.hopitaux-2020-05@example.org>",
        sent.message_id.encode(),
    )


def test_the_sink_bounces_one_and_answers_for_another_and_inbox_records_both(
    sent: Path, run: Run
) -> None:
    report = _inbox(run)
    assert (report["bounced"], report["auto_replied"], report["replied"]) == (1, 1, 0)
    assert report["read"] == 2 and report["fetched"] == 1  # only the bounce was read whole
    bounce = report["bounces"][0]  # type: ignore[index]
    assert bounce["email"] == "rebond.olivier.chevalier@example.org"
    assert "550 5.1.1" in bounce["reason"] and "User unknown" in bounce["reason"]
    with _log(sent) as log:
        bounced = log.get("rebond.olivier.chevalier@example.org")
        away = log.get("absence.claire.dufresne@example.org")
        assert bounced is not None and bounced.state is State.BOUNCED
        assert away is not None and away.state is State.SENT and away.auto_replied_at
        assert away.replied_at is None  # an out-of-office is never a reply
    status = json.loads(run("status", "merci-signataires", "--json").output)
    counts = status["counts"]
    assert (counts["bounced"], counts["auto_replied"], counts["replied"]) == (1, 1, 0)
    assert status["bounces"][0]["email"] == "rebond.olivier.chevalier@example.org"


def test_the_summary_says_what_was_downloaded_whole_in_words_an_organiser_reads(
    sent: Path, run: Run
) -> None:
    # "dont 1 en entier" meant nothing to a French organiser.
    result = run("inbox", "merci-signataires")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "read 2 new messages in INBOX (maildir); 1 downloaded whole (reports)" in flat, flat
    assert "the others by their headers only" in flat


def test_a_hard_bounce_joins_the_suppression_list_with_date_campaign_and_reason(
    sent: Path, run: Run
) -> None:
    before = (sent / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    _inbox(run)
    after = (sent / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    assert after.startswith(before)
    added = after[len(before) :].splitlines()
    assert added[1] == "rebond.olivier.chevalier@example.org"
    assert "merci-signataires bounced: 550 5.1.1" in added[0] and added[0].startswith("# 20")
    check = run("check", "merci-signataires", "--json")
    assert "not an email" not in check.output  # the list still reads cleanly
    _inbox(run)  # a second scan adds nothing
    assert (sent / "recipients" / "suppression.csv").read_text(encoding="utf-8") == after


def test_a_second_scan_reads_nothing_again_and_a_new_reply_is_a_fact_not_text(
    sent: Path, run: Run
) -> None:
    _inbox(run)
    again = _inbox(run)
    assert again["read"] == 0 and again["bounced"] == 0
    MaildirHandler(sent / "outbox" / "mailbox").deliver(
        _reply_of(sent, "nathalie.noel@example.org")
    )
    third = _inbox(run)
    assert (third["read"], third["replied"]) == (1, 1)
    with _log(sent) as log:
        replied = log.get("nathalie.noel@example.org")
        assert replied is not None and replied.replied_at is not None
        texts = [str(v) for row in log.conn.execute("SELECT * FROM deliveries") for v in row]
    assert not any("étudions" in t for t in texts)  # data minimisation: no reply text kept


def test_messages_that_match_nothing_are_left_exactly_as_they_were(sent: Path, run: Run) -> None:
    mailbox = sent / "outbox" / "mailbox"
    stranger = MaildirHandler(mailbox).deliver((DATA / "bounces" / "newsletter.eml").read_bytes())
    foreign = MaildirHandler(mailbox).deliver((DATA / "bounces" / "gmail.eml").read_bytes())
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in (stranger, foreign)}
    report = _inbox(run)
    assert report["unmatched"] == 1  # the bounce of a message that is not this campaign's
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before} == before


def test_uncertain_sends_with_a_copy_in_sent_become_sent_the_others_stay_and_nobody_is_resent(
    sent: Path, run: Run
) -> None:
    with _log(sent) as log:
        found = log.get("paul.martin@example.com")
        missing = log.get("nathalie.noel@example.org")
        assert found is not None and missing is not None
        for email in (found.email, missing.email):
            log.apply([ledger.outcome(email, State.UNCERTAIN, None, "connection lost", 1.0)])
    copy = f"Message-ID: {found.message_id}\nSubject: x\n\nbody\n".encode()
    MaildirHandler(sent / "outbox" / "mailbox" / ".Sent").deliver(copy)
    sink_files = len(list((sent / "outbox" / "sink" / "new").iterdir()))
    report = _inbox(run)
    assert list(report["resolved_uncertain"]) == ["paul.martin@example.com"]  # type: ignore[call-overload]
    assert "its copy is in .Sent" in report["resolved_uncertain"]["paul.martin@example.com"]  # type: ignore[index]
    assert list(report["still_uncertain"]) == ["nathalie.noel@example.org"]  # type: ignore[call-overload]
    with _log(sent) as log:
        resolved = log.get("paul.martin@example.com")
        still = log.get("nathalie.noel@example.org")
    assert resolved is not None and resolved.state is State.SENT and resolved.evidence
    assert still is not None and still.state is State.UNCERTAIN
    assert still.evidence and "no trace in INBOX, .Sent" in still.evidence
    status = json.loads(run("status", "merci-signataires", "--json").output)
    assert "nathalie.noel@example.org" in status["uncertain_searched"]
    assert len(list((sent / "outbox" / "sink" / "new").iterdir())) == sink_files  # none resent


def test_a_version_2_log_is_upgraded_with_the_mailbox_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "delivery.sqlite"
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.executescript(
        "DROP TABLE mailbox_scans; DROP TABLE sent_copies; DELETE FROM schema_version;"
        "INSERT INTO schema_version VALUES (2);"
        "CREATE TABLE d2 AS SELECT email, address, row, name, state, phase, attempts, last_code,"
        " last_text, message_id, queued_at, first_attempt_at, last_attempt_at, sent_at,"
        " next_attempt_at FROM deliveries; DROP TABLE deliveries; ALTER TABLE d2 RENAME TO"
        " deliveries; INSERT INTO deliveries (email, address, state, message_id, queued_at)"
        " VALUES ('a@example.org', 'a@example.org', 'sent', '<x@example.org>', 1);"
    )
    conn.close()
    with Ledger(path) as log:
        row = log.get("a@example.org")
        assert row is not None and row.state is State.SENT and row.bounced_at is None
        assert log.scan_position("maildir:INBOX") is None
    assert path.with_name("delivery.sqlite.v2.bak").exists()


class _PasswordOnlyImap(socketserver.StreamRequestHandler):
    """An IMAP server that offers AUTH=PLAIN only, and notes every command it is sent."""

    commands: ClassVar[list[bytes]] = []

    def handle(self) -> None:
        self.wfile.write(b"* OK IMAP4rev1 ready\r\n")
        for line in self.rfile:
            tag, _, rest = line.strip().partition(b" ")
            verb = rest.split(b" ")[0].upper()
            self.commands.append(verb)
            if verb == b"CAPABILITY":
                self.wfile.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            elif verb == b"LOGOUT":
                self.wfile.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                return
            else:
                self.wfile.write(tag + b" BAD not here\r\n")


def test_an_oauth2_mechanism_the_mailbox_does_not_offer_is_a_settings_error(
    project: Path, run: Run
) -> None:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _PasswordOnlyImap) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        settings = project / "settings.yaml"
        settings.write_text(
            settings.read_text(encoding="utf-8").replace(
                "  maildir: outbox/mailbox",
                f"  imap: {{host: 127.0.0.1, port: {port}, security: none, "
                "username: collectif@example.org, auth: oauthbearer, "
                "password_command: 'echo jeton'}",
            ),
            encoding="utf-8",
        )
        campaign = load_settings(settings).campaign("hopitaux-2020-05")
        with Ledger.for_campaign(campaign.layout) as log:  # inbox reads a campaign that sent
            log.enqueue(
                [ledger.Entry("jean.dupont@example.com", 2, "Jean Dupont", "<1@example.org>")],
                [],
                1.0,
            )
        result = run("inbox", "hopitaux-2020-05")
        server.shutdown()
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"127.0.0.1:{port} does not offer AUTH OAUTHBEARER (it offers PLAIN)" in said
    assert "mailbox.imap.auth" in said
    assert b"AUTHENTICATE" not in _PasswordOnlyImap.commands  # nothing tried that is not offered
    assert b"CAPABILITY" in _PasswordOnlyImap.commands


def test_a_mailbox_host_the_dns_does_not_know_is_a_settings_error(
    project: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name with a space: the resolver refuses it itself, no query leaves the machine.
    settings = project / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8").replace(
            "  maildir: outbox/mailbox",
            "  imap: {host: imap exemple.org, username: collectif@example.org, "
            "password_env: CAMPAIGN_TEST_IMAP_PASSWORD}",
        ),
        encoding="utf-8",
    )
    campaign = load_settings(settings).campaign("hopitaux-2020-05")
    with Ledger.for_campaign(campaign.layout) as log:
        log.enqueue(
            [ledger.Entry("jean.dupont@example.com", 2, "Jean", "<1@example.org>")], [], 1.0
        )
    monkeypatch.setenv("CAMPAIGN_TEST_IMAP_PASSWORD", "x")
    result = run("inbox", "hopitaux-2020-05")
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "no server is called imap exemple.org" in said and "mailbox.imap.host" in said


def _unsubscribe_by(project: Path, uri: str) -> None:
    """The thank-you campaign's messages carry `List-Unsubscribe: <uri>`."""
    settings = project / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    sample = '    list_unsubscribe: "mailto:contact@example.org?subject=désinscription"\n'
    assert text.count(sample) == 1  # the sample's own
    settings.write_text(text.replace(sample, f"    list_unsubscribe: {uri}\n"), encoding="utf-8")


def _unsubscribe_request(sender: str, subject: str, to: str = "contact@example.org") -> bytes:
    """What a mail client sends when its "Unsubscribe" button follows a mailto: List-Unsubscribe."""
    return (
        f"From: <{sender}>\nTo: <{to}>\nSubject: {subject}\n"
        f"Date: {formatdate(localtime=True)}\nMessage-ID: <{abs(hash(sender + subject))}@mx.example.com>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
        "This message was automatically generated by Gmail.\n"
    ).encode()


def test_a_recipient_who_unsubscribes_joins_the_suppression_list_and_is_not_a_reply(
    project: Path, run: Run
) -> None:
    _unsubscribe_by(project, "mailto:contact@example.org?subject=d%C3%A9sinscription")
    send_thank_you(project, run, ROWS)
    mailbox = MaildirHandler(project / "outbox" / "mailbox")
    # Gmail writes the URI's subject; RFC 2047-encoded, as a client does.
    mailbox.deliver(
        _unsubscribe_request("nathalie.noel@example.org", "=?utf-8?q?d=C3=A9sinscription?=")
    )
    # An answer to the same address with another subject is a reply, not a request.
    mailbox.deliver(_unsubscribe_request("paul.martin@example.com", "Re: Merci"))
    # A client that writes the subject in raw UTF-8 (RFC 6532) asks the same.
    mailbox.deliver(_unsubscribe_request("absence.claire.dufresne@example.org", "désinscription"))
    report = _inbox(run)
    assert report["unsubscribed"] == [
        "nathalie.noel@example.org",
        "absence.claire.dufresne@example.org",
    ]
    assert report["replied"] == 1  # Paul's; Nathalie's request is not counted as a reply
    assert "nathalie.noel@example.org" in report["added_to_suppression"]  # type: ignore[operator]
    lines = (project / "recipients" / "suppression.csv").read_text(encoding="utf-8").splitlines()
    at = lines.index("nathalie.noel@example.org")
    assert "merci-signataires asked to unsubscribe (List-Unsubscribe)" in lines[at - 1]
    with _log(project) as log:
        nathalie = log.get("nathalie.noel@example.org")
        assert nathalie is not None and nathalie.replied_at is None
        assert nathalie.state is State.SENT  # she received the letter: that stays true
    check = json.loads(run("check", "merci-signataires", "--json").output)
    assert check["suppressed"] == 3  # the two requests and the bounce: never written to again
    again = _inbox(run)
    assert again["read"] == 0 and again["unsubscribed"] == []  # read once
    text = (project / "recipients" / "suppression.csv").read_text(encoding="utf-8")
    assert text.count("nathalie.noel@example.org") == 1


def test_an_inbox_says_who_asked_to_unsubscribe(project: Path, run: Run) -> None:
    _unsubscribe_by(project, "mailto:desinscription@example.org")
    send_thank_you(project, run, ROWS)
    mailbox = MaildirHandler(project / "outbox" / "mailbox")
    # No subject in the URI: a subject that says "unsubscribe", to that address.
    mailbox.deliver(
        _unsubscribe_request("paul.martin@example.com", "Unsubscribe", "desinscription@example.org")
    )
    mailbox.deliver(_unsubscribe_request("nathalie.noel@example.org", "Unsubscribe"))  # not to it
    result = run("inbox", "merci-signataires")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 asked to unsubscribe: paul.martin@example.com" in flat, flat
    assert "1 replied" in flat  # Nathalie wrote to the collective's address: an answer


def test_the_sheet_exported_with_its_outcomes_says_who_replied(sent: Path, run: Run) -> None:
    # The fourth added column used to read attributes the log's rows do not have: always empty.
    MaildirHandler(sent / "outbox" / "mailbox").deliver(
        _reply_of(sent, "nathalie.noel@example.org")
    )
    assert _inbox(run)["replied"] == 1
    target = sent / "suivi.csv"
    result = run("status", "merci-signataires", "--export", str(target), "--with-sheet")
    assert result.exit_code == 0, result.output
    text = target.read_bytes().decode("utf-8-sig")
    replied = {row[4]: row[-1] for row in (line.split(";") for line in text.splitlines()[1:])}
    assert replied == {
        "nathalie.noel@example.org": "yes",
        "rebond.olivier.chevalier@example.org": "",
        "absence.claire.dufresne@example.org": "auto-reply",
        "paul.martin@example.com": "",
    }


def test_a_request_to_unsubscribe_is_a_fact_of_the_log_that_status_and_exports_show(
    project: Path, run: Run
) -> None:
    _unsubscribe_by(project, "mailto:contact@example.org?subject=d%C3%A9sinscription")
    send_thank_you(project, run, ROWS)
    MaildirHandler(project / "outbox" / "mailbox").deliver(
        _unsubscribe_request("paul.martin@example.com", "=?utf-8?q?d=C3=A9sinscription?=")
    )
    assert _inbox(run)["unsubscribed"] == ["paul.martin@example.com"]
    with _log(project) as log:
        paul = log.get("paul.martin@example.com")
        assert paul is not None and paul.unsubscribed_at is not None
        assert paul.replied_at is None and paul.state is State.SENT
    status = json.loads(run("status", "merci-signataires", "--json").output)
    assert status["counts"]["unsubscribed"] == 1
    assert status["not_in_sheet"] == []  # still in the sheet: suppressed, not gone
    shown = " ".join(run("status", "merci-signataires").output.split())
    assert "1 recipient asked to unsubscribe: on the suppression list" in shown, shown
    sheet = project / "suivi.csv"
    assert run("status", "merci-signataires", "--export", str(sheet), "--with-sheet").exit_code == 0
    lines = sheet.read_bytes().decode("utf-8-sig").splitlines()
    said = {line.split(";")[4]: line.split(";")[-1] for line in lines[1:]}
    assert said["paul.martin@example.com"] == "asked to unsubscribe"
    log_export = project / "journal.csv"
    assert run("status", "merci-signataires", "--export", str(log_export)).exit_code == 0
    rows = log_export.read_bytes().decode("utf-8-sig").splitlines()
    header = rows[0].split(",")
    column = header.index("unsubscribed_at")
    paul_row = next(r.split(",") for r in rows if r.startswith("paul.martin@example.com"))
    assert paul_row[column][:2] == "20"  # a date
    report = project / "rapport.html"
    assert run("status", "merci-signataires", "--report", str(report)).exit_code == 0
    page = report.read_text(encoding="utf-8")
    assert '<tr data-state="unsubscribed"><td>asked to unsubscribe</td><td class="n">1</td>' in page

"""`campaign send` against the real Postfix of tests/mailservers.py: a provider's scenarios.

Postfix listens on 127.0.0.1 (submission: STARTTLS required, then AUTH through Dovecot SASL; a
private CA signs its certificate), delivers example.org/example.com by LMTP into Dovecot's
Maildirs, and can send nothing anywhere else. Each scenario runs the real command on a small
campaign, then holds three records against each other: Postfix's own log (queue IDs, `connect
from`, `disconnect from … mail=`, rejects, SASL failures), the Maildirs (one copy per recipient,
its Message-ID the one the log recorded) and the delivery log (`campaign status --json` and the
SQLite log). Real servers need root and the Debian packages: without them these tests skip, or fail
when CAMPAIGN_REAL_SERVERS=1 (tests/conftest.py).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from campaign.ledger import Ledger, State
from tests.mailservers import Postfix, access_token, auth_failures, queue_ids
from tests.smtp_server import make_project
from tests.test_send import cli
from tests.test_size_limit import annex

USER, PASSWORD = "collectif@example.org", "mot-de-passe-1"
PASSWORD_ENV = "CAMPAIGN_TEST_SUBMISSION_PASSWORD"


def submission_project(
    tmp_path: Path,
    postfix: Postfix,
    monkeypatch: pytest.MonkeyPatch,
    *,
    recipients: int,
    throttle: str = "per_minute: null\n  per_day: 100000\n  concurrency: 2",
    smtp: str = "",
    password: str = PASSWORD,
    cert_bundle: Path | None = None,
    retry: str = "max_attempts: 3\n  backoff: [1s]",
    extra: str = "",
) -> Path:
    """A small campaign sent through the submission port, as to a provider: STARTTLS, AUTH."""
    monkeypatch.setenv(PASSWORD_ENV, password)
    bundle = cert_bundle or postfix.ca_bundle
    return make_project(
        tmp_path,
        port=postfix.submission_port,
        recipients=recipients,
        throttle=throttle,
        retry=retry,
        smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
        f"  password_env: {PASSWORD_ENV}\n  helo_name: client.example.org\n  {smtp}",
        extra=extra,
    )


def send(settings: Path) -> tuple[Result, dict[str, Any]]:
    """`campaign send --json`: the result and its report (empty when it printed an error)."""
    result = cli(settings, "send", "--json")
    try:
        report = json.loads(result.output)
    except json.JSONDecodeError:
        report = {}
    return result, report


def status(settings: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli(settings, "status", "--json").output)
    return data


def logged(settings: Path) -> dict[str, tuple[State, str, int, str | None]]:
    """Each recipient's state, Message-ID (no brackets), attempts and last reply, from the log."""
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        return {
            d.email: (d.state, d.message_id.strip("<>"), d.attempts, d.last_text)
            for d in log.deliveries()
        }


def maildir_ids(postfix: Postfix) -> dict[str, list[str]]:
    """The Message-IDs (no brackets) in each recipient's Maildir."""
    return {
        address: [str(m["Message-ID"]).strip("<>") for m in messages]
        for address, messages in postfix.dovecot.all_messages().items()
    }


def mail_per_session(log: str) -> list[int]:
    """How many MAIL commands each SMTP session carried, from `disconnect from … mail=N[/M]`.

    Sessions without a command (`commands=0/0`: the fixture's own checks that a port listens)
    are not counted.
    """
    found = []
    for line in log.splitlines():
        if "disconnect from" in line and "commands=0/0" not in line:
            mail = re.search(r" mail=(\d+)(?:/(\d+))?", line)
            found.append(int(mail.group(1)) if mail else 0)
    return found


def assert_each_delivered_once(
    postfix: Postfix, settings: Path, addresses: set[str], *, mark: int
) -> None:
    """Every address in `addresses` has exactly one copy, its Message-ID the logged one.

    Deliveries are counted from `mark` (the log's size before the send): counted from the
    start, an earlier test's deliveries let it look before the last message was in its Maildir.
    """
    lines = postfix.wait_delivered(len(addresses), mark=mark, seconds=60)
    assert len(lines) >= len(addresses)
    log = logged(settings)
    boxes = maildir_ids(postfix)
    assert set(boxes) == addresses, sorted(set(boxes) ^ addresses)
    for address in addresses:
        state, message_id, _, _ = log[address]
        assert state is State.SENT
        assert boxes[address] == [message_id], (address, boxes[address], message_id)


def test_clean_campaign_one_queue_id_per_message_and_connections_reused(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, per_connection = 12, 5
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=count,
        throttle=f"per_minute: null\n  per_day: 100000\n  concurrency: 1\n"
        f"  messages_per_connection: {per_connection}",
    )  # fmt: skip
    mark = postfix.log_mark()
    result, report = send(settings)
    assert result.exit_code == 0, result.output
    assert (report["sent"], report["failed"], report["deferred"]) == (count, 0, 0)
    assert_each_delivered_once(postfix, settings, set(logged(settings)), mark=mark)
    server_log = postfix.log_since(mark)
    ids = queue_ids(server_log)
    assert len(ids) == len(set(ids)) == count  # one queue ID per message, no message twice
    carried = [n for n in mail_per_session(server_log) if n]
    assert sum(carried) == count
    assert len(carried) <= math.ceil(count / per_connection)  # connections reused, up to the cap
    assert max(carried) <= per_connection
    assert report["connections"] == len(carried)
    # at most one more session: a check of the settings before sending
    assert len(mail_per_session(server_log)) <= len(carried) + 1, server_log
    assert status(settings)["counts"]["sent"] == count


def test_message_rate_limit_slows_the_run_and_nobody_fails(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postfix's own limit: 10 messages per 5 s from a client, then 450 4.7.1 "too much mail".
    postfix.configure(smtpd_client_message_rate_limit=10, anvil_rate_time_unit="5s")
    count = 25
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=count,
        retry="max_attempts: 1\n  backoff: [1h]",  # one refusal counted would fail someone
    )  # fmt: skip
    mark = postfix.log_mark()
    result, report = send(settings)
    assert result.exit_code == 0, result.output
    assert (report["sent"], report["failed"], report["deferred"]) == (count, 0, 0)
    assert_each_delivered_once(postfix, settings, set(logged(settings)), mark=mark)
    server_log = postfix.log_since(mark)
    limited = len(re.findall(r"Message delivery request rate limit exceeded", server_log))
    pace = report["server"]
    assert isinstance(pace, dict)
    assert limited >= 1  # the limit was met, not avoided by luck
    assert pace["refusals"] == limited  # every refusal Postfix logged, the run counted
    assert limited <= 10
    assert "the server limited us to about" in str(pace["summary"])
    assert len(queue_ids(server_log)) == count
    assert all(attempts == 1 for _, _, attempts, _ in logged(settings).values())


def test_recipient_refused_with_5xx_fails_with_postfix_text_and_the_others_arrive(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = "personne0002@example.org"
    postfix.refuse({refused: "550 5.1.1 User unknown"})
    settings = submission_project(tmp_path, postfix, monkeypatch, recipients=4)
    mark = postfix.log_mark()
    result, report = send(settings)
    assert result.exit_code == 1, result.output  # a failed recipient is a problem found
    assert (report["sent"], report["failed"]) == (3, 1)
    state, _, attempts, text = logged(settings)[refused]
    assert state is State.FAILED and attempts == 1
    server_log = postfix.log_since(mark)
    [reject] = [line for line in server_log.splitlines() if "NOQUEUE: reject: RCPT" in line]
    assert f"<{refused}>" in reject
    reply = "5.1.1 <personne0002@example.org>: Recipient address rejected: User unknown"
    assert reply in reject and text is not None and reply in text  # Postfix's own words
    attention = status(settings)["attention"]
    assert isinstance(attention, list)
    assert [(a["email"], a["code"]) for a in attention] == [(refused, 550)]
    others = set(logged(settings)) - {refused}
    assert_each_delivered_once(postfix, settings, others, mark=mark)
    assert len(queue_ids(server_log)) == 3


def test_wrong_password_is_one_login_attempt_and_exit_2(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=4, password="pas-le-bon"
    )
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)  # let Postfix write its last lines
    server_log = postfix.log_since(mark)
    assert auth_failures(server_log) == 1, server_log  # one attempt, not one per mechanism/slot
    assert result.exit_code == 2, result.output
    assert "smtp.username" in result.output or PASSWORD_ENV in result.output
    assert {s for s, *_ in logged(settings).values()} == {State.PENDING}
    assert all(attempts == 0 for _, _, attempts, _ in logged(settings).values())
    assert queue_ids(server_log) == [] and maildir_ids(postfix) == {}


def oauth2_project(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch, auth: str, token: str
) -> Path:
    """The submission campaign logging in with an OAuth2 token a command prints, not a password."""
    settings = submission_project(tmp_path, postfix, monkeypatch, recipients=3)
    printer = tmp_path / "token.txt"
    printer.write_text(token + "\n", encoding="utf-8")
    text = settings.read_text(encoding="utf-8").replace(
        f"password_env: {PASSWORD_ENV}", f"password_command: 'cat {printer}'\n  auth: {auth}"
    )
    settings.write_text(text, encoding="utf-8")
    return settings


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_an_oauth2_token_logs_in_and_each_is_delivered_once(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    # Postfix passes the mechanism to Dovecot's oauth2 passdb, which validates the JWT itself.
    settings = oauth2_project(tmp_path, postfix, monkeypatch, auth, access_token(USER))
    mark = postfix.log_mark()
    result, report = send(settings)
    assert result.exit_code == 0, result.output
    assert report["sent"] == 3
    assert_each_delivered_once(postfix, settings, set(logged(settings)), mark=mark)
    server_log = postfix.log_since(mark)
    logins = re.findall(r"sasl_method=(\w+), sasl_username=" + re.escape(USER), server_log)
    assert logins and set(logins) == {auth.upper()}, server_log
    assert auth_failures(server_log) == 0


def test_a_refused_oauth2_token_is_one_attempt_and_exit_2(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = access_token(USER, key=b"a key the provider does not know")
    settings = oauth2_project(tmp_path, postfix, monkeypatch, "xoauth2", token)
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)
    server_log = postfix.log_since(mark)
    assert result.exit_code == 2, result.output
    assert auth_failures(server_log) == 1, server_log
    assert "smtp.password_command" in result.output and "expired" in result.output
    assert token not in result.output
    assert {s for s, *_ in logged(settings).values()} == {State.PENDING}
    assert queue_ids(server_log) == [] and maildir_ids(postfix) == {}


def test_certificate_of_another_authority_stops_before_anything_is_sent(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=3, cert_bundle=postfix.wrong_ca_bundle
    )
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)
    server_log = postfix.log_since(mark)
    assert "smtp.cert_bundle" in result.output or "certificate" in result.output
    assert "Traceback" not in result.output
    assert queue_ids(server_log) == [] and maildir_ids(postfix) == {}
    assert auth_failures(server_log) == 0 and "sasl_username" not in server_log  # no password sent
    assert {s for s, *_ in logged(settings).values()} <= {State.PENDING}
    assert result.exit_code == 2, result.output


@pytest.mark.slow
def test_postfix_stopped_mid_send_is_a_pause_and_everyone_arrives_once(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, before, outage = 16, 5, 30.0
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=count,
        throttle="per_second: 1\n  per_minute: null\n  per_day: 100000\n  concurrency: 1",
        smtp="probe_interval: 2s",
        retry="max_attempts: 1\n  backoff: [1h]",  # an outage counted against anyone fails them
    )  # fmt: skip
    mark = postfix.log_mark()
    stopped: list[float] = []

    def outage_after_some_messages() -> None:
        # Stop Postfix between two messages, with its own queue empty: a message on the wire would
        # be `uncertain` (by design), and an LMTP delivery cut half-way is delivered again by
        # Postfix after the restart (its duplicate, not ours). Messages start 1 s apart: stop
        # within 0.6 s of one being accepted, once every accepted message has left the queue.
        seen: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            log, now = postfix.log_since(mark), time.monotonic()
            accepted = len(queue_ids(log))
            seen.setdefault(accepted, now)
            removed = len(re.findall(r"qmgr\[\d+\]: [0-9A-F]+: removed", log))
            if accepted >= before and removed == accepted and now - seen[accepted] < 0.6:
                break
            time.sleep(0.005)
        postfix.stop()
        stopped.append(time.monotonic())
        time.sleep(outage)
        postfix.restart()
        stopped.append(time.monotonic())

    thread = threading.Thread(target=outage_after_some_messages)
    thread.start()
    try:
        result, report = send(settings)
    finally:
        thread.join()
    assert result.exit_code == 0, result.output
    assert len(stopped) == 2 and stopped[1] - stopped[0] >= outage
    assert (report["sent"], report["failed"], report["deferred"], report["uncertain"]) == (
        count, 0, 0, 0,
    )  # fmt: skip
    pace = report["server"]
    assert isinstance(pace, dict) and pace["outages"] == 1
    assert pace["paused_seconds"] >= outage - 5
    assert_each_delivered_once(postfix, settings, set(logged(settings)), mark=mark)
    assert all(attempts == 1 for _, _, attempts, _ in logged(settings).values())
    ids = queue_ids(postfix.log_since(mark))
    assert len(ids) == count and max(Counter(ids).values()) == 1
    # The probes during the outage found nobody listening; after it, the run reconnected.
    assert report["connections"] >= 2


def test_attachments_over_the_servers_size_limit_stop_the_run_before_anyone_is_sent(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postfix advertises SIZE 200000 in its EHLO and refuses bigger messages (552 5.3.4).
    postfix.configure(message_size_limit=200_000)
    annex(tmp_path / "letters" / "annexe-juridique.pdf", 300_000)  # ~400 KB once encoded
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=4,
        extra="attachments: [letters/annexe-juridique.pdf]",
    )  # fmt: skip
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)  # let Postfix write its last lines
    assert result.exit_code == 2, result.output  # the campaign's content, not each recipient's
    assert "campaigns.mini.attachments" in result.output
    assert "annexe-juridique.pdf" in result.output and "200" in result.output
    assert {s for s, *_ in logged(settings).values()} == {State.PENDING}
    assert all(attempts == 0 for _, _, attempts, _ in logged(settings).values())
    server_log = postfix.log_since(mark)
    assert "552" not in server_log and "MAIL FROM" not in server_log, server_log
    assert queue_ids(server_log) == [] and maildir_ids(postfix) == {}


def test_a_recipients_own_attachment_over_the_size_limit_fails_that_recipient_only(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    postfix.configure(message_size_limit=200_000)
    folder = tmp_path / "letters" / "annexes"
    annex(folder / "petite.pdf", 20_000)
    annex(folder / "dossier-complet.pdf", 300_000)
    settings = submission_project(
        tmp_path, postfix, monkeypatch, recipients=3,
        extra="attachments_column: pieces\n    attachments_folder: letters/annexes",
    )  # fmt: skip
    people = tmp_path / "recipients" / "people.csv"
    people.write_text(
        "prenom,nom,email,pieces\n"
        "Prénom1,Nom1,personne0001@example.org,petite.pdf\n"
        "Prénom2,Nom2,personne0002@example.org,dossier-complet.pdf\n"
        "Prénom3,Nom3,personne0003@example.org,\n",
        encoding="utf-8",
    )
    mark = postfix.log_mark()
    result, report = send(settings)
    assert result.exit_code == 1, result.output  # a failed recipient is a problem found
    assert (report["sent"], report["failed"]) == (2, 1)
    state, _, attempts, text = logged(settings)["personne0002@example.org"]
    assert state is State.FAILED and attempts == 1
    assert text is not None and "dossier-complet.pdf" in text and "200" in text
    others = {"personne0001@example.org", "personne0003@example.org"}
    assert_each_delivered_once(postfix, settings, others, mark=mark)
    assert len(queue_ids(postfix.log_since(mark))) == 2


def test_a_sender_address_the_account_may_not_use_stops_the_run_before_anyone_fails(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As providers do: the login may send only as the addresses it owns (here: another one).
    postfix.configure(
        smtpd_sender_login_maps="static:quelquun@example.org",
        smtpd_sender_restrictions="reject_sender_login_mismatch",
    )
    settings = submission_project(tmp_path, postfix, monkeypatch, recipients=4)
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)  # let Postfix write its last lines
    server_log = postfix.log_since(mark)
    assert result.exit_code == 2, result.output  # the settings' fault, once
    assert "sender.email" in result.output and "not owned by user" in result.output
    assert USER in result.output  # the account it logged in as
    rejects = [line for line in server_log.splitlines() if "Sender address rejected" in line]
    assert 1 <= len(rejects) <= 2, server_log  # one per connection at most, not one per recipient
    assert {s for s, *_ in logged(settings).values()} == {State.PENDING}
    assert all(attempts == 0 for _, _, attempts, _ in logged(settings).values())
    assert queue_ids(server_log) == [] and maildir_ids(postfix) == {}


def test_a_server_that_does_not_relay_for_us_stops_the_run_naming_the_login(
    tmp_path: Path, postfix: Postfix
) -> None:
    # The plain port without a login, from an address Postfix does not trust: it delivers only
    # its own domain (example.org here) and refuses to relay to example.com.
    postfix.configure(mynetworks="192.0.2.0/24", virtual_mailbox_domains="example.org")
    rows = [(f"Prénom{i}", f"Nom{i}", f"personne{i:04d}@example.com") for i in range(1, 5)]
    settings = make_project(tmp_path, port=postfix.smtp_port, rows=rows)
    mark = postfix.log_mark()
    result, _ = send(settings)
    time.sleep(0.5)  # let Postfix write its last lines
    server_log = postfix.log_since(mark)
    assert result.exit_code == 2, result.output
    assert "smtp.username" in result.output and "Relay access denied" in result.output
    rejects = [line for line in server_log.splitlines() if "Relay access denied" in line]
    assert 1 <= len(rejects) <= 2, server_log  # one per connection at most
    assert {s for s, *_ in logged(settings).values()} == {State.PENDING}
    assert all(attempts == 0 for _, _, attempts, _ in logged(settings).values())
    assert queue_ids(server_log) == []

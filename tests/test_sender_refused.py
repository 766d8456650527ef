"""A server that refuses the sender's address refuses every message: the settings' fault, once.

Providers let an account send only as the addresses it owns (Postfix's
`reject_sender_login_mismatch`, Microsoft 365's SendAsDenied). The refusal may answer MAIL, RCPT
(Postfix judges the sender there by default) or the final dot; wherever it comes, the run stops
with exit 2 naming `sender.email`, and no recipient is failed or loses an attempt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.dispatch import sender_refused
from campaign.ledger import State
from tests.conftest import cli
from tests.smtp_server import Fault, FaultyServer, make_project
from tests.test_send import FIRST, delivery, states


@pytest.mark.parametrize(
    "fault",
    [
        Fault("mail", code=553, text="5.7.1 Sender address rejected: not owned by user", times=0),
        Fault("mail", code=550, text="5.7.0 Unauthenticated senders not allowed", times=0),
        Fault(
            "rcpt",
            code=553,
            text="5.7.1 <collectif@example.org>: Sender address rejected: not owned by user"
            " collectif@example.org",
            times=0,
        ),
        Fault(
            "dot",
            code=554,
            text="5.2.252 SendAsDenied; collectif@example.org not allowed to send as"
            " collectif@example.org; STOREDRV.Submission.Exception:SendAsDeniedException",
            times=0,
        ),
    ],
    ids=["mail-553", "mail-550", "rcpt-postfix", "dot-microsoft"],
)
def test_a_refused_sender_stops_the_run_once_and_nobody_fails(tmp_path: Path, fault: Fault) -> None:
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        result = cli(settings, "send")
    assert result.exit_code == 2, result.output
    assert "sender.email" in result.output and "collectif@example.org" in result.output
    assert fault.text.split()[1] in result.output  # the server's own words
    assert "Traceback" not in result.output
    assert fault.fired <= 2  # once per connection at most, not once per recipient
    assert server.stored == []
    assert set(states(settings).values()) == {State.PENDING}
    assert delivery(settings).attempts == 0


def test_a_refused_recipient_is_still_that_recipients_failure(tmp_path: Path) -> None:
    unknown = Fault("rcpt", code=550, text="5.1.1 User unknown", recipient=FIRST)
    with FaultyServer(faults=[unknown]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        result = cli(settings, "send")
    assert result.exit_code == 1, result.output
    assert states(settings)[FIRST] is State.FAILED and len(server.stored) == 2


@pytest.mark.parametrize(
    ("code", "text", "verb", "expected"),
    [
        (553, "5.7.1 <a@example.org>: Sender address rejected: not owned by user b", b"RCPT", True),
        (550, "5.1.8 <a@example.org>: Sender address rejected: Domain not found", b"RCPT", True),
        (550, "5.7.60 SMTP; Client does not have permissions to send as this sender", None, True),
        (501, "5.5.4 Syntax: MAIL FROM:<address>", b"MAIL", True),
        (451, "4.3.0 <a@example.org>: Temporary lookup failure", b"MAIL", False),
        (550, "5.1.1 <b@example.org>: Recipient address rejected: User unknown", b"RCPT", False),
        (554, "5.7.1 <b@example.org>: Relay access denied", b"RCPT", False),
        (554, "5.7.1 rejected as spam", None, False),
    ],
)
def test_which_refusals_are_about_the_sender(
    code: int, text: str, verb: bytes | None, expected: bool
) -> None:
    assert sender_refused(code, text, verb) is expected


@pytest.mark.parametrize(
    ("fault", "key"),
    [
        (Fault("rcpt", code=554, text="5.7.1 <personne0001@example.org>: Relay access denied",
               times=0), "smtp.username"),
        (Fault("rcpt", code=504,
               text="5.5.2 <poste>: Helo command rejected: need fully-qualified hostname",
               times=0), "smtp.helo_name"),
        (Fault("rcpt", code=554,
               text="5.7.1 <unknown[192.0.2.7]>: Client host rejected: Access denied",
               times=0), "smtp.host"),
    ],
    ids=["relay", "helo", "client"],
)  # fmt: skip
def test_a_refusal_of_this_machine_or_its_login_stops_the_run_with_the_setting(
    tmp_path: Path, fault: Fault, key: str
) -> None:
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        result = cli(settings, "send")
    assert result.exit_code == 2, result.output
    assert f"'{key}'" in result.output, result.output
    assert fault.text.split(": ", 1)[1] in " ".join(result.output.split())
    assert fault.fired <= 2 and server.stored == []
    assert set(states(settings).values()) == {State.PENDING}
    assert delivery(settings).attempts == 0

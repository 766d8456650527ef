"""Messages bigger than the server takes (RFC 1870 SIZE, 552 5.3.4): the campaign's or one recipient's.

An attachment every message carries that makes them all too big is the campaign's fault: the run
stops once, exit 2, naming the files and the server's limit, and nobody's attempts are spent. A
recipient's own attachment (the attachments column) that makes only that message too big fails
that recipient, with the file named. A full mailbox (552 5.2.2) stays the recipient's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from campaign.dispatch import too_big
from campaign.ledger import Ledger, State
from tests.conftest import cli
from tests.smtp_server import Fault, FaultyServer, make_project
from tests.test_send import FIRST, delivery, states

SHARED = "attachments: [letters/annexe-juridique.pdf]"
OWN = "attachments_column: pieces\n    attachments_folder: letters/annexes"


def annex(path: Path, size: int) -> None:
    """A file base64 cannot shrink (random bytes), as a scanned annex is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.4\n" + os.urandom(size))


def own_attachments(tmp_path: Path, cells: list[str]) -> None:
    """The people.csv of `make_project` with a `pieces` column: one cell per recipient."""
    lines = ["prenom,nom,email,pieces"] + [
        f"Prénom{i},Nom{i},personne{i:04d}@example.org,{cell}" for i, cell in enumerate(cells, 1)
    ]
    (tmp_path / "recipients" / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_server_that_says_its_size_stops_the_run_before_any_command(tmp_path: Path) -> None:
    annex(tmp_path / "letters" / "annexe-juridique.pdf", 30_000)  # ~40 KB once encoded
    with FaultyServer(size_limit=20_000) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4, extra=SHARED)
        result = cli(settings, "send")
    assert result.exit_code == 2, result.output
    assert "campaigns.mini.attachments" in result.output
    assert "20 KB" in result.output and "SIZE 20000" in result.output
    assert re.search(r"annexe-juridique\.pdf \(4\d KB\)", result.output)
    assert "Traceback" not in result.output
    assert server.mails == 0 and server.stored == []  # refused before MAIL: nothing on the wire
    assert set(states(settings).values()) == {State.PENDING}
    assert delivery(settings).attempts == 0


def test_a_size_refusal_after_the_body_stops_the_run_and_gives_the_attempt_back(
    tmp_path: Path,
) -> None:
    # A server that does not say its limit in EHLO, and refuses the message once it has it.
    refusal = Fault("dot", code=552, text="5.3.4 Message size exceeds fixed limit", times=0)
    annex(tmp_path / "letters" / "annexe-juridique.pdf", 30_000)
    with FaultyServer(size_limit=None, faults=[refusal]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4, extra=SHARED)
        result = cli(settings, "send")
    assert result.exit_code == 2, result.output
    assert "5.3.4 Message size exceeds fixed limit" in result.output
    assert "campaigns.mini.attachments" in result.output
    assert server.stored == []
    assert set(states(settings).values()) == {State.PENDING}
    assert all(d.attempts == 0 for d in _deliveries(settings))


def test_the_size_is_declared_at_mail_only_to_a_server_that_offers_size(tmp_path: Path) -> None:
    with FaultyServer() as server:  # aiosmtpd's EHLO: SIZE 33554432
        settings = make_project(tmp_path / "a", port=server.port, recipients=2)
        assert cli(settings, "send").exit_code == 0
    for stored in server.stored:
        declared = int(stored.mail_args.rsplit("SIZE=", 1)[1].split()[0])
        assert abs(declared - len(stored.data)) < 16, (declared, len(stored.data))
    with FaultyServer(size_limit=None) as bare:
        settings = make_project(tmp_path / "b", port=bare.port, recipients=2)
        assert cli(settings, "send").exit_code == 0
    assert len(bare.stored) == 2 and all("SIZE=" not in s.mail_args for s in bare.stored)


def test_a_full_mailbox_is_that_recipients_failure_not_a_stop(tmp_path: Path) -> None:
    full = Fault("dot", code=552, text="5.2.2 Mailbox full", recipient=FIRST)
    with FaultyServer(faults=[full]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        result = cli(settings, "send")
    assert result.exit_code == 1, result.output
    assert states(settings)[FIRST] is State.FAILED
    assert len(server.stored) == 2


@pytest.mark.parametrize("advertised", [True, False])
def test_a_recipients_own_attachment_too_big_fails_that_recipient_only(
    tmp_path: Path, advertised: bool
) -> None:
    folder = tmp_path / "letters" / "annexes"
    annex(folder / "petite.pdf", 2_000)
    annex(folder / "dossier-complet.pdf", 60_000)
    # Advertised: refused before MAIL. Not: the server refuses the body (a 552 after the dot).
    faults = [] if advertised else [Fault("dot", code=552, text="5.3.4 too big", recipient=FIRST)]
    with FaultyServer(size_limit=40_000 if advertised else None, faults=faults) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3, extra=OWN)
        own_attachments(tmp_path, ["dossier-complet.pdf", "petite.pdf", ""])
        result = cli(settings, "send")
    assert result.exit_code == 1, result.output  # a failed recipient is a problem found
    assert states(settings) == {
        FIRST: State.FAILED,
        "personne0002@example.org": State.SENT,
        "personne0003@example.org": State.SENT,
    }
    first = delivery(settings)
    assert first.attempts == 1 and "dossier-complet.pdf" in first.last_text
    assert ("40 KB" in first.last_text) is advertised
    assert len(server.stored) == 2


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (552, "5.3.4 Message size exceeds fixed limit", True),
        (552, "Error: Too much mail data", True),
        (552, "Error: message size exceeds fixed maximum message size", True),
        (554, "5.2.3 Message length exceeds administrative limit", True),
        (552, "5.2.2 Mailbox full", False),
        (552, "5.2.2 Quota exceeded (mailbox for user is full)", False),
        (550, "5.1.1 User unknown", False),
        (452, "4.3.1 Insufficient system storage", False),
    ],
)
def test_which_refusals_are_about_the_messages_size(code: int, text: str, expected: bool) -> None:
    assert too_big(code, text) is expected


def _deliveries(settings: Path) -> list[object]:
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        return list(log.deliveries())


def test_check_warns_where_attachments_make_messages_bigger_than_many_servers_take(
    tmp_path: Path,
) -> None:
    annex(tmp_path / "letters" / "annexe-juridique.pdf", 8_000_000)  # 10.9 MB once encoded
    settings = make_project(tmp_path, port=2525, recipients=2, extra=SHARED)
    result = cli(settings, "check", "--json")
    assert result.exit_code == 0, result.output  # a warning: the provider may take it
    [warned] = json.loads(result.output)["problems"]
    assert warned["severity"] == "warning" and warned["key"] == "campaigns.mini.attachments"
    assert "10.9 MB" in warned["message"] and "10.2 MB" in warned["message"]
    # Below the line, nothing is said.
    annex(tmp_path / "letters" / "annexe-juridique.pdf", 7_000_000)  # 9.6 MB
    assert json.loads(cli(settings, "check", "--json").output)["problems"] == []


def test_check_names_the_row_whose_own_attachment_makes_its_message_too_big(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "letters" / "annexes"
    annex(folder / "petite.pdf", 2_000)
    annex(folder / "dossier-complet.pdf", 8_000_000)
    settings = make_project(tmp_path, port=2525, recipients=3, extra=OWN)
    own_attachments(tmp_path, ["petite.pdf", "dossier-complet.pdf", ""])
    result = cli(settings, "check", "--json")
    assert result.exit_code == 0, result.output
    warned = [p for p in json.loads(result.output)["problems"] if "MB" in p["message"]]
    assert [(p["row"], p["column"]) for p in warned] == [(3, "pieces")]


def test_a_test_send_of_a_row_whose_own_attachment_is_too_big_fails_that_copy_only(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "letters" / "annexes"
    annex(folder / "dossier-complet.pdf", 60_000)
    with FaultyServer(size_limit=40_000) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2, extra=OWN)
        own_attachments(tmp_path, ["dossier-complet.pdf", ""])
        result = cli(settings, "send", "--test-to", "relecteur@example.com", "--count", "2")
    assert result.exit_code == 1, result.output  # one copy failed: not a settings error
    assert len(server.stored) == 1  # the second row's copy
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        tests = log.test_sends()
    assert [t["state"] for t in tests] == ["failed", "sent"]
    assert "dossier-complet.pdf" in str(tests[0]["last_text"])

"""A person already sent the letter at one address, then written at another: held, not sent twice.

The delivery log's identity is the address. When the organisers correct or change a recipient's
address after the letter went out, the row is a new address for the same person: `send` holds it
(state `held`), says who and where the letter went, and sends it only with `--resend-readdressed`.
An address that never reached anyone (failed, bounced) is corrected and sent as usual.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from campaign import ledger
from campaign.ledger import Entry, Ledger, State, person_key
from campaign.sink import MaildirHandler
from tests.conftest import cli, said
from tests.smtp_server import Fault, FaultyServer, make_project
from tests.test_bounce_causes import dsn

PEOPLE = [
    ("Claire", "Dubois", "claire.dubois@example.org"),
    ("Julien", "Moreau", "julien.moreau@example.org"),
    ("Anne", "Leroy", "anne.leroy@example.org"),
]


def _rewrite(settings: Path, people: list[tuple[str, str, str]]) -> None:
    lines = ["prenom,nom,email"] + [",".join(row) for row in people]
    (settings.parent / "recipients" / "people.csv").write_text("\n".join(lines) + "\n")


def _arrived(server: FaultyServer) -> list[str]:
    return sorted(r for m in server.stored for r in m.recipients)


def test_a_new_address_for_someone_already_sent_is_held_then_sent_only_when_asked(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE)
        assert cli(settings, "send").exit_code == 0
        moved = [*PEOPLE[:1], ("Julien", "Moreau", "j.moreau@example.org"), PEOPLE[2]]
        _rewrite(settings, moved)

        held = cli(settings, "send")
        assert held.exit_code == 1, held.output  # not everyone in the sheet was sent
        told = said(held)
        assert (
            "held: 1 recipient not sent: the letter already reached the same person at another "
            "address"
        ) in told, told
        assert "row 3 j.moreau@example.org: already sent to julien.moreau@example.org on " in told
        assert "campaign send mini --resend-readdressed sends the letter to the new one" in told
        assert len(_arrived(server)) == 3  # nobody written to twice

        status = cli(settings, "status", "--json")
        assert status.exit_code == 1
        report = json.loads(status.output)
        assert report["counts"]["held"] == 1
        assert [(h["row"], h["address"], h["earlier"]) for h in report["held"]] == [
            (3, "j.moreau@example.org", "julien.moreau@example.org")
        ]
        assert "already sent to julien.moreau@example.org" in said(cli(settings, "status"))
        assert cli(settings, "send").exit_code == 1  # still held: a run alone never sends it

        released = cli(settings, "send", "--resend-readdressed", "--json")
        assert released.exit_code == 0, released.output
        assert json.loads(released.output)["sent"] == 1
        assert cli(settings, "send", "--json").exit_code == 0
    assert _arrived(server) == sorted([*(p[2] for p in PEOPLE), "j.moreau@example.org"])
    assert cli(settings, "status").exit_code == 0


def test_an_address_that_reached_nobody_is_corrected_and_sent_without_a_hold(
    tmp_path: Path,
) -> None:
    # The usual correction: the first address was refused (a typo), so the person got nothing.
    wrong = Fault("rcpt", code=550, text="5.1.1 User unknown", recipient=PEOPLE[1][2], times=0)
    with FaultyServer(faults=[wrong]) as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE)
        assert cli(settings, "send").exit_code == 1  # failed: 5.1.1
        _rewrite(settings, [*PEOPLE[:1], ("Julien", "Moreau", "j.moreau@example.org"), PEOPLE[2]])
        again = cli(settings, "send", "--json")
        assert json.loads(again.output)["sent"] == 1, again.output
        assert json.loads(again.output)["held"] == []
    assert "j.moreau@example.org" in _arrived(server)


def test_a_new_director_in_the_same_row_is_a_new_person_and_is_sent(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE)
        assert cli(settings, "send").exit_code == 0
        _rewrite(settings, [*PEOPLE[:1], ("Marc", "Petit", "marc.petit@example.org"), PEOPLE[2]])
        again = cli(settings, "send", "--json")
        assert again.exit_code == 0, again.output
        assert json.loads(again.output)["sent"] == 1
    assert "marc.petit@example.org" in _arrived(server)


def test_a_french_organiser_reads_what_is_held_and_what_to_do(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE, extra="")
        text = settings.read_text().replace("sender:", "language: fr\nsender:", 1)
        settings.write_text(text)
        assert cli(settings, "send").exit_code == 0
        _rewrite(settings, [*PEOPLE[:1], ("Julien", "Moreau", "j.moreau@example.org"), PEOPLE[2]])
        told = said(cli(settings, "send"))
    assert "retenu : 1 destinataire non envoyé : la lettre a déjà atteint" in told, told
    assert "déjà envoyée à julien.moreau@example.org le " in told
    assert "--resend-readdressed" in told


def _entry(address: str, name: str | None, cells: dict[str, str]) -> Entry:
    return Entry(address, 2, name, f"<{address}>", person_key({**cells, "email": address}, address))


def test_the_same_person_is_known_by_name_or_by_the_rest_of_the_row(tmp_path: Path) -> None:
    cells = {"Établissement": "CH de Valbrune", "Ville": "VALBRUNE"}
    with Ledger(tmp_path / "delivery.sqlite") as log:
        log.enqueue(
            [
                _entry("a@example.org", "Claire Dubois", {"Nom": "Dubois"}),
                _entry("b@example.org", None, cells),  # no to_name: the other cells say who
                _entry("c@example.org", None, {"Nom": "Leroy"}),
            ],
            [],
            1.0,
        )
        for email in ("a@example.org", "b@example.org"):
            log.apply([ledger.outcome(email, State.SENT, 250, "ok", 2.0)])
        # c never got it (still pending): its new address is not held.
        moved = [
            _entry("a2@example.org", "  claire  DUBOIS ", {"Nom": "Dubois-Martin"}),
            _entry(
                "b2@example.org", None, {"Ville": " valbrune", "Établissement": "CH DE VALBRUNE"}
            ),
            _entry("c2@example.org", None, {"Nom": "Leroy"}),
            _entry("d@example.org", None, {}),  # nothing but an address: never anyone's match
        ]
        log.enqueue(moved, [], 3.0)
        ready = [e.email for e in moved]
        assert log.hold_readdressed(ready) == 2
        assert [(h.address, h.earlier) for h in log.held(ready)] == [
            ("a2@example.org", "a@example.org"),
            ("b2@example.org", "b@example.org"),
        ]
        # Back in the sheet, the earlier address is a row of its own: nothing more is held.
        log.enqueue([_entry("e@example.org", "Claire Dubois", {})], [], 4.0)
        assert log.hold_readdressed([*ready, "a@example.org", "e@example.org"]) == 2
        assert log.release_held() == 2
        assert log.hold_readdressed(ready) == 0  # released once: never held again
        assert log.counts()["pending"] == 6


def test_an_opted_out_address_does_not_let_the_same_person_be_written_at_another(
    tmp_path: Path,
) -> None:
    with Ledger(tmp_path / "delivery.sqlite") as log:
        first = _entry("a@example.org", "Claire Dubois", {})
        log.enqueue([first], [], 1.0)
        log.apply([ledger.outcome("a@example.org", State.SENT, 250, "ok", 2.0)])
        log.enqueue([_entry("a2@example.org", "Claire Dubois", {})], [first], 3.0)
        # a@ is on the suppression list now, so not among the ready: its person is held.
        assert log.hold_readdressed(["a2@example.org"]) == 1


def test_person_key_ignores_the_address_case_and_spaces() -> None:
    row = {"Nom": "Moreau", "Courriel": "J.Moreau@example.org", "Ville": "LYON"}
    assert person_key(row, "j.moreau@example.org") == person_key(
        {"nom": " moreau ", "courriel": "julien.moreau@example.org", "ville": "Lyon"},
        "julien.moreau@example.org",
    )
    assert person_key(row, "j.moreau@example.org") != person_key(
        {**row, "Ville": "PARIS"}, "j.moreau@example.org"
    )
    assert person_key({"Courriel": "x@example.org", "Ville": ""}, "x@example.org") is None


# The columns each schema version added to `deliveries`: a log of version n has none of n + 1's.
_ADDED_BY = {4: ("person", "readdressed_from"), 5: ("unsubscribed_at",)}


def _older_log(tmp_path: Path, version: int) -> Path:
    """A log with one sent row, as a version-`version` campaign wrote it."""
    path = tmp_path / "delivery.sqlite"
    with Ledger(path) as log:
        log.enqueue([_entry("a@example.org", "Claire Dubois", {})], [], 1.0)
        log.apply([ledger.outcome("a@example.org", State.SENT, 250, "ok", 2.0)])
    conn = sqlite3.connect(path)
    for later, columns in _ADDED_BY.items():
        if later > version:
            for column in columns:
                conn.execute(f"ALTER TABLE deliveries DROP COLUMN {column}")
    conn.execute("DELETE FROM schema_version")
    conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    conn.commit()
    conn.close()
    return path


def test_a_log_of_version_3_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = _older_log(tmp_path, 3)
    with Ledger(path) as log:
        found = log.get("a@example.org")
        assert found is not None and found.state is State.SENT and found.person is None
        log.enqueue([_entry("a2@example.org", "Claire Dubois", {})], [], 3.0)
        assert log.hold_readdressed(["a2@example.org"]) == 1  # the name still says who
    assert path.with_name("delivery.sqlite.v3.bak").exists()


def test_check_warns_of_the_hold_before_send_and_writes_nothing(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE)
        log = settings.parent / "outbox" / "mini" / "delivery.sqlite"
        assert "0 warnings" in said(cli(settings, "check"))
        assert not log.exists()  # check makes no delivery log
        assert cli(settings, "send").exit_code == 0
        _rewrite(settings, [*PEOPLE[:1], ("Julien", "Moreau", "j.moreau@example.org"), PEOPLE[2]])
        status = said(cli(settings, "status"))
        assert "1 not sent yet: in the spreadsheet, not yet in the log (row 3); campaign send" in (
            status
        )
        assert "unless one is someone the letter already reached at another address" in status
        before = log.read_bytes()

        checked = cli(settings, "check", "--json")
        assert checked.exit_code == 0, checked.output  # a warning: the organiser decides
        warnings = [p for p in json.loads(checked.output)["problems"] if p["row"] is not None]
        assert [(w["severity"], w["row"], w["column"]) for w in warnings] == [
            ("warning", 3, "email")
        ]
        assert warnings[0]["file"] == "recipients/people.csv"
        assert (
            "already reached this person at julien.moreau@example.org on "
            in (warnings[0]["message"])
        )
        assert "--resend-readdressed" in warnings[0]["hint"]
        assert log.read_bytes() == before  # read only: the row is not queued nor held by check

        assert cli(settings, "send").exit_code == 1  # held, as check said
        again = json.loads(cli(settings, "check", "--json").output)["problems"]
        assert [p["row"] for p in again if p["row"] is not None] == [3]  # still said while held
        assert cli(settings, "send", "--resend-readdressed").exit_code == 0
        released = json.loads(cli(settings, "check", "--json").output)["problems"]
        assert [p for p in released if p["row"] is not None] == []  # sent: nothing to warn of
    assert len(_arrived(server)) == 4


def test_a_held_row_is_sent_once_the_earlier_letter_turns_out_to_have_bounced(
    tmp_path: Path,
) -> None:
    # The organiser corrected the address from the bounce in their own mail client, then ran
    # send before inbox: the row is held (the log still says the letter reached the person).
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=PEOPLE)
        settings.write_text(settings.read_text() + "mailbox:\n  maildir: outbox/mailbox\n")
        assert cli(settings, "send").exit_code == 0
        _rewrite(settings, [*PEOPLE[:1], ("Julien", "Moreau", "j.moreau@example.org"), PEOPLE[2]])
        assert cli(settings, "send").exit_code == 1  # held
        earlier = PEOPLE[1][2]
        with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
            found = log.get(earlier)
        assert found is not None
        report = dsn(earlier, found.message_id, "550 5.1.1 User unknown", "5.1.1")
        MaildirHandler(settings.parent / "outbox" / "mailbox").deliver(report)

        inbox = cli(settings, "inbox")
        assert inbox.exit_code == 0, inbox.output
        assert (
            "held: 1 recipient held no longer: the letter to their earlier address bounced, so "
            "the next send sends it to the new one"
        ) in said(inbox)
        status = json.loads(cli(settings, "status", "--json").output)
        assert status["held"] == [] and not status["counts"].get("held")
        assert status["counts"]["bounced"] == 1
        assert "already reached" not in cli(settings, "check", "--json").output

        sent = cli(settings, "send", "--json")  # no --resend-readdressed needed
        assert sent.exit_code == 0, sent.output
        assert json.loads(sent.output)["sent"] == 1
        assert json.loads(cli(settings, "send", "--json").output)["sent"] == 0
    assert _arrived(server).count("j.moreau@example.org") == 1
    assert len(_arrived(server)) == 4


def test_a_held_row_goes_when_its_earlier_row_is_queued_again_and_left_unsent(
    tmp_path: Path,
) -> None:
    # The earlier row requeued (here: its uncertain send resent) is pending, no longer reached,
    # and gone from the sheet, so it will not be sent: the new address is the way to the person.
    with Ledger(tmp_path / "delivery.sqlite") as log:
        who = person_key({"prenom": "Julien", "nom": "Moreau"}, "")
        log.enqueue([Entry("julien.moreau@example.org", 3, "Julien Moreau", "<a@x>", who)], [], 0.0)
        log.apply([("UPDATE deliveries SET state = 'uncertain', last_attempt_at = 1.0", ())])
        log.enqueue([Entry("j.moreau@example.org", 3, "Julien Moreau", "<b@x>", who)], [], 2.0)
        assert log.hold_readdressed(["j.moreau@example.org"]) == 1
        assert log.release_unreached() == 0  # still reached: stays held
        log.requeue([State.UNCERTAIN])
        assert log.release_unreached() == 1
        assert log.get("j.moreau@example.org").state is State.PENDING  # type: ignore[union-attr]
        assert log.hold_readdressed(["j.moreau@example.org"]) == 0
        assert log.release_unreached() == 0  # nothing held: no write


def test_a_log_of_version_4_gains_the_unsubscribe_fact_and_keeps_its_rows(tmp_path: Path) -> None:
    path = _older_log(tmp_path, 4)
    with Ledger(path) as log:
        found = log.get("a@example.org")
        assert found is not None and found.state is State.SENT and found.unsubscribed_at is None
        log.apply([ledger.noted("a@example.org", "unsubscribed_at", 3.0, "request")])
        assert log.facts()["unsubscribed"] == 1
    assert path.with_name("delivery.sqlite.v4.bak").exists()

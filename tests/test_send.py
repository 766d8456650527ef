"""Sending against a real aiosmtpd server on 127.0.0.1 that fails on request.

For each fault: the state in the delivery log, how many copies the server stored (0 or 1, never
2), and what a second `send` does.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from campaign.errors import DeliveryError
from campaign.inputs import load_inputs
from campaign.ledger import Ledger, State
from campaign.send import SendOptions, SendReport, send_campaign
from campaign.settings import load_settings
from tests.conftest import cli, said
from tests.smtp_server import Fault, FaultyServer, make_project, tls_contexts

FIRST = "personne0001@example.org"


def send(settings: Path, *, clock: Callable[[], float] = time.time, **options: Any) -> SendReport:
    campaign = load_settings(settings).campaign("mini")
    options.setdefault("wait_retries", False)
    return send_campaign(load_inputs(campaign), SendOptions(**options), clock=clock)


def states(settings: Path) -> dict[str, State]:
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        return {d.email: d.state for d in log.deliveries()}


def delivery(settings: Path, email: str = FIRST) -> Any:
    with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
        return log.get(email)


def later(hours: float) -> Callable[[], float]:
    return lambda: time.time() + hours * 3600


# Each fault hits the first recipient once; the others go through.
FAULTS = [
    # (fault, state after the first send, copies stored, state after a second send, copies)
    (Fault("rcpt", code=451), State.DEFERRED, 0, State.SENT, 1),
    (Fault("rcpt", code=452, text="4.5.3 too many recipients"), State.DEFERRED, 0, State.SENT, 1),
    (Fault("rcpt", code=550, text="5.1.1 no such user"), State.FAILED, 0, State.FAILED, 0),
    (Fault("dot", code=554, text="5.7.1 rejected"), State.FAILED, 0, State.FAILED, 0),
    (Fault("dot", code=451, text="4.3.0 queue full"), State.DEFERRED, 0, State.SENT, 1),
    (Fault("data", action="drop"), State.DEFERRED, 0, State.SENT, 1),
    (Fault("data", action="after_354"), State.UNCERTAIN, 0, State.UNCERTAIN, 0),
    (Fault("dot", action="drop"), State.UNCERTAIN, 0, State.UNCERTAIN, 0),
    (Fault("dot", action="store_drop"), State.UNCERTAIN, 1, State.UNCERTAIN, 1),
    (Fault("rcpt", action="delay", seconds=6.0), State.DEFERRED, 0, State.SENT, 1),
]


@pytest.mark.parametrize(
    ("fault", "first", "copies", "second", "copies_after"),
    FAULTS,
    ids=[f"{f.stage}-{f.action}-{f.code}" for f, *_ in FAULTS],
)
def test_fault_is_recorded_and_never_stored_twice(
    tmp_path: Path, fault: Fault, first: State, copies: int, second: State, copies_after: int
) -> None:
    throttle = "per_minute: null\n  concurrency: 2"
    if fault.stage == "mail":  # MAIL comes before any recipient: go one at a time, FIRST first
        throttle = "per_minute: null\n  concurrency: 1"
    else:
        fault.recipient = FIRST
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3, throttle=throttle)
        report = send(settings)
        if fault.action == "after_354" and delivery(settings).state is State.DEFERRED:
            # The drop came before the final dot was written (the body mark took longer than
            # the server's 50 ms): no dot, no message, so it is sent again. Usually it comes
            # after the dot, and the client cannot know whether the server had it: uncertain.
            first, second, copies_after = State.DEFERRED, State.SENT, 1
        assert delivery(settings).state is first
        assert server.copies_to(FIRST) == copies
        others = {e: s for e, s in states(settings).items() if e != FIRST}
        assert set(others.values()) == {State.SENT}
        assert report.tally.sent == 2
        assert max(server.copies().values()) == 1

        again = send(settings, clock=later(2))  # past any backoff
        assert delivery(settings).state is second
        assert server.copies_to(FIRST) == copies_after
        assert max(server.copies().values()) == 1
        assert again.tally.messages == (1 if first is State.DEFERRED else 0)


def test_a_connection_lost_before_the_final_dot_is_sent_again_not_uncertain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign import logwriter

    commit = logwriter.apply_writes

    def slow_commit(conn: Any, writes: Any) -> None:
        if any(params[:1] == ("body",) for _, params in writes):
            time.sleep(0.3)  # the body mark outlasts the server's patience (it drops at 50 ms)
        commit(conn, writes)

    monkeypatch.setattr(logwriter, "apply_writes", slow_commit)
    fault = Fault("data", action="after_354", recipient=FIRST)
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        send(settings)
        assert delivery(settings).state is State.DEFERRED  # the dot never left: no message
        assert "before the final dot" in delivery(settings).last_text
        assert server.copies_to(FIRST) == 0
        send(settings, clock=later(2))
        assert delivery(settings).state is State.SENT and server.copies_to(FIRST) == 1


def test_messages_composed_ahead_by_the_workers_are_those_composed_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers' path (shared attachment parts sent by index, pieces dot-stuffed apart, the
    Date put in when the message leaves) gives the server the bytes `Composer.compose` makes."""
    import re

    from campaign import composepool
    from campaign import send as sending
    from campaign.compose import Composer, joined, load_attachments
    from campaign.send import _Plan

    if not composepool.available():
        pytest.skip("compose workers need fork and two cores")
    in_place: list[str] = []
    compose = _Plan._compose
    monkeypatch.setattr(
        _Plan, "_compose", lambda self, r, **kw: in_place.append(r.email) or compose(self, r, **kw)
    )
    by_index: list[int] = []  # per message from a worker: how many parts came as an index
    monkeypatch.setattr(
        sending,
        "joined",
        lambda pieces, shared: (
            by_index.append(sum(isinstance(p, int) for p in pieces)) or joined(pieces, shared)
        ),
    )
    count = composepool.MIN_BATCH + 6
    with FaultyServer() as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=count, extra="attachments: [letters/annexe.pdf]"
        )
        (tmp_path / "letters" / "annexe.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 120)
        # A line of the text part starts with a dot: it must reach the server as it was written.
        (tmp_path / "letters" / "mini.md").write_text(
            "---\nsubject: Lettre\n---\nMadame, Monsieur {{ nom }},\n\n.NET et {{ prenom }}.\n",
            encoding="utf-8",
        )
        report = send(settings)
        assert report.tally.sent == count
        assert in_place == []  # every message composed by the workers …
        assert by_index == [1] * count  # … the annex's part sent by its index, not its bytes
        inputs = load_inputs(load_settings(settings).campaign("mini"))
        with Ledger.for_campaign(inputs.campaign.layout) as log:
            salt = log.id_salt()  # the run's Message-IDs are the campaign's own
        composer, shared = Composer(inputs, id_salt=salt), load_attachments(inputs)
        people = {r.email: r for r in inputs.recipients.ready}

        def normal(data: bytes) -> bytes:  # boundaries are random and the Date is the send's
            data = re.sub(rb"={15}\d{19}==", b"BOUNDARY", data)
            return re.sub(rb"\r\nDate: [^\r]*\r\n", b"\r\nDate: D\r\n", data)

        for stored in server.stored:
            (address,) = stored.recipients
            expected = composer.compose(people[address], attachments=shared)
            assert b"\r\n.NET et " in stored.data
            assert normal(stored.data) == normal(expected), address


def test_deferred_recipient_is_retried_in_the_same_run_after_the_backoff(tmp_path: Path) -> None:
    with FaultyServer(faults=[Fault("rcpt", code=451, recipient=FIRST, times=2)]) as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=2, retry="max_attempts: 5\n  backoff: [0.3s]"
        )
        report = send(settings, wait_retries=True)
        assert delivery(settings).state is State.SENT
        assert delivery(settings).attempts == 3
        assert report.tally.deferred == 2
        assert server.copies_to(FIRST) == 1


def test_transient_failures_give_up_after_max_attempts(tmp_path: Path) -> None:
    with FaultyServer(faults=[Fault("rcpt", code=451, recipient=FIRST, times=0)]) as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=1, retry="max_attempts: 2\n  backoff: [0s]"
        )
        send(settings, wait_retries=True)
        record = delivery(settings)
        assert record.state is State.FAILED
        assert record.attempts == 2
        assert "gave up after 2 attempts" in record.last_text


def test_retry_failed_and_resend_uncertain_send_again(tmp_path: Path) -> None:
    faults = [
        Fault("rcpt", code=550, recipient=FIRST),
        Fault("dot", action="store_drop", recipient="personne0002@example.org"),
    ]
    with FaultyServer(faults=faults) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        send(settings)
        assert states(settings)[FIRST] is State.FAILED
        assert states(settings)["personne0002@example.org"] is State.UNCERTAIN
        send(settings, retry_failed=True)
        assert states(settings)[FIRST] is State.SENT
        assert states(settings)["personne0002@example.org"] is State.UNCERTAIN
        send(settings, resend_uncertain=True)
        assert set(states(settings).values()) == {State.SENT}
        # The organiser asked for it: the uncertain one now has its second copy.
        assert server.copies_to("personne0002@example.org") == 2
        assert server.copies_to(FIRST) == 1


def test_a_connection_carries_many_messages_up_to_the_setting(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=30,
            throttle="per_minute: null\n  concurrency: 3\n  messages_per_connection: 5",
        )
        report = send(settings)
        assert report.tally.sent == 30
        # 30 messages, 5 per connection, 3 connections at a time: 6 to 8 connections in all
        assert 6 <= server.connections == report.tally.connections <= 8
        per_connection: dict[int, int] = {}
        for stored in server.stored:
            per_connection[stored.connection] = per_connection.get(stored.connection, 0) + 1
        assert max(per_connection.values()) == 5
        assert set(server.copies().values()) == {1}


def test_server_cap_per_connection_reconnects_and_sends_everyone_once(tmp_path: Path) -> None:
    with FaultyServer(per_connection=4) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=20,
            retry="max_attempts: 5\n  backoff: [0s]",
        )
        send(settings, wait_retries=True)
        assert set(states(settings).values()) == {State.SENT}
        assert len(server.copies()) == 20
        assert set(server.copies().values()) == {1}
        assert server.connections >= 5


def test_message_id_is_the_same_on_every_attempt(tmp_path: Path) -> None:
    with FaultyServer(faults=[Fault("dot", code=451, recipient=FIRST)]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=1)
        send(settings)
        planned = delivery(settings).message_id
        send(settings, clock=later(2))
        assert [s.message_id for s in server.stored] == [planned]


def test_another_mailing_under_the_same_name_gets_other_message_ids(tmp_path: Path) -> None:
    # Every `campaign init` project is named ma-campagne: a second letter to the same people under
    # the first one's Message-IDs may be dropped by their mailbox as a copy (RFC 5322 §3.6.4).
    with FaultyServer() as server:
        first = make_project(tmp_path / "lettre", port=server.port, recipients=2)
        second = make_project(tmp_path / "relance", port=server.port, recipients=2)
        send(first)
        send(second)
        ids = [s.message_id for s in server.stored]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert {delivery(first).message_id, delivery(second).message_id} <= set(ids)


def test_a_letter_dated_long_before_the_send_is_said_at_the_send(tmp_path: Path) -> None:
    # A lawyer's reading: the sample letter, dated 7 mai 2020, went out in 2026 without a word.
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=1)
        letter = tmp_path / "letters" / "mini.md"
        letter.write_text(letter.read_text().replace("---\n", "---\ndate: 2020-05-07\n", 1))
        old = send(settings)
        assert any("the letter is dated 7 mai 2020" in note for note in old.notes), old.notes
        letter.write_text(letter.read_text().replace("2020-05-07", "2020-05-01"))
        in_time = send(settings, clock=lambda: time.mktime((2020, 5, 20, 12, 0, 0, 0, 0, -1)))
        assert not any("dated" in note for note in in_time.notes)  # sent 19 days after its date
        ahead = send(settings, clock=lambda: time.mktime((2020, 4, 20, 12, 0, 0, 0, 0, -1)))
        assert any("dated 1er mai 2020" in note for note in ahead.notes)  # a date to come


def test_limit_sends_to_n_recipients_and_the_next_run_resumes(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=5)
        first = send(settings, limit=2)
        assert first.tally.sent == 2
        assert first.stopped == "limit of 2 reached"
        assert list(states(settings).values()).count(State.PENDING) == 3
        second = send(settings)
        assert second.tally.sent == 3
        third = send(settings)
        assert third.tally.messages == 0
        assert len(server.stored) == 5


def test_suppressed_and_removed_recipients_are_kept_in_the_log_and_not_sent(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=3, suppressed=["personne0003@example.org"]
        )
        send(settings)
        assert states(settings)["personne0003@example.org"] is State.SUPPRESSED
        assert server.copies_to("personne0003@example.org") == 0
        # Remove the first recipient from the spreadsheet: it stays `sent` in the log.
        make_project(
            tmp_path,
            port=server.port,
            rows=[("Prénom2", "Nom2", "personne0002@example.org")],
        )
        send(settings)
        assert states(settings)[FIRST] is State.SENT
        assert len(server.stored) == 2


def test_day_cap_ends_the_run_and_a_restart_counts_earlier_sends(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=5, throttle="per_minute: null\n  per_day: 3"
        )
        report = send(settings)
        assert report.tally.sent == 3
        assert report.stopped is not None
        assert report.stopped.startswith("3 sent today, cap 3 reached; next possible at ")
        assert report.exit_code == 0
        again = send(settings)
        assert again.tally.messages == 0
        assert again.stopped is not None and "cap 3 reached" in again.stopped
        tomorrow = send(settings, clock=later(24.1))
        assert tomorrow.tally.sent == 2
        assert len(server.stored) == 5


def test_a_message_sent_again_still_counts_its_first_send_in_the_day_cap(tmp_path: Path) -> None:
    # The server stored the first message, then the connection dropped: `uncertain`. Sending it
    # again makes the row pending, but the first copy stays in the provider's count for the day.
    with FaultyServer(faults=[Fault("dot", action="store_drop", recipient=FIRST)]) as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=3, throttle="per_minute: null\n  per_day: 3"
        )
        first = send(settings)
        assert (first.tally.sent, first.tally.uncertain, len(server.stored)) == (2, 1, 3)
        again = send(settings, resend_uncertain=True)
        assert again.requeued == 1
        assert again.tally.messages == 0, "a 4th message within 24 h, over the cap of 3"
        assert again.stopped is not None and "cap 3 reached" in again.stopped
        status = json.loads(cli(settings, "status", "mini", "--json").output)
        assert status["sent_last_24h"] == 3
        tomorrow = send(settings, clock=later(24.1))
        assert tomorrow.tally.sent == 1
    assert len(server.stored) == 4


def test_throttle_windows_hold_at_the_server_in_real_time(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=12,
            throttle="per_second: 5\n  per_minute: null\n  concurrency: 3",
        )
        started = time.monotonic()
        send(settings)
        elapsed = time.monotonic() - started
        times = sorted(s.at for s in server.stored)
        assert len(times) == 12
        # No 1-second window of the server's receive times holds more than 5 messages.
        assert all(times[i + 5] - times[i] >= 1.0 for i in range(len(times) - 5))
        assert elapsed >= 2.0


def test_test_to_sends_marked_copies_and_records_nobody_as_sent(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        result = cli(settings, "send", "--test-to", "relecteur@example.com", "--count", "2")
        assert result.exit_code == 0, result.output
        assert len(server.stored) == 2
        assert all(s.recipients == ["relecteur@example.com"] for s in server.stored)
        assert all(b"Subject: [TEST] Lettre pour" in s.data for s in server.stored)
        assert set(states(settings).values()) <= {State.PENDING}
        with Ledger(settings.parent / "outbox" / "mini" / "delivery.sqlite") as log:
            assert [t["state"] for t in log.test_sends()] == ["sent", "sent"]
        # The real send still sends to everyone, with Message-IDs the tests did not use.
        assert cli(settings, "send", "--quiet").exit_code == 0
        assert len(server.copies()) == 6


def test_a_test_send_asked_for_more_copies_than_rows_says_how_many_it_sent(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        result = cli(settings, "send", "--test-to", "relecteur@example.com", "--count", "9")
        assert result.exit_code == 0, result.output
        assert len(server.stored) == 2
    assert "--count 9: only 2 recipients are ready, so 2 test messages" in said(result)


def test_a_password_variable_unset_at_send_time_names_the_settings_file(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=1, smtp="password_env: CAMPAIGN_NOT_SET_HERE"
        )
        os.environ.pop("CAMPAIGN_NOT_SET_HERE", None)
        result = cli(settings, "send")
        assert server.stored == []
    assert result.exit_code == 2, result.output
    assert f"{settings}, key 'smtp.password_env'" in said(result)


def test_dry_run_writes_eml_files_and_talks_to_no_server(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        result = cli(settings, "send", "--dry-run")
        assert result.exit_code == 0, result.output
        files = sorted((tmp_path / "outbox" / "mini" / "dry-run").glob("*.eml"))
        assert files[0].name == "0002-personne0001-example.org.eml"
        assert len(files) == 3
        assert (
            b"To: =?utf-8?q?Pr=C3=A9nom1?= Nom1 <personne0001@example.org>" in files[0].read_bytes()
        )
        assert server.connections == 0
        assert not (tmp_path / "outbox" / "mini" / "delivery.sqlite").exists()


def test_dry_run_with_a_limit_composes_only_the_first_rows(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=9, recipients=3)  # no server: nothing may connect
    result = cli(settings, "send", "--dry-run", "--limit", "2")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "outbox" / "mini" / "dry-run").glob("*.eml"))
    assert [f.name[:4] for f in files] == ["0002", "0003"]


def test_send_command_reports_and_exits_1_while_failures_remain(tmp_path: Path) -> None:
    refusal = Fault("rcpt", code=550, text="5.1.1 no such user", recipient=FIRST)
    with FaultyServer(faults=[refusal]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        result = cli(settings, "send", "--quiet", "--no-wait")
        assert result.exit_code == 1
        assert "1 sent, 0 deferred, 1 failed, 0 uncertain" in " ".join(result.output.split())
        status = cli(settings, "status", "mini", "--json")
        assert status.exit_code == 1
        data = json.loads(status.output)
        assert data["counts"]["failed"] == 1
        assert data["attention"][0]["code"] == 550
        assert "no such user" in data["attention"][0]["reply"]


def test_a_send_with_nothing_left_says_so_and_forecasts_nothing(tmp_path: Path) -> None:
    refusal = Fault("rcpt", code=550, text="5.1.1 no such user", recipient=FIRST)
    with FaultyServer(faults=[refusal]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2)
        first = cli(settings, "send", "--no-wait")
        assert "2 to send:" in first.output  # the forecast, when something is due
        again = cli(settings, "send", "--no-wait")
        text = " ".join(again.output.split())
        assert "mini: nothing left to send" in text
        assert "to send:" not in text  # not "0 to send: under a minute"
        assert "0 connections" not in text
        assert "delivery log: 1 sent, 1 failed" in text
        assert "--retry-failed" in text  # what the organiser can still do
        assert again.exit_code == 1  # a failure remains
        data = json.loads(cli(settings, "send", "--no-wait", "--json").output)
        assert data["to_send"] == 0 and data["forecast"] is None and data["sent"] == 0
    assert len(server.stored) == 1


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_recipient_leaves_the_connection_in_step_with_or_without_pipelining(
    tmp_path: Path, pipelining: bool
) -> None:
    refusal = Fault("rcpt", code=550, text="5.1.1 no such user", recipient=FIRST)
    with FaultyServer(faults=[refusal], pipelining=pipelining) as server:
        settings = make_project(tmp_path, port=server.port, recipients=4)
        report = send(settings)
        assert (report.tally.sent, report.tally.failed) == (3, 1)
        assert delivery(settings).last_code == 550
        assert server.connections == report.tally.connections == 2  # RSET, then reused
        assert sorted(server.copies().values()) == [1, 1, 1]


def test_send_refuses_while_check_finds_errors(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, rows=[("A", "B", "not-an-address")])
        result = cli(settings, "send")
        assert result.exit_code == 1
        assert "cannot be sent: 1 recipient, 0 ready" in result.output
        assert server.connections == 0


def test_starttls_with_private_ca_and_auth_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    with FaultyServer(starttls=context, users={"collectif": "s3cret"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: collectif\n"
            "  password_env: TEST_SMTP_PASSWORD",
        )
        report = send(settings)
        assert report.tally.sent == 2
        assert server.logins == report.tally.connections >= 1


def test_wrong_password_stops_the_run_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
    with FaultyServer(starttls=context, users={"collectif": "s3cret"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: collectif\n"
            "  password_env: TEST_SMTP_PASSWORD",
        )
        result = cli(settings, "send", "--quiet")
        assert result.exit_code == 2  # a settings error (SPEC §4), not a failed delivery
        assert "refused the login of collectif: 535" in result.output
        assert server.logins == 0 and server.failed_logins == 1  # one attempt, one mechanism
        assert set(states(settings).values()) == {State.PENDING}
        assert server.stored == []


def test_untrusted_certificate_stops_the_run_and_names_the_host(tmp_path: Path) -> None:
    context, _ = tls_contexts(tmp_path)
    with FaultyServer(implicit_tls=context) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2, smtp="security: tls")
        with pytest.raises(
            DeliveryError, match=r"TLS certificate of 127\.0\.0\.1:\d+ was rejected"
        ):
            send(settings)
        assert set(states(settings).values()) == {State.PENDING}


def test_starttls_required_but_not_offered_stops_the_run(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=1, smtp="security: starttls")
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            send(settings)
        assert server.stored == []


def test_password_is_never_sent_in_clear_to_a_remote_host(tmp_path: Path) -> None:
    settings = make_project(
        tmp_path, port=25, recipients=1, smtp="username: collectif\n  password_env: HOME"
    )
    text = settings.read_text().replace("host: 127.0.0.1", "host: smtp.example.org")
    settings.write_text(text)
    with pytest.raises(DeliveryError, match="refusing to send the password"):
        send(settings)


def test_unreachable_server_pauses_then_ends_the_run_with_attempts_untouched(
    tmp_path: Path,
) -> None:
    # A 421 is about the sender (tests/test_dispatch.py); a server down for everyone is a pause.
    with FaultyServer() as server:
        port = server.port
    settings = make_project(
        tmp_path, port=port, recipients=2, smtp="probe_interval: 1s\n  outage_limit: 2s"
    )
    report = send(settings)
    assert report.tally.deferred == report.tally.failed == 0
    assert report.stopped is not None and "unreachable" in report.stopped
    assert set(states(settings).values()) == {State.PENDING}
    assert delivery(settings).attempts == 0
    assert report.tally.pace is not None and report.tally.pace.outages == 1
    assert "connection refused by 127.0.0.1:" in report.stopped


def test_an_outage_is_said_in_a_log_too_not_only_on_the_progress_bar(tmp_path: Path) -> None:
    # Run from cron or piped to a file, there is no bar: the wait is said as lines of its own,
    # one when it begins, then one a minute, rather than ten silent minutes.
    with FaultyServer() as server:
        port = server.port
    settings = make_project(
        tmp_path, port=port, recipients=2, smtp="probe_interval: 1s\n  outage_limit: 3s"
    )
    result = cli(settings, "send")
    assert result.exit_code == 1, result.output
    shown = said(result)
    assert shown.count("s (server unreachable)") == 1, shown  # said once within the minute
    # With what the server did: a new organiser who forgot to start the server reads why.
    assert re.search(
        r"waiting \d+ s \(server unreachable\): connection refused by 127\.0\.0\.1:"
        + str(port)
        + r" \(is the SMTP server running\?\)",
        shown,
    ), shown
    assert re.search(r"server unreachable 1× \([3-9] s paused\)", shown), shown


def test_a_long_outage_says_each_longer_wait_and_how_long_the_server_has_been_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "waiting 1 s", then a minute of silence while the backoff grew, read as a hung run.
    from campaign.cli import output

    monkeypatch.setattr(output, "WAIT_SAID_AGAIN", 0.5)
    with FaultyServer() as server:
        port = server.port
    settings = make_project(
        tmp_path, port=port, recipients=1, smtp="probe_interval: 2s\n  outage_limit: 6s"
    )
    result = cli(settings, "send")
    assert result.exit_code == 1, result.output
    shown = said(result)
    waits = re.findall(r"waiting (\d+) s \(server unreachable(?: for (\d+) s)?\)", shown)
    assert len(waits) >= 2, shown
    assert [int(s) for _, s in waits[1:] if s] == sorted(int(s) for _, s in waits[1:] if s)
    assert waits[0][1] == "" and all(s for _, s in waits[1:]), waits  # the later ones: for how long
    assert int(waits[-1][0]) > int(waits[0][0])  # the backoff grew, and the log says so


def test_untrusted_certificate_after_starttls_stops_the_run(tmp_path: Path) -> None:
    context, _ = tls_contexts(tmp_path)
    with FaultyServer(starttls=context) as server:
        settings = make_project(tmp_path, port=server.port, recipients=1, smtp="security: starttls")
        with pytest.raises(
            DeliveryError, match=r"TLS certificate of 127\.0\.0\.1:\d+ was rejected"
        ):
            send(settings)
        assert server.stored == []


def test_status_settles_what_a_killed_run_left_sending(tmp_path: Path) -> None:
    from campaign import ledger

    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        send(settings, limit=1)
    path = tmp_path / "outbox" / "mini" / "delivery.sqlite"
    with Ledger(path) as log:  # as a SIGKILL would leave them: one before 354, one after
        second, third = "personne0002@example.org", "personne0003@example.org"
        log.apply([ledger.begin(second, time.time())])
        log.apply([ledger.begin(third, time.time()), ledger.body_in_flight(third, time.time())])
    result = cli(settings, "status", "--json")
    data = json.loads(result.output)
    assert data["counts"]["sending"] == 0
    assert data["counts"]["pending"] == 1
    assert data["counts"]["uncertain"] == 1
    assert result.exit_code == 1
    assert [a["email"] for a in data["attention"]] == [third]


def test_status_export_and_send_json(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            rows=[("=1+2", "@Nom", "personne0001@example.org"), ("Zoé", "Noël", "z@example.org")],
        )
        result = cli(settings, "send", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert (report["sent"], report["failed"], report["exit_code"]) == (2, 0, 0)
        assert report["log"]["sent"] == 2
    export = tmp_path / "envoi.csv"
    result = cli(settings, "status", "--export", str(export))
    assert result.exit_code == 0, result.output
    text = export.read_text(encoding="utf-8-sig")
    assert "'=1+2 @Nom" in text
    assert "Zoé Noël" in text
    assert "sent" in result.output and "2" in result.output


def test_authentication_required_at_mail_stops_the_run(tmp_path: Path) -> None:
    fault = Fault("mail", code=530, text="5.7.0 Authentication required", times=0)
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=3)
        result = cli(settings, "send", "--quiet")
        assert result.exit_code == 2
        said = " ".join(result.output.split())
        assert "requires a login: 530" in said and "smtp.username" in said
        assert server.stored == []
        assert State.SENT not in set(states(settings).values())


def test_no_reply_to_the_final_dot_within_data_timeout_is_uncertain(tmp_path: Path) -> None:
    fault = Fault("dot", action="delay", seconds=2.5, recipient=FIRST)
    with FaultyServer(faults=[fault]) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2, smtp="data_timeout: 1s")
        send(settings)
        assert delivery(settings).state is State.UNCERTAIN
        assert "SMTPReadTimeoutError" in delivery(settings).last_text
        time.sleep(2)
        assert server.copies_to(FIRST) == 0  # this server drops a message whose client left
        send(settings, clock=later(2))
        assert server.copies_to(FIRST) == 0  # never resent by itself: the client cannot know
        assert delivery(settings).state is State.UNCERTAIN


def test_a_connection_the_server_closed_while_idle_is_replaced(tmp_path: Path) -> None:
    with FaultyServer(
        faults=[Fault("rcpt", code=451, recipient=FIRST)], idle_timeout=0.3
    ) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            throttle="per_minute: null\n  concurrency: 1",
            retry="max_attempts: 3\n  backoff: [1s]",
        )
        report = send(settings, wait_retries=True)  # waits 1 s: the server drops the idle link
        assert set(states(settings).values()) == {State.SENT}
        assert report.tally.connections == 2
        assert report.tally.deferred == 1


def _proofed_and_approved(settings: Path, port: int) -> None:
    """The sample's campaign pointed at `port`, proofed and approved as a reviewer would."""
    settings.write_text(settings.read_text().replace("port: 8025", f"port: {port}"))
    assert cli(settings, "proof", "--rows", "2", "--quiet").exit_code == 0
    assert cli(settings, "approve", "--by", "Relectrice").exit_code == 0


def _attached_pdfs(data: bytes) -> list[Any]:
    import email as email_parser
    from email import policy

    message = email_parser.message_from_bytes(data, policy=policy.default)
    return [a for a in message.iter_attachments() if a.get_content_type() == "application/pdf"]


def test_hospital_letters_go_out_with_their_pdf_attached(few_project: Path) -> None:
    import io

    import pypdf

    settings = few_project / "settings.yaml"
    with FaultyServer() as server:
        _proofed_and_approved(settings, server.port)
        result = cli(settings, "send", "--quiet")
        assert result.exit_code == 0, result.output
        assert len(server.stored) == 3
        first = next(s for s in server.stored if s.recipients == ["elise.le-goff@example.org"])
    pdfs = _attached_pdfs(first.data)
    assert len(pdfs) == 1
    assert pdfs[0].get_filename() == "Lettre du collectif – Élise Le Goff.pdf"  # its pdf_name
    assert b'filename="Lettre du collectif - Elise Le Goff.pdf"' in first.data
    text = pypdf.PdfReader(io.BytesIO(pdfs[0].get_content())).pages[0].extract_text()
    assert "Valbrune" in text or "VALBRUNE" in text


def test_the_approval_covers_the_pdf_name_and_without_one_the_letter_names_the_file(
    few_project: Path,
) -> None:
    # The sample names its PDF with pdf_name; taking it away is a change to approve, and the file
    # is then called after the letter's file and the display name.
    settings = few_project / "settings.yaml"
    with FaultyServer() as server:
        _proofed_and_approved(settings, server.port)
        text = settings.read_text()
        line = next(line for line in text.splitlines(keepends=True) if "pdf_name:" in line)
        settings.write_text(text.replace(line, ""))
        refused = cli(settings, "send", "--quiet")
        assert refused.exit_code != 0 and "PDF file name (pdf_name) removed" in said(refused)
        assert server.stored == []
        _proofed_and_approved(settings, server.port)
        assert cli(settings, "send", "--quiet").exit_code == 0
        first = next(s for s in server.stored if s.recipients == ["elise.le-goff@example.org"])
    pdfs = _attached_pdfs(first.data)
    assert [p.get_filename() for p in pdfs] == ["lettre-hopitaux – Élise Le Goff.pdf"]
    assert b'filename="lettre-hopitaux - Elise Le Goff.pdf"' in first.data

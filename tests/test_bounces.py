"""The bounce and auto-reply corpus (tests/data/bounces/): each kind classified and matched."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.bounces import (
    TRIAGE_HEADERS,
    Kind,
    classify,
    parse_headers,
    parse_message,
    triage,
    worth_reading,
)
from campaign.inbox import _Index, envelope_id
from campaign.ledger import Delivery, State

CORPUS = Path(__file__).resolve().parent / "data" / "bounces"
MID = "<0f3a9c2e71b84d5a9e6c1b2d3f4a5b6c.hopitaux-2020-05@example.org>"
RECIPIENT = "jean.dupont@example.com"

# file → (kind, how it was recognised)
EXPECTED = {
    "postfix.eml": (Kind.BOUNCE, "rfc3464"),
    "exim.eml": (Kind.BOUNCE, "flufl.bounce"),
    "exchange-m365.eml": (Kind.BOUNCE, "rfc3464"),
    "gmail.eml": (Kind.BOUNCE, "rfc3464"),
    "qmail.eml": (Kind.BOUNCE, "flufl.bounce"),
    "sendmail.eml": (Kind.BOUNCE, "rfc3464"),
    "postfix-delayed.eml": (Kind.DELAYED, "rfc3464"),
    "postfix-delivered-envid.eml": (Kind.DELIVERED, "rfc3464"),
    "french-out-of-office.eml": (Kind.AUTO_REPLY, "Auto-Submitted: auto-replied"),
    "exchange-out-of-office.eml": (Kind.AUTO_REPLY, "Exchange out-of-office"),
    "absence-no-reference.eml": (Kind.AUTO_REPLY, "X-Autoreply"),
    "null-sender-vacation.eml": (Kind.AUTO_REPLY, "Precedence: bulk"),
    "human-reply.eml": (Kind.REPLY, "reply"),
    "newsletter.eml": (Kind.OTHER, "none"),
}


def _index() -> _Index:
    delivery = Delivery(
        RECIPIENT, RECIPIENT, 2, "Jean Dupont", State.SENT, None, 1, 250, "ok", MID,
        0.0, 0.0, 0.0, 0.0, None,
    )  # fmt: skip
    other = Delivery(
        "autre@example.org", "autre@example.org", 3, None, State.SENT, None, 1, 250, "ok",
        "<ffff.hopitaux-2020-05@example.org>", 0.0, 0.0, 0.0, 0.0, None,
    )  # fmt: skip
    return _Index([delivery, other])


def test_the_corpus_holds_every_file_the_table_names() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_format_is_classified_and_matched_to_its_recipient(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    verdict = classify(parse_message(data))
    kind, how = EXPECTED[name]
    assert (verdict.kind, verdict.how) == (kind, how)
    matched = _index().match(verdict)
    assert matched == (None if kind is Kind.OTHER else RECIPIENT)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_headers_alone_send_every_report_to_be_read_whole_and_no_answer(name: str) -> None:
    """The scan reads whole only what triage calls a bounce: every report, never an answer."""
    head = (CORPUS / name).read_bytes().split(b"\n\n", 1)[0] + b"\n\n"
    kind, _ = EXPECTED[name]
    found = triage(parse_headers(head))
    if kind in (Kind.BOUNCE, Kind.DELAYED, Kind.DELIVERED):
        assert found is Kind.BOUNCE
    else:
        assert found is not Kind.BOUNCE


def test_no_auto_reply_of_the_corpus_is_counted_as_a_bounce() -> None:
    answers = [n for n, (k, _) in EXPECTED.items() if k in (Kind.AUTO_REPLY, Kind.REPLY)]
    assert len(answers) == 5
    for name in answers:
        assert classify(parse_message((CORPUS / name).read_bytes())).kind is not Kind.BOUNCE


def test_a_dsn_gives_the_remote_servers_diagnostic_and_status() -> None:
    verdict = classify(parse_message((CORPUS / "gmail.eml").read_bytes()))
    assert verdict.reports[0].status == "5.1.1"
    assert verdict.reason.startswith("550-5.1.1 The email account that you tried to reach")
    postfix = classify(parse_message((CORPUS / "postfix.eml").read_bytes()))
    assert "User unknown in virtual mailbox table" in postfix.reason
    assert postfix.reports[0].recipient == RECIPIENT


def test_a_non_standard_bounce_gets_the_smtp_refusal_as_its_reason() -> None:
    verdict = classify(parse_message((CORPUS / "exim.eml").read_bytes()))
    assert verdict.reason == "550 5.1.1 No such user here"
    assert verdict.addresses == (RECIPIENT,)


def test_a_delivery_report_is_matched_by_its_envid_first() -> None:
    verdict = classify(parse_message((CORPUS / "postfix-delivered-envid.eml").read_bytes()))
    assert verdict.envids == (envelope_id(MID),)
    assert verdict.message_ids == ()  # no returned headers: only the ENVID says which message


def test_a_report_about_another_message_to_the_same_address_is_not_ours() -> None:
    data = (CORPUS / "postfix.eml").read_bytes().replace(MID.encode(), b"<other@example.net>")
    assert _index().match(classify(parse_message(data))) is None


def _triage_fields(data: bytes) -> bytes:
    """The header lines the IMAP scan fetches (TRIAGE_HEADERS), as the server returns them."""
    head = parse_headers(data.split(b"\n\n", 1)[0] + b"\n\n")
    wanted = {name.lower() for name in TRIAGE_HEADERS}
    lines = [f"{k}: {v}" for k, v in head.items() if k.lower() in wanted]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_bytes_pre_filter_never_skips_what_triage_would_keep(name: str) -> None:
    head = _triage_fields((CORPUS / name).read_bytes())
    if triage(parse_headers(head)) is not None:
        assert worth_reading(head, set())


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: Lettre",
        "=?utf-8?b?UsOpcG9uc2UgYXV0b21hdGlxdWU=?=",
        "Absence du bureau",
        "Out of Office",
        "=?utf-8?q?CONG=C3=89S_d=27=C3=A9t=C3=A9?=",
        "Undelivered Mail Returned to Sender",
        "=?utf-8?q?=C3=89chec_de_la_remise?=",
        "Mail delivery failed",
        "Message non remis",
    ],
)
def test_every_subject_triage_reacts_to_passes_the_pre_filter(subject: str) -> None:
    head = f"From: x@example.net\r\nSubject: {subject}\r\n\r\n".encode()
    assert triage(parse_headers(head)) is not None
    assert worth_reading(head, set())


def test_ordinary_mail_is_skipped_unless_a_recipient_wrote_it() -> None:
    head = b"From: Quelqu'un <personne@example.net>\r\nSubject: Sujet\r\n\r\n"
    assert not worth_reading(head, {RECIPIENT})
    folded = b"Subject: Sujet\r\nFrom: Jean Dupont\r\n <Jean.Dupont@example.com>\r\n\r\n"
    assert worth_reading(folded, {RECIPIENT})


def test_raw_utf8_headers_are_read_as_utf8_not_as_replacement_characters() -> None:
    from campaign.bounces import header_text, parse_headers

    # RFC 6532 lets a message carry UTF-8 headers unencoded; some clients also send 8-bit
    # Windows-1252. Both used to come out as "d\ufffd\ufffdsinscription".
    utf8 = parse_headers(
        "From: Zoé Lefèvre <zoe@example.com>\nSubject: désinscription\n\n".encode()
    )
    assert header_text(utf8, "Subject") == "désinscription"
    assert header_text(utf8, "From") == "Zoé Lefèvre <zoe@example.com>"
    windows = parse_headers("Subject: d\xe9sinscription\n\n".encode("cp1252"))
    assert header_text(windows, "Subject") == "désinscription"
    encoded = parse_headers(b"Subject: =?utf-8?q?d=C3=A9sinscription?= ok\n\n")
    assert header_text(encoded, "Subject") == "désinscription ok"

"""Composing one recipient's email: parts, headers, attachment names, no header injection."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaign.compose import (
    attachment_name,
    compose_message,
    dot_stuffed,
    eml_name,
    header_text,
    joined,
    load_attachments,
    make_address,
    message_id,
    shareable,
    stuffed_pieces,
    wire_bytes,
)
from campaign.inputs import Inputs, load_inputs
from campaign.recipients import Recipient
from campaign.settings import load_settings
from tests.smtp_server import make_project


def inputs_for(
    tmp_path: Path, rows: list[tuple[str, str, str]] | None = None, extra: str = ""
) -> Inputs:
    settings = make_project(tmp_path, port=2525, rows=rows, extra=extra)
    return load_inputs(load_settings(settings).campaign("mini"))


def parsed(message: EmailMessage) -> EmailMessage:
    """The message as a receiving client reads it back from the wire."""
    result = email.message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(result, EmailMessage)
    return result


def tiny_pdf() -> bytes:
    from weasyprint import HTML

    return HTML(string="<p>Lettre de test</p>").write_pdf()  # type: ignore[no-any-return]


def test_message_has_text_html_and_the_pdf_with_an_accented_name(tmp_path: Path) -> None:
    inputs = inputs_for(tmp_path, rows=[("Élise", "Noël", "elise.noel@example.org")])
    recipient = inputs.recipients.ready[0]
    pdf = tiny_pdf()
    message = parsed(compose_message(inputs, recipient, pdf=pdf))
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert body is not None and html is not None
    assert "Madame, Monsieur Noël" in body.get_content()
    assert "[1]" in body.get_content()  # footnotes as numbered notes in the text part
    assert "↩" in html.get_content()  # and as endnotes with links back in HTML
    attachments = list(message.iter_attachments())
    assert [a.get_content_type() for a in attachments] == ["application/pdf"]
    assert attachments[0].get_filename() == "mini – Élise Noël.pdf"
    assert attachments[0].get_content() == pdf
    raw = message.as_bytes()
    assert b"filename*=utf-8''mini%20%E2%80%93%20%C3%89lise%20No%C3%ABl.pdf" in raw


def test_the_pdf_name_is_a_file_name_and_falls_back_when_it_merges_empty(tmp_path: Path) -> None:
    rows = [("Élise", "Noël", "elise.noel@example.org")]
    named = inputs_for(
        tmp_path / "a", rows, extra='pdf_name: "Lettre : {{ prenom }} / {{ nom }} ?"'
    )
    # ":" and "?" take a narrow no-break space before them in French: gone with the character.
    assert attachment_name(named, named.recipients.ready[0]) == "Lettre Élise Noël.pdf"
    empty = inputs_for(tmp_path / "b", rows, extra="pdf_name: \"{{ '' }}\"")
    assert attachment_name(empty, empty.recipients.ready[0]) == "mini – Élise Noël.pdf"


def test_headers_are_encoded_and_complete(tmp_path: Path) -> None:
    inputs = inputs_for(
        tmp_path,
        rows=[("Élise", "Noël", "elise.noel@example.org")],
        extra="list_unsubscribe: mailto:desinscription@example.org",
    )
    message = parsed(compose_message(inputs, inputs.recipients.ready[0]))
    assert str(message["From"]) == "Collectif Données de santé <collectif@example.org>"
    assert str(message["To"]) == "Élise Noël <elise.noel@example.org>"
    assert str(message["Reply-To"]) == "Collectif Données de santé <contact@example.org>"
    assert str(message["Subject"]) == "Lettre pour Élise"
    assert str(message["List-Unsubscribe"]) == "<mailto:desinscription@example.org>"
    assert message["Date"] is not None
    assert message["Message-ID"] == message_id("mini", "elise.noel@example.org", "example.org")


def test_a_list_unsubscribe_in_plain_french_is_written_as_a_uri_a_mail_client_follows(
    tmp_path: Path,
) -> None:
    # Written as an organiser types it; the header must stay an ASCII URI (RFC 2369, RFC 6068),
    # not an RFC 2047 encoded word that no client reads as a link.
    inputs = inputs_for(
        tmp_path,
        rows=[("Élise", "Noël", "elise.noel@example.org")],
        extra='list_unsubscribe: "mailto:désinscription@example.org?subject=se désinscrire"',
    )
    message = compose_message(inputs, inputs.recipients.ready[0])
    raw = email.message_from_bytes(message.as_bytes(), policy=policy.compat32)
    assert "=?" not in str(raw["List-Unsubscribe"])  # as written on the wire, no encoded word
    assert str(parsed(message)["List-Unsubscribe"]).strip() == (
        "<mailto:d%C3%A9sinscription@example.org?subject=se%20d%C3%A9sinscrire>"
    )


def test_message_id_is_deterministic_per_campaign_and_recipient() -> None:
    first = message_id("hopitaux", "Jeanne@Example.org", "example.org")
    assert first == message_id("hopitaux", "jeanne@example.org", "example.org")
    assert first != message_id("merci", "jeanne@example.org", "example.org")
    assert first != message_id("hopitaux", "paul@example.org", "example.org")
    assert first.startswith("<") and first.endswith("@example.org>")


def test_a_comma_or_quotes_in_a_name_never_add_a_recipient(tmp_path: Path) -> None:
    inputs = inputs_for(tmp_path, rows=[("Jean", "Dupont", "jd@example.org")])
    recipient = inputs.recipients.ready[0]
    tricky = Recipient(
        recipient.row,
        recipient.email,
        recipient.values,
        {**recipient.variables, "prenom": '"Dupont, Jean <evil@example.com>', "nom": "x"},
    )
    message = parsed(compose_message(inputs, tricky))
    addresses = message["To"].addresses
    assert [a.addr_spec for a in addresses] == ["jd@example.org"]
    assert addresses[0].display_name == '"Dupont, Jean <evil@example.com> x'


@pytest.mark.parametrize("control", ["\r\n", "\n", "\r", "\x0b", "\x00", "\x1b", "\u2028", "\x85"])
def test_control_characters_never_reach_a_header(tmp_path: Path, control: str) -> None:
    inputs = inputs_for(tmp_path, rows=[("Jean", "Dupont", "jd@example.org")])
    recipient = inputs.recipients.ready[0]
    injected = Recipient(
        recipient.row,
        recipient.email,
        recipient.values,
        {**recipient.variables, "prenom": f"Jean{control}Bcc: evil@example.com"},
    )
    raw = compose_message(inputs, injected).as_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head
    assert b"\x0b" not in head and b"\x00" not in head and b"\x1b" not in head
    reread = parsed(compose_message(inputs, injected))
    assert reread["Bcc"] is None
    assert [a.addr_spec for a in reread["To"].addresses] == ["jd@example.org"]


def test_header_text_strips_controls_and_collapses_space() -> None:
    assert header_text("a\r\nb\tc\x0bd  e\u2029f") == "a b c d e f"


def test_make_address_encodes_an_international_domain() -> None:
    address = make_address("Zoé", "zoe@bücher.example")
    assert address.domain == "xn--bcher-kva.example"


def test_test_send_has_a_marked_subject_and_a_fresh_message_id(tmp_path: Path) -> None:
    inputs = inputs_for(tmp_path)
    recipient = inputs.recipients.ready[0]
    one = compose_message(inputs, recipient, test_to="relecteur@example.com")
    two = compose_message(inputs, recipient, test_to="relecteur@example.com")
    assert str(one["Subject"]).startswith("[TEST] ")
    assert str(one["To"]) == "relecteur@example.com"
    assert one["Message-ID"] != two["Message-ID"]
    assert one["Message-ID"] != compose_message(inputs, recipient)["Message-ID"]


def test_shared_attachments_are_attached_to_every_message(tmp_path: Path) -> None:
    (tmp_path / "letters").mkdir()
    (tmp_path / "letters" / "note-annexe.pdf").write_bytes(tiny_pdf())
    inputs = inputs_for(tmp_path, extra="attachments: [letters/note-annexe.pdf]")
    shared = load_attachments(inputs)
    for recipient in inputs.recipients.ready[:2]:
        message = parsed(compose_message(inputs, recipient, attachments=shared))
        names = [a.get_filename() for a in message.iter_attachments()]
        assert names == ["note-annexe.pdf"]


def test_wire_bytes_dot_stuff_and_end_with_the_final_dot() -> None:
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = "points"
    message.set_content(".hidden line\nnormal\n")
    data = wire_bytes(message)
    assert b"\r\n..hidden line\r\n" in data
    assert data.endswith(b"\r\n.\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_stuffed_pieces_stand_for_the_dot_stuffed_message_with_shared_parts_by_index() -> None:
    part = b"Content-Type: application/pdf\r\n\r\nJVBERi0xLjQK\r\n"
    assert shareable(part)
    assert not any(map(shareable, [b".x\r\n", b"a\r\n.b\r\n", b"no line end"]))
    lookalike = part[:-2] + b"\r\n"  # equal bytes, another object: stuffed as the message
    pieces = [b"To: x\r\n\r\n.first\r\n", part, b".after\r\n", lookalike, b".end"]
    out = stuffed_pieces(pieces, {id(part): 0})
    assert out.count(0) == 1 and sum(isinstance(p, int) for p in out) == 1
    assert joined(out, [part]) == dot_stuffed(b"".join(pieces))
    assert joined(out, [part]).endswith(b"\r\n..end\r\n.\r\n")


def test_eml_names_are_stable_and_safe(tmp_path: Path) -> None:
    inputs = inputs_for(tmp_path)
    assert eml_name(inputs.recipients.ready[0]) == "0002-personne0001-example.org.eml"


def test_an_international_mailbox_gets_utf8_headers_and_an_ascii_domain_in_the_envelope(
    tmp_path: Path,
) -> None:
    from campaign.compose import envelope_address, message_bytes, needs_smtputf8

    inputs = inputs_for(
        tmp_path,
        rows=[("José", "Pérez", "josé@example.org")],
        extra="allow_special_domains: true",
    )
    message = compose_message(inputs, inputs.recipients.ready[0])
    assert "To: José Pérez <josé@example.org>".encode() in message_bytes(message)
    assert needs_smtputf8("josé@example.org")
    assert not needs_smtputf8("user@bücher.example")
    assert envelope_address("user@bücher.example") == "user@xn--bcher-kva.example"
    assert envelope_address("anne@example.org") == "anne@example.org"


def test_to_lines_are_the_stdlibs_for_every_name_and_reuse_the_shapes() -> None:
    import random

    from campaign.compose import ToLines, _fold, make_address

    rng = random.Random(2020)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    risky = "éèêëàâçîïôöùûüÉÈÀÇŒœß -'.,\"()<>@;:=?_ \u00a0\u202f😀\\[]"
    words = ["Marie", "Dupont", "Élise", "Noël", "de", "La", "Tour", "Prénom7", "x", "X9", "=?"]
    names = []
    for _ in range(4000):
        kind = rng.random()
        if kind < 0.4:  # names as people have them
            names.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))))
        elif kind < 0.8:  # the same shapes, other letters
            base = rng.choice(words) + " " + rng.choice(words)
            names.append(
                "".join(rng.choice(letters) if c.isalnum() and c.isascii() else c for c in base)
            )
        else:  # anything, long ones folded
            pool = letters * 3 + risky
            names.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 90))).strip())
    addresses = [
        "a@example.org",
        "marie.dupont-x@hopital.example.org",
        "x+y_z@example.com",
        "Élise@example.org",
    ]
    lines = ToLines()
    for name in names:
        address = rng.choice(addresses)
        for way in (policy.SMTP, policy.SMTPUTF8):
            if not address.isascii() and way is policy.SMTP:
                continue
            to = make_address(name, address)
            assert lines.line(way, to) == _fold(way, "To", to), (name, address)
    trusted = [key for key, template in lines._templates.items() if template is not None]
    assert len(trusted) > 30  # the shapes were used, not only the stdlib

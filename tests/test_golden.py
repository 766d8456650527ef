"""Composed messages byte for byte against golden files in tests/golden/.

Each case composes one recipient's message with a fixed date and fixed attachment bytes; MIME
boundaries (random by design) and a test send's fresh Message-ID are normalised before comparing.
The golden files were made from the stdlib composer before composing was made fast, so any change
in structure, encodings, folding or file names shows here; since then they differ from it on
purpose in two ways: quoted-printable lines end by column 76 (RFC 2045; the stdlib's reach 78)
and the message says its language (Content-Language, RFC 3282). Regenerate them on purpose only:
`CAMPAIGN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py`.
"""

from __future__ import annotations

import email
import os
import random
import re
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from campaign.compose import Composer, dot_stuffed, load_attachments
from campaign.inputs import Inputs, load_inputs
from campaign.settings import load_settings
from tests.smtp_server import make_project

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2020, 5, 11, 9, 30, 0, tzinfo=timezone(timedelta(hours=2)))
_BOUNDARY = re.compile(rb"={15}\d+==")
_TEST_ID = re.compile(rb"<test\.[0-9a-f]{32}@")

# A long letter with blockquotes, footnotes, long lines (soft line breaks in quoted-printable),
# a line that starts with a dot (dot-stuffing) and characters outside Latin-1.
LONG_LETTER = """---
subject: "Merci aux lanceurs d’alerte : merci d’alerter à nouveau l’Europe, {{ prenom }} — \
c’est un sujet long qui oblige l’en-tête à se replier sur plusieurs lignes"
---
Chère, cher {{ prenom }},

Vous avez signé notre dernier texte. Les conditions de signature étaient sans doute contraignantes
puisque vos prénoms, noms, fonction, association, entreprise ou école ainsi que vos emails étaient
requis. Donc un énorme merci[^merci]. Œuvre collective : 700 personnes ≥ 1 000 € ? Non.

.Une ligne qui commence par un point, et une URL https://example.org/une/adresse/tres/longue/qui/ne/se/coupe/pas

> Mesdames les directrices, Messieurs les directeurs d’hôpitaux,
>
> Un arrêté publié le 21 avril incite les hôpitaux et centres de recherche à intensifier
> l’envoi des données de santé des patients dans le « Health Data Hub » (HDH).

From the start of a line, =3D and tabs\tinside.

[^merci]: Arrêté du 21 avril 2020 complétant l’arrêté du 23 mars 2020 prescrivant les mesures
    d’organisation et de fonctionnement du système de santé.
"""


def _pdf(seed: int, size: int) -> bytes:
    return b"%PDF-1.4\n%" + random.Random(seed).randbytes(size)


def _inputs(tmp_path: Path, rows: list[tuple[str, str, str]], extra: str = "") -> Inputs:
    settings = make_project(tmp_path, port=2525, rows=rows, extra=extra)
    return load_inputs(load_settings(settings).campaign("mini"))


def _normalised(raw: bytes) -> bytes:
    seen: dict[bytes, bytes] = {}

    def boundary(match: re.Match[bytes]) -> bytes:
        return seen.setdefault(match.group(0), b"===============BOUNDARY%d==" % len(seen))

    return _TEST_ID.sub(b"<test.NORMALISED@", _BOUNDARY.sub(boundary, raw))


def _case(name: str, tmp_path: Path) -> bytes:
    """The bytes of one golden case, composed by the current code."""
    if name == "pdf-and-shared-attachment":
        (tmp_path / "letters").mkdir(parents=True)
        (tmp_path / "letters" / "Note annexe été.pdf").write_bytes(_pdf(2, 3000))
        inputs = _inputs(
            tmp_path,
            [("Élise", "Noël", "elise.noel@example.org")],
            extra="attachments: [letters/Note annexe été.pdf]\n"
            "    list_unsubscribe: https://example.org/desinscription?c=mini",
        )
        raw = Composer(inputs).compose(
            inputs.recipients.ready[0],
            pdf=_pdf(1, 5000),
            attachments=load_attachments(inputs),
            now=NOW,
        )
    elif name == "long-letter-folded-headers":
        inputs = _inputs(
            tmp_path,
            [("Marie-Françoise", "de La Tour d’Auvergne-Lauraguais", "mf.latour@example.org")],
            extra="list_unsubscribe: mailto:desinscription@example.org",
        )
        (tmp_path / "letters" / "mini.md").write_text(LONG_LETTER, encoding="utf-8")
        inputs = load_inputs(inputs.campaign)
        raw = Composer(inputs).compose(inputs.recipients.ready[0], now=NOW)
    elif name == "international-mailbox":
        inputs = _inputs(
            tmp_path,
            [("José", "Pérez", "josé@bücher.example")],
            extra="allow_special_domains: true",
        )
        raw = Composer(inputs).compose(inputs.recipients.ready[0], pdf=_pdf(3, 100), now=NOW)
    elif name == "test-send":
        inputs = _inputs(tmp_path, [("Jean", "Dupont « dit Jeannot »", "jd@example.org")])
        raw = Composer(inputs).compose(
            inputs.recipients.ready[0], test_to="relecteur@example.com", now=NOW
        )
    else:
        raise AssertionError(name)
    assert dot_stuffed(raw) == re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"
    return raw


CASES = [
    "pdf-and-shared-attachment",
    "long-letter-folded-headers",
    "international-mailbox",
    "test-send",
]


@pytest.mark.parametrize("name", CASES)
def test_composed_message_matches_its_golden_file(name: str, tmp_path: Path) -> None:
    got = _normalised(_case(name, tmp_path))
    golden = GOLDEN / f"{name}.eml"
    if os.environ.get("CAMPAIGN_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(got)
    assert got == golden.read_bytes()


def test_a_non_ascii_attachment_name_has_an_ascii_fallback_beside_rfc2231(tmp_path: Path) -> None:
    raw = _case("pdf-and-shared-attachment", tmp_path)
    assert (
        b"attachment;\r\n filename*=utf-8''mini%20%E2%80%93%20%C3%89lise%20No%C3%ABl.pdf;\r\n"
        b' filename="mini - Elise Noel.pdf"\r\n'
    ) in raw
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    names = [part.get_filename() for part in parsed.iter_attachments()]
    assert names == ["mini – Élise Noël.pdf", "Note annexe été.pdf"]  # RFC 2231 wins


def test_only_the_top_level_has_a_mime_version(tmp_path: Path) -> None:
    raw = _case("pdf-and-shared-attachment", tmp_path)
    assert raw.count(b"MIME-Version: 1.0\r\n") == 1
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["MIME-Version"] == "1.0"
    assert all(part["MIME-Version"] is None for part in parsed.walk() if part is not parsed)


def test_quoted_printable_lines_stay_within_76_columns(tmp_path: Path) -> None:
    # RFC 2045 §6.7 (5): 76 at most, the soft break's `=` included (the stdlib writes 78).
    parsed = email.message_from_bytes(_case("long-letter-folded-headers", tmp_path))
    encoded = [
        line
        for part in parsed.walk()
        if part.get("Content-Transfer-Encoding") == "quoted-printable"
        for line in str(part.get_payload()).splitlines()
    ]
    assert encoded and max(map(len, encoded)) == 76  # long lines are broken, at 76
    assert sum(line.endswith("=") for line in encoded) > 5


def test_the_message_says_the_letters_language(tmp_path: Path) -> None:
    raw = _case("long-letter-folded-headers", tmp_path)
    assert b"\r\nContent-Language: fr\r\n" in raw.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b'<html lang=3D"fr">' in raw
    english = _inputs(tmp_path / "en", [("Ann", "Lee", "ann@example.org")], extra="lang: en")
    raw = Composer(english).compose(english.recipients.ready[0], now=NOW)
    assert b"\r\nContent-Language: en\r\n" in raw and b'<html lang=3D"en">' in raw

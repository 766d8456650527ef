"""The email carries the letter whole: signature, place and date, quotes and lists in plain text."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign.compose import compose_message
from campaign.inputs import load_inputs
from campaign.letter import MergedLetter, load_letter, merge_letter
from campaign.settings import load_settings
from campaign.typography import NBSP, NNBSP, french, use_colon
from tests.conftest import REPO


def test_the_thank_you_email_ends_with_its_signature_in_both_parts() -> None:
    inputs = load_inputs(load_settings(REPO / "settings.yaml").campaign("merci-signataires"))
    message = compose_message(inputs, inputs.recipients.ready[0])
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    body = text.split("\n[1] ")[0].rstrip()
    assert body.endswith("Paris, le 11 mai 2020\n\nLe collectif")
    assert html.index('<p class="signature">Le collectif</p>') < html.index("footnotes-sep")
    assert '<p class="place-date">Paris, le 11 mai 2020</p>' in html


def test_a_letter_without_date_or_place_is_signed_only(tmp_path: Path) -> None:
    path = tmp_path / "l.md"
    path.write_text("---\nsignature: |\n  Pour le collectif,\n  Léa Roux\n---\nMerci.\n")
    merged = merge_letter(load_letter(path), {})
    assert merged.text == "Merci.\n\nPour le collectif,\nLéa Roux\n"
    assert merged.html.endswith('<p class="signature">Pour le collectif,<br>Léa Roux</p>\n')
    assert "place-date" not in merged.html


def test_a_letter_without_front_matter_adds_nothing() -> None:
    assert MergedLetter("Merci.\n").text == "Merci.\n"


def test_a_blockquote_keeps_its_marks_and_lists_their_bullets_in_plain_text() -> None:
    source = (
        "Avant.\n\n> Citation sur\n> deux lignes.\n>\n> - point a\n> - point b\n\n"
        "- un point assez long pour passer à la ligne, car il dépasse largement "
        "soixante-douze colonnes\n- deux\n  1. sous-point\n\nAprès.\n"
    )
    text = MergedLetter(source).text
    assert "> Citation sur deux lignes.\n>\n> - point a\n> - point b\n" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("- un point"))
    assert lines[first + 1].startswith("  ") and lines[first + 1].strip()
    assert "- deux\n  1. sous-point" in text
    assert all(len(line) <= 72 for line in lines)


def test_the_plain_text_never_parts_a_date_or_a_reference_at_a_line_end() -> None:
    # "au sujet de l’arrêté du 21 avril⏎2020" in every email of the sample campaign.
    inputs = load_inputs(load_settings(REPO / "settings.yaml").campaign("hopitaux-2020-05"))
    for recipient in inputs.recipients.ready[:5]:
        message = compose_message(inputs, recipient)
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert f"21{NBSP}avril{NBSP}2020" in text
        assert not any(
            line.rstrip().endswith(("avril", " 21", "article", "n°")) for line in text.splitlines()
        ), text


def test_a_long_quote_is_wrapped_inside_its_marks() -> None:
    text = MergedLetter("> " + "mot " * 60 + "\n").text
    assert all(line.startswith("> ") and len(line) <= 72 for line in text.splitlines())


@pytest.fixture
def word_colon() -> Iterator[None]:
    use_colon("word")
    yield
    use_colon("fine")


def test_the_colon_space_is_narrow_by_default() -> None:
    assert french("Objet : lettre") == f"Objet{NNBSP}: lettre"


@pytest.mark.usefixtures("word_colon")
def test_the_colon_space_can_be_a_full_no_break_space() -> None:
    assert french("Objet : lettre ; suite ?") == f"Objet{NBSP}: lettre{NNBSP}; suite{NNBSP}?"
    assert french("10:30 et http://x") == "10:30 et http://x"


def test_the_colon_setting_reaches_the_letters(tmp_path: Path) -> None:
    settings = (REPO / "settings.yaml").read_text(encoding="utf-8")
    (tmp_path / "settings.yaml").write_text(
        settings.replace("default_campaign:", "typography: {colon: word}\ndefault_campaign:")
    )
    for folder in ("letters", "recipients"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    try:
        inputs = load_inputs(
            load_settings(tmp_path / "settings.yaml").campaign("merci-signataires")
        )
        assert f"alerte{NBSP}:" in inputs.subject_for(inputs.recipients.ready[0])
    finally:
        use_colon("fine")


def test_the_subject_gets_the_body_typography(tmp_path: Path) -> None:
    inputs = load_inputs(load_settings(REPO / "settings.yaml").campaign("merci-signataires"))
    recipient = inputs.recipients.ready[0]
    subject = inputs.subject_for(recipient)
    assert f"alerte{NNBSP}:" in subject and " :" not in subject
    assert "’" in french("l'arrêté") and "'" not in inputs.subject_for(recipient)
    letter = tmp_path / "l.md"
    letter.write_text('---\nsubject: "L\'arrêté : « HDH »"\n---\nTexte.\n')
    merged = merge_letter(load_letter(letter), {})
    assert merged.fields["subject"] == f"L’arrêté{NNBSP}: «{NNBSP}HDH{NNBSP}»"


def test_the_subject_header_keeps_its_no_break_spaces() -> None:
    inputs = load_inputs(load_settings(REPO / "settings.yaml").campaign("hopitaux-2020-05"))
    recipient = inputs.recipients.ready[0]
    assert compose_message(inputs, recipient)["Subject"] == inputs.subject_for(recipient)


def test_the_proof_reasons_keep_french_spacing_inside_guillemets() -> None:
    from campaign.proofs import choose_sample

    inputs = load_inputs(load_settings(REPO / "settings.yaml").campaign("hopitaux-2020-05"))
    reasons = [reason for row in choose_sample(inputs) for reason in row.reasons]
    quoted = [reason for reason in reasons if "«" in reason]
    assert quoted, reasons
    for reason in quoted:
        assert f"\u00a0«{NNBSP}" in reason and reason.endswith(f"{NNBSP}»")
        assert " «" not in reason and " »" not in reason

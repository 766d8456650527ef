"""Letter templates: front matter, Jinja, recipient values as text, footnotes, renderings."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from campaign.errors import TemplateError
from campaign.letter import Letter, footnote_problems, load_letter, merge_letter
from campaign.typography import NNBSP

TRICKY = "<b>gras</b> *x* _y_ [^1] {{ 7*7 }} &amp; {% raw %}"


def write_letter(tmp_path: Path, text: str, name: str = "lettre.md") -> Letter:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_letter(path)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return "".join(parser.parts)


LETTER = """---
subject: "Objet pour {{ nom }}"
place: Paris
date: 2020-05-01
signature: |
  Pour le collectif,
  {{ signataire }}
---
{{ salutation(civilite, fonction) }}

Deuxième appel[^deux] avant le premier ? Non : le premier[^un] vient après,
puis encore le deuxième[^deux]. Votre établissement : {{ nom }}.

[^un]: Note un, avec *emphase*.

[^deux]: Note deux.
"""

CONTEXT = {
    "civilite": "Madame",
    "fonction": "Directrice",
    "nom": "Hôpital Nord",
    "signataire": "Léa",
}


def test_recipient_values_are_text_in_every_rendering(tmp_path: Path) -> None:
    letter = write_letter(tmp_path, "Bonjour {{ nom }}, ligne[^n].\n\n[^n]: La note.\n")
    merged = merge_letter(letter, {"nom": TRICKY})
    assert TRICKY in merged.text
    assert TRICKY in html_text(merged.html)
    assert TRICKY in html_text(merged.pdf_html)
    assert "<b>" not in merged.html and "<b>" not in merged.pdf_html
    assert "49" not in merged.text


def test_a_multi_line_cell_keeps_its_lines_as_breaks(tmp_path: Path) -> None:
    letter = write_letter(tmp_path, "Adresse : {{ adresse }}\n")
    merged = merge_letter(letter, {"adresse": "Bâtiment A\n12 rue *Pasteur*"})
    assert "Bâtiment A<br />\n12 rue *Pasteur*" in merged.html
    assert "Bâtiment A\n12 rue *Pasteur*" in merged.text


def test_footnotes_are_numbered_in_order_of_first_call(tmp_path: Path) -> None:
    merged = merge_letter(write_letter(tmp_path, LETTER), CONTEXT)
    assert merged.footnotes == ["Note deux.", "Note un, avec emphase."]
    assert re.search(r"Deuxième appel\[1\].*premier\[2\].*deuxième\[1\]", merged.text, re.S)
    assert merged.text.rstrip().endswith("[1] Note deux.\n[2] Note un, avec emphase.")


def test_email_html_has_endnotes_with_links_back(tmp_path: Path) -> None:
    merged = merge_letter(write_letter(tmp_path, LETTER), CONTEXT)
    assert '<a href="#fn1" id="fnref1">1</a>' in merged.html
    assert merged.html.count('class="footnote-backref"') == 3  # note 1 is called twice
    assert "↩" in merged.html
    assert merged.html.index("Note deux") < merged.html.index("Note un")


def test_pdf_html_puts_each_note_where_it_is_first_called(tmp_path: Path) -> None:
    merged = merge_letter(write_letter(tmp_path, LETTER), CONTEXT)
    spans = re.findall(r'<span class="footnote">(.*?)</span>', merged.pdf_html)
    assert spans == ["Note deux.", "Note un, avec <em>emphase</em>."]
    assert '<sup class="footnote-again">1</sup>' in merged.pdf_html
    assert "footnotes-list" not in merged.pdf_html


def test_footnotes_inside_conditions_are_renumbered_per_letter(tmp_path: Path) -> None:
    letter = write_letter(
        tmp_path,
        "{% if chu %}Pour les CHU[^chu].{% endif %} Pour tous[^tous].\n\n"
        "[^chu]: Note CHU.\n\n[^tous]: Note commune.\n",
    )
    with_chu = merge_letter(letter, {"chu": True})
    without = merge_letter(letter, {"chu": False})
    assert with_chu.footnotes == ["Note CHU.", "Note commune."]
    assert without.footnotes == ["Note commune."]
    assert "Pour tous[1]" in without.text


def test_fields_are_merged_and_the_date_is_french(tmp_path: Path) -> None:
    merged = merge_letter(write_letter(tmp_path, LETTER), CONTEXT)
    assert merged.fields["subject"] == "Objet pour Hôpital Nord"
    assert merged.fields["place"] == "Paris"
    assert merged.fields["signature"] == "Pour le collectif,\nLéa"
    assert merged.fields["date"] == "1er mai 2020"


def test_typography_touches_text_but_not_tags_or_urls(tmp_path: Path) -> None:
    letter = write_letter(
        tmp_path, "Quoi ? Voir [le site](https://example.org/a?b=c;d) : « oui ».\n"
    )
    merged = merge_letter(letter, {})
    assert 'href="https://example.org/a?b=c;d"' in merged.html
    assert f"Quoi{NNBSP}?" in merged.html
    assert f"«{NNBSP}oui{NNBSP}»" in merged.html
    assert f"le site <https://example.org/a?b=c;d>{NNBSP}:" in merged.text


def test_salutation_helper_in_a_letter(tmp_path: Path) -> None:
    merged = merge_letter(write_letter(tmp_path, LETTER), CONTEXT)
    assert merged.text.startswith("Madame la Directrice,")


def test_undefined_placeholder_names_the_file_line(tmp_path: Path) -> None:
    letter = write_letter(tmp_path, "---\nplace: Paris\n---\nUn\n\nDeux {{ inconnu }}\n")
    with pytest.raises(TemplateError) as caught:
        merge_letter(letter, {})
    assert caught.value.place.line == 6
    assert "inconnu" in caught.value.message


def test_a_bad_front_matter_date_is_a_template_error(tmp_path: Path) -> None:
    letter = write_letter(tmp_path, "---\ndate: bientôt\n---\nTexte\n")
    with pytest.raises(TemplateError) as caught:
        merge_letter(letter, {})
    assert caught.value.place.line == 2


def test_footnote_problems_name_call_without_text_and_text_never_called() -> None:
    problems = footnote_problems("Un[^a].\n\n[^b]: jamais appelée\n", "lettre.md")
    messages = {(p.message, p.place.line) for p in problems}
    assert ("footnote [^a] is called but has no text", 1) in messages
    assert ("footnote [^b] has a text but is never called", 3) in messages


def test_sample_letter_merges_with_its_four_footnotes() -> None:
    letter = load_letter(Path(__file__).resolve().parent.parent / "letters" / "lettre-hopitaux.md")
    merged = merge_letter(
        letter,
        {"civilite": "Monsieur", "fonction": "Directeur", "etablissement": "CH de Valbrune"},
    )
    assert len(merged.footnotes) == 4
    assert merged.fields["date"] == "7 mai 2020"
    assert merged.pdf_html.count('class="footnote"') == 4


def test_a_template_that_reads_no_cell_is_rendered_once_and_one_that_does_each_time() -> None:
    from campaign import letter

    fixed = letter.compile_text("Paris, le {{ date_fr('2020-05-01') }}", "place")
    personal = letter.compile_text("{{ prenom }} {{ nom | upper }}", "to_name")
    assert fixed in letter._FIXED and personal not in letter._FIXED
    first = letter.render_template(fixed, {"prenom": "Élise"}, "place")
    assert first == "Paris, le 1er mai 2020" and letter._FIXED[fixed] == first
    assert letter.render_template(fixed, {}, "place") == first  # no context needed any more
    names = [letter.render_template(personal, {"prenom": p, "nom": "Noël"}, "x") for p in "AB"]
    assert names == ["A NOËL", "B NOËL"]
    with pytest.raises(TemplateError):  # an error is never kept as the text
        letter.render_template(letter.compile_text("{{ 1 / 0 }}", "place"), {}, "place")


def test_a_template_cannot_repeat_a_text_into_a_huge_one() -> None:
    from campaign import letter

    bomb = letter.compile_text("{{ nom * 100000 }}", "mini.md")
    with pytest.raises(TemplateError, match="repeated into 400000 characters"):
        letter.render_template(bomb, {"nom": "Noël"}, "mini.md")
    rule = letter.compile_text("{{ '-' * 40 }} {{ 2 ** 10 }} {{ 3 * 4 }}", "mini.md")
    assert letter.render_template(rule, {}, "mini.md") == "-" * 40 + " 1024 12"
    with pytest.raises(TemplateError, match="power"):
        letter.render_template(letter.compile_text("{{ 9 ** 99999 }}", "x"), {}, "x")


def _notes(path: Path) -> dict[str, str]:
    """A letter's footnote texts by label, their lines joined."""
    text = path.read_text(encoding="utf-8")
    found = re.findall(r"^\[\^([\w-]+)\]:((?:.*\n?)(?:^ {4}.*\n?)*)", text, re.MULTILINE)
    return {label: " ".join(body.split()) for label, body in found}


def test_the_sample_letters_cite_the_same_sources_in_the_same_words() -> None:
    # The thank-you email quotes the letter to the hospital directors: a reviewer found its note
    # on the Senate question dated "30/01/2020" where the letter, proofed by a lawyer, reads
    # "30 janvier 2020". A note with the same label says the same thing in both.
    letters = Path(__file__).resolve().parents[1] / "letters"
    letter = _notes(letters / "lettre-hopitaux.md")
    email = _notes(letters / "merci-signataires.md")
    shared = sorted(letter.keys() & email.keys())
    assert shared == ["arrete", "favoritisme", "senat"], shared
    for label in shared:
        assert email[label] == letter[label], label

"""PDF letters checked the way a reader would: text on the right page, in the window, A4, fonts."""

from __future__ import annotations

import dataclasses
import io
import re
import shutil
from pathlib import Path

import pypdf
import pypdfium2 as pdfium
import pytest
from PIL import Image

from campaign.inputs import Inputs, load_inputs
from campaign.letter import load_letter
from campaign.pdf import letter_path
from campaign.settings import Campaign, load_settings
from campaign.typeset import letter_html, render_pdf
from tests.conftest import FEW_RECIPIENTS, REPO, write_few_recipients

MM = 72 / 25.4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("pdf") / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    write_few_recipients(root)
    campaign = load_settings(root / "settings.yaml").campaign("hopitaux-2020-05")
    loaded = load_inputs(campaign)
    assert not loaded.errors, loaded.errors
    return loaded


@pytest.fixture(scope="module")
def first_pdf(inputs: Inputs) -> bytes:
    return render_pdf(inputs, inputs.recipients.recipients[0])


def page_texts(pdf: bytes) -> list[str]:
    document = pdfium.PdfDocument(pdf)
    return [document[i].get_textpage().get_text_range() for i in range(len(document))]


def flat(text: str) -> str:
    return " ".join(text.split())


def test_name_and_establishment_are_on_page_one(first_pdf: bytes) -> None:
    first = flat(page_texts(first_pdf)[0])
    assert "Élise Le Goff" in first
    assert "Centre hospitalier de Valbrune" in first
    assert "Madame la Directrice déléguée," in first


def test_page_numbers_read_n_of_total(first_pdf: bytes) -> None:
    texts = page_texts(first_pdf)
    assert len(texts) == 2
    for number, text in enumerate(texts, start=1):
        assert f"page {number} / 2" in text


def test_page_is_a4_and_metadata_is_set(first_pdf: bytes) -> None:
    reader = pypdf.PdfReader(io.BytesIO(first_pdf))
    box = reader.pages[0].mediabox
    assert (round(float(box.width) / MM), round(float(box.height) / MM)) == (210, 297)
    assert reader.metadata is not None
    assert reader.metadata.title == "Lettre aux directrices et directeurs d’hôpitaux"
    assert reader.metadata.author == "Collectif Données de santé"
    assert reader.trailer["/Root"]["/Lang"] == "fr"


def test_every_font_is_embedded(first_pdf: bytes) -> None:
    reader = pypdf.PdfReader(io.BytesIO(first_pdf))
    names = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            for descendant in font.get("/DescendantFonts", [font]):
                descriptor = descendant.get_object()["/FontDescriptor"].get_object()
                assert {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor), font
                names.append(str(descendant.get_object()["/BaseFont"]))
    assert len(names) >= 2
    assert all("DejaVu" in name for name in names), names


def window_mm(inputs: Inputs) -> tuple[float, float, float, float]:
    """The envelope's window (`layout.window`): left, top, right, bottom in mm."""
    w = inputs.campaign.settings.layout.window
    return w.left, w.top, w.left + w.width, w.top + w.height


def test_address_block_lies_inside_the_envelope_window(inputs: Inputs, first_pdf: bytes) -> None:
    page = pdfium.PdfDocument(first_pdf)[0]
    left, top, right, bottom = window_mm(inputs)
    height = page.get_size()[1]
    window = page.get_textpage().get_text_bounded(
        left=left * MM, bottom=height - bottom * MM, right=right * MM, top=height - top * MM
    )
    lines = [line.strip() for line in window.splitlines() if line.strip()]
    assert lines == [
        "Madame Élise Le Goff",
        "Directrice déléguée",
        "Centre hospitalier de Valbrune",
        "Bâtiment A",
        "48 allée Marie-Curie",
        "69485 VALBRUNE",
    ]


def test_footnotes_are_at_the_foot_of_page_one(first_pdf: bytes) -> None:
    first = flat(page_texts(first_pdf)[0])
    for start in ("1. Arrêté du 21 avril 2020", "2. Modalités de stockage", "4. Article 40"):
        assert start in first


def test_recipient_values_appear_exactly_as_typed(inputs: Inputs) -> None:
    tricky = inputs.recipients.recipients[2]
    first = flat(page_texts(render_pdf(inputs, tricky))[0])
    assert FEW_RECIPIENTS[2]["Nom"] in first
    assert FEW_RECIPIENTS[2]["Établissement"] in first
    assert "49" not in first


def test_each_footnote_lands_on_the_page_of_its_call(inputs: Inputs, tmp_path: Path) -> None:
    paragraphs = []
    notes = []
    filler = "Le texte de ce paragraphe est assez long pour remplir plusieurs lignes. " * 5
    for k in range(1, 15):
        paragraphs.append(f"{filler}Repère K{k:02d} fin[^n{k}].")
        notes.append(f"[^n{k}]: Note N{k:02d}, " + "précise et documentée, " * (k % 4 + 1) + "fin.")
    source = inputs.letter.path.parent / "longue.md"  # type: ignore[union-attr]
    source.write_text(
        "---\nstylesheet: lettre.css\ntitle: Longue\n---\n"
        + "\n\n".join(paragraphs + notes)
        + "\n",
        encoding="utf-8",
    )
    long_inputs = dataclasses.replace(inputs, letter=load_letter(source))
    texts = [flat(t) for t in page_texts(render_pdf(long_inputs, inputs.recipients.recipients[0]))]
    assert len(texts) >= 3
    for k in range(1, 15):
        call = [n for n, text in enumerate(texts) if f"K{k:02d} fin" in text]
        note = [n for n, text in enumerate(texts) if f"Note N{k:02d}" in text]
        assert call and call == note, (k, call, note)
        assert re.search(rf"\b{k}\. Note N{k:02d}", texts[note[0]])


def test_without_a_stylesheet_a_later_page_still_names_its_letter(
    inputs: Inputs, tmp_path: Path
) -> None:
    source = inputs.letter.path.parent / "nue.md"  # type: ignore[union-attr]
    body = "Un paragraphe assez long pour remplir quelques lignes de la page. " * 12
    source.write_text(
        "---\nplace: Lyon\ndate: 2020-05-07\n---\n" + "\n\n".join([body] * 12) + "\n",
        encoding="utf-8",
    )
    plain = dataclasses.replace(inputs, letter=load_letter(source))
    texts = page_texts(render_pdf(plain, inputs.recipients.recipients[0]))
    assert len(texts) >= 2
    for number, text in enumerate(texts, start=1):
        assert flat(text).endswith(f"{number} / {len(texts)}"), (number, text[-80:])
    for text in texts[1:]:
        assert "\r\nMadame Élise Le Goff — Lyon, le 7 mai 2020\r\n" in text, text[-120:]
    assert "Élise Le Goff — Lyon" not in flat(texts[0])  # page 1 has its letterhead instead


def test_page_one_renders_to_an_image(first_pdf: bytes, tmp_path: Path) -> None:
    png = tmp_path / "page1.png"
    pdfium.PdfDocument(first_pdf)[0].render(scale=1).to_pil().save(png)
    image = Image.open(png).convert("L")
    assert abs(image.width / image.height - 210 / 297) < 0.01
    # the address block (110 mm from the left, 45 mm from the top) is ink, not paper
    x, y = round(112 * MM), round(47 * MM)
    box = image.crop((x, y, x + round(40 * MM), y + round(10 * MM)))
    assert box.getextrema()[0] < 100


def test_letter_path_is_stable_and_ascii(inputs: Inputs) -> None:
    campaign = inputs.campaign
    second = inputs.recipients.recipients[1]
    path = letter_path(campaign, second)
    assert path == letter_path(campaign, second)
    assert path.name == f"{second.row:04d}-noel-d-aubigne.pdf"
    assert path.parent == campaign.outbox / "letters"
    assert path.name.isascii()


def test_pdf_a_variant_on_request(inputs: Inputs) -> None:
    config = inputs.campaign.config.model_copy(update={"pdf_variant": "pdf/a-3b"})
    campaign = Campaign(inputs.campaign.name, inputs.campaign.settings, config)
    archived = dataclasses.replace(inputs, campaign=campaign)
    pdf = render_pdf(archived, inputs.recipients.recipients[1])
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    root = reader.trailer["/Root"]
    assert "/OutputIntents" in root
    assert b"pdfaid:part" in root["/Metadata"].get_object().get_data()


def test_front_matter_address_replaces_the_default_block(inputs: Inputs) -> None:
    source = inputs.letter.path.parent / "adresse.md"  # type: ignore[union-attr]
    source.write_text(
        "---\nstylesheet: lettre.css\naddress: |\n  À l’attention de {{ prenom }} {{ nom }}\n"
        "  {{ ville }}\n---\nCourte lettre.\n",
        encoding="utf-8",
    )
    custom = dataclasses.replace(inputs, letter=load_letter(source))
    page = pdfium.PdfDocument(render_pdf(custom, inputs.recipients.recipients[1]))[0]
    left, top, right, bottom = window_mm(inputs)
    height = page.get_size()[1]
    window = page.get_textpage().get_text_bounded(
        left=left * MM, bottom=height - bottom * MM, right=right * MM, top=height - top * MM
    )
    assert " ".join(window.split()) == "À l’attention de Noël d’Aubigné MONTCLAIR-LES-BAINS"


def test_the_letterhead_prints_a_reply_to_only_when_it_differs(inputs: Inputs) -> None:
    # A new project's letterhead read "contact@example.org · contact@example.org".
    settings = inputs.campaign.settings
    same = settings.model_copy(
        update={"sender": settings.sender.model_copy(update={"reply_to": settings.sender.email})}
    )
    campaign = dataclasses.replace(inputs.campaign, settings=same)
    page = letter_html(dataclasses.replace(inputs, campaign=campaign), inputs.recipients.ready[0])
    contact = re.search(r'<p class="sender-contact">(.*?)</p>', page)
    assert contact is not None and contact.group(1) == settings.sender.email


def test_a_hard_break_in_a_note_stays_a_break(inputs: Inputs) -> None:
    source = inputs.letter.path.parent / "note.md"  # type: ignore[union-attr]
    source.write_text(
        "---\nstylesheet: lettre.css\n---\nTexte[^n].\n\n"
        "[^n]: Première ligne de la note,\\\n    seconde ligne de la note,\n    suite sur la même.\n",
        encoding="utf-8",
    )
    custom = dataclasses.replace(inputs, letter=load_letter(source))
    text = page_texts(render_pdf(custom, inputs.recipients.recipients[0]))[0]
    lines = [line.strip() for line in text.splitlines()]
    assert "1. Première ligne de la note," in lines
    assert "seconde ligne de la note, suite sur la même." in lines

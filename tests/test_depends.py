"""One walk of what a letter depends on: change any such file, and the PDF, the approval
fingerprint and the PDF that `send` attaches all follow.

The bug this guards against: an image in the letter body was followed by the approval fingerprint
but not by the render manifest, so reviewers approved the new picture while `send` attached the
PDFs rendered with the old one.
"""

from __future__ import annotations

import email
import io
import shutil
from email.message import Message
from pathlib import Path

import pypdfium2
from PIL import Image
from pypdf import PdfReader

from campaign import commands
from campaign.approval import compute_fingerprint
from campaign.inputs import Inputs, load_inputs
from campaign.pdf import ApprovedLetters, input_fingerprint, letter_path, render_letters
from campaign.send import SendOptions
from campaign.settings import load_settings
from tests.smtp_server import FaultyServer

HOSPITALS = "hopitaux-2020-05"
RED, BLUE = (220, 0, 0), (0, 0, 220)


def inputs_of(root: Path) -> Inputs:
    return load_inputs(load_settings(root / "settings.yaml").campaign(HOSPITALS))


def square(path: Path, colour: tuple[int, int, int]) -> None:
    Image.new("RGB", (60, 60), colour).save(path)


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def colours(pdf: bytes) -> set[tuple[int, int, int]]:
    """The saturated colours on the PDF's pages, rendered as a reader sees them."""
    found: set[tuple[int, int, int]] = set()
    document = pypdfium2.PdfDocument(pdf)
    for page in document:
        image = page.render(scale=0.5).to_pil().convert("RGB").quantize(64).convert("RGB")
        for _, (r, g, b) in image.getcolors(1 << 16) or []:
            if max(r, g, b) - min(r, g, b) > 150:
                found.add((r, g, b))
    return found


def near(colour: tuple[int, int, int], found: set[tuple[int, int, int]]) -> bool:
    return any(sum(abs(a - b) for a, b in zip(colour, c, strict=True)) < 90 for c in found)


def pdf_text(pdf: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def first_letter(root: Path) -> bytes:
    inputs = inputs_of(root)
    return letter_path(inputs.campaign, inputs.recipients.ready[0]).read_bytes()


def test_a_body_image_replaced_after_rendering_is_what_the_approved_send_attaches(
    few_project: Path,
) -> None:
    letter = few_project / "letters/lettre-hopitaux.md"
    append(letter, "\n![signature](signature.png)\n")
    square(few_project / "letters/signature.png", RED)
    assert render_letters(inputs_of(few_project)).rendered
    assert near(RED, colours(first_letter(few_project)))
    before = compute_fingerprint(inputs_of(few_project)).digest

    square(few_project / "letters/signature.png", BLUE)  # the organiser swaps the picture
    inputs = inputs_of(few_project)
    assert compute_fingerprint(inputs).digest != before
    campaign = inputs.campaign
    commands.proof(campaign, rows="2")
    commands.approve(campaign, by="Maître Dupont")
    settings = few_project / "settings.yaml"
    with FaultyServer() as server:
        settings.write_text(
            settings.read_text(encoding="utf-8").replace("port: 8025", f"port: {server.port}"),
            encoding="utf-8",
        )
        report = commands.send(load_settings(settings).campaign(HOSPITALS), SendOptions())
        assert report.tally.sent == 3
        stored = server.stored
    for item in stored:
        message = email.message_from_bytes(item.data)
        (pdf,) = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
        attached = _payload(pdf)
        assert near(BLUE, colours(attached)) and not near(RED, colours(attached))


def _payload(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    return data


def test_a_stylesheet_imported_by_the_stylesheet_renders_again_when_it_changes(
    few_project: Path,
) -> None:
    css = few_project / "letters/lettre.css"
    css.write_text('@import "extra.css";\n' + css.read_text(encoding="utf-8"), encoding="utf-8")
    extra = few_project / "letters/extra.css"
    extra.write_text('.letter-body::after { content: "VARIANTEA"; }\n', encoding="utf-8")
    render_letters(inputs_of(few_project))
    assert "VARIANTEA" in pdf_text(first_letter(few_project))
    before = compute_fingerprint(inputs_of(few_project)).components

    extra.write_text('.letter-body::after { content: "VARIANTEB"; }\n', encoding="utf-8")
    inputs = inputs_of(few_project)
    changed = compute_fingerprint(inputs).components
    assert (
        changed[("stylesheet", "letters/extra.css")] != before[("stylesheet", "letters/extra.css")]
    )
    assert len(render_letters(inputs).rendered) == 3
    assert "VARIANTEB" in pdf_text(first_letter(few_project))


def test_an_image_and_a_font_named_by_a_nested_stylesheet_are_followed(few_project: Path) -> None:
    css = few_project / "letters/lettre.css"
    fonts = few_project / "letters/fonts"
    fonts.mkdir()
    system = Path("/usr/share/fonts/truetype/dejavu")
    shutil.copy(system / "DejaVuSansMono.ttf", fonts / "titre.ttf")
    square(few_project / "letters/fond.png", RED)
    (few_project / "letters/extra.css").write_text(
        '@font-face { font-family: Titre; src: url("fonts/titre.ttf"); }\n'
        ".subject { font-family: Titre; }\n"
        ".signature { background: url(fond.png) repeat; }\n",
        encoding="utf-8",
    )
    css.write_text('@import "extra.css";\n' + css.read_text(encoding="utf-8"), encoding="utf-8")
    render_letters(inputs_of(few_project))
    assert near(RED, colours(first_letter(few_project)))
    kinds = {(d.kind, d.shown) for d in inputs_of(few_project).dependencies}
    assert {("font", "letters/fonts/titre.ttf"), ("image", "letters/fond.png")} <= kinds

    square(few_project / "letters/fond.png", BLUE)
    assert len(render_letters(inputs_of(few_project)).rendered) == 3
    assert near(BLUE, colours(first_letter(few_project)))
    before = input_fingerprint(inputs_of(few_project))
    shutil.copy(system / "DejaVuSans-Bold.ttf", fonts / "titre.ttf")
    assert input_fingerprint(inputs_of(few_project)) != before
    assert len(render_letters(inputs_of(few_project)).rendered) == 3


def test_email_only_files_change_the_approval_but_render_no_letter_again(
    few_project: Path,
) -> None:
    settings = few_project / "settings.yaml"
    body = few_project / "letters/courriel-hopitaux.md"
    append(body, "\n![logo](logo-courriel.png)\n")
    square(few_project / "letters/logo-courriel.png", RED)
    (few_project / "letters/note.txt").write_text("Annexe A\n", encoding="utf-8")
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("    attachments: []", "    attachments: [letters/note.txt]"), encoding="utf-8"
    )
    render_letters(inputs_of(few_project))
    before = compute_fingerprint(inputs_of(few_project)).digest
    letters_before = input_fingerprint(inputs_of(few_project))

    square(few_project / "letters/logo-courriel.png", BLUE)
    after_image = compute_fingerprint(inputs_of(few_project)).digest
    (few_project / "letters/note.txt").write_text("Annexe B\n", encoding="utf-8")
    after_note = compute_fingerprint(inputs_of(few_project)).digest
    assert len({before, after_image, after_note}) == 3
    assert input_fingerprint(inputs_of(few_project)) == letters_before
    assert render_letters(inputs_of(few_project)).skipped == 3


def test_send_renders_again_a_pdf_that_no_longer_matches_its_manifest(few_project: Path) -> None:
    inputs = inputs_of(few_project)
    render_letters(inputs)
    first = inputs.recipients.ready[0]
    path = letter_path(inputs.campaign, first)
    good = path.read_bytes()
    path.write_bytes(good.replace(b"%%EOF", b"%%EOF\n% edited by hand"))  # same inputs, other bytes
    letters = ApprovedLetters(inputs, [first])
    assert letters.rerendered == 0  # render_letters already saw the bytes differ and rendered it
    path.write_bytes(b"%PDF-1.7 not the letter")  # damaged after the check, before attaching
    attached = letters.pdf(first)
    assert letters.rerendered == 1
    assert attached.startswith(b"%PDF") and len(attached) > 10_000
    assert "Le Goff" in pdf_text(attached)

"""Every sample letter read as a reader, La Poste and a screen reader would (issue 11).

The 40 sample letters are rendered once; the checks read their text positions with pypdfium2:
notes that reflow, no hyphen at a page's foot, cell values whole, the closing sentence and the
signature together, every address line inside `layout.window`; and the structure tree with
pikepdf and the `pdfua` checker.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from pdfua import validate

from campaign.errors import InputError
from campaign.inputs import Inputs, load_inputs
from campaign.recipients import Recipient
from campaign.settings import load_settings
from campaign.typeset import abbreviate, address_lines, render_pdf
from tests.conftest import REPO

MM = 72 / 25.4
# A word cut at a line's end ends with a hyphen-minus, which pdfium reports as U+FFFE (its
# mark of a line-end hyphen) and `text_lines` writes back as "-".
HYPHEN = "-"
HYPHENS = (HYPHEN, "\u2010", "\u00ad", "\ufffe")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layout") / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    return root


def load(project: Path, **config: object) -> Inputs:
    campaign = load_settings(project / "settings.yaml").campaign("hopitaux-2020-05")
    if config:
        campaign = dataclasses.replace(campaign, config=campaign.config.model_copy(update=config))
    inputs = load_inputs(campaign)
    assert not inputs.errors, inputs.errors
    return inputs


@pytest.fixture(scope="module")
def inputs(project: Path) -> Inputs:
    return load(project)


@pytest.fixture(scope="module")
def letters(inputs: Inputs) -> list[tuple[Recipient, bytes]]:
    ready = inputs.recipients.ready
    assert len(ready) == 40
    return [(r, render_pdf(inputs, r)) for r in ready]


@dataclasses.dataclass
class Line:
    text: str
    size: float  # font size of its first letter, pt
    top: float  # pt from the top of the page
    left: float
    right: float


def lines_of(page: pdfium.PdfPage) -> list[Line]:
    """The page's text lines, with their font size and extent (pdfium's own line breaks)."""
    textpage = page.get_textpage()
    height = page.get_size()[1]
    count = textpage.count_chars()
    out: list[Line] = []
    current: list[int] = []

    def close() -> None:
        chars = [i for i in current if not textpage.get_text_range(i, 1).isspace()]
        if chars:
            boxes = [textpage.get_charbox(i) for i in chars]
            out.append(
                Line(
                    text=textpage.get_text_range(current[0], current[-1] - current[0] + 1),
                    size=pdfium_c.FPDFText_GetFontSize(textpage.raw, chars[0]),
                    top=height - max(b[3] for b in boxes),
                    left=min(b[0] for b in boxes),
                    right=max(b[2] for b in boxes),
                )
            )
        current.clear()

    for i in range(count):
        char = textpage.get_text_range(i, 1)
        if char in "\r\n":
            close()
        else:
            current.append(i)
            if char == "\ufffe":  # a line-end hyphen: pdfium writes no line break after it
                close()
    close()
    return out


def test_a_note_reflows_across_the_source_line_break(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # letters/lettre-hopitaux.md breaks note 2 after "n° 14130 de": "de" and "M." share a line.
    for _, pdf in letters:
        lines = lines_of(pdfium.PdfDocument(pdf)[0])
        note = [line for line in lines if "14130" in line.text]
        assert note, [line.text for line in lines]
        assert "14130 de M. Claude" in note[0].text.replace("\u00a0", " ")


def test_no_note_line_ends_where_the_source_did(letters: list[tuple[Recipient, bytes]]) -> None:
    source_breaks = ("prescrivant les mesures", "n° 14130 de", "autorité constituée,")
    for _, pdf in letters:
        for line in lines_of(pdfium.PdfDocument(pdf)[0]):
            text = line.text.replace("\u00a0", " ").rstrip()
            assert not any(text.endswith(b) for b in source_breaks), text


def body_lines(page: pdfium.PdfPage) -> list[Line]:
    """The lines of the letter's text (10.5 pt), without the notes and the page number."""
    return [line for line in lines_of(page) if line.size >= 9.5 and "/" not in line.text[-4:]]


def test_no_page_ends_on_a_hyphenated_word(letters: list[tuple[Recipient, bytes]]) -> None:
    feet = []
    for recipient, pdf in letters:
        document = pdfium.PdfDocument(pdf)
        for n in range(len(document) - 1):
            last = body_lines(document[n])[-1]
            feet.append(last.text)
            assert not last.text.rstrip().endswith(HYPHENS), (recipient.row, n + 1, last.text)
    assert len(feet) >= 40  # every sample letter has two pages: the check read each foot


def text_lines(pdf: bytes) -> list[str]:
    """The letter's lines, as pdfium reads them; it joins a line that ends on a hyphen-minus to
    the next with U+FFFE ("Pradelles\ufffele-Lac"), which is a line break here."""
    document = pdfium.PdfDocument(pdf)
    return [
        line.replace("\u00a0", " ").rstrip()
        for n in range(len(document))
        for line in document[n]
        .get_textpage()
        .get_text_range()
        .replace("\ufffe", "-\n")
        .splitlines()
    ]


def test_a_word_cut_at_a_lines_end_is_found_whole_by_a_readers_search(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # A lawyer searching the letter for "dossier" in Chrome or Firefox missed "dos‐ / sier": the
    # viewers join a word across a line-end hyphen-minus (pdfium marks it U+FFFE, which Chrome's
    # search skips; pdf.js joins "-" + line end), never across U+2010, WeasyPrint's default.
    cut: list[str] = []
    for recipient, pdf in letters[:8]:
        for page in pdfium.PdfDocument(pdf):
            textpage = page.get_textpage()
            text = textpage.get_text_range()
            assert not re.search(r"\w[\u2010\u00ad]\r?\n\w", text), (recipient.row, text)
            for found in re.finditer(r"\w+\ufffe\w+", text):
                cut.append(found.group(0).replace("\ufffe", ""))
                mark = found.start() + found.group(0).index("\ufffe")
                left, _, right, _ = textpage.get_charbox(mark)
                assert right - left > 2, "the hyphen is drawn: a reader sees the word is cut"
    assert len(cut) >= 8 and "dossier" in cut, cut  # the sample cuts a few words in each letter
    assert all(w.isalpha() for w in cut), cut


def test_cell_values_are_never_hyphenated(letters: list[tuple[Recipient, bytes]]) -> None:
    for recipient, pdf in letters:
        lines = text_lines(pdf)
        for line in lines:
            words = line.split()
            if words and words[-1].endswith(HYPHEN):
                stem = words[-1].rstrip(HYPHEN)
                words = recipient.variables["etablissement"].replace("-", " ").split()
                assert not any(w.startswith(stem) for w in words), (recipient.row, line)
        flat = " ".join(" ".join(lines).split())
        assert recipient.variables["etablissement"] in flat


def test_a_hyphenated_name_never_breaks_at_its_own_hyphen(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # "Centre hospitalier de Pradelles- / le-Lac" reads as a hyphenated word, and splits a place
    # name; so would "(Haute- / Garonne" in the letter's own note.
    compounds = {"Haute-Garonne"}
    broken = []
    for recipient, pdf in letters:
        names = {c for v in recipient.variables.values() for c in re.findall(r"\w+(?:-\w+)+", v)}
        for line in text_lines(pdf):
            last = line.split()[-1] if line.split() else ""
            if last.endswith(HYPHENS) and last[-2:-1].isalpha():
                stem = last.lstrip("(«").rstrip("".join(HYPHENS))
                broken += [
                    (recipient.row, line)
                    for c in names | compounds
                    if re.search(rf"(?<!\w){re.escape(stem)}-", c)
                ]
    assert names, "the sample has hyphenated names: the check read them"
    assert not broken, broken


def test_a_reference_stays_with_its_number_and_a_paragraph_ends_on_a_whole_word(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # "de l’article / 40", "l’ar- / ticle 40", a closing line that is only "tinguées.".
    seen = 0
    for recipient, pdf in letters:
        lines = text_lines(pdf)
        for before, line in itertools.pairwise(lines):
            seen += "article 40" in line
            parted = (
                re.search(r"(?:article|alinéa|n°|avril)$", before) and line[:1].isdigit()
            ) or (re.search(r"\s\d{1,2}$", before) and line.startswith("avril"))
            assert not parted, (recipient.row, before, line)
            assert not before.endswith("l’ar" + HYPHEN), (recipient.row, before)
            if before.endswith(HYPHEN):  # the line is not a paragraph's end, all of it a fragment
                assert not (len(line.split()) == 1 and line.endswith(".")), (recipient.row, line)
    assert seen >= 40  # every letter cites article 40 on one line


def test_the_subject_never_breaks_inside_the_establishments_name(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    for recipient, pdf in letters:
        lines = text_lines(pdf)
        start = next(i for i, line in enumerate(lines) if line.startswith("Objet"))
        name = recipient.variables["etablissement"]
        assert len(name) <= 45
        assert any(name in line for line in lines[start : start + 3]), lines[start : start + 3]


def test_a_subject_of_two_lines_goes_on_under_its_text_with_one_colon(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # « Objet : » is a column of its own: a second line starts under the subject's first word
    # (it started under « Objet »), and the subject's own separator is no second colon.
    wrapped = 0
    for recipient, pdf in letters:
        textpage = pdfium.PdfDocument(pdf)[0].get_textpage()
        text = textpage.get_text_range()
        label = text.index("Objet")
        first = label + len("Objet\u202f: ")
        assert text[first - 2 : first] == ": " and not text[first].isspace(), text[label:first]
        end = text.index("\r\n", first)
        following = text.index("\r\n", end + 2)
        second = text[end + 2 : following]
        subject = text[label:end]
        if not second.endswith(","):  # the next line is the subject's own, not the salutation
            wrapped += 1
            subject += " " + second
            left = [textpage.get_charbox(i)[0] / MM for i in (label, first, end + 2)]
            assert abs(left[2] - left[1]) < 0.5 and left[1] - left[0] > 10, (recipient.row, left)
        assert subject.count(":") == 1, (recipient.row, subject)
    assert wrapped >= 3, wrapped


def test_the_sample_letter_asserts_no_capacity_the_sheet_does_not_give(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # A lawyer's review: a row without a function was told it stood "à la tête de
    # l’établissement", tied to article 40; note 4 quoted the statute as if a paraphrase; the
    # decree was said "published on 21 April".
    unknown = [(r, pdf) for r, pdf in letters if not r.variables["fonction"].strip()]
    assert unknown, "the sample has a row without a function"
    for recipient, pdf in letters:
        flat = " ".join(" ".join(text_lines(pdf)).split())
        assert "à la tête" not in flat, recipient.row
        # The decree is "of" 21 April 2020, as note 1 says; it was published the day after.
        assert "Un arrêté1 du 21 avril 2020 incite" in flat.replace("\xa0", " "), recipient.row
        assert "publié le 21 avril" not in flat, recipient.row
        assert "pénale : « Toute autorité constituée," in flat.replace("\u202f", " ")
        assert "relatifs. »" in flat.replace("\u202f", " ")
    for recipient, pdf in unknown:
        flat = " ".join(" ".join(text_lines(pdf)).split())
        assert f"au sein de l’établissement {recipient.variables['etablissement']}" in flat


def test_closing_sentence_and_signature_share_a_page(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    for recipient, pdf in letters:
        document = pdfium.PdfDocument(pdf)
        last = " ".join(document[len(document) - 1].get_textpage().get_text_range().split())
        assert "salutations distinguées." in last, recipient.row
        assert "Pour le collectif," in last


def test_no_word_of_the_closing_sentence_is_cut(letters: list[tuple[Recipient, bytes]]) -> None:
    # « saluta-tions distinguées » in two of the sample's letters: a lawyer reads it as a slip.
    closings = 0
    for recipient, pdf in letters:
        lines = text_lines(pdf)
        start = next(i for i, line in enumerate(lines) if "Nous vous prions" in line)
        end = next(i for i in range(start, len(lines)) if "distinguées." in lines[i])
        closing = lines[start : end + 1]
        assert not any(line.endswith(HYPHENS) for line in closing), (recipient.row, closing)
        closings += len(closing) > 1
    assert closings >= 20  # most closings take two lines: the check saw line ends


def test_every_page_says_its_number_and_a_later_page_names_its_addressee(
    letters: list[tuple[Recipient, bytes]],
) -> None:
    # A page 2 parted from its page 1 (a stapler, a scanner) can still be matched to its letter:
    # it names the addressee and the date, as the first lines of page 1 say them.
    later = 0
    for recipient, pdf in letters:
        document = pdfium.PdfDocument(pdf)
        first = lines_of(document[0])
        address = min((ln for ln in first if ln.left >= 109 * MM), key=lambda ln: ln.top)
        dated = next(ln.text for ln in first if ln.text.startswith("Paris, le "))
        for number in range(len(document)):
            lines = lines_of(document[number])
            bottom = max(lines, key=lambda ln: ln.top)
            assert bottom.text == f"page {number + 1} / {len(document)}", (recipient.row, bottom)
            top = min(lines, key=lambda ln: ln.top)
            if number == 0:
                assert top.text.startswith("Collectif"), (recipient.row, top)  # the letterhead
                continue
            later += 1
            assert top.text == f"{address.text} — {dated}", (recipient.row, top)
            # In the top margin, in the page number's type.
            assert top.top < 20 * MM and top.size == bottom.size, (recipient.row, top)
    assert later >= 20  # most letters run onto a second page


def test_every_address_line_lies_inside_the_window(
    inputs: Inputs, letters: list[tuple[Recipient, bytes]]
) -> None:
    window = inputs.campaign.settings.layout.window
    for recipient, pdf in letters:
        page = pdfium.PdfDocument(pdf)[0]
        expected = address_lines(recipient, {})
        lines = [  # what is printed near the window: the address's lines, one each, no more
            line
            for line in lines_of(page)
            if line.left >= (window.left - 5) * MM
            and line.top < (window.top + window.height + 5) * MM
        ]
        printed = [line.text.strip() for line in lines]
        assert len(printed) == len(expected), (recipient.row, printed)  # no line wrapped
        for got, wanted in zip(printed, expected, strict=True):  # abbreviated only if too wide
            assert got in (wanted, abbreviate(wanted)), (recipient.row, got)
        for line in lines:
            assert window.left * MM - 0.5 <= line.left, (recipient.row, line)
            assert line.right <= (window.left + window.width) * MM + 0.5, (recipient.row, line)
            assert window.top * MM - 0.5 <= line.top, (recipient.row, line)
            assert line.top + line.size <= (window.top + window.height) * MM + 0.5, line


def test_a_long_address_line_shrinks_rather_than_wraps(inputs: Inputs) -> None:
    recipient = inputs.recipients.ready[0]
    long_street = "215 boulevard du Maréchal-de-Lattre-de-Tassigny prolongé"
    values = {**recipient.variables, "adresse": long_street}
    wide = dataclasses.replace(recipient, variables=values)
    page = pdfium.PdfDocument(render_pdf(inputs, wide))[0]
    lines = [line for line in lines_of(page) if "Tassigny" in line.text]
    assert len(lines) == 1 and lines[0].text.strip() == long_street
    date_line = next(line for line in lines_of(page) if line.text.startswith("Paris, le"))
    assert lines[0].size < date_line.size * 0.92  # 10.5 pt text, a 10 pt address shrunk
    window = inputs.campaign.settings.layout.window
    assert lines[0].right <= (window.left + window.width) * MM + 0.5


def test_an_address_that_cannot_fit_is_an_error_for_the_row(inputs: Inputs) -> None:
    recipient = inputs.recipients.ready[0]
    values = {**recipient.variables, "adresse": "Très long " * 12}
    with pytest.raises(InputError) as caught:
        render_pdf(inputs, dataclasses.replace(recipient, variables=values))
    assert "window" in caught.value.message and caught.value.place.key == "layout.window"


def test_the_window_is_a_setting(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "p"
    shutil.copytree(project, other)
    settings = other / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    assert "window: DL" in text and "12 rue des Exemples" in text
    settings.write_text(
        text.replace("window: DL", "window: {left: 100, top: 55, width: 95, height: 40}").replace(
            "12 rue des Exemples", "12 rue des Fictions"
        ),
        encoding="utf-8",
    )
    inputs = load_inputs(load_settings(settings).campaign("hopitaux-2020-05"))
    page = pdfium.PdfDocument(render_pdf(inputs, inputs.recipients.ready[0]))[0]
    lines = lines_of(page)
    name = next(line for line in lines if line.text.startswith("Monsieur François"))
    assert abs(name.left - 100 * MM) < 1.5 and 55 * MM - 0.5 <= name.top < 60 * MM
    head = [line.text.strip() for line in lines[:4]]
    assert "12 rue des Fictions" in head and "75011 PARIS" in head


def structure(pdf: bytes) -> list[pikepdf.Dictionary]:
    """Every structure element of the PDF, in reading order."""
    found: list[pikepdf.Dictionary] = []

    def walk(node: object) -> None:
        if isinstance(node, pikepdf.Array):
            for kid in node:
                walk(kid)
        elif isinstance(node, pikepdf.Dictionary) and "/S" in node:
            found.append(node)
            walk(node.get("/K"))

    with pikepdf.open(__import__("io").BytesIO(pdf)) as document:
        walk(document.Root.StructTreeRoot.K)
        return [pikepdf.Dictionary({"/S": e.S, "/ID": e.get("/ID", "")}) for e in found]


@pytest.fixture(scope="module")
def ua_pdf(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    inputs = load(project, pdf_variant="pdf/ua-1")
    path = tmp_path_factory.mktemp("ua") / "lettre-ua.pdf"
    path.write_bytes(render_pdf(inputs, inputs.recipients.ready[0]))
    return path


def test_notes_are_note_elements_with_unique_ids(ua_pdf: Path) -> None:
    elements = structure(ua_pdf.read_bytes())
    roles = [str(e.S) for e in elements]
    notes = [str(e.ID) for e in elements if e.S == "/Note"]
    assert notes == ["note-1", "note-2", "note-3", "note-4"]
    assert roles.count("/Reference") == 4
    assert roles.index("/Reference") < roles.index("/Note")
    assert "/Div" in roles and "/P" in roles


def test_pdfua_finds_no_failure(ua_pdf: Path) -> None:
    report = validate(str(ua_pdf))
    assert not report.skipped, report.skipped
    assert [(f.rule_id, f.message) for f in report.findings] == []
    with pikepdf.open(ua_pdf) as document:
        assert document.Root.Lang == "fr"
        assert document.Root.ViewerPreferences.DisplayDocTitle is True
        assert document.Root.MarkInfo.Marked is True


def test_letters_are_tagged_by_default(letters: list[tuple[Recipient, bytes]]) -> None:
    roles = [str(e.S) for e in structure(letters[0][1])]
    assert roles.count("/Note") == 4 and roles.count("/Reference") == 4


@pytest.mark.parametrize("variant", ["pdf/a-3a", "pdf/a-3b"])
def test_archival_variants_render(project: Path, variant: str) -> None:
    inputs = load(project, pdf_variant=variant)
    pdf = render_pdf(inputs, inputs.recipients.ready[0])
    with pikepdf.open(__import__("io").BytesIO(pdf)) as document:
        assert "/OutputIntents" in document.Root
        meta = str(document.Root.Metadata.read_bytes())
        assert f'pdfaid:conformance="{variant[-1].upper()}"' in meta
        assert 'pdfaid:part="3"' in meta


@pytest.mark.parametrize("profile", ["ua1", "3a"])
def test_verapdf_profiles(project: Path, ua_pdf: Path, tmp_path: Path, profile: str) -> None:
    verapdf = shutil.which("verapdf")
    if verapdf is None:
        pytest.skip("verapdf is not on the PATH (veraPDF is not packaged by Debian or PyPI)")
    path = ua_pdf
    if profile == "3a":
        inputs = load(project, pdf_variant="pdf/a-3a")
        path = tmp_path / "a3a.pdf"
        path.write_bytes(render_pdf(inputs, inputs.recipients.ready[0]))
    done = subprocess.run(
        [verapdf, "--flavour", profile, "--format", "text", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "PASS" in done.stdout, done.stdout + done.stderr

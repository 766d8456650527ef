"""The proof pack: the stamped proofs.pdf, the self-contained index.html, and the sample."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pypdfium2
import pytest
from click.testing import CliRunner, Result
from pypdf import PdfReader

from campaign import commands
from campaign.cli import main
from campaign.errors import CheckFailed
from campaign.inputs import Inputs, load_inputs
from campaign.pdf import letter_path
from campaign.proofs import STAMP, choose_sample, parse_rows
from campaign.settings import load_settings
from tests.conftest import REPO, Run

HOSPITALS = "hopitaux-2020-05"
THANKS = "merci-signataires"
MM = 72 / 25.4


def copy_project(root: Path) -> Path:
    root.mkdir()
    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    return root


def invoke(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--settings", str(root / "settings.yaml"), *args])


def inputs_of(root: Path, name: str = HOSPITALS) -> Inputs:
    return load_inputs(load_settings(root / "settings.yaml").campaign(name))


@pytest.fixture(scope="module")
def hospitals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose hospital campaign was proofed once with the default sample."""
    root = copy_project(tmp_path_factory.mktemp("proofs") / "project")
    result = invoke(root, "proof", HOSPITALS)
    assert result.exit_code == 0, result.output
    yield root


@pytest.fixture(scope="module")
def thanks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose email-only campaign was proofed with two rows."""
    root = copy_project(tmp_path_factory.mktemp("proofs") / "project")
    result = invoke(root, "proof", THANKS, "--rows", "2,5")
    assert result.exit_code == 0, result.output
    yield root


def pack(root: Path, name: str = HOSPITALS) -> Path:
    return root / "outbox" / name / "proofs"


class Links(HTMLParser):
    """Every href and src of a page, and the iframes' attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.iframes: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        if tag == "img":
            self.images.append(str(values["src"]))
        if tag == "iframe":
            self.iframes.append(values)


def test_every_page_of_the_proofs_carries_the_stamp(hospitals: Path) -> None:
    reader = PdfReader(pack(hospitals) / "proofs.pdf")
    assert len(reader.pages) >= 1 + 7  # the cover and at least one page per sample letter
    for number, page in enumerate(reader.pages, start=1):
        assert STAMP in page.extract_text(), f"page {number} has no stamp"


def test_the_stamp_is_in_the_margin_not_over_the_text(hospitals: Path) -> None:
    document = pypdfium2.PdfDocument(pack(hospitals) / "proofs.pdf")
    for index in range(1, len(document)):  # the letter pages
        text = document[index].get_textpage()
        margin, body = [], []
        for i in range(text.count_chars()):
            left, _, right, _ = text.get_charbox(i)
            char = text.get_text_range(i, 1)
            if char.strip():
                (margin if right < 12 * MM else body).append((left, char))
        assert "ÉPREUVENEPASENVOYER" in "".join(c for _, c in margin).replace("—", "")
        assert min(left for left, _ in body) > 20 * MM, f"page {index + 1}: text under the stamp"


def test_the_cover_lists_the_sample_and_why(hospitals: Path) -> None:
    # The sample letter is French (the campaign's lang: fr, the default): so is its cover.
    cover = PdfReader(pack(hospitals) / "proofs.pdf").pages[0].extract_text()
    flat = " ".join(cover.replace("-\n", "-").split())
    assert HOSPITALS in cover
    assert "40 prêts pour l’envoi" in flat
    assert "(sur 40 lignes\u202f; 0 exclu, 0 non valide)" in cover.replace("\n", " ")
    assert "champ nom le plus long" in flat
    # The reviewer signs for 40 letters and sees 7: the pack says so, and how to see them all.
    assert "Les 33 autres destinataires prêts pour l’envoi ne sont pas montrés" in flat
    assert "campaign proof hopitaux-2020-05 --all les montre tous" in flat
    # Each reason is said again in French with its own field: the establishment, not the civility.
    assert "champ établissement le plus long (38 caractères)" in flat
    assert "Civilité le plus long" not in flat
    for label in ("Épreuves", "Pourquoi cette ligne", "Fait le"):
        assert label in flat
    for english in ("Proofs", "Why this row", "Made on", "ready to send", "longest"):
        assert english not in flat
    assert "Marie-Hélène de La Tour-d’Auvergne" in flat
    assert "civilité « Madame »" in flat
    manifest = (pack(hospitals) / "manifest.json").read_text()
    fingerprint = re.search(r'"fingerprint": "([0-9a-f]{64})"', manifest)
    assert fingerprint and fingerprint.group(1) in cover.replace("\n", "")
    for row in (2, 3, 4, 7):
        assert re.search(rf"(?m)^{row} ", cover), f"row {row} not on the cover"


def test_the_proof_pack_says_its_language_title_and_author(hospitals: Path) -> None:
    reader = PdfReader(pack(hospitals) / "proofs.pdf")
    assert reader.trailer["/Root"]["/Lang"] == "fr"
    assert reader.metadata is not None
    assert " ".join(str(reader.metadata.title).replace("\u202f", " ").split()) == (
        f"Épreuves : {HOSPITALS}"
    )
    assert reader.metadata.author == "Collectif Données de santé"


def test_the_index_is_self_contained(hospitals: Path) -> None:
    folder = pack(hospitals)
    page = (folder / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    parser.close()
    assert parser.images and parser.links
    for target in parser.links + parser.images:
        if target.startswith("#"):
            continue
        assert not re.match(r"[a-z]+:|/", target), target
        assert (folder / target).is_file(), f"{target} is linked but missing"
    assert not re.search(r"https?://", page)
    assert str(hospitals) not in page and str(REPO) not in page
    assert not re.search(r"""(?:src|href)="/""", page)


def test_each_thumbnail_is_a_page_of_the_linked_letter(hospitals: Path) -> None:
    folder = pack(hospitals)
    letters = sorted((folder / "letters").glob("*.pdf"))
    assert len(letters) == 7
    for letter in letters:
        pages = len(PdfReader(letter).pages)
        thumbs = sorted((folder / "thumbs").glob(f"{letter.stem}-p*.png"))
        assert len(thumbs) == pages
        assert thumbs[0].read_bytes().startswith(b"\x89PNG")
        assert STAMP not in PdfReader(letter).pages[0].extract_text()  # the letter as sent


def test_the_index_shows_each_email_as_it_will_be_sent(hospitals: Path) -> None:
    page = (pack(hospitals) / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    assert len(parser.iframes) == 7
    for frame in parser.iframes:
        assert frame["sandbox"] == ""
        assert "Health Data Hub" in str(frame["srcdoc"])
    # The email's own headers keep their names; the rest speaks the letter's language (French).
    for header in ("From", "To", "Reply-To", "Subject", "Pièces jointes"):
        assert f"<th>{header}</th>" in page
    assert '<html lang="fr">' in page
    assert "Les 33 autres destinataires prêts pour l’envoi ne sont pas montrés" in page
    assert "Collectif Données de santé &lt;contact@example.org&gt;" in page
    assert re.search(
        r"Lettre du collectif – François Le Goff\.pdf: application/pdf, [\d,]+ Ko", page
    )
    assert "<pre>Monsieur le Directeur délégué," in page  # the plain-text part


def test_an_email_only_campaign_proofs_the_emails(thanks: Path) -> None:
    folder = pack(thanks, THANKS)
    assert not (folder / "letters").exists()
    reader = PdfReader(folder / "proofs.pdf")
    assert len(reader.pages) >= 3
    assert all(STAMP in p.extract_text() for p in reader.pages)
    text = "".join(p.extract_text() for p in reader.pages[1:])
    assert "Bonjour Nathalie," in text
    assert "Subject" in text
    assert "Le collectif" in text  # the email is signed, as the letter is
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert "<img" not in page
    assert page.count("<iframe") == 2


def test_the_default_sample_holds_the_first_rows_and_the_extremes(project: Path) -> None:
    sample = {s.recipient.row: s.reasons for s in choose_sample(inputs_of(project))}
    assert {2, 3, 4} <= set(sample)
    reasons = [reason for reasons in sample.values() for reason in reasons]
    for expected in ("longest name", "longest établissement", "longest address", "civilité"):
        assert any(r.startswith(expected) for r in reasons), expected
    assert any("optional fields empty" in r for r in reasons)
    assert sample[7] == ["longest name (34 characters)", "civilité\u00a0«\u202fMme\u202f»"]
    assert len(choose_sample(inputs_of(project), everyone=True)) == 40


def test_random_rows_are_the_same_on_every_run(project: Path) -> None:
    inputs = inputs_of(project, THANKS)
    first = [s.recipient.row for s in choose_sample(inputs, extra=5)]
    again = [s.recipient.row for s in choose_sample(inputs_of(project, THANKS), extra=5)]
    assert first == again
    assert len(first) == len(choose_sample(inputs)) + 5


def test_rows_are_parsed_as_the_spreadsheet_numbers_them() -> None:
    assert parse_rows("2,7,19") == [2, 7, 19]
    assert parse_rows("4-6, 9") == [4, 5, 6, 9]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rows", "2,99"), "row 99 is not a recipient row"),
        (("--rows", "deux"), "'deux' is not a row number"),
        (("--rows", "2", "--all"), "--all and --rows do not go together"),
    ],
)
def test_bad_rows_are_refused_before_any_work(
    run: Run, args: tuple[str, ...], message: str
) -> None:
    result = run("proof", HOSPITALS, *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_row_that_will_not_be_sent_cannot_be_proofed(run: Run, project: Path) -> None:
    suppressed = next(
        r.row for r in inputs_of(project, THANKS).recipients.recipients if r.status == "suppressed"
    )
    result = run("proof", THANKS, "--rows", str(suppressed))
    assert result.exit_code == 2
    assert f"row {suppressed} is suppressed" in " ".join(result.output.split())


def test_a_new_pack_replaces_the_old_one_and_approve_refuses_when_stale(
    run: Run, project: Path
) -> None:
    first = run("proof", HOSPITALS, "--rows", "2")
    assert first.exit_code == 0, first.output
    approved = run("approve", HOSPITALS, "--by", "reviewer")
    assert approved.exit_code == 0
    assert "warning" not in approved.output
    second = run("proof", HOSPITALS, "--rows", "5")
    assert second.exit_code == 0, second.output
    letters = list((project / "outbox" / HOSPITALS / "proofs" / "letters").glob("*.pdf"))
    # The reviewer's copy has the letter's own name, as in letters/ (row 5, header = row 1).
    inputs = inputs_of(project)
    [row5] = [r for r in inputs.recipients.recipients if r.row == 5]
    assert [p.name for p in letters] == [letter_path(inputs.campaign, row5).name]
    assert letters[0].name.startswith("0005-")
    (project / "letters/lettre-hopitaux.md").write_text(
        (project / "letters/lettre-hopitaux.md").read_text(encoding="utf-8") + "\nP.-S.\n",
        encoding="utf-8",
    )
    stale = run("approve", HOSPITALS, "--by", "reviewer")
    assert stale.exit_code == 1
    assert "the proof pack shows older content" in " ".join(stale.output.split())


def test_a_row_that_fails_names_its_row_and_keeps_the_previous_pack(
    run: Run, project: Path
) -> None:
    assert run("proof", HOSPITALS, "--rows", "2").exit_code == 0
    letter = project / "letters/lettre-hopitaux.md"
    letter.write_text(
        letter.read_text(encoding="utf-8") + "\n{{ 1 // (row_number - 3) }}\n", encoding="utf-8"
    )
    with pytest.raises(CheckFailed) as caught:  # check's dry merge finds it before any PDF
        commands.proof(inputs_of(project).campaign, rows="2,3")
    (problem,) = caught.value.problems
    assert problem.place.row == 3 and "letters/lettre-hopitaux.md" in problem.message
    failed = run("proof", HOSPITALS, "--rows", "2,3")
    assert failed.exit_code == 1
    assert "cannot be proofed" in failed.output
    assert "Traceback" not in failed.output
    folder = project / "outbox" / HOSPITALS
    assert sorted(p.name for p in folder.iterdir() if "proofs" in p.name) == ["proofs"]
    assert '"rows": [\n    2\n  ]' in (folder / "proofs" / "manifest.json").read_text()


def test_proof_refuses_while_check_finds_errors_like_every_command(run: Run, project: Path) -> None:
    import openpyxl

    path = project / "recipients/directeurs-hopitaux.xlsx"
    book = openpyxl.load_workbook(path)
    assert book.active is not None
    book.active["I6"] = "pas-une-adresse"
    book.save(path)
    for rows in ("2", "6"):  # one rule for render, proof, approve and send: exit 1, the table
        refused = run("proof", HOSPITALS, "--rows", rows)
        assert refused.exit_code == 1
        assert "cannot be proofed: 40 recipients, 39 ready" in refused.output
        assert "│ 6 " in refused.output  # the row, in check's table of problems
    assert not (project / "outbox" / HOSPITALS / "proofs").exists()


def test_the_cover_never_splits_a_command_or_a_quoted_civility(hospitals: Path) -> None:
    document = pypdfium2.PdfDocument(pack(hospitals) / "proofs.pdf")
    lines = document[0].get_textpage().get_text_range().splitlines()
    assert any(f"campaign approve {HOSPITALS} --by NOM" in line for line in lines), (
        lines
    )  # the letter's language
    quoted = [line for line in lines if "civilité\u00a0«" in line or "«\u202fM" in line]
    assert len(quoted) == 3 and all("«" in line and "»" in line for line in quoted), lines

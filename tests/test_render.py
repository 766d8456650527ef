"""`campaign render` and `render_letters`: files, skipping unchanged letters, failures, print pack."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from campaign.errors import InputError
from campaign.inputs import Inputs, load_inputs
from campaign.pdf import letter_path, print_pack, render_letters
from campaign.settings import load_settings
from tests.conftest import FEW_RECIPIENTS, Run, write_few_recipients

CAMPAIGN = "hopitaux-2020-05"


def load(project: Path) -> Inputs:
    return load_inputs(load_settings(project / "settings.yaml").campaign(CAMPAIGN))


def short_letter(project: Path) -> None:
    """Make the hospital letter fit on one page."""
    (project / "letters" / "lettre-hopitaux.md").write_text(
        "---\nplace: Paris\ndate: 2020-05-07\nstylesheet: lettre.css\ntitle: Courte\n---\n"
        "{{ salutation(civilite, fonction) }}\n\nUne lettre courte[^n].\n\n[^n]: Sa note.\n",
        encoding="utf-8",
    )


def test_render_command_writes_one_private_pdf_per_recipient(few_project: Path, run: Run) -> None:
    result = run("render", CAMPAIGN, "--jobs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "3 rendered, 0 unchanged" in result.output
    folder = few_project / "outbox" / CAMPAIGN / "letters"
    pdfs = sorted(folder.glob("*.pdf"))
    assert [p.name for p in pdfs] == [
        "0002-elise-le-goff.pdf",
        "0003-noel-d-aubigne.pdf",
        "0004-camille-b-x-y.pdf",
    ]
    for pdf in pdfs:
        assert stat.S_IMODE(pdf.stat().st_mode) == 0o600
        assert pdf.read_bytes().startswith(b"%PDF-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    again = run("render", CAMPAIGN, "--quiet")
    assert "0 rendered, 3 unchanged" in again.output


def test_second_render_skips_unchanged_and_renders_a_changed_row(few_project: Path) -> None:
    first = render_letters(load(few_project), jobs=1)
    assert (len(first.rendered), first.skipped) == (3, 0)
    times = {p: p.stat().st_mtime_ns for p in first.rendered}

    rows = [dict(row) for row in FEW_RECIPIENTS]
    rows[1]["Ville"] = "MONTCLAIR"
    write_few_recipients(few_project, rows)
    second = render_letters(load(few_project), jobs=1)
    assert [p.name for p in second.rendered] == ["0003-noel-d-aubigne.pdf"]
    assert second.skipped == 2
    assert (
        "MONTCLAIR\r\n" in pdfium.PdfDocument(second.rendered[0])[0].get_textpage().get_text_range()
    )
    for path, mtime in times.items():
        if path not in second.rendered:
            assert path.stat().st_mtime_ns == mtime


def test_a_changed_letter_renders_every_letter_again(few_project: Path) -> None:
    render_letters(load(few_project), jobs=1)
    letter = few_project / "letters" / "lettre-hopitaux.md"
    letter.write_text(letter.read_text(encoding="utf-8") + "\nPost-scriptum.\n", encoding="utf-8")
    again = render_letters(load(few_project), jobs=1)
    assert (len(again.rendered), again.skipped) == (3, 0)


def test_a_removed_row_loses_its_pdf(few_project: Path) -> None:
    first = render_letters(load(few_project), jobs=1)
    write_few_recipients(few_project, FEW_RECIPIENTS[:2])
    second = render_letters(load(few_project), jobs=1)
    assert [p.name for p in second.removed] == ["0004-camille-b-x-y.pdf"]
    assert not first.rendered[2].exists()
    assert second.skipped == 2
    assert "0004" not in (first.folder / ".manifest.json").read_text(encoding="utf-8")


def test_a_failing_row_is_reported_and_leaves_no_file(few_project: Path) -> None:
    rows = [dict(row, Depuis="2019-03-01") for row in FEW_RECIPIENTS]
    rows[1]["Depuis"] = "un jour"
    write_few_recipients(few_project, rows)
    letter = few_project / "letters" / "lettre-hopitaux.md"
    letter.write_text(
        letter.read_text(encoding="utf-8") + "\nDepuis le {{ date_fr(depuis) }}.\n",
        encoding="utf-8",
    )
    inputs = load(few_project)
    report = render_letters(inputs, jobs=1)
    assert len(report.rendered) == 2
    [failure] = report.failures
    assert failure.place.row == 3
    assert "not a date" in failure.message
    failing = letter_path(inputs.campaign, inputs.recipients.recipients[1])
    assert not failing.exists()
    assert not list(report.folder.glob(".*.tmp"))
    assert (
        "1er\u00a0mars\u00a02019"
        in pdfium.PdfDocument(report.rendered[0])[1].get_textpage().get_text_range()
    )


def test_worker_processes_render_the_same_letters(few_project: Path) -> None:
    report = render_letters(load(few_project), jobs=2)
    assert report.jobs == 2
    assert len(report.rendered) == 3 and not report.failures
    for path in report.rendered:
        assert len(pdfium.PdfDocument(path)) == 2


def test_a_stopped_render_leaves_no_temporary_file_of_a_worker_cut_mid_write(
    few_project: Path,
) -> None:
    """A worker terminated by Ctrl-C while writing a PDF leaves `.NAME.pdf.XXXX.tmp`; the run
    removes such files when it ends, whichever letters it rendered (here: three, by name)."""
    inputs = load(few_project)
    first = inputs.recipients.ready[0]
    folder = letter_path(inputs.campaign, first).parent
    folder.mkdir(parents=True, exist_ok=True)
    cut = folder / f".{letter_path(inputs.campaign, first).name}.k3j9x2.tmp"
    cut.write_bytes(b"%PDF-1.7 cut")

    def stop(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_letters(inputs, inputs.recipients.ready[:3], jobs=2, progress=stop)
    assert not list(folder.glob(".*.tmp"))
    again = render_letters(load(few_project), jobs=1)
    assert not again.failures and len(again.rendered) + again.skipped == again.total


def test_render_refuses_while_check_finds_errors(few_project: Path, run: Run) -> None:
    letter = few_project / "letters" / "lettre-hopitaux.md"
    letter.write_text(letter.read_text(encoding="utf-8") + "\n{{ etablisement }}\n", "utf-8")
    result = run("render", CAMPAIGN, "--quiet")
    assert result.exit_code == 1
    assert "etablisement" in result.output
    assert not list((few_project / "outbox").glob("*/letters/*.pdf"))


def test_print_pack_starts_every_letter_on_a_right_hand_page(few_project: Path, run: Run) -> None:
    short_letter(few_project)
    result = run("render", CAMPAIGN, "--print", "--quiet", "--jobs", "1")
    assert result.exit_code == 0, result.output
    pack = few_project / "outbox" / CAMPAIGN / "print" / f"{CAMPAIGN}-impression.pdf"
    assert "print-ready PDF" in result.output
    document = pdfium.PdfDocument(pack)
    texts = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    assert len(texts) == 6
    assert "Élise Le Goff" in texts[0] and "Noël d’Aubigné" in texts[2]
    assert texts[1].strip() == "" and texts[3].strip() == "" and texts[5].strip() == ""
    from pypdf import PdfReader

    reader = PdfReader(pack)
    assert reader.metadata is not None and reader.metadata.title
    assert CAMPAIGN in reader.metadata.title and "impression" in reader.metadata.title
    # The letters' language, not the terminal's (English here): a French subject, /Lang fr.
    subject = " ".join(str(reader.metadata.subject).replace("\u202f", " ").split())
    assert subject == f"{CAMPAIGN} : toutes les lettres, chacune commençant sur une page de droite"
    assert reader.trailer["/Root"]["/Lang"] == "fr"
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert len(outline) == 3 and "Élise Le Goff" in outline[0]
    assert [reader.get_destination_page_number(i) for i in reader.outline] == [0, 2, 4]


def test_print_pack_refuses_letters_not_rendered(few_project: Path) -> None:
    with pytest.raises(InputError, match="not been rendered"):
        print_pack(load(few_project))


def test_workers_remove_the_font_files_of_font_face_rules(few_project: Path) -> None:
    import shutil
    import subprocess
    import tempfile

    if not shutil.which("fc-match"):
        pytest.skip("fontconfig's fc-match is not installed")
    font = subprocess.run(
        ["fc-match", "-f", "%{file}", "DejaVu Sans"], capture_output=True, text=True, check=True
    ).stdout
    css = few_project / "letters" / "lettre.css"
    css.write_text(
        f'@font-face {{ font-family: "Lettre"; src: url("file://{font}"); }}\n'
        'html {{ font-family: "Lettre", serif; }}\n'.replace("{{", "{").replace("}}", "}")
        + css.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    temp = Path(tempfile.gettempdir())
    before = set(temp.glob("weasyprint-*"))
    report = render_letters(load(few_project), jobs=2)
    assert len(report.rendered) == 3 and not report.failures
    assert set(temp.glob("weasyprint-*")) <= before


def test_the_harfbuzz_subset_warning_matches_the_system(few_project: Path) -> None:
    import ctypes.util

    from campaign.typeset import HARFBUZZ_WARNING, harfbuzz_subset_available

    installed = ctypes.util.find_library("harfbuzz-subset") is not None
    assert harfbuzz_subset_available() == installed
    first = render_letters(load(few_project), jobs=1)
    assert first.warnings == ([] if installed else [HARFBUZZ_WARNING])  # English: LANG=C
    assert render_letters(load(few_project), jobs=1).warnings == []  # nothing rendered: no warning


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_ctrl_c_stops_render_at_once_and_the_next_run_finishes(project: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    settings = str(project / "settings.yaml")
    command = [str(Path(sys.executable).parent / "campaign"), "--settings", settings]
    child = subprocess.Popen(
        [*command, "render", CAMPAIGN, "--quiet", "--jobs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a shell without job control starts background commands with Ctrl-C ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    folder = project / "outbox" / CAMPAIGN / "letters"
    deadline = time.monotonic() + 60
    while len(list(folder.glob("*.pdf"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    output = child.communicate(timeout=20)[0]
    assert child.returncode == 130, output
    assert "Traceback" not in output
    assert not _processes_mentioning(settings)  # no worker left behind
    assert not list(folder.glob(".*.tmp"))
    written = len(list(folder.glob("*.pdf")))
    assert written < 40
    # The organiser is told how far it got and that the next run goes on from there (a worker
    # may have finished a letter the parent had not yet counted: it is rendered again then).
    said = re.search(
        r"interrupted: (\d+) letters? of 40 written, and kept; campaign render (\S+)", output
    )
    assert said is not None, output
    kept = json.loads((folder / ".manifest.json").read_text(encoding="utf-8"))["letters"]
    assert int(said[1]) == len(kept) <= written and said[2] == CAMPAIGN
    done = subprocess.run(
        [*command, "render", CAMPAIGN, "--quiet"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(folder.glob("*.pdf"))) == len(load(project).recipients.ready)

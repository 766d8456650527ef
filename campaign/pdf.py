"""Merged letters → PDF files (WeasyPrint), in worker processes, skipping letters that did not change.

`render_letters` takes a campaign's loaded `Inputs` and gives one PDF per ready recipient under
`outbox/<campaign>/letters/`, as `letter_path` names it. A manifest of input hashes beside the PDFs
lets a second run render only the letters whose inputs changed and delete those of vanished rows.
Each worker process parses the stylesheet once and keeps one `FontConfiguration` (a new one per
letter makes memory grow without bound). Files are written atomically and privately: a failing row
is reported with its row number and leaves no file behind. `render_pdf` renders one letter in
process; `print_pack` binds all letters into one print-ready PDF.
"""

from __future__ import annotations

import atexit
import hashlib
import html
import io
import json
import multiprocessing
import os
import re
import resource
import signal
import time
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.errors import CampaignError, InputError, Place, Problem
from campaign.inputs import Inputs
from campaign.outbox import private_dir, write_private
from campaign.recipients import Recipient, Status
from campaign.settings import Campaign
from campaign.typography import french

# Bump when the HTML this module builds (or the typography it applies) changes, so that every
# letter is rendered again and approvals name the change.
LAYOUT_VERSION = "2"

# The window of a French DL envelope, in mm from the sheet's top-left corner; `lettre.css` puts
# the address block inside it.
WINDOW_MM = (100.0, 40.0, 200.0, 85.0)  # left, top, right, bottom

# Used when the letter's front matter names no stylesheet: the bare essentials of `lettre.css`.
DEFAULT_CSS = """
@page { size: A4; margin: 20mm 20mm 25mm 25mm;
  @bottom-right { content: counter(page) "/" counter(pages); font-size: 8.5pt; }
  @footnote { padding-bottom: 0.01mm; } }
html { font-family: "DejaVu Serif", serif; font-size: 10.5pt; hyphens: auto; }
.letterhead { height: 25mm; margin: 0; } .letterhead p { margin: 0; }
.recipient { display: block; margin-left: 85mm; height: 35mm; font-style: normal; }
.place-date, .signature { margin-left: 85mm; } .signature { white-space: pre-line; }
.subject { font-weight: bold; } .letter-body p { text-align: justify; }
.footnote { float: footnote; font-size: 8.5pt; }
"""

Progress = Callable[[int, int], None]


@dataclass
class RenderReport:
    """What `render_letters` did: letters rendered, skipped, removed, failed, and where."""

    campaign: str
    folder: Path
    total: int = 0
    rendered: list[Path] = field(default_factory=list)
    skipped: int = 0
    removed: list[Path] = field(default_factory=list)
    failures: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    jobs: int = 1
    worker_rss_mib: list[float] = field(default_factory=list)  # each worker's peak, per letter

    @property
    def files(self) -> int:
        return self.total - len(self.failures)


def ascii_slug(text: str, *, limit: int = 48) -> str:
    """`Élise d’Aubigné` → `elise-d-aubigne`: lower-case ASCII letters, digits and dashes."""
    text = text.replace("’", " ").replace("'", " ")
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-")
    return slug[:limit].rstrip("-") or "lettre"


def letter_path(campaign: Campaign, recipient: Recipient) -> Path:
    """Where a recipient's letter is: `outbox/<campaign>/letters/<row>-<name>.pdf`, stable."""
    variables = recipient.variables
    name = " ".join(
        variables.get(key, "") for key in ("prenom", "nom") if variables.get(key)
    ) or variables.get("etablissement", "")
    if not name.strip():
        name = recipient.email.partition("@")[0]
    return campaign.layout.letters / f"{recipient.row:04d}-{ascii_slug(name)}.pdf"


def stylesheet_path(inputs: Inputs) -> Path | None:
    """The letter's stylesheet (front matter `stylesheet`, relative to the letter's folder)."""
    letter = inputs.letter
    if letter is None or not letter.front.get("stylesheet"):
        return None
    path = letter.path.parent / str(letter.front["stylesheet"])
    if not path.is_file():
        raise InputError(
            f"stylesheet {letter.front['stylesheet']} not found",
            place=Place(file=letter.display, key="stylesheet"),
            hint=f"the path is relative to the letter's folder: {letter.path.parent}",
        )
    return path


def address_lines(recipient: Recipient, fields: Mapping[str, str]) -> list[str]:
    """The address block: front matter `address` if given, else built from the usual columns."""
    if fields.get("address"):
        return [line.strip() for line in str(fields["address"]).splitlines() if line.strip()]
    get = recipient.variables.get
    lines = [" ".join(v for v in (get("civilite"), get("prenom"), get("nom")) if v)]
    lines += [get("fonction") or "", get("etablissement") or ""]
    lines += (get("adresse") or "").splitlines()
    lines.append(" ".join(v for v in (get("code_postal"), get("ville")) if v))
    return [line.strip() for line in lines if line and line.strip()]


def letter_html(inputs: Inputs, recipient: Recipient) -> str:
    """The whole HTML document of one recipient's letter (raises `TemplateError`)."""
    letter = inputs.letter
    merged = inputs.merged(recipient).letter
    if letter is None or merged is None:
        raise InputError("the campaign has no letter", place=Place(key="letter"))
    fields = merged.fields
    sender = inputs.campaign.settings.sender
    subject = french(inputs.subject_for(recipient))
    title = fields.get("title") or subject or letter.path.stem
    esc = html.escape
    address = "<br>".join(esc(line) for line in address_lines(recipient, fields))
    place = esc(fields["place"] + ", le " if fields.get("place") else "") + esc(fields["date"])
    contact = " · ".join(esc(a) for a in (sender.email, sender.reply_to) if a)
    signature = esc(fields.get("signature", sender.name))
    subject_html = (
        f'<p class="subject"><span class="label">Objet\u202f:</span> {esc(subject)}</p>'
        if subject
        else ""
    )
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title>"
        f'<meta name="author" content="{esc(sender.name)}">'
        f'<meta name="description" content="{esc(subject)}">'
        f'<meta name="generator" content="campaign">'
        "</head><body>"
        f'<header class="letterhead"><p class="sender-name">{esc(sender.name)}</p>'
        f'<p class="sender-contact">{contact}</p></header>'
        f'<address class="recipient">{address}</address>'
        f'<p class="place-date">{place}</p>'
        f"{subject_html}"
        f'<main class="letter-body">{merged.pdf_html}</main>'
        f'<div class="signature">{signature}</div>'
        "</body></html>"
    )


def harfbuzz_subset_available() -> bool:
    """Whether WeasyPrint found libharfbuzz-subset (7× faster font subsetting than fontTools)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from weasyprint.pdf import fonts

    return fonts.harfbuzz_subset is not None


HARFBUZZ_WARNING = (
    "libharfbuzz-subset is not installed: fonts are subset with fontTools, about 3× slower "
    "(Debian/Ubuntu: apt-get install libharfbuzz-subset0; macOS: brew install harfbuzz)"
)


class Renderer:
    """Turns recipients into PDF bytes, reusing one parsed stylesheet and one FontConfiguration."""

    def __init__(self, inputs: Inputs) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import CSS
            from weasyprint.text.fonts import FontConfiguration

        self.inputs = inputs
        self.fonts = FontConfiguration()
        css_path = stylesheet_path(inputs)
        self.stylesheet = (
            CSS(filename=str(css_path), font_config=self.fonts)
            if css_path
            else CSS(string=DEFAULT_CSS, font_config=self.fonts)
        )
        letter = inputs.letter
        self.base_url = str(letter.path.parent) + os.sep if letter else None
        # Images (the letterhead logo) are fetched and parsed once, not once per letter.
        self.image_cache: dict[str, Any] = {}

    def render(self, recipient: Recipient) -> bytes:
        """The PDF of one recipient's letter."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import HTML

        document = HTML(string=letter_html(self.inputs, recipient), base_url=self.base_url)
        options: dict[str, Any] = {"cache": self.image_cache}
        variant = self.inputs.campaign.config.pdf_variant
        if variant:
            options["pdf_variant"] = variant
        pdf: bytes = document.write_pdf(
            stylesheets=[self.stylesheet], font_config=self.fonts, **options
        )
        return pdf

    def close(self) -> None:
        """Remove the font files WeasyPrint copied for `@font-face` rules."""
        folder = getattr(self.fonts, "_folder", None)
        if folder:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            self.fonts._folder = None


def render_pdf(inputs: Inputs, recipient: Recipient) -> bytes:
    """Render one recipient's letter in this process and return the PDF."""
    renderer = _renderer_for(inputs)
    return renderer.render(recipient)


_LOCAL: dict[str, Any] = {}


def _renderer_for(inputs: Inputs) -> Renderer:
    """One renderer per `Inputs` object in this process (stylesheet and fonts parsed once)."""
    if _LOCAL.get("inputs") is not inputs:
        previous = _LOCAL.get("renderer")
        if previous is not None:
            previous.close()
        renderer = Renderer(inputs)
        atexit.register(renderer.close)
        _LOCAL.update(inputs=inputs, renderer=renderer)
    renderer = _LOCAL["renderer"]
    assert isinstance(renderer, Renderer)
    return renderer


def input_fingerprint(inputs: Inputs) -> str:
    """A hash of everything all letters share: every file the letter depends on, sender, layout.

    The files are those of `campaign.depends` (the walk the approval fingerprint uses too), so a
    change the reviewers are shown is a change that renders the letters again.
    """
    digest = hashlib.sha256()
    campaign = inputs.campaign
    parts: list[object] = [
        LAYOUT_VERSION,
        _weasyprint_version(),
        campaign.settings.sender.model_dump(mode="json"),
        campaign.config.pdf_variant,
        campaign.config.subject,
        [(d.kind, d.shown, d.digest) for d in inputs.dependencies if d.letter],
    ]
    letter = inputs.letter
    if letter is not None:
        stylesheet_path(inputs)  # a missing stylesheet is an error, not a letter without one
        if letter.front.get("date") is None:
            parts.append(time.strftime("%Y-%m-%d"))  # undated letters carry today's date
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _weasyprint_version() -> str:
    from importlib.metadata import version

    return version("weasyprint")


def recipient_hash(fingerprint: str, recipient: Recipient) -> str:
    """The hash of one letter's inputs: the shared fingerprint and the row's values."""
    data = json.dumps([recipient.row, recipient.email, dict(recipient.values)], sort_keys=True)
    return hashlib.sha256(f"{fingerprint}\n{data}".encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    """The size and SHA-256 of a written PDF, so a damaged or half-written file is made again."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"


def _read_manifest(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    letters = data.get("letters") if isinstance(data, dict) else None
    return letters if isinstance(letters, dict) else {}


def _write_manifest(path: Path, letters: dict[str, dict[str, str]]) -> None:
    payload = json.dumps({"version": 1, "letters": letters}, indent=1, sort_keys=True)
    write_private(path, payload)


# State of a worker process: set before the pool forks, or loaded by the initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(campaign: Campaign | None) -> None:
    from multiprocessing import util

    if campaign is not None:  # a spawned process: load the inputs again
        from campaign.inputs import load_inputs

        _WORKER["inputs"] = load_inputs(campaign)
    inputs: Inputs = _WORKER["inputs"]
    _WORKER["rows"] = {r.row: r for r in inputs.recipients.recipients}
    renderer = Renderer(inputs)
    _WORKER["renderer"] = renderer
    # Pool workers leave through os._exit: atexit would not run, multiprocessing finalizers do.
    util.Finalize(None, renderer.close, exitpriority=10)
    # Ctrl-C is the parent's to handle; when it stops the pool (SIGTERM), clean up first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(signum: int, frame: object) -> None:
        renderer.close()
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@dataclass(frozen=True)
class _Outcome:
    row: int
    path: Path
    problem: Problem | None
    rss_mib: float


def _render_one(renderer: Renderer, recipient: Recipient, path: Path, shown: str) -> _Outcome:
    """Render one letter and write it; a failure becomes a `Problem` naming the row."""
    problem = None
    try:
        write_private(path, renderer.render(recipient))
    except CampaignError as err:
        where = f" (in {err.place})" if str(err.place) else ""
        problem = Problem.error(
            f"{err.message}{where}", Place(file=shown, row=recipient.row), err.hint
        )
    except Exception as err:  # WeasyPrint or an image: report the row, go on with the others
        problem = Problem.error(
            f"the PDF could not be made: {type(err).__name__}: {err}",
            Place(file=shown, row=recipient.row),
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return _Outcome(recipient.row, path, problem, rss)


def _worker_task(task: tuple[int, str, str]) -> _Outcome:
    row, path, shown = task
    return _render_one(_WORKER["renderer"], _WORKER["rows"][row], Path(path), shown)


def render_letters(
    inputs: Inputs,
    recipients: Iterable[Recipient] | None = None,
    *,
    jobs: int | None = None,
    progress: Progress | None = None,
) -> RenderReport:
    """Render the PDFs of `recipients` (default: every ready one) that are missing or stale.

    With the default recipients, PDFs of rows that are no longer ready are deleted.
    """
    started = time.perf_counter()
    campaign = inputs.campaign
    folder = private_dir(campaign.layout.letters)
    report = RenderReport(campaign=campaign.name, folder=folder)
    everyone = recipients is None
    chosen = [
        r
        for r in (inputs.recipients.recipients if recipients is None else recipients)
        if r.status is Status.READY
    ]
    report.total = len(chosen)
    fingerprint = input_fingerprint(inputs)
    manifest = _read_manifest(campaign.layout.manifest)
    shown = campaign.settings.display(campaign.config.recipients)

    todo: list[tuple[Recipient, Path, str]] = []
    for recipient in chosen:
        path = letter_path(campaign, recipient)
        digest = recipient_hash(fingerprint, recipient)
        entry = manifest.get(str(recipient.row))
        if (
            entry
            and entry.get("hash") == digest
            and entry.get("file") == path.name
            and entry.get("pdf") == _file_digest(path)
        ):
            report.skipped += 1
        else:
            manifest.pop(str(recipient.row), None)
            todo.append((recipient, path, digest))

    if everyone:
        keep = {letter_path(campaign, r).name for r in chosen}
        for stale in sorted(folder.glob("*.pdf")):
            if stale.name not in keep:
                stale.unlink()
                report.removed.append(stale)
        for leftover in folder.glob(".*.tmp"):  # from a run that was killed mid-write
            leftover.unlink(missing_ok=True)
        manifest = {row: e for row, e in manifest.items() if e.get("file") in keep}

    if todo and not harfbuzz_subset_available():
        report.warnings.append(HARFBUZZ_WARNING)
    digests = {r.row: d for r, _, d in todo}
    done = 0
    total = len(todo)
    if progress:
        progress(0, total)
    try:
        for outcome in _run(inputs, [(r, p) for r, p, _ in todo], jobs, shown, report):
            done += 1
            report.worker_rss_mib.append(outcome.rss_mib)
            if outcome.problem is None:
                report.rendered.append(outcome.path)
                manifest[str(outcome.row)] = {
                    "file": outcome.path.name,
                    "hash": digests[outcome.row],
                    "pdf": _file_digest(outcome.path) or "",
                }
            else:
                report.failures.append(outcome.problem)
                manifest.pop(str(outcome.row), None)
            if progress:
                progress(done, total)
    finally:
        _write_manifest(campaign.layout.manifest, manifest)
    report.failures.sort(key=lambda p: p.place.row or 0)
    report.rendered.sort()
    report.seconds = time.perf_counter() - started
    return report


def _run(
    inputs: Inputs,
    todo: list[tuple[Recipient, Path]],
    jobs: int | None,
    shown: str,
    report: RenderReport,
) -> Iterator[_Outcome]:
    """Render in this process (one job or one letter) or in a pool of worker processes."""
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    report.jobs = jobs
    if not todo:
        return
    if jobs == 1:
        renderer = _renderer_for(inputs)
        for recipient, path in todo:
            yield _render_one(renderer, recipient, path, shown)
        return
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods else "spawn"
    _WORKER["inputs"] = inputs
    context = multiprocessing.get_context(method)
    tasks = [(r.row, str(p), shown) for r, p in todo]
    chunk = max(1, min(4, len(tasks) // (jobs * 8)))  # small: even tails, a lively progress bar
    pool = context.Pool(
        jobs, initializer=_init_worker, initargs=(None if method == "fork" else inputs.campaign,)
    )
    try:
        yield from pool.imap_unordered(_worker_task, tasks, chunksize=chunk)
        pool.close()
    except BaseException:  # Ctrl-C or a failure in the parent: stop the workers now
        pool.terminate()
        raise
    finally:
        pool.join()
        _WORKER.clear()


class ApprovedLetters:
    """The PDFs `send` attaches, each checked against the inputs it must have been rendered from.

    Before a PDF is attached, its manifest entry must name the input hash computed now (the
    inputs the reviewers approved) and the exact bytes on disk; otherwise that letter is rendered
    again first. A PDF left stale by a missed change, edited or damaged on disk is never sent.
    """

    def __init__(self, inputs: Inputs, recipients: list[Recipient]) -> None:
        self.inputs = inputs
        self.fingerprint = input_fingerprint(inputs)
        self.rerendered = 0
        self._ensure(recipients)

    def _ensure(self, recipients: list[Recipient]) -> None:
        report = render_letters(self.inputs, recipients)
        if report.failures:
            first = report.failures[0]
            raise InputError(
                f"{len(report.failures)} letters could not be rendered; nothing was sent",
                place=first.place,
                hint=f"first: {first.message}; run campaign render to see every problem",
            )
        self._manifest = _read_manifest(self.inputs.campaign.layout.manifest)

    def pdf(self, recipient: Recipient) -> bytes:
        """The recipient's PDF, rendered from the current inputs (rendered again if it was not)."""
        path = letter_path(self.inputs.campaign, recipient)
        for attempt in range(2):
            entry = self._manifest.get(str(recipient.row), {})
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            if (
                entry.get("file") == path.name
                and entry.get("hash") == recipient_hash(self.fingerprint, recipient)
                and entry.get("pdf") == f"{len(data)}:{hashlib.sha256(data).hexdigest()}"
            ):
                return data
            if attempt == 0:
                self.rerendered += 1
                _drop_entry(self.inputs.campaign.layout.manifest, recipient.row)
                self._ensure([recipient])
        raise InputError(
            f"the letter of row {recipient.row} does not match what was rendered",
            place=Place(file=str(path)),
            hint="run campaign render, then send again",
        )


def _drop_entry(manifest: Path, row: int) -> None:
    letters = _read_manifest(manifest)
    if letters.pop(str(row), None) is not None:
        _write_manifest(manifest, letters)


def print_pack(inputs: Inputs, *, name: str | None = None) -> Path:
    """Bind every ready recipient's letter into one PDF, each letter starting on a right-hand page."""
    from pypdf import PdfReader, PdfWriter

    campaign = inputs.campaign
    writer = PdfWriter()
    a4 = (595.28, 841.89)
    for recipient in inputs.recipients.recipients:
        if recipient.status is not Status.READY:
            continue
        path = letter_path(campaign, recipient)
        if not path.exists():
            raise InputError(
                f"the letter of row {recipient.row} has not been rendered",
                place=Place(file=str(path)),
                hint="run campaign render first",
            )
        reader = PdfReader(path)
        first = len(writer.pages)
        writer.append(reader)
        # A bookmark per letter: the print shop (and a reviewer) finds row 14 without paging.
        who = inputs.to_name_for(recipient) or recipient.email
        writer.add_outline_item(title=f"{recipient.row}. {who}", page_number=first)
        if len(reader.pages) % 2:
            writer.add_blank_page(*a4)
    letter = inputs.letter
    title = str(letter.front.get("title") or letter.path.stem) if letter is not None else ""
    writer.add_metadata(
        {
            "/Title": f"{title or campaign.name} – impression ({campaign.name})",
            "/Author": campaign.settings.sender.name,
            "/Subject": f"{campaign.name}: every letter, each starting on a right-hand page",
            "/Creator": "campaign",
        }
    )
    writer.page_mode = "/UseOutlines"
    buffer = io.BytesIO()
    writer.write(buffer)
    target = campaign.layout.print / (name or f"{campaign.name}-impression.pdf")
    return write_private(target, buffer.getvalue())

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

import hashlib
import io
import json
import multiprocessing
import os
import re
import resource
import signal
import time
import unicodedata
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.errors import CampaignError, InputError, Place, Problem
from campaign.i18n import _, language_of, ngettext
from campaign.inputs import Inputs
from campaign.outbox import private_dir, write_private
from campaign.recipients import Recipient, Status
from campaign.settings import Campaign
from campaign.typeset import (
    HARFBUZZ_WARNING,
    LAYOUT_VERSION,
    TAG_BY_DEFAULT,
    Renderer,
    _renderer_for,
    harfbuzz_subset_available,
    stylesheet_path,
)

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
        campaign.settings.layout.model_dump(mode="json"),
        campaign.settings.typography.model_dump(mode="json"),
        TAG_BY_DEFAULT,
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

    if campaign is not None:  # a spawned process: load the inputs again, speak as the parent
        from campaign.i18n import use_language
        from campaign.inputs import load_inputs

        use_language(campaign.settings.language)
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
        message = err.message
        if str(err.place):
            message = _("{message} (in {where})").format(message=message, where=err.place)
        problem = Problem.error(message, Place(file=shown, row=recipient.row), err.hint)
    except Exception as err:  # WeasyPrint or an image: report the row, go on with the others
        problem = Problem.error(
            _("the PDF could not be made: {error}").format(error=f"{type(err).__name__}: {err}"),
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
        manifest = {row: e for row, e in manifest.items() if e.get("file") in keep}

    if todo and not harfbuzz_subset_available():
        report.warnings.append(_(HARFBUZZ_WARNING))
    digests = {r.row: d for r, _, d in todo}
    done = 0
    total = len(todo)
    if progress:
        progress(0, total)
    outcomes = _run(inputs, [(r, p) for r, p, _ in todo], jobs, shown, report)
    try:
        for outcome in outcomes:
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
        outcomes.close()  # a stop (Ctrl-C): the workers are terminated and reaped now
        _write_manifest(campaign.layout.manifest, manifest)
        # A worker terminated in the middle of writing a PDF (this run stopped, or an earlier one
        # killed) leaves its temporary file: the run holds the lock and its workers are gone, so
        # nothing else is writing one.
        for leftover in folder.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
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
) -> Generator[_Outcome, None, None]:
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
                ngettext(
                    "{n} letter could not be rendered; nothing was sent",
                    "{n} letters could not be rendered; nothing was sent",
                    len(report.failures),
                ).format(n=len(report.failures)),
                place=first.place,
                hint=_("first: {message}; run {command} to see every problem").format(
                    message=first.message, command="campaign render"
                ),
            )
        self._manifest = _read_manifest(self.inputs.campaign.layout.manifest)

    def pdf(self, recipient: Recipient, *, rerender: bool = True) -> bytes:
        """The recipient's PDF, rendered from the current inputs (rendered again if it was not).

        `rerender=False` (a compose worker, which must not write the outbox) raises instead.
        """
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
            if attempt == 0 and rerender:
                self.rerendered += 1
                _drop_entry(self.inputs.campaign.layout.manifest, recipient.row)
                self._ensure([recipient])
        raise InputError(
            _("the letter of row {row} does not match what was rendered").format(row=recipient.row),
            place=Place(file=str(path)),
            hint=_("run {command}, then send again").format(command="campaign render"),
        )


def _drop_entry(manifest: Path, row: int) -> None:
    letters = _read_manifest(manifest)
    if letters.pop(str(row), None) is not None:
        _write_manifest(manifest, letters)


def set_language(writer: Any, language: str) -> None:
    """Give a PDF that pypdf assembles its language (`/Lang`), as each letter has: a screen
    reader then reads French as French."""
    from pypdf.generic import NameObject, TextStringObject

    writer.root_object[NameObject("/Lang")] = TextStringObject(language)


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
                _("the letter of row {row} has not been rendered").format(row=recipient.row),
                place=Place(file=str(path)),
                hint=_("run {command} first").format(command="campaign render"),
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
    language = campaign.config.lang
    with language_of(language):  # the pack is the letters': in their language, not the terminal's
        title = _("{title} – print ({campaign})").format(
            title=title or campaign.name, campaign=campaign.name
        )
        subject = _("{campaign}: every letter, each starting on a right-hand page").format(
            campaign=campaign.name
        )
    writer.add_metadata(
        {
            "/Title": title,
            "/Author": campaign.settings.sender.name,
            "/Subject": subject,
            "/Creator": "campaign",
        }
    )
    set_language(writer, language)
    writer.page_mode = "/UseOutlines"
    buffer = io.BytesIO()
    writer.write(buffer)
    target = campaign.layout.print / (name or f"{campaign.name}-impression.pdf")
    return write_private(target, buffer.getvalue())

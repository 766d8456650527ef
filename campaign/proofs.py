"""Loaded inputs + a sample of recipients → the reviewers' proof pack in `outbox/<campaign>/proofs/`.

The pack is what a reviewer who has never used the tool reads before signing off:

    proofs.pdf     a cover page (campaign, date, recipients, the sample and why each row is in it,
                   the fingerprint), then the sample letters, every page stamped as a proof in the
                   left margin; for an email-only campaign, the sample emails instead of letters
    index.html     one self-contained page (no server, no network, relative links only): for each
                   sample recipient, PNG thumbnails of their letter linking to the full PDF, beside
                   the email exactly as it will be sent
    letters/, thumbs/   the sample recipients' PDF letters (as attached) and PNG thumbnails
    manifest.json  the fingerprint and rows the pack was built from

The pack is built in a fresh folder and swapped in at the end, so an interrupted run never leaves a
pack mixing two versions of the content.
"""

from __future__ import annotations

import html
import io
import json
import random
import re
import shutil
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from campaign.approval import Fingerprint, approval_state, compute_fingerprint
from campaign.errors import InputError, Place, TemplateError, UsageError
from campaign.inputs import Inputs
from campaign.outbox import private_dir, write_private
from campaign.recipients import Recipient, Status, variable_name
from campaign.settings import Campaign

STAMP = "ÉPREUVE — NE PAS ENVOYER"
FIRST_ROWS = 3
_EMAILS_PER_BATCH = 50
THUMBNAIL_SCALE = 0.6  # 72 dpi × 0.6: an A4 page becomes 357 × 505 pixels

# Columns recognised by their variable name, for choosing the extremes of the sample.
_NAME_COLUMNS = ("prenom", "nom", "first_name", "last_name", "name", "surname", "full_name")
_ORGANISATION_COLUMNS = (
    "etablissement", "organisation", "organization", "societe", "entreprise", "company",
    "institution", "structure", "employeur", "employer",
)  # fmt: skip
_ADDRESS_COLUMNS = (
    "adresse", "address", "complement", "code_postal", "postal_code", "cp", "zip", "ville",
    "city", "commune", "pays", "country",
)  # fmt: skip
_CIVILITY_COLUMNS = ("civilite", "civility", "titre", "title", "salutation", "genre", "gender")
_CIVILITIES_LISTED = 8

Progress = Callable[[int, int], None]


@dataclass
class SampleRow:
    """A recipient in the proof sample, and why it was chosen."""

    recipient: Recipient
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProofPack:
    """What `campaign proof` wrote."""

    folder: Path
    pdf: Path
    index: Path
    sample: list[SampleRow]
    fingerprint: Fingerprint
    pages: int


def parse_rows(text: str) -> list[int]:
    """Turn `2,7,19` or `4-9,12` into row numbers; anything else is a `UsageError`."""
    rows: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise UsageError(
                f"--rows: {part!r} is not a row number",
                hint="give spreadsheet row numbers, e.g. --rows 2,7,19 or --rows 4-9",
            )
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        rows += range(first, last + 1)
    if not rows:
        raise UsageError("--rows: no row number given", hint="e.g. --rows 2,7,19")
    return list(dict.fromkeys(rows))


def choose_sample(
    inputs: Inputs,
    *,
    rows: Sequence[int] | None = None,
    extra: int = 0,
    everyone: bool = False,
) -> list[SampleRow]:
    """Pick the rows to proof: the first rows and the extremes, or the rows asked for, or all.

    `extra` adds that many random rows (seeded by the campaign's name: the same every run).
    """
    ready = inputs.recipients.ready
    shown = inputs.campaign.settings.display(inputs.campaign.config.recipients)
    if not ready:
        raise InputError(
            "no recipient is ready, so there is nothing to proof",
            place=Place(file=shown),
            hint=f"run campaign check {inputs.campaign.name}",
        )
    chosen: dict[int, SampleRow] = {}

    def pick(recipient: Recipient, reason: str) -> None:
        chosen.setdefault(recipient.row, SampleRow(recipient)).reasons.append(reason)

    if everyone:
        for recipient in ready:
            pick(recipient, "every recipient (--all)")
    elif rows:
        by_row = {r.row: r for r in inputs.recipients.recipients}
        for number in rows:
            found = by_row.get(number)
            if found is None:
                first = min(by_row, default=2)
                last = max(by_row, default=2)
                raise UsageError(
                    f"row {number} is not a recipient row",
                    place=Place(file=shown, row=number),
                    hint=f"the recipients are on rows {first} to {last}",
                )
            if found.status is not Status.READY:
                raise UsageError(
                    f"row {number} is {found.status.value}, not ready to send",
                    place=Place(file=shown, row=number),
                    hint="proof rows that will be sent; campaign check lists what is wrong",
                )
            pick(found, "asked for (--rows)")
    else:
        for recipient in ready[:FIRST_ROWS]:
            pick(recipient, f"one of the first {FIRST_ROWS} rows")
        for recipient, reason in _extremes(inputs, ready):
            pick(recipient, reason)
    rest = [r for r in ready if r.row not in chosen]
    for recipient in random.Random(inputs.campaign.name).sample(rest, min(extra, len(rest))):
        pick(recipient, f"random pick (--sample {extra})")
    return sorted(chosen.values(), key=lambda s: s.recipient.row)


def _extremes(inputs: Inputs, ready: list[Recipient]) -> list[tuple[Recipient, str]]:
    """The rows most likely to break the layout, each with the reason it was chosen."""
    names = inputs.recipients.names  # variable → header
    found: list[tuple[Recipient, str]] = []

    def longest(label: str, measure: Callable[[Recipient], str]) -> None:
        lengths = [len(measure(r)) for r in ready]
        best = ready[lengths.index(max(lengths))]
        if max(lengths) > min(lengths):  # a value the same for everyone is no extreme
            found.append((best, f"longest {label} ({len(measure(best))} characters)"))

    if inputs.to_name is not None:
        longest("name", inputs.to_name_for)
    else:
        columns = [v for v in _NAME_COLUMNS if v in names]
        if columns:
            longest("name", lambda r: " ".join(r.variables[c] for c in columns))
    organisation = next((v for v in _ORGANISATION_COLUMNS if v in names), None)
    if organisation:
        longest(names[organisation].lower(), lambda r: r.variables[organisation])
    address = [v for v in names if v.startswith(_ADDRESS_COLUMNS)]
    if address:
        longest("address", lambda r: "\n".join(r.variables[c] for c in address))
    if inputs.subject is not None:
        longest("subject", inputs.subject_for)

    config = inputs.campaign.config
    fixed = {variable_name(c) for c in [*config.required_columns, config.email_column]}
    optional = [v for v in names if v not in fixed]
    if optional:

        def empties(r: Recipient) -> list[str]:
            return [names[v] for v in optional if not r.variables[v].strip()]

        emptiest = max(ready, key=lambda r: len(empties(r)))
        empty = empties(emptiest)
        if len(empty) == len(optional):
            found.append((emptiest, "every optional field empty"))
        elif empty:
            found.append(
                (emptiest, f"most optional fields empty ({len(empty)} of {len(optional)}: "
                 + ", ".join(empty) + ")")
            )  # fmt: skip

    civility = next((v for v in _CIVILITY_COLUMNS if v in names), None)
    if civility:
        first_of: dict[str, Recipient] = {}
        for r in ready:
            first_of.setdefault(r.variables[civility].strip(), r)
        header = names[civility]
        for value, r in list(first_of.items())[:_CIVILITIES_LISTED]:
            found.append(
                # No-break spaces: "civilité «" and "Madame »" never part at a line's end.
                (
                    r,
                    f"{header.lower()}\u00a0«\u202f{value}\u202f»"
                    if value
                    else f"{header.lower()} empty",
                )
            )
    return found


# --- building the pack --------------------------------------------------------------------------


@dataclass(frozen=True)
class _EmailView:
    headers: list[tuple[str, str]]
    attachments: list[tuple[str, str, int]]  # file name, content type, bytes
    html: str
    text: str
    size: int


@dataclass(frozen=True)
class _Proofed:
    sample: SampleRow
    stem: str
    pdf: bytes | None
    pages: int
    email: _EmailView


def build_proofs(
    inputs: Inputs, sample: list[SampleRow], *, progress: Progress | None = None
) -> ProofPack:
    """Write the proof pack for `sample` and return where it is."""
    campaign = inputs.campaign
    fingerprint = compute_fingerprint(inputs)
    final = campaign.layout.proofs
    work = final.with_name(f".{final.name}-new")
    old = final.with_name(f".{final.name}-old")
    shutil.rmtree(work, ignore_errors=True)
    try:
        pages = _write_pack(inputs, sample, fingerprint, work, progress)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # a failed run leaves the previous pack as it was
        raise
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return ProofPack(
        folder=final,
        pdf=final / "proofs.pdf",
        index=final / "index.html",
        sample=sample,
        fingerprint=fingerprint,
        pages=pages,
    )


def _write_pack(
    inputs: Inputs,
    sample: list[SampleRow],
    fingerprint: Fingerprint,
    work: Path,
    progress: Progress | None,
) -> int:
    """Write every file of the pack into `work`; return the number of pages of proofs.pdf."""
    from campaign.compose import compose_message, load_attachments, with_recipient_attachments

    campaign = inputs.campaign
    attachments = load_attachments(inputs)
    private_dir(work)
    proofed: list[_Proofed] = []
    stems: set[str] = set()
    for done, item in enumerate(sample):
        recipient = item.recipient
        stem = _stem(recipient, inputs.to_name_for(recipient), stems)
        try:
            pdf = _letter_pdf(inputs, recipient) if campaign.config.attach_pdf else None
            own = with_recipient_attachments(inputs, recipient, attachments)
            message = compose_message(inputs, recipient, pdf=pdf, attachments=own)
        except TemplateError as err:
            raise TemplateError(
                f"{err.message} (merging spreadsheet row {recipient.row})",
                place=err.place,
                hint=err.hint,
            ) from None
        pages = 0
        if pdf is not None:
            write_private(work / "letters" / f"{stem}.pdf", pdf)
            pages = _thumbnails(pdf, work / "thumbs", stem)
        proofed.append(_Proofed(item, stem, pdf, pages, _view(message)))
        if progress:
            progress(done + 1, len(sample))

    now = datetime.now().astimezone()
    document, pages = _proofs_pdf(
        inputs, proofed, fingerprint, now, approval_state(inputs).summary()
    )
    write_private(work / "proofs.pdf", document)
    write_private(work / "index.html", _index_html(inputs, proofed, fingerprint, now))
    manifest = {
        "campaign": campaign.name,
        "fingerprint": fingerprint.digest,
        "created": now.isoformat(timespec="seconds"),
        "rows": [p.sample.recipient.row for p in proofed],
    }
    write_private(
        work / campaign.layout.proofs_manifest.name, json.dumps(manifest, indent=2) + "\n"
    )
    return pages


def proofed_fingerprint(campaign: Campaign) -> str | None:
    """The fingerprint the current proof pack was built from; None when none can be read."""
    path = campaign.layout.proofs_manifest
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or damaged: the pack must be made again anyway
        return None
    value = data.get("fingerprint") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _letter_pdf(inputs: Inputs, recipient: Recipient) -> bytes:
    from campaign.typeset import render_pdf

    return render_pdf(inputs, recipient)


def _stem(recipient: Recipient, name: str, taken: set[str]) -> str:
    """An ASCII file name stem for a sample row: `row-004-elise-le-goff`."""
    text = unicodedata.normalize("NFKD", name or recipient.email.partition("@")[0])
    slug = re.sub(r"[^a-z0-9]+", "-", text.encode("ascii", "ignore").decode().lower()).strip("-")
    stem = f"row-{recipient.row:03d}" + (f"-{slug[:40].strip('-')}" if slug else "")
    while stem in taken:
        stem += "-x"
    taken.add(stem)
    return stem


def _thumbnails(pdf: bytes, folder: Path, stem: str) -> int:
    """Write a PNG of each page of `pdf`; return the number of pages."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        for index in range(len(document)):
            page = document[index]
            image = page.render(scale=THUMBNAIL_SCALE).to_pil()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=True)
            write_private(folder / f"{stem}-p{index + 1}.png", buffer.getvalue())
            page.close()
        return len(document)
    finally:
        document.close()


def _view(message: EmailMessage) -> _EmailView:
    """The parts of a composed email a reviewer must see."""
    headers = [
        (name, str(message[name]))
        for name in ("From", "To", "Reply-To", "Subject", "List-Unsubscribe")
        if message[name] is not None
    ]
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    attachments = []
    for part in message.iter_attachments():
        if isinstance(part, EmailMessage):
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            attachments.append((part.get_filename() or "(no name)", part.get_content_type(), size))
    return _EmailView(
        headers=headers,
        attachments=attachments,
        html=str(html_part.get_content()) if isinstance(html_part, EmailMessage) else "",
        text=str(text_part.get_content()) if isinstance(text_part, EmailMessage) else "",
        size=len(message.as_bytes()),
    )


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KB ({n:,} bytes)".replace(",", " ")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


# --- proofs.pdf ---------------------------------------------------------------------------------

_COVER_CSS = """
@page { size: A4; margin: 20mm 18mm 20mm 24mm; }
body { font-family: "DejaVu Sans", "Liberation Sans", sans-serif; font-size: 9.5pt; color: #111; }
h1 { font-size: 17pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 6mm 0 2mm; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 0.3pt solid #999; padding: 1.2mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eee; } .sample td:first-child { width: 9mm; } .sample td:nth-child(2) { width: 70mm; } .fp { font-family: "DejaVu Sans Mono", monospace; font-size: 8.5pt; }
dt { font-weight: bold; float: left; width: 42mm; } dd { margin: 0 0 1mm 44mm; }
.email + .email { break-before: page; } .headers td:first-child { width: 26mm; font-weight: bold; }
.body { border: 0.4pt solid #999; padding: 4mm; margin-top: 3mm; }
.command { font-family: "DejaVu Sans Mono", monospace; white-space: nowrap; }
"""


def _proofs_pdf(
    inputs: Inputs, proofed: list[_Proofed], fingerprint: Fingerprint, now: datetime, status: str
) -> tuple[bytes, int]:
    """The cover, then the letters (or emails), each page stamped; returns bytes and page count."""
    from pypdf import PdfReader, PdfWriter
    from weasyprint import HTML

    campaign = inputs.campaign
    recipients = inputs.recipients
    rows = "".join(
        f"<tr><td>{p.sample.recipient.row}</td><td>{_e(inputs.to_name_for(p.sample.recipient))}"
        f"<br>{_e(p.sample.recipient.email)}</td><td>{_e('; '.join(p.sample.reasons))}</td>"
        f"<td>{p.pages or ''}</td></tr>"
        for p in proofed
    )
    letter = campaign.config.letter.as_posix()
    cover = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>Proofs: {_e(campaign.name)}</title><style>{_COVER_CSS}</style></head><body>
<h1>Proofs: {_e(campaign.name)}</h1>
<dl><dt>Made on</dt><dd>{now:%Y-%m-%d %H:%M}</dd>
<dt>Letter</dt><dd>{_e(letter)}</dd>
<dt>Recipients</dt><dd>{len(recipients.ready)} ready to send (of {len(recipients.recipients)} rows;
{recipients.count(Status.SUPPRESSED)} suppressed, {recipients.count(Status.INVALID)} invalid)</dd>
<dt>What is sent</dt><dd>{
        "an email with the PDF letter attached"
        if campaign.config.attach_pdf
        else "an email only (no PDF letter)"
    }</dd>
<dt>Approval</dt><dd>{_e(status)}</dd>
<dt>Fingerprint</dt><dd class="fp">{fingerprint.digest}</dd></dl>
<h2>The sample: {len(proofed)} recipient{"s" if len(proofed) != 1 else ""}</h2>
<table class="sample"><tr><th>Row</th><th>Recipient</th><th>Why this row</th><th>Pages</th></tr>{
        rows
    }</table>
<p>Every page of this file is stamped «\u202f{STAMP}\u202f». The letters follow in the order of the
table. To approve exactly this content:
<b class="command">campaign approve {_e(campaign.name)} --by NAME</b>.
Any change to the letter, the stylesheet, the subject, the sender, the attachments or a recipient's
data after that must be approved again before sending.</p>
</body></html>"""
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(bytes(HTML(string=cover).write_pdf()))))
    for p in proofed:
        if p.pdf is not None:
            writer.append(PdfReader(io.BytesIO(p.pdf)))
    if not campaign.config.attach_pdf:
        # In batches, so that memory does not grow with --all on a long list.
        for start in range(0, len(proofed), _EMAILS_PER_BATCH):
            batch = _emails_html(proofed[start : start + _EMAILS_PER_BATCH])
            writer.append(PdfReader(io.BytesIO(bytes(HTML(string=batch).write_pdf()))))
    stamp = PdfReader(io.BytesIO(_stamp_pdf())).pages[0]
    for page in writer.pages:
        page.merge_page(stamp, over=True)
    writer.compress_identical_objects()  # one copy of the stamp's font
    writer.add_metadata({"/Title": f"Proofs: {campaign.name}", "/Subject": STAMP})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue(), len(writer.pages)


def _emails_html(proofed: list[_Proofed]) -> str:
    """The emails of an email-only campaign, one after the other, for proofs.pdf."""
    sections = "".join(
        f'<section class="email"><h2>Row {p.sample.recipient.row}: the email</h2>'
        f'<table class="headers">{_header_rows(p.email)}</table>'
        f'<div class="body">{_html_body(p.email.html)}</div></section>'
        for p in proofed
    )
    return (
        f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><style>{_COVER_CSS}'
        f"</style></head><body>{sections}</body></html>"
    )


def _stamp_pdf() -> bytes:
    """One transparent A4 page with the stamp written up the left margin."""
    from weasyprint import HTML

    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
@page {{ size: 210mm 297mm; margin: 0; }}
html, body {{ margin: 0; background: transparent; }}
div {{ position: absolute; left: 3mm; top: 288mm; width: 279mm; height: 6mm;
  transform-origin: 0 0; transform: rotate(-90deg); text-align: center;
  font: bold 10pt "DejaVu Sans", sans-serif; letter-spacing: 1.5pt; color: #c0392b; }}
</style></head><body><div>{STAMP} · {STAMP}</div></body></html>"""
    return bytes(HTML(string=page).write_pdf())


def _header_rows(view: _EmailView) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(value)}</td></tr>" for name, value in view.headers
    )
    for name, kind, size in view.attachments:
        rows += f"<tr><td>Attachment</td><td>{_e(name)} ({_e(kind)}, {_size(size)})</td></tr>"
    return rows


def _html_body(document: str) -> str:
    match = re.search(r"<body[^>]*>(.*)</body>", document, re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else document


# --- index.html ---------------------------------------------------------------------------------

_INDEX_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1rem 2rem;
  color: #111; background: #fafafa; }
.command { white-space: nowrap; }
header { border-bottom: 2px solid #c0392b; margin-bottom: 1rem; } .stamp { color: #c0392b; font-weight: bold; }
code { font-size: .85em; word-break: break-all; }
section.recipient { background: #fff; border: 1px solid #ccc; border-radius: 6px; padding: 1rem;
  margin: 1.5rem 0; }
.reasons { color: #555; margin-top: -.5rem; } .columns { display: flex; gap: 1.5rem; align-items: flex-start; }
.pages { flex: 0 0 auto; display: flex; flex-direction: column; gap: .5rem; }
.pages img { width: 180px; border: 1px solid #999; box-shadow: 2px 2px 4px #ccc; display: block; }
.email { flex: 1 1 auto; min-width: 0; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .2rem .5rem; border-bottom: 1px solid #eee; }
th { width: 8rem; color: #555; } iframe { width: 100%; height: 32rem; border: 1px solid #999; background: #fff; }
pre { white-space: pre-wrap; background: #f4f4f4; border: 1px solid #ddd; padding: .75rem; }
"""
# Nothing on the page may load anything from outside the pack, not even the email's HTML.
_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-src 'self'"


def _index_html(
    inputs: Inputs, proofed: list[_Proofed], fingerprint: Fingerprint, now: datetime
) -> str:
    """The self-contained page: thumbnails beside each email as it will be sent."""
    campaign = inputs.campaign
    sections = []
    for p in proofed:
        r = p.sample.recipient
        pdf_link = f"letters/{p.stem}.pdf"
        pages = "".join(
            f'<a href="{pdf_link}"><img src="thumbs/{p.stem}-p{n}.png" '
            f'alt="row {r.row}, page {n} of {p.pages}"></a>'
            for n in range(1, p.pages + 1)
        )
        column = (
            f'<div class="pages">{pages}<a href="{pdf_link}">Open the PDF</a></div>'
            if pages
            else ""
        )
        attachments = "".join(
            f"<li>{_e(name)}: {_e(kind)}, {_size(size)}"
            + (
                f' (<a href="{pdf_link}">open</a>)'
                if kind == "application/pdf" and p.pdf and i == 0
                else ""
            )
            + "</li>"
            for i, (name, kind, size) in enumerate(p.email.attachments)
        )
        headers = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in p.email.headers)
        sections.append(
            f'<section class="recipient" id="row-{r.row}">'
            f"<h2>Row {r.row}: {_e(inputs.to_name_for(r) or r.email)}</h2>"
            f'<p class="reasons">{_e("; ".join(p.sample.reasons))}</p>'
            f'<div class="columns">{column}<div class="email"><table>{headers}'
            f"<tr><th>Attachments</th><td><ul>{attachments or '<li>none</li>'}</ul></td></tr>"
            f"<tr><th>Size</th><td>{_size(p.email.size)} as sent</td></tr></table>"
            f"<h3>HTML part</h3>"
            f'<iframe sandbox="" title="HTML part, row {r.row}" srcdoc="{_e(p.email.html)}"></iframe>'
            f"<h3>Plain-text part</h3><pre>{_e(p.email.text)}</pre></div></div></section>"
        )
    toc = "".join(
        f'<li><a href="#row-{p.sample.recipient.row}">Row {p.sample.recipient.row}</a>: '
        f"{_e(inputs.to_name_for(p.sample.recipient))} · {_e('; '.join(p.sample.reasons))}</li>"
        for p in proofed
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Proofs: {_e(campaign.name)}</title><style>{_INDEX_CSS}</style></head><body>
<header><h1>Proofs: {_e(campaign.name)} <span class="stamp">{STAMP}</span></h1>
<p>Made on {now:%Y-%m-%d %H:%M}. {len(inputs.recipients.ready)} recipients ready to send;
{len(proofed)} shown here. Every letter of the sample, stamped, is in
<a href="proofs.pdf">proofs.pdf</a>. Fingerprint of this content: <code>{fingerprint.digest}</code></p>
<p>To approve exactly this content: <code class="command">campaign approve {_e(campaign.name)} --by NAME</code></p>
<ul>{toc}</ul></header>
{"".join(sections)}
</body></html>
"""

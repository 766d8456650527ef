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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from campaign.approval import Fingerprint, approval_state, compute_fingerprint
from campaign.errors import InputError, Place, TemplateError, UsageError
from campaign.i18n import Said, _, again, either, language_of, listed, ngettext, number, quoted
from campaign.inputs import Inputs
from campaign.outbox import private_dir, write_private
from campaign.recipients import Recipient, Status, variable_name
from campaign.settings import Campaign

STAMP = "ÉPREUVE — NE PAS ENVOYER"  # the stamp of a French letter's proofs (see _stamp_text)
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
                _("{option}: {value} is not a row number").format(
                    option="--rows", value=quoted(part)
                ),
                hint=_("give spreadsheet row numbers, e.g. {example}").format(
                    example=either("--rows 2,7,19", "--rows 4-9")
                ),
            )
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        rows += range(first, last + 1)
    if not rows:
        raise UsageError(
            _("{option}: no row number given").format(option="--rows"),
            hint=_("e.g. {command}").format(command="--rows 2,7,19"),
        )
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
            _("no recipient is ready, so there is nothing to proof"),
            place=Place(file=shown),
            hint=_("run {command}").format(command=f"campaign check {inputs.campaign.name}"),
        )
    chosen: dict[int, SampleRow] = {}

    def pick(recipient: Recipient, reason: str) -> None:
        chosen.setdefault(recipient.row, SampleRow(recipient)).reasons.append(reason)

    if everyone:
        for recipient in ready:
            pick(recipient, Said(lambda: _("every recipient ({option})").format(option="--all")))
    elif rows:
        by_row = {r.row: r for r in inputs.recipients.recipients}
        for wanted in rows:
            found = by_row.get(wanted)
            if found is None:
                first = min(by_row, default=2)
                last = max(by_row, default=2)
                raise UsageError(
                    _("row {row} is not a recipient row").format(row=wanted),
                    place=Place(file=shown, row=wanted),
                    hint=_("the recipients are on rows {first} to {last}").format(
                        first=first, last=last
                    ),
                )
            if found.status is not Status.READY:
                raise UsageError(
                    _("row {row} is {state}, not ready to send").format(
                        row=wanted, state=found.status.value
                    ),
                    place=Place(file=shown, row=wanted),
                    hint=_("proof rows that will be sent; campaign check lists what is wrong"),
                )
            pick(found, Said(lambda: _("asked for ({option})").format(option="--rows")))
    else:
        for recipient in ready[:FIRST_ROWS]:
            pick(recipient, Said(lambda: _("one of the first {n} rows").format(n=FIRST_ROWS)))
        for recipient, reason in _extremes(inputs, ready):
            pick(recipient, reason)
    rest = [r for r in ready if r.row not in chosen]
    for recipient in random.Random(inputs.campaign.name).sample(rest, min(extra, len(rest))):
        pick(
            recipient, Said(lambda: _("random pick ({option})").format(option=f"--sample {extra}"))
        )
    return sorted(chosen.values(), key=lambda s: s.recipient.row)


def _extremes(inputs: Inputs, ready: list[Recipient]) -> list[tuple[Recipient, str]]:
    """The rows most likely to break the layout, each with the reason it was chosen."""
    names = inputs.recipients.names  # variable → header
    found: list[tuple[Recipient, str]] = []

    def longest(label: Callable[[], str], measure: Callable[[Recipient], str]) -> None:
        lengths = [len(measure(r)) for r in ready]
        best = ready[lengths.index(max(lengths))]
        size = len(measure(best))
        if max(lengths) > min(lengths):  # a value the same for everyone is no extreme
            found.append(
                (
                    best,
                    Said(
                        lambda: ngettext(
                            "longest {what} ({n} character)",
                            "longest {what} ({n} characters)",
                            size,
                        ).format(what=label(), n=size)
                    ),
                )
            )

    if inputs.to_name is not None:
        longest(lambda: _("name"), inputs.to_name_for)
    else:
        columns = [v for v in _NAME_COLUMNS if v in names]
        if columns:
            longest(lambda: _("name"), lambda r: " ".join(r.variables[c] for c in columns))
    organisation = next((v for v in _ORGANISATION_COLUMNS if v in names), None)
    if organisation:
        # The organiser's own word, not translated; bound now, as each label is said again later.
        word = names[organisation].lower()
        longest(lambda: word, lambda r: r.variables[organisation])
    address = [v for v in names if v.startswith(_ADDRESS_COLUMNS)]
    if address:
        longest(lambda: _("address"), lambda r: "\n".join(r.variables[c] for c in address))
    if inputs.subject is not None:
        longest(lambda: _("subject"), inputs.subject_for)

    config = inputs.campaign.config
    fixed = {variable_name(c) for c in [*config.required_columns, config.email_column]}
    optional = [v for v in names if v not in fixed]
    if optional:

        def empties(r: Recipient) -> list[str]:
            return [names[v] for v in optional if not r.variables[v].strip()]

        emptiest = max(ready, key=lambda r: len(empties(r)))
        empty = empties(emptiest)
        if len(empty) == len(optional):
            found.append((emptiest, Said(lambda: _("every optional field empty"))))
        elif empty:
            found.append(
                (emptiest, Said(lambda: _("most optional fields empty ({n} of {total}: {fields})")
                 .format(n=len(empty), total=len(optional), fields=", ".join(empty))))
            )  # fmt: skip

    civility = next((v for v in _CIVILITY_COLUMNS if v in names), None)
    if civility:
        first_of: dict[str, Recipient] = {}
        for r in ready:
            first_of.setdefault(r.variables[civility].strip(), r)
        column = names[civility].lower()
        for value, r in list(first_of.items())[:_CIVILITIES_LISTED]:
            found.append(
                # No-break spaces: "civilité «" and "Madame »" never part at a line's end.
                (
                    r,
                    f"{column}\u00a0«\u202f{value}\u202f»"
                    if value
                    else Said(lambda: _("{column} empty").format(column=column)),
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
    from campaign.pdf import letter_path

    campaign = inputs.campaign
    attachments = load_attachments(inputs)
    private_dir(work)
    proofed: list[_Proofed] = []
    for done, item in enumerate(sample):
        recipient = item.recipient
        # The letter's own stem (`0004-ines-d-aubigne`, unique by its row number): the reviewer's
        # copy and the letter in `letters/` are found by the same name.
        stem = letter_path(campaign, recipient).stem
        try:
            pdf = _letter_pdf(inputs, recipient) if campaign.config.attach_pdf else None
            own = with_recipient_attachments(inputs, recipient, attachments)
            message = compose_message(inputs, recipient, pdf=pdf, attachments=own)
        except TemplateError as err:
            raise TemplateError(
                _("{message} (merging spreadsheet row {row})").format(
                    message=err.message, row=recipient.row
                ),
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
    # The reviewers read the letter's language, whatever the organiser's terminal speaks.
    with language_of(campaign.config.lang):
        document, pages = _proofs_pdf(
            inputs, proofed, fingerprint, now, approval_state(inputs).summary()
        )
        index = _index_html(inputs, proofed, fingerprint, now)
    write_private(work / "proofs.pdf", document)
    write_private(work / "index.html", index)
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
            name = part.get_filename() or _("(no name)")
            attachments.append((name, part.get_content_type(), size))
    return _EmailView(
        headers=headers,
        attachments=attachments,
        html=str(html_part.get_content()) if isinstance(html_part, EmailMessage) else "",
        text=str(text_part.get_content()) if isinstance(text_part, EmailMessage) else "",
        size=len(message.as_bytes()),
    )


def _size(n: int) -> str:
    if n < 1024:
        return ngettext("{n} byte", "{n} bytes", n).format(n=number(n))
    return _("{kb} KB ({n} bytes)").format(kb=number(n / 1024, decimals=1), n=number(n))


def _html_body(document: str) -> str:
    match = re.search(r"<body[^>]*>(.*)</body>", document, re.DOTALL | re.IGNORECASE)
    return match.group(1) if match else document


def _stamp_text() -> str:
    return _("PROOF — DO NOT SEND")


# --- the pages, from the templates in campaign/assets/proofs, in the letter's language ----------

# Nothing on the page may load anything from outside the pack, not even the email's HTML.
_CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-src 'self'"


def _render(template: str, language: str, **values: object) -> str:
    """Render one of the pack's templates; its messages are said in `language` (French typeset)."""
    import jinja2

    from campaign.i18n import _ as say
    from campaign.i18n import ngettext as say_n
    from campaign.typography import french

    def gettext(message: str) -> str:
        text = say(message)
        return french(text) if language == "fr" else text

    def n_gettext(singular: str, plural: str, n: int) -> str:
        text = say_n(singular, plural, n)
        return french(text) if language == "fr" else text

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("campaign", "assets/proofs"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(gettext, n_gettext, newstyle=True)  # type: ignore[attr-defined]
    return env.get_template(template).render(lang=language, **values)


def _made(now: datetime, language: str) -> str:
    from babel.dates import format_datetime

    pattern = "d MMMM y 'à' HH:mm" if language == "fr" else "d MMMM y, HH:mm"
    return str(format_datetime(now, pattern, locale=language))


def _rows_of(inputs: Inputs, proofed: list[_Proofed]) -> list[dict[str, object]]:
    """What the cover and index.html show of each sample row, in the current language."""
    rows = []
    for p in proofed:
        r = p.sample.recipient
        pdf_link = f"letters/{p.stem}.pdf"
        rows.append(
            {
                "row": r.row,
                "name": inputs.to_name_for(r),
                "email": r.email,
                "reasons": listed(again(reason) for reason in p.sample.reasons),
                "pages": p.pages,
                "stem": p.stem,
                "pdf": pdf_link,
                "headers": p.email.headers,
                "attachments": [
                    (name, kind, _size(size), kind == "application/pdf" and p.pdf and i == 0)
                    for i, (name, kind, size) in enumerate(p.email.attachments)
                ],
                "size": _size(p.email.size),
                "html": p.email.html,
                "text": p.email.text,
                "body": _html_body(p.email.html),
            }
        )
    return rows


def _proofs_pdf(
    inputs: Inputs, proofed: list[_Proofed], fingerprint: Fingerprint, now: datetime, status: str
) -> tuple[bytes, int]:
    """The cover, then the letters (or emails), each page stamped; returns bytes and page count."""
    from pypdf import PdfReader, PdfWriter
    from weasyprint import HTML

    from campaign.pdf import set_language

    campaign = inputs.campaign
    recipients = inputs.recipients
    language = campaign.config.lang
    rows = _rows_of(inputs, proofed)
    cover = _render(
        "cover.html",
        language,
        campaign=campaign.name,
        made=_made(now, language),
        letter=campaign.config.letter.as_posix(),
        ready=len(recipients.ready),
        ready_shown=number(len(recipients.ready)),
        rows=len(recipients.recipients),
        rows_shown=number(len(recipients.recipients)),
        suppressed=recipients.count(Status.SUPPRESSED),
        invalid=recipients.count(Status.INVALID),
        attach_pdf=campaign.config.attach_pdf,
        approval=status,
        fingerprint=fingerprint.digest,
        sample=rows,
        stamp=_("“{text}”").format(text=_stamp_text()),
    )
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(bytes(HTML(string=cover).write_pdf()))))
    for p in proofed:
        if p.pdf is not None:
            writer.append(PdfReader(io.BytesIO(p.pdf)))
    if not campaign.config.attach_pdf:
        # In batches, so that memory does not grow with --all on a long list.
        for start in range(0, len(rows), _EMAILS_PER_BATCH):
            batch = _render("emails.html", language, emails=rows[start : start + _EMAILS_PER_BATCH])
            writer.append(PdfReader(io.BytesIO(bytes(HTML(string=batch).write_pdf()))))
    stamp = PdfReader(io.BytesIO(_stamp_pdf())).pages[0]
    for page in writer.pages:
        page.merge_page(stamp, over=True)
    writer.compress_identical_objects()  # one copy of the stamp's font
    with language_of(language):
        title = _("Proofs: {campaign}").format(campaign=campaign.name)
        writer.add_metadata(
            {
                "/Title": title,
                "/Subject": _stamp_text(),
                "/Author": campaign.settings.sender.name,
                "/Creator": "campaign",
            }
        )
    set_language(writer, language)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue(), len(writer.pages)


def _stamp_pdf() -> bytes:
    """One transparent A4 page with the stamp written up the left margin."""
    from weasyprint import HTML

    text = html.escape(_stamp_text())
    page = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><style>
@page {{ size: 210mm 297mm; margin: 0; }}
html, body {{ margin: 0; background: transparent; }}
div {{ position: absolute; left: 3mm; top: 288mm; width: 279mm; height: 6mm;
  transform-origin: 0 0; transform: rotate(-90deg); text-align: center;
  font: bold 10pt "DejaVu Sans", sans-serif; letter-spacing: 1.5pt; color: #c0392b; }}
</style></head><body><div>{text} · {text}</div></body></html>"""
    return bytes(HTML(string=page).write_pdf())


def _index_html(
    inputs: Inputs, proofed: list[_Proofed], fingerprint: Fingerprint, now: datetime
) -> str:
    """The self-contained page: thumbnails beside each email as it will be sent."""
    from markupsafe import Markup

    language = inputs.campaign.config.lang
    ready = len(inputs.recipients.ready)
    return _render(
        "index.html",
        language,
        csp=_CSP,
        campaign=inputs.campaign.name,
        stamp=_stamp_text(),
        made=_made(now, language),
        ready=ready,
        ready_shown=number(ready),
        fingerprint=fingerprint.digest,
        proofs_link=Markup('<a href="proofs.pdf">proofs.pdf</a>'),
        sample=_rows_of(inputs, proofed),
    )

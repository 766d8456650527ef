"""One recipient → one PDF: the letter's HTML, laid out by WeasyPrint and read back until it is clean.

`letter_html` builds the document (letterhead, the address for the envelope's window, date,
subject, body with footnotes for CSS `float: footnote`, signature); cell values are held together
and never hyphenated. `Renderer` lays it out with the campaign's stylesheet and the window's CSS,
reads the pages back (`layout_faults`: a hyphen at a page foot, an address line outside the
window) and lays it out again until none is left, then writes the PDF (tagged for screen readers:
`campaign.tagging`). `campaign.pdf` runs renderers in worker processes and keeps the manifest.
"""

from __future__ import annotations

import atexit
import html
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign import tagging
from campaign.errors import InputError, Place
from campaign.i18n import N_, _, listed, quoted
from campaign.i18n import number as said_number
from campaign.inputs import Inputs
from campaign.recipients import Recipient
from campaign.recorded import LAYOUT_VERSION as LAYOUT_VERSION
from campaign.settings import Window
from campaign.typography import french

# Bump LAYOUT_VERSION when the HTML this module builds (or the typography it applies) changes, so
# that every letter is rendered again and approvals name the change. It lives in campaign.recorded,
# which `campaign status` imports without this module.


# Used when the letter's front matter names no stylesheet: the bare essentials of `lettre.css`.
DEFAULT_CSS = """
@page { size: A4; margin: 20mm 20mm 25mm 25mm;
  @bottom-right { content: counter(page) " / " counter(pages); font-size: 8.5pt; }
  @footnote { padding-bottom: 0.01mm; } }
@page :nth(n+2) { @top-left { content: string(addressee) " — " string(letter-date);
  font-size: 8.5pt; vertical-align: bottom; padding-bottom: 5mm; } }
html { font-family: "DejaVu Serif", serif; font-size: 10.5pt; hyphens: auto;
  hyphenate-limit-chars: 6 3 3; }
.letterhead { height: 25mm; margin: 0; } .letterhead p { margin: 0; }
.recipient { display: block; margin-left: 85mm; height: 35mm; font-style: normal; }
.place-date, .signature { margin-left: 85mm; } .signature { white-space: pre-line; }
.subject { font-weight: bold; } .letter-body p { text-align: justify; orphans: 2; widows: 2; }
.place-date, .nobreak, .recipient .line { white-space: nowrap; } .value { hyphens: manual; }
.signature { break-before: avoid; break-inside: avoid; }
.letter-body > :last-child { break-after: avoid; hyphens: manual; }
.footnote { float: footnote; font-size: 8.5pt; }
"""


# Before the campaign's stylesheet, so that it may say otherwise. A word cut at a line's end
# ends with a hyphen-minus, not WeasyPrint's default U+2010: PDF readers join a word across a
# line-end hyphen-minus when they search or copy (pdfium marks it U+FFFE, which Chrome's search
# skips; pdf.js joins "-" + line end), never across U+2010, so a reviewer searching the letter
# for "dossier" missed "dos- / sier". The glyph is the same (DejaVu draws both alike).
BASE_CSS = 'html { hyphenate-character: "-"; }'


def stylesheet_path(inputs: Inputs) -> Path | None:
    """The letter's stylesheet (front matter `stylesheet`, relative to the letter's folder)."""
    letter = inputs.letter
    if letter is None or not letter.front.get("stylesheet"):
        return None
    path = letter.path.parent / str(letter.front["stylesheet"])
    if not path.is_file():
        raise InputError(
            _("stylesheet {path} not found").format(path=letter.front["stylesheet"]),
            place=Place(file=letter.display, key="stylesheet"),
            hint=_("the path is relative to the letter's folder: {folder}").format(
                folder=letter.path.parent
            ),
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


_TEXT_NODE = re.compile(r">([^<]+)<")
_GUILLEMETS = re.compile(r"«[^«»<]{1,60}»")


# A word made of words joined by hyphens: "Pradelles-le-Lac", "Haute-Garonne", "médecin-chef".
_COMPOUND = re.compile(r"\w+(?:[-\u2010\u2011]\w+)+")


def _unbroken(text: str) -> str:
    """The text with each of its hyphenated compounds on one line (`.nobreak`)."""
    return _COMPOUND.sub(lambda m: f'<span class="nobreak">{m.group(0)}</span>', text)


def _hold_values(body: str, values: Iterable[str]) -> str:
    """Wrap each cell value found in the body's text in a span that is never hyphenated.

    The values are looked for in the text between tags only (never in a tag or a URL), as whole
    words and whatever their case (`salutation` lower-cases the function); a word shorter than
    five letters is never hyphenated anyway. A hyphenated name never breaks at its own hyphen
    either: "Pradelles-le-Lac" in a value, and a capitalised compound of the letter's own text
    ("Haute-Garonne"), are each kept on one line.
    """
    wanted = sorted(
        {
            html.escape(french(line.strip()), quote=False)
            for value in values
            for line in str(value).splitlines()
            if len(line.strip()) >= 5
        },
        key=len,
        reverse=True,
    )
    held = "|".join(re.escape(w) for w in wanted)
    value = rf"(?i:(?<!\w)(?P<value>{held})(?!\w))|" if wanted else ""
    pattern = re.compile(rf"{value}(?<!\w)(?P<compound>{_COMPOUND.pattern})")

    def hold(match: re.Match[str]) -> str:
        compound = match.group("compound")
        if compound is not None:  # of the letter's own text: only a proper name's is held
            return f'<span class="nobreak">{compound}</span>' if compound[0].isupper() else compound
        return f'<span class="value">{_unbroken(match.group("value"))}</span>'

    return _TEXT_NODE.sub(lambda m: f">{pattern.sub(hold, m.group(1))}<", body)


# The last word of a paragraph (before its closing punctuation, or a note's call) is never
# hyphenated: a paragraph does not end on a fragment such as "tinguées.".
_LAST_WORD = re.compile(
    r"(?<!\w)([^\W\d_][\w\u2019-]{5,})"
    r"(?=(?:<span class=\"footnote\">[^<]*(?:<(?!/?span)[^>]*>[^<]*)*</span>)?[^\w<]*</(?:p|li)>)"
)


def _whole_last_words(body: str) -> str:
    return _LAST_WORD.sub(r'<span class="whole">\1</span>', body)


# A held value, with the compounds held inside it ("… de <span class="nobreak">Pradelles-le-Lac</span>").
_SUBJECT_VALUE = re.compile(
    r'<span class="value">((?:[^<]|<span class="nobreak">[^<]*</span>)+)</span>'
)
_SHORT_VALUE = 45  # characters as read: a longer value may break at its spaces


def _whole_if_short(match: re.Match[str]) -> str:
    inner = match.group(1)
    if len(html.unescape(re.sub(r"<[^>]+>", "", inner))) > _SHORT_VALUE:
        return match.group(0)
    return f'<span class="value nobreak">{inner}</span>'


def _nobreak(text: str) -> str:
    """Escaped text whose short « » quotations never break across lines."""
    return _GUILLEMETS.sub(
        lambda m: f'<span class="nobreak">{m.group(0)}</span>', html.escape(text, quote=False)
    )


def _number_blocks(body: str) -> str:
    """Number the body's paragraphs and list items, so that one can be named in extra CSS."""
    counter = iter(range(1, 1_000_000))
    return re.sub(r"<(p|li)>", lambda m: f'<{m.group(1)} data-block="{next(counter)}">', body)


def _notes_tagged(body: str) -> str:
    """Give each footnote its PDF role and a unique id (see campaign.tagging)."""
    counter = iter(range(1, 1_000_000))
    return re.sub(
        r'<span class="footnote">',
        lambda m: f'<span class="footnote" id="note-{next(counter)}" data-pdf-role="Note">',
        body,
    )


def letter_html(inputs: Inputs, recipient: Recipient) -> str:
    """The whole HTML document of one recipient's letter (raises `TemplateError`)."""
    letter = inputs.letter
    merged = inputs.merged(recipient).letter
    if letter is None or merged is None:
        raise InputError(_("the campaign has no letter"), place=Place(key="letter"))
    fields = merged.fields
    sender = inputs.campaign.settings.sender
    subject = french(inputs.subject_for(recipient))
    title = fields.get("title") or subject or letter.path.stem
    esc = html.escape
    # One block per line, never wrapped (white-space: nowrap): a line too wide for the window is
    # found after layout and shrunk or reported, never a silent extra line.
    address = "".join(
        f'<p class="line" data-pdf-role="P">{esc(line)}</p>'
        for line in address_lines(recipient, fields)
    )
    place = esc(fields["place"] + ", le " if fields.get("place") else "") + esc(fields["date"])
    # Reply-To is printed only when it differs (`campaign init` writes the same address twice).
    contact = " · ".join(esc(a) for a in dict.fromkeys((sender.email, sender.reply_to)) if a)
    postal = (
        '<p class="sender-address">'
        + "<br>".join(esc(line.strip()) for line in sender.address.splitlines() if line.strip())
        + "</p>"
        if sender.address
        else ""
    )
    signature = esc(fields.get("signature", sender.name))
    values = [v for k, v in recipient.variables.items() if v and k not in {"email", "courriel"}]
    subject_html = (
        '<p class="subject"><span class="label">Objet\u202f:</span> '
        + _SUBJECT_VALUE.sub(  # the subject never breaks inside a short value (an établissement)
            _whole_if_short, _hold_values(">" + _nobreak(subject) + "<", values)[1:-1]
        )
        + "</p>"
        if subject
        else ""
    )
    body = _notes_tagged(_number_blocks(_whole_last_words(_hold_values(merged.pdf_html, values))))
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title>"
        f'<meta name="author" content="{esc(sender.name)}">'
        f'<meta name="description" content="{esc(subject)}">'
        f'<meta name="generator" content="campaign">'
        "</head><body>"
        f'<header class="letterhead" data-pdf-role="Div">'
        f'<p class="sender-name">{esc(sender.name)}</p>{postal}'
        f'<p class="sender-contact">{contact}</p></header>'
        f'<address class="recipient" data-pdf-role="Div">{address}</address>'
        f'<p class="place-date">{place}</p>'
        f"{subject_html}"
        f'<main class="letter-body">{body}</main>'
        f'<div class="signature" data-pdf-role="P">{signature}</div>'
        "</body></html>"
    )


def harfbuzz_subset_available() -> bool:
    """Whether WeasyPrint found libharfbuzz-subset (7× faster font subsetting than fontTools)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from weasyprint.pdf import fonts

    return fonts.harfbuzz_subset is not None


# Said with _() where it is given (pdf.render_letters).
HARFBUZZ_WARNING = N_(
    "libharfbuzz-subset is not installed: fonts are subset with fontTools, about 3× slower "
    "(Debian/Ubuntu: apt-get install libharfbuzz-subset0; macOS: brew install harfbuzz)"
)


MM_PER_PX = 25.4 / 96  # WeasyPrint lays out in CSS pixels
ADDRESS_PT = 10.0  # the address's size in lettre.css; shrunk in steps of 0.5 pt when needed
MIN_ADDRESS_PT = 8.0  # La Poste's machines read 8 pt and up
MAX_LAYOUTS = 12
# NF Z10-011's abbreviations, used only for an address line too wide for the window at the
# smallest size (the norm: abbreviate only when a line would not fit otherwise).
ABBREVIATIONS = (
    ("Centre hospitalier universitaire", "CHU"),
    ("Centre hospitalier régional", "CHR"),
    ("Centre hospitalier intercommunal", "CHI"),
    ("Centre hospitalier", "CH"),
    ("boulevard", "BD"),
    ("avenue", "AV"),
    ("Saint-", "ST-"),
    ("Sainte-", "STE-"),
    ("Bâtiment", "BAT"),
)


def abbreviate(line: str) -> str:
    """An address line with the norm's abbreviations (`boulevard` → `BD`, `Saint-` → `ST-`)."""
    for long, short in ABBREVIATIONS:
        line = re.sub(rf"(?<!\w){re.escape(long)}", short, line, flags=re.IGNORECASE)
    return line


# Tag every letter (PDF structure tree): it costs little (docs/letters.md, bench/render.py).
TAG_BY_DEFAULT = True
# lettre.css's page margins: the window's position is measured from the sheet, the flow from them.
PAGE_LEFT_MM, PAGE_TOP_MM = 25.0, 20.0


def window_css(window: Window) -> str:
    """Place the address block in the envelope's window (`layout.window`)."""
    return (
        f".letterhead {{ height: {window.top - PAGE_TOP_MM:.2f}mm; }}"
        f".recipient {{ margin-left: {window.left - PAGE_LEFT_MM:.2f}mm; "
        f"width: {window.width:.2f}mm; height: {window.height:.2f}mm; min-height: 0; }}"
        ".recipient .line { white-space: nowrap; margin: 0; }"
        # What letter_html holds together, whatever the campaign's own stylesheet says.
        ".nobreak { white-space: nowrap; } .value, .whole { hyphens: manual; }"
        # A subject of two lines: the second starts under the text, not under « Objet : ».
        ".subject { padding-left: 4.2em; text-indent: -4.2em; }"
        ".subject .label { display: inline-block; width: 3.95em; text-indent: 0; }"
        # Named strings a stylesheet's page margins may print (`string(addressee)`): from page
        # 2 on, a page parted from the first still says whose letter it is, and of what date.
        ".recipient .line:first-child { string-set: addressee content(text); }"
        ".place-date { string-set: letter-date content(text); }"
    )


@dataclass
class LayoutFaults:
    """What reading a laid-out letter found: paragraphs hyphenated at a page's foot, and
    address lines outside the window (as text saying where)."""

    hyphenated_blocks: set[str] = field(default_factory=set)
    address: list[str] = field(default_factory=list)
    wide_lines: list[str] = field(default_factory=list)
    address_scale: float = 1.0  # the size that would fit, as a share of today's (< 1: shrink)


def _boxes(box: Any, ancestors: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    yield box, ancestors
    for child in getattr(box, "children", ()):
        yield from _boxes(child, (*ancestors, box))


def layout_faults(document: Any, window: Window) -> LayoutFaults:
    """Read a laid-out WeasyPrint document the way a reader and La Poste's machine would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from weasyprint.formatting_structure import boxes

    faults = LayoutFaults()
    pages = document.pages
    for number, page in enumerate(pages, start=1):
        last_line: tuple[Any, tuple[Any, ...]] | None = None
        for box, ancestors in _boxes(page._page_box):
            if any(isinstance(a, boxes.FootnoteAreaBox | boxes.MarginBox) for a in ancestors):
                continue
            if isinstance(box, boxes.LineBox):
                last_line = (box, ancestors)
                element = ancestors[-1].element if ancestors else None
                if element is not None and element.get("class") == "line" and number == 1:
                    outside, scale, wide = _outside(box, element, window)
                    faults.address_scale = min(faults.address_scale, scale)
                    faults.address += outside
                    if wide:
                        faults.wide_lines.append(element.text or "")
        if last_line is None or number == len(pages):
            continue
        line, ancestors = last_line
        texts = [b for b, _ in _boxes(line) if isinstance(b, boxes.TextBox)]
        if texts and texts[-1].text.endswith(texts[-1].style["hyphenate_character"]):
            for ancestor in reversed(ancestors):
                block = ancestor.element.get("data-block") if ancestor.element is not None else None
                if block:
                    faults.hyphenated_blocks.add(block)
                    break
    return faults


def _outside(line: Any, element: Any, window: Window) -> tuple[list[str], float, bool]:
    """Where an address line lies outside the window ([] when inside), the share of its size at
    which it would fit its width, and whether it is too wide."""
    texts = [b for b, _ in _boxes(line) if hasattr(b, "text")]
    if not texts:
        return [], 1.0, False
    left = min(b.position_x for b in texts) * MM_PER_PX
    right = max(b.position_x + b.width for b in texts) * MM_PER_PX
    top = line.position_y * MM_PER_PX
    bottom = (line.position_y + line.height) * MM_PER_PX
    shown = "".join(b.text for b in texts)
    faults = []
    wide = right > window.left + window.width + 0.01 or left < window.left - 0.01
    if wide:
        faults.append(
            _("{line} is {width} mm wide, to {right} mm (window {window} mm)").format(
                line=quoted(shown),
                width=said_number(right - left, decimals=1),
                right=said_number(right, decimals=1),
                window=f"{window.width:g}",
            )
        )
    if bottom > window.top + window.height + 0.01 or top < window.top - 0.01:
        faults.append(
            _("{line} falls below the window ({height} mm high)").format(
                line=quoted(shown), height=f"{window.height:g}"
            )
        )
    room = window.left + window.width - left
    return faults, min(1.0, room / (right - left)) if right > left else 1.0, wide


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
        self.base_css = CSS(string=BASE_CSS, font_config=self.fonts)
        self.window = inputs.campaign.settings.layout.window
        self.window_css = CSS(string=window_css(self.window), font_config=self.fonts)
        self.tagged = TAG_BY_DEFAULT or bool(inputs.campaign.config.pdf_variant)
        if self.tagged:
            tagging.install()
        letter = inputs.letter
        self.base_url = str(letter.path.parent) + os.sep if letter else None
        # Images (the letterhead logo) are fetched and parsed once, not once per letter.
        self.image_cache: dict[str, Any] = {}
        self.layouts = 0  # layouts the last letter took (one, or more when a check asked)

    def render(self, recipient: Recipient) -> bytes:
        """The PDF of one recipient's letter, laid out again until its pages read cleanly.

        After each layout the pages are read back (`layout_faults`): a page that ends on a
        hyphenated word has that paragraph laid out again without hyphenation, and an address
        line outside the envelope's window shrinks the address (down to `MIN_ADDRESS_PT`); an
        address that still does not fit is an `InputError` for the row.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from weasyprint import CSS, HTML

        source = letter_html(self.inputs, recipient)
        options: dict[str, Any] = {"cache": self.image_cache, "pdf_tags": self.tagged}
        variant = self.inputs.campaign.config.pdf_variant
        if variant:
            options["pdf_variant"] = variant
        held: set[str] = set()
        self.layouts = 0
        address_pt = ADDRESS_PT
        for _attempt in range(MAX_LAYOUTS):
            extra = "".join(f'[data-block="{b}"] {{ hyphens: manual }}' for b in sorted(held))
            if address_pt != ADDRESS_PT:
                extra += f".recipient {{ font-size: {address_pt}pt }}"
            sheets = [self.base_css, self.stylesheet, self.window_css]
            if extra:
                sheets.append(CSS(string=extra, font_config=self.fonts))
            document = HTML(string=source, base_url=self.base_url).render(
                stylesheets=sheets, font_config=self.fonts, **options
            )
            self.layouts += 1
            faults = layout_faults(document, self.window)
            if faults.address and address_pt > MIN_ADDRESS_PT:
                # Straight to the size that fits the widest line (by half points), then down
                # in half points if it still does not (a taller block, rounding).
                wanted = math.floor(address_pt * faults.address_scale * 2) / 2
                address_pt = max(MIN_ADDRESS_PT, min(address_pt - 0.5, wanted))
                continue
            shorter = {line: abbreviate(line) for line in faults.wide_lines}
            shorter = {line: short for line, short in shorter.items() if short != line}
            if shorter:  # still too wide at the smallest size: the norm's abbreviations
                for line, short in shorter.items():
                    source = source.replace(
                        f">{html.escape(line)}</p>", f">{html.escape(short)}</p>"
                    )
                continue
            if faults.address:
                raise InputError(
                    _(
                        "the address does not fit the envelope's window even at {size} pt: {faults}"
                    ).format(
                        size=said_number(MIN_ADDRESS_PT, decimals=1),
                        faults=listed(faults.address),
                    ),
                    place=Place(key="layout.window"),
                    hint=_(
                        "shorten the address lines (the postal norm allows 38 characters and "
                        "6 lines), or give layout.window the size of your envelope's window"
                    ),
                )
            fresh = faults.hyphenated_blocks - held
            if not fresh:
                break
            held |= fresh
        pdf: bytes = document.write_pdf(**options)
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

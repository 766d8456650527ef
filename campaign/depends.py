"""A campaign's letter and email → every file that what a recipient receives depends on.

One walk, and three users that must agree: the render manifest (which PDFs to render again), the
approval fingerprint (what the reviewers signed off) and `send` (whether the PDF it attaches is
still the one rendered from the approved inputs). Followed: the letter and email-body templates,
their stylesheets (front matter `stylesheet`), every `@import` and `url()` of those stylesheets
(nested stylesheets, images, fonts), images and `src`/`href` files named in the letter and email
bodies, and the shared attachments. Only files inside the project are followed (anything else is
refused elsewhere); a `{{ templated }}` path is data, covered by the recipient's row.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaign.errors import CampaignError

if TYPE_CHECKING:
    from campaign.inputs import Inputs
    from campaign.settings import Campaign

_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)\s]*))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
_HTML_SRC = re.compile(r"""\b(?:src|href)\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_NOT_A_FILE = re.compile(r"^[a-z][a-z0-9+.-]*:|^#|^//", re.IGNORECASE)  # data:, https:, cid:, #x
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".bmp", ".tif", ".tiff"}
_FONT_SUFFIXES = {".ttf", ".otf", ".woff", ".woff2"}


@dataclass(frozen=True)
class Dependency:
    """One file a recipient's letter or email depends on.

    `kind` says what it is in the organiser's words ("stylesheet", "image", …), `shown` is its path
    as the project names it, and `letter` is true when the PDF letter depends on it (false when
    only the email does: an email-body image, a shared attachment).
    """

    kind: str
    path: Path
    shown: str
    letter: bool

    @cached_property
    def digest(self) -> str:
        """The SHA-256 of the file's bytes, or "missing"."""
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return "missing"


def dependencies(inputs: Inputs) -> list[Dependency]:
    """Every file the campaign's letters and emails depend on, each once, in a stable order."""
    campaign = inputs.campaign
    found: list[Dependency] = []
    seen: set[Path] = set()

    def add(kind: str, path: Path, *, letter: bool) -> None:
        resolved = campaign.path(path).resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(Dependency(kind, resolved, shown_path(campaign, resolved), letter))

    sources = [(inputs.letter, "letter", True), (inputs.email_body, "email body", False)]
    for source, what, is_letter in sources:
        if source is None:
            continue
        add(f"{what} template", source.path, letter=is_letter)
        for kind, path in referenced_files(campaign, source.path, source.front, source.body):
            add(kind, path, letter=is_letter)
    for attachment in campaign.config.attachments:
        add("attachment", attachment, letter=False)
    if campaign.config.attachments_column is not None:
        # Per-recipient files: which row lists which is in the row's hash; their bytes are here.
        for recipient in inputs.recipients.ready:
            with contextlib.suppress(CampaignError):  # a path out of the folder: check says so
                for path in inputs.attachments_for(recipient):
                    if path.is_file():
                        add("attachment", path, letter=False)
    return found


def shown_path(campaign: Campaign, path: Path) -> str:
    """A path as the project names it, with forward slashes on every system."""
    resolved = campaign.path(path).resolve()
    root = campaign.settings.root.resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return path.name  # outside the project: never the machine's absolute path


def referenced_files(
    campaign: Campaign, letter_path: Path, front: Mapping[str, Any], body: str
) -> list[tuple[str, Path]]:
    """The stylesheets, images and fonts a letter uses, followed through its CSS, in the project."""
    root = campaign.settings.root.resolve()
    base = campaign.path(letter_path).resolve().parent
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()

    def visit(kind: str, target: str, folder: Path) -> None:
        target = target.strip()
        if not target or _NOT_A_FILE.match(target):
            return
        path = (folder / target.split("#", 1)[0].split("?", 1)[0]).resolve()
        if path in seen or not path.is_relative_to(root):
            return
        seen.add(path)
        found.append((kind if kind == "stylesheet" else _kind_of(path), path))
        if path.suffix.lower() == ".css" and path.is_file():
            css = path.read_text(encoding="utf-8", errors="replace")
            for target in _css_references(css):
                visit("referenced", target, path.parent)

    sheets = front.get("stylesheet")
    for sheet in [sheets] if isinstance(sheets, str) else sheets or []:
        visit("stylesheet", str(sheet), base)
    for match in (*_MD_IMAGE.finditer(body), *_HTML_SRC.finditer(body)):
        target = next((g for g in match.groups() if g is not None), "")
        if "{" not in target:  # a templated path is data, already covered by the rows
            visit("referenced", target, base)
    return found


def _css_references(css: str) -> Iterator[str]:
    for match in (*_CSS_URL.finditer(css), *_CSS_IMPORT.finditer(css)):
        yield next(g for g in match.groups() if g is not None)


def _kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _IMAGE_SUFFIXES:
        return "image"
    if suffix in _FONT_SUFFIXES:
        return "font"
    if suffix == ".css":
        return "stylesheet"
    return "file used by the letter"

"""A folder → a new campaign project that `campaign check` passes at once (`campaign init DIR`).

The templates are package data under `campaign/assets/init/`: settings.yaml with its comments, a
letter with one footnote, the cover email, the stylesheet and logo of the samples, an empty
suppression list and a `.gitignore` that keeps outbox/ (personal data) out of the repository. The
recipient sheet is written here with openpyxl, so that its two fictional rows and its text cells
(a postcode keeps its leading zero) are plain to read in code rather than hidden in a binary file.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import date
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from campaign.errors import UsageError
from campaign.i18n import _

# The sheet's columns, in the order an organiser fills them in; the letter uses each of them.
COLUMNS = [
    "Civilité",
    "Prénom",
    "Nom",
    "Fonction",
    "Établissement",
    "Adresse",
    "Code postal",
    "Ville",
    "Courriel",
]
# Two fictional recipients (example.org), one with an empty optional cell (Fonction).
ROWS = [
    [
        "Madame",
        "Claire",
        "Dubois",
        "Directrice",
        "Centre hospitalier de Valbrune",
        "12 rue des Tilleuls",
        "01000",
        "VALBRUNE",
        "claire.dubois@example.org",
    ],
    [
        "Monsieur",
        "Julien",
        "Moreau",
        "",
        "Clinique du Parc",
        "3 avenue de la Gare",
        "69003",
        "LYON",
        "julien.moreau@example.org",
    ],
]
SHEET = Path("recipients/destinataires.xlsx")
# Files whose text is a template: `$today` becomes the day the project is made.
_SUBSTITUTED = {"letters/lettre.md"}
# Package data cannot hold a dotfile reliably: shipped as `gitignore`, written as `.gitignore`.
_RENAMED = {"gitignore": ".gitignore"}


@dataclass(frozen=True)
class Created:
    """What `init` wrote: the project folder and its files, relative to it."""

    folder: Path
    files: list[Path]
    settings: Path


def init_project(folder: Path, *, today: date | None = None) -> Created:
    """Write a new campaign project into `folder` (new, or empty); refuse a folder with files."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(
            _("{path} is a file, not a folder").format(path=folder),
            hint=_("name a new folder, e.g. {command}").format(command="campaign init ma-campagne"),
        )
    if folder.is_dir() and any(folder.iterdir()):
        raise UsageError(
            _("{path} is not empty: {command} writes only into a new or empty folder").format(
                path=folder, command="campaign init"
            ),
            hint=_("name a new folder (it is created), or empty this one first"),
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        values = {"today": (today or date.today()).isoformat()}
        written = [path for item in _templates() for path in _copy(item, folder, Path(), values)]
        _write_sheet(folder / SHEET)
    except OSError as err:
        raise UsageError(
            _("cannot write the project into {path}: {reason}").format(
                path=folder, reason=err.strerror
            ),
            hint=_("choose a folder you may write to"),
        ) from None
    written.append(SHEET)
    return Created(folder=folder, files=sorted(written), settings=folder / "settings.yaml")


def _templates() -> list[Traversable]:
    return sorted(files("campaign").joinpath("assets", "init").iterdir(), key=lambda t: t.name)


def _copy(item: Traversable, root: Path, relative: Path, values: dict[str, str]) -> list[Path]:
    """Copy one template file or folder; return the files written, relative to `root`."""
    name = _RENAMED.get(item.name, item.name)
    target = relative / name
    if item.is_dir():
        (root / target).mkdir(exist_ok=True)
        return [
            path
            for child in sorted(item.iterdir(), key=lambda t: t.name)
            if not child.name.startswith(("__", "."))
            for path in _copy(child, root, target, values)
        ]
    data = item.read_bytes()
    if target.as_posix() in _SUBSTITUTED:
        data = string.Template(data.decode("utf-8")).substitute(values).encode("utf-8")
    (root / target).write_bytes(data)
    return [target]


def _write_sheet(path: Path) -> None:
    """The recipient sheet: a header row, two fictional rows, every cell stored as text."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Destinataires"
    sheet.append(COLUMNS)
    for row in ROWS:
        sheet.append(row)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for column in sheet.iter_cols(min_row=2):
        for cell in column:
            cell.number_format = "@"  # text: Excel keeps 01000 as typed
    for letter, width in zip("ABCDEFGHI", (10, 12, 14, 14, 34, 26, 12, 14, 30), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A2"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)

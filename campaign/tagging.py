"""The letter's HTML roles → the PDF's structure tree: notes, references, the address block.

WeasyPrint (≥ 63) tags a PDF (`pdf_tags`, or a `pdf/ua-1` / `pdf/a-3a` variant) by element name
only (`weasyprint/pdf/tags.py`): a `<span>` becomes `/Span`, an `<address>` or a footnote
`/NonStruct`, and it has no hook to say otherwise. PDF/UA-1 (Matterhorn checkpoint 19) wants each
footnote tagged `Note` with a unique `ID` and its call `Reference`. Rewriting the finished file
with pikepdf would have to recognise each element again from its position; here the structure
elements are given their role while WeasyPrint builds them, from the HTML that `pdf.letter_html`
writes:

- an element with `data-pdf-role="Note"` (or any standard structure type) gets that role; a
  `Note` gets `ID` from the element's `id`, made unique if the note spans two pages;
- the `::footnote-call` of a note becomes `Reference`, its `::footnote-marker` `Lbl`.

`install()` wraps WeasyPrint's builder once per process; `installed()` says whether it could
(an unknown WeasyPrint leaves the standard tags and the tests say so).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

ROLE_ATTRIBUTE = "data-pdf-role"
# The standard structure types of PDF 1.7 (ISO 32000-1, 14.8.4) an element may ask for.
ROLES = frozenset(
    [
        "Document",
        "Part",
        "Art",
        "Sect",
        "Div",
        "BlockQuote",
        "Caption",
        "TOC",
        "TOCI",
        "Index",
        "NonStruct",
        "Private",
        "P",
        "H",
        "H1",
        "H2",
        "H3",
        "H4",
        "H5",
        "H6",
        "L",
        "LI",
        "Lbl",
        "LBody",
        "Table",
        "TR",
        "TH",
        "TD",
        "THead",
        "TBody",
        "TFoot",
        "Span",
        "Quote",
        "Note",
        "Reference",
        "BibEntry",
        "Code",
        "Link",
        "Annot",
        "Ruby",
        "Warichu",
        "Figure",
        "Formula",
        "Form",
    ]
)
_PSEUDO_ROLES = {"footnote-call": "Reference", "footnote-marker": "Lbl"}
_STATE: dict[str, Any] = {}


def _role(box: Any) -> tuple[str | None, str | None]:
    """The role (and ID for a note) a box asks for, or (None, None) for WeasyPrint's own."""
    tag = box.element_tag or ""
    if "::" in tag:
        return _PSEUDO_ROLES.get(tag.partition("::")[2]), None
    element = box.element
    if element is None or tag in {"html", "body"}:
        return None, None
    role = element.get(ROLE_ATTRIBUTE)
    if role not in ROLES:
        return None, None
    return role, element.get("id") if role == "Note" else None


def _relabel(box: Any, element: Any, pdf: Any) -> None:
    import pydyf

    role, ident = _role(getattr(box, "_box", box))
    if role is None or element.get("P") is None:
        return
    element["S"] = f"/{role}"
    if role == "Note":
        seen: set[str] = pdf.__dict__.setdefault("_campaign_note_ids", set())
        base = ident or f"note-{len(seen) + 1}"
        unique, n = base, 1
        while unique in seen:  # a note that runs onto the next page: one element per page
            n += 1
            unique = f"{base}-{n}"
        seen.add(unique)
        element["ID"] = pydyf.String(unique)


def install() -> bool:
    """Make WeasyPrint's tagger read the roles of the letter's HTML; True if it could."""
    if "installed" in _STATE:
        return bool(_STATE["installed"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from weasyprint.formatting_structure import boxes
            from weasyprint.pdf import tags
        except ImportError:
            _STATE["installed"] = False
            return False
    original = getattr(tags, "_build_box_tree", None)
    if original is None:
        _STATE["installed"] = False
        return False

    def build_box_tree(box: Any, parent: Any, pdf: Any, *rest: Any) -> Iterator[Any]:
        # html, body and the page yield their children's elements, relabelled already.
        own = not isinstance(box, boxes.PageBox | boxes.MarginBox) and (
            box.element_tag not in {"html", "body"}
        )
        for element in original(box, parent, pdf, *rest):
            if own:
                _relabel(box, element, pdf)
            yield element

    tags._build_box_tree = build_box_tree
    _STATE["installed"] = True
    return True


def installed() -> bool:
    """Whether the letter's roles reach the PDF (WeasyPrint's tagger could be wrapped)."""
    return bool(_STATE.get("installed"))

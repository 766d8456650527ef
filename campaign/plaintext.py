"""Markdown tokens → the plain-text part of an email: 72 columns, quotes and lists kept.

`plain_text` takes the tokens markdown-it gives for a merged letter (its body, or one footnote)
and gives the text a mail client shows: paragraphs apart and filled to 72 columns (no-break
spaces hold), `[1]` for a footnote call, a link's URL after its text, a blockquote with its `> `
marks and a list with its bullets or numbers, the lines of an item indented under its first.
French typography applies to the text, as in the HTML part.
"""

from __future__ import annotations

import functools
import re
import textwrap
from collections.abc import Sequence

from markdown_it.token import Token

from campaign.typography import french

_TEXT_WIDTH = 72  # columns of the plain-text email body


def plain_text(tokens: Sequence[Token], *, wrap: bool = True) -> str:
    """Plain text of a token stream: paragraphs apart, `[1]` for footnote calls, URLs kept.

    A blockquote keeps its `> ` marks and a list its bullets or numbers, with the lines of an
    item indented under its first, the way a mail client shows quoted plain text.
    """
    text, _ = _plain_blocks(tokens, 0, wrap=wrap, width=_TEXT_WIDTH)
    return _squeeze(text)


def _squeeze(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _plain_blocks(
    tokens: Sequence[Token], index: int, *, wrap: bool, width: int, stop: str | None = None
) -> tuple[str, int]:
    """The text of the blocks from `index` up to the `stop` token; gives it and where it stopped."""
    out: list[str] = []
    while index < len(tokens):
        token = tokens[index]
        kind = token.type
        if kind == stop:
            return "".join(out), index
        if kind == "inline":
            line = _plain_inline(token.children or [])
            out.append(fill(line, width=width) if wrap else line)
        elif kind in {"paragraph_close", "heading_close"}:
            out.append("\n" if token.hidden or not wrap else "\n\n")
        elif kind == "blockquote_open":
            inner, index = _plain_blocks(
                tokens, index + 1, wrap=wrap, width=width - 2, stop="blockquote_close"
            )
            lines = _squeeze(inner).split("\n")
            out.append("\n".join(f"> {line}" if line else ">" for line in lines) + "\n\n")
        elif kind in {"bullet_list_open", "ordered_list_open"}:
            number = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else None
            close = kind.replace("_open", "_close")
            index += 1
            while index < len(tokens) and tokens[index].type != close:
                if tokens[index].type == "list_item_open":
                    marker = "- " if number is None else f"{number}. "
                    number = None if number is None else number + 1
                    inner, index = _plain_blocks(
                        tokens,
                        index + 1,
                        wrap=wrap,
                        width=width - len(marker),
                        stop="list_item_close",
                    )
                    lines = _squeeze(inner).split("\n")
                    pad = " " * len(marker)
                    out.append(
                        marker
                        + "\n".join(lines[:1] + [pad + line if line else "" for line in lines[1:]])
                        + "\n"
                    )
                index += 1
            out.append("\n")
        elif kind in {"fence", "code_block", "html_block"}:
            out.append(token.content + "\n")
        elif kind == "hr":
            out.append("----\n\n")
        index += 1
    return "".join(out), index


# Most paragraphs of a letter are the same for every recipient: each is filled once per run.
@functools.lru_cache(maxsize=4096)
def fill(text: str, *, indent: str = "", width: int = _TEXT_WIDTH) -> str:
    """Fill each line of a paragraph to 72 columns; no-break spaces hold, hard breaks stay."""
    return "\n".join(
        textwrap.fill(
            line,
            width=width,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        or line
        for line in text.split("\n")
    )


def _plain_inline(children: Sequence[Token]) -> str:
    out: list[str] = []
    href: list[str] = []
    for token in children:
        kind = token.type
        if kind == "text":
            out.append(french(token.content))
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind in {"code_inline", "html_inline"}:
            out.append(token.content)
        elif kind == "footnote_ref":
            out.append(f"[{token.meta['id'] + 1}]")
        elif kind == "image":
            out.append(token.content)
        elif kind == "link_open":
            href.append(str(token.attrGet("href") or ""))
        elif kind == "link_close" and href:
            url = href.pop().removeprefix("mailto:")
            if url and out[-1:] != [url] and not url.startswith("#"):
                out.append(f" <{url}>")
    return "".join(out)

"""A merged letter's Markdown → its markdown-it tokens, parsed once per shape instead of once per row.

Rows of a campaign merge into Markdown that differs only in a few words (a first name, a town):
the same text with other letters in the same places. `parse` splits the Markdown into words
(runs of letters and digits) and what lies between them; rows whose in-between text is the same
share a *shape*. Once two rows of a shape have shown which words change, the shape is parsed
once with a placeholder in each place that changes, and each later row gets those tokens with
its own words put back in the text tokens. The renderings (HTML, plain text, typography,
wrapping) still run on every row's own tokens, so only the parse is shared.

The placeholder stands for the word only where no Markdown rule looks at a word's letters:
each place must start with a letter (a digit could start a list), sit between spaces or plain
punctuation (not after `<`, `&`, `[`, `*`, `_` or a backtick, where a word could be a tag, an
entity, a link label or emphasis), outside any `[...]`, in a letter without link reference
definitions or tabs; and in the placeholder's parse it must come out in a text token only, once.
Anything else, and every shape's first few substituted rows, is parsed in full and compared;
one difference and the shape is always parsed in full.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

_SPLIT = re.compile(r"([^\W_]+)")  # words: runs of letters and digits (no underscore)
_MARK = "Qzxv"  # placeholders are _MARK + four letters: ASCII letters only, never a digit first
_PLACEHOLDER = re.compile(_MARK + "[a-z]{4}")
_BEFORE_OK = frozenset(" \n\u00a0\u202f(«'’\"“-")
_AFTER_OK = frozenset(" \n\u00a0\u202f,.;:!?)»'’\"”-\\")
_REFERENCE_DEF = re.compile(r"(?m)^ {0,3}\[(?!\^)")  # a link reference definition may start here
VERIFIED_ROWS = 2  # each shape's first substituted rows are also parsed in full and compared
_SHAPES_KEPT = 64
_REBUILDS = 4  # times a shape may learn that more of its words change


@dataclass
class _Template:
    places: frozenset[int]  # indexes of the words that change
    tokens: list[Token]
    env: dict[str, Any]
    slots: list[
        tuple[int, list[int]]
    ]  # inline tokens holding placeholders, and their text children
    names: dict[str, int]  # placeholder → word index


@dataclass
class _Shape:
    words: list[str]
    template: _Template | None = None
    verified: int = 0
    rebuilds: int = 0
    off: bool = False  # always parsed in full


@dataclass
class ShapeCache:
    """Parses of one markdown-it parser, shared by the rows of the same shape."""

    parser: MarkdownIt
    _shapes: OrderedDict[tuple[str, ...], _Shape] = field(default_factory=OrderedDict)
    hits: int = 0

    def parse(self, source: str) -> tuple[list[Token], dict[str, Any]]:
        """The tokens and env of `source`, exactly as `parser.parse(source, env)` gives them."""
        parts = _SPLIT.split(source)
        words = parts[1::2]
        skeleton = tuple(
            parts[0::2]
        )  # what lies between the words, as such (any text may be in it)
        shape = self._shapes.get(skeleton)
        if shape is None:
            self._shapes[skeleton] = _Shape(words)
            if len(self._shapes) > _SHAPES_KEPT:
                self._shapes.popitem(last=False)
            return self._full(source)
        if shape.off or _MARK in source:
            return self._full(source)
        changed = {i for i, (a, b) in enumerate(zip(shape.words, words, strict=True)) if a != b}
        template = shape.template
        if template is None or not changed <= template.places:
            if shape.rebuilds >= _REBUILDS or not changed:
                return self._full(source)
            shape.rebuilds += 1
            places = changed | (template.places if template else frozenset())
            template = shape.template = _build(self.parser, parts, frozenset(places))
            if template is None:
                shape.off = True
                return self._full(source)
        if not all(words[i][0].isalpha() for i in template.places):
            return self._full(source)
        tokens, env = _substitute(template, words)
        if shape.verified < VERIFIED_ROWS:
            full = self._full(source)
            if not _same(full, (tokens, env)):
                shape.off = True
                return full
            shape.verified += 1
        self.hits += 1
        return tokens, env

    def _full(self, source: str) -> tuple[list[Token], dict[str, Any]]:
        env: dict[str, Any] = {}
        return self.parser.parse(source, env), env


def _build(parser: MarkdownIt, parts: list[str], places: frozenset[int]) -> _Template | None:
    """Parse the shape with a placeholder in each place; None when a place is not safe."""
    pieces = list(parts)
    names: dict[str, int] = {}
    for n, index in enumerate(sorted(places)):
        name = _MARK + _letters(n)
        names[name] = index
        pieces[2 * index + 1] = name
    source = "".join(pieces)
    if "\t" in source or _REFERENCE_DEF.search(source):
        return None
    for name in names:
        at = source.index(name)
        before = source[at - 1] if at else "\n"
        after = source[at + len(name)] if at + len(name) < len(source) else "\n"
        if before not in _BEFORE_OK or after not in _AFTER_OK or _inside_brackets(source, at):
            return None
    env: dict[str, Any] = {}
    tokens = parser.parse(source, env)
    if _PLACEHOLDER.search(repr(env)):
        return None  # in a footnote's label or an inline note: not plain text
    slots: list[tuple[int, list[int]]] = []
    seen: list[str] = []
    for b, token in enumerate(tokens):
        if _PLACEHOLDER.search(_fields(token)):
            return None
        if token.type != "inline" or not _PLACEHOLDER.search(token.content):
            continue
        children: list[int] = []
        for c, child in enumerate(token.children or []):
            if _PLACEHOLDER.search(_fields(child)) or child.children:
                return None
            found = _PLACEHOLDER.findall(child.content)
            if found and child.type != "text":
                return None  # in code, HTML or the like: not a word of text
            if found:
                children.append(c)
                seen += found
        slots.append((b, children))
    if sorted(seen) != sorted(names):
        return None  # each placeholder once, in text
    return _Template(places, tokens, env, slots, names)


def _substitute(template: _Template, words: list[str]) -> tuple[list[Token], dict[str, Any]]:
    """The template's tokens with this row's words; only the tokens that change are copied."""

    def word(match: re.Match[str]) -> str:
        return words[template.names[match.group()]]

    tokens = list(template.tokens)
    for b, children in template.slots:
        inline = copy.copy(tokens[b])
        inline.content = _PLACEHOLDER.sub(word, inline.content)
        kids = list(inline.children or [])
        for c in children:
            child = copy.copy(kids[c])
            child.content = _PLACEHOLDER.sub(word, child.content)
            kids[c] = child
        inline.children = kids
        tokens[b] = inline
    return tokens, copy.deepcopy(template.env)


def _fields(token: Token) -> str:
    """Everything of a token but its content and children, as text to search placeholders in."""
    return f"{token.tag}\0{token.markup}\0{token.info}\0{token.attrs!r}\0{token.meta!r}"


def _inside_brackets(source: str, at: int) -> bool:
    """Whether an unescaped `[` before `at` is still open (a link text or label)."""
    i = at - 1
    while i >= 0:
        char = source[i]
        if char in "[]":
            slashes = 0
            while i - slashes - 1 >= 0 and source[i - slashes - 1] == "\\":
                slashes += 1
            if slashes % 2 == 0:
                return char == "["
        i -= 1
    return False


def _letters(n: int) -> str:
    out = ""
    for _ in range(4):
        n, digit = divmod(n, 26)
        out = chr(ord("a") + digit) + out
    return out


def _same(a: tuple[list[Token], dict[str, Any]], b: tuple[list[Token], dict[str, Any]]) -> bool:
    return [t.as_dict() for t in a[0]] == [t.as_dict() for t in b[0]] and repr(a[1]) == repr(b[1])

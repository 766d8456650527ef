"""The shape cache gives exactly the tokens markdown-it gives, whatever the words and their places."""

from __future__ import annotations

import random

import pytest

from campaign.letter import escape_markdown, markdown_parser
from campaign.markdownshape import ShapeCache

# Places where a cell's value can land in a letter, and values that could make Markdown read the
# place differently (tag and entity names, digits that start a list, a reference label, ...).
CONTEXTS = [
    "Bonjour {},",
    "<{}>",
    "</{}>",
    "<{} x>",
    "<{}\n",
    "</{} x\n",
    "&{};",
    "&#{};",
    "[{}]",
    "[a {}]",
    "[{}][]",
    "[voir {}] et la suite",
    "*{}*",
    "**{}**",
    "_{}_",
    "a_{}_b",
    "`{}`",
    "    {}",
    "# {}",
    "{}. item",
    "{}) item",
    "1. {}",
    "- {}",
    "> {}",
    "[^{}]",
    "^[{}]",
    "({})",
    "[x]({})",
    "[x](/u '{}')",
    "<http://{}>",
    "{}:x",
    "<{}:x>",
    "\\{}",
    "{}\\",
    "| {} | b |\n|---|---|\n| c | {} |",
    "{}\n===",
    "{}\n---",
    "~~~{}\n~~~",
    "``` {}\n```",
    "<!{}",
    "<{}@example.org>",
    "{} {} {}",
    "« {} »",
    "M. {}-{},",
    "{}’s",
    "Paris, le {}",
]
VALUES = [
    "Jean",
    "Élise",
    "Noël",
    "pre",
    "div",
    "script",
    "textarea",
    "amp",
    "copy",
    "12",
    "3",
    "1234567890",
    "Jean-Pierre",
    "O'Neil",
    "*x*",
    "a_b",
    "http",
    "mailto",
    "x" * 300,
    "Ⅻ",
    "²",
    "ß",
    "Zoë",
    "jean",
    "[x]",
    "a\nb",
    "",
    " ",
    "Qzxvaaaa",
    "Ǆemal",
    "a\x00b",
    "\x00",
]
REFERENCES = ["", "\n\n[jean]: /u\n", "\n\n[^jean]: note\n", "\n\n[^n]: note {}\n"]


def documents(rng: random.Random) -> list[str]:
    """One template of a few contexts, merged with many rows of random values."""
    contexts = rng.sample(CONTEXTS, rng.randint(1, 4))
    template = (
        "Un texte fixe.\n\n" + "\n\n".join(contexts) + "\n\nLa fin[^n]." + rng.choice(REFERENCES)
    )
    if "[^n]:" not in template:
        template += "\n\n[^n]: Une note.\n"
    holes = template.count("{}")
    rows = []
    for _ in range(12):
        usual = rng.random() < 0.6
        values = [
            rng.choice(VALUES[:3] if usual else VALUES) + (str(rng.randint(0, 99)) if usual else "")
            for _ in range(holes)
        ]
        rows.append(template.format(*map(escape_markdown, values)))
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_shared_parse_equals_markdown_it(seed: int) -> None:
    rng = random.Random(seed)
    parser = markdown_parser()
    cache = ShapeCache(parser)
    for _ in range(10):
        for source in documents(rng):
            env: dict[str, object] = {}
            expected = [t.as_dict() for t in parser.parse(source, env)]
            tokens, got_env = cache.parse(source)
            assert [t.as_dict() for t in tokens] == expected, source
            assert repr(got_env) == repr(env), source


def test_rows_that_differ_in_a_name_share_one_parse() -> None:
    parser = markdown_parser()
    cache = ShapeCache(parser)
    rows = [f"Bonjour {name},\n\nLe même texte pour tous.\n" for name in ("Ana", "Élise", "Noël")]
    rows += [f"Bonjour Prénom{i},\n\nLe même texte pour tous.\n" for i in range(20)]
    for source in rows:
        cache.parse(source)
    assert cache.hits == len(rows) - 1  # all but the first, which has nothing to compare with


def test_text_between_words_is_compared_as_it_is() -> None:
    """Two sources whose in-between text differs only by where a NUL falls are two shapes."""
    parser = markdown_parser()
    cache = ShapeCache(parser)
    for source in ["\x00", "a\x00b", "a\x00", "\x00b", "a b\x00c"]:
        env: dict[str, object] = {}
        expected = [t.as_dict() for t in parser.parse(source, env)]
        assert [t.as_dict() for t in cache.parse(source)[0]] == expected


def test_substituted_tokens_are_fresh_copies() -> None:
    """A rendering that changed one row's tokens would not reach the next row."""
    parser = markdown_parser()
    cache = ShapeCache(parser)
    for name in ("Ana", "Bob", "Chloé", "Dan"):
        cache.parse(f"Bonjour {name}, merci.\n")
    first, _ = cache.parse("Bonjour Eve, merci.\n")
    assert first[1].children is not None
    first[1].children[0].content = "changed"
    again, _ = cache.parse("Bonjour Fay, merci.\n")
    assert again[1].children is not None
    assert again[1].children[0].content == "Bonjour Fay, merci."

"""The catalogs: every message of the sources is translated into French, and the shipped .mo is the .po.

The messages are extracted from the sources now, in-process, with Babel and the same mapping and
keywords as `make catalogs`: a message added without its French fails `make test`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from campaign import i18n

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "campaign"
LOCALE = PACKAGE / "locale"
# The keywords of the Makefile's `catalogs` target (-k _ -k N_ -k ngettext:1,2 -k plural:2,3
# -k pgettext:1c,2).
KEYWORDS: dict[str, tuple[int, ...] | None] = {
    "_": None,
    "N_": None,
    "ngettext": (1, 2),
    "plural": (2, 3),
    "pgettext": ((1, "c"), 2),
}
_PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}|%\((\w+)\)[sd]")


def extracted() -> dict[tuple[str, str | None], str | None]:
    """(msgid, context) → msgid_plural (None if singular) of every message in the sources now."""
    with (REPO / "babel.cfg").open(encoding="utf-8") as mapping:
        method_map, options_map = parse_mapping_cfg(mapping, str(REPO / "babel.cfg"))
    found: dict[tuple[str, str | None], str | None] = {}
    for _file, _line, message, _comments, context in extract_from_dir(
        str(PACKAGE), method_map, options_map, keywords=KEYWORDS, comment_tags=("TRANSLATORS:",)
    ):
        if isinstance(message, tuple):
            found[(message[0], context)] = message[1]
        elif message:
            found[(message, context)] = found.get((message, context))
    return found


def french_po() -> Catalog:
    with (LOCALE / "fr" / "LC_MESSAGES" / "campaign.po").open("rb") as po:
        return read_po(po, locale="fr")


def test_the_sources_have_messages() -> None:
    messages = extracted()
    assert len(messages) > 100  # the extraction reads the sources, not an empty folder
    assert ("error:", None) in messages


def test_every_message_has_a_french_translation() -> None:
    catalog = french_po()
    missing, fuzzy, untranslated = [], [], []
    for (msgid, context), plural in extracted().items():
        entry = catalog.get(msgid, context=context)
        if entry is None:
            missing.append(msgid)
            continue
        if entry.fuzzy:
            fuzzy.append(msgid)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if plural is not None and not isinstance(entry.id, tuple):
            missing.append(f"{msgid} (plural form)")
        elif not all(strings):
            untranslated.append(msgid)
    hint = "run `make catalogs` and translate the new messages in campaign/locale/fr/LC_MESSAGES"
    assert not missing, f"not in the French catalog ({hint}): {missing}"
    assert not fuzzy, f"fuzzy in the French catalog: {fuzzy}"
    assert not untranslated, f"no French translation ({hint}): {untranslated}"


def test_translations_keep_the_placeholders() -> None:
    for message in french_po():
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for index, text in enumerate(strings):
            source = ids[0] if index == 0 else ids[-1]
            wanted = {m.group(1) or m.group(2) for m in _PLACEHOLDER.finditer(source)}
            used = {m.group(1) or m.group(2) for m in _PLACEHOLDER.finditer(text)}
            if index == 0 and len(ids) > 1:  # a singular may say "un" where the plural says {n}
                assert used <= wanted, f"{message.id!r}: {text!r} uses {used - wanted}"
            else:
                assert used == wanted, f"{message.id!r}: {text!r} has {used}, not {wanted}"


def test_the_shipped_catalog_is_the_compiled_po() -> None:
    with (LOCALE / "fr" / "LC_MESSAGES" / "campaign.mo").open("rb") as mo:
        compiled = read_mo(mo)
    po = french_po()

    def pairs(catalog: Catalog) -> dict[object, object]:
        def frozen(value: object) -> object:  # read_mo gives a plural's forms as a list
            return tuple(value) if isinstance(value, list | tuple) else value

        return {frozen(m.id): frozen(m.string) for m in catalog if m.id and not m.fuzzy}

    assert pairs(compiled) == pairs(po), "run `make catalogs` to compile the .po again"


def test_the_catalogs_ship_in_the_package() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert "locale/*/LC_MESSAGES/*.mo" in pyproject


@pytest.mark.parametrize(
    ("value", "language"),
    [
        ("fr_FR.UTF-8", "fr"),
        ("fr", "fr"),
        ("fr_CA", "fr"),
        ("en_GB.UTF-8", "en"),
        ("C", "en"),
        ("C.UTF-8", "en"),
        ("POSIX", "en"),
        ("de_DE.UTF-8", "en"),
        ("fr-BE", "fr"),
    ],
)
def test_locale_names_become_a_language(value: str, language: str) -> None:
    assert i18n.normalise(value) == language


def test_the_first_variable_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "")
    monkeypatch.setenv("LC_MESSAGES", "fr_FR.UTF-8")
    monkeypatch.setenv("LANG", "C")
    assert i18n.environment_language() == "fr"
    monkeypatch.setenv("LC_ALL", "C")
    assert i18n.environment_language() == "en"
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name)
    assert i18n.environment_language() == "en"


def test_the_settings_language_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "C")
    assert i18n._("error:") == "error:"
    i18n.use_language("fr")
    assert i18n._("error:") == "erreur :"
    with i18n.language_of("en"):
        assert i18n._("error:") == "error:"
    assert i18n._("error:") == "erreur :"
    i18n.use_language(None)
    monkeypatch.setenv("LC_ALL", "fr_FR.UTF-8")
    assert i18n._("error:") == "erreur :"


def test_plurals_agree() -> None:
    with i18n.language_of("en"):
        assert i18n.plural(1, "{n} run", "{n} runs") == "1 run"
        assert i18n.plural(2, "{n} run", "{n} runs") == "2 runs"
    with i18n.language_of("fr"):
        assert i18n.plural(1, "{n} run", "{n} runs") == "1 session d’envoi"
        assert i18n.plural(0, "{n} run", "{n} runs") == "0 session d’envoi"  # 0 is singular
        assert i18n.plural(1500, "{n} run", "{n} runs") == "1\u202f500 sessions d’envoi"


def test_labels_and_lists_follow_the_typography_of_the_language() -> None:
    with i18n.language_of("en"):
        assert i18n.labelled("merci", "2 sent") == "merci: 2 sent"
        assert i18n.listed(["first rows", "longest name"]) == "first rows; longest name"
    with i18n.language_of("fr"):
        assert i18n.labelled("merci", "2 envoyés") == "merci : 2 envoyés"
        assert i18n.listed(["premières lignes", "nom le plus long"]) == (
            "premières lignes ; nom le plus long"
        )


def test_a_value_is_quoted_as_the_language_quotes_and_what_is_invisible_shows() -> None:
    with i18n.language_of("en"):
        assert i18n.quoted("smtp.port") == "'smtp.port'"
        assert i18n.quoted(8025) == "'8025'"
    with i18n.language_of("fr"):
        assert i18n.quoted("smtp.port") == "«\u00a0smtp.port\u00a0»"
        # A no-break space or a line break in a cell is what makes it refused: it must show.
        assert i18n.quoted("jean\u00a0dupont@example.org\r") == (
            "«\u00a0jean\\xa0dupont@example.org\\r\u00a0»"
        )
        assert i18n.quoted("Établissement") == "«\u00a0Établissement\u00a0»"  # letters stay


# Addresses email-validator refuses, each for a different sentence of its own (checked without
# DNS, as the tool checks them).
REFUSED = [
    "camille",
    "@example.org",
    "camille@",
    "camille..martin@example.org",
    ".camille@example.org",
    "camille.@example.org",
    "camille@.example.org",
    "camille@-example.org",
    "camille@example.org.",
    "camille@example-.org",
    "camille@ex.-ample.org",
    "camille@ab--cd.org",
    "camille martin@example.org",
    "camille@exa mple.org",
    "camille\u2028@example.org",
    "camille\uff20example.org",
    "camille\ufe6bexample.org",
    '"camille"@example.org',
    "<camille@example.org>",
    "Camille <camille@example.org>",
    "camille@[192.0.2.1]",
    "camille@localhost",
    "camille@example.invalid",
    "camille@xn--zz.org",
    "camille@" + "b" * 64 + ".org",
    "camille@" + "b." * 130 + "org",
]


@pytest.mark.parametrize("address", REFUSED)
def test_the_validators_reasons_are_said_in_french(address: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from campaign.emailreasons import reason

    with pytest.raises(EmailNotValidError) as refused:
        validate_email(address, check_deliverability=False)
    english = str(refused.value)
    with i18n.language_of("en"):
        assert "@-sign" in reason(refused.value) or "email address" in reason(refused.value)
    with i18n.language_of("fr"):
        french = reason(refused.value)
    # A sentence of email-validator's that the table does not know comes out in English: a new
    # wording in a newer email-validator fails here, not in front of a French organiser.
    assert french != english
    assert "@-sign" not in french and "email address" not in french
    # What the sentence names (characters, a count, the other library's detail) is kept.
    for kept in re.findall(r": ([A-Z][A-Z ]+)\.$|\(([^)]*[A-Z][a-z]+[^)]*)\)", english):
        named = kept[0] or kept[1]
        if named and "too many" not in named and "zone index" not in named:
            assert named in french


def test_a_sentence_the_table_does_not_know_is_shown_as_it_is() -> None:
    from campaign.emailreasons import reason

    with i18n.language_of("fr"):
        assert reason("A sentence of a newer email-validator.") == (
            "A sentence of a newer email-validator."
        )
        assert reason("The email address is too long (3 characters too many).") == (
            "L’adresse électronique est trop longue (3 caractères de trop)."
        )
        assert reason("The email address is too long (1 character too many).") == (
            "L’adresse électronique est trop longue (1 caractère de trop)."
        )
        assert reason("After Unicode normalization: There must be something after the @-sign.") == (
            "Après normalisation Unicode : Il manque la partie après le @."
        )


def test_rows_are_named_with_their_runs_as_ranges() -> None:
    from campaign.i18n import rows_named

    assert rows_named([5]) == "row 5"
    assert rows_named([9, 4, 5, 6, 7, 12, 13]) == "rows 4–7, 9, 12, 13"
    assert rows_named(range(2, 200, 2), shown=3) == "rows 2, 4, 6 and 96 more"

"""The NF Z10-011 address checks: pure functions, then as `campaign check` reports them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook

from campaign.inputs import CheckReport, check_inputs, load_inputs
from campaign.postal import (
    MAX_WIDTH,
    abbreviate,
    address_issues,
    delivery_start,
    postcode_issue,
    strip_punctuation,
)
from campaign.settings import load_settings

GOOD = [
    "Madame Élise Noël",
    "Directrice générale",
    "Centre hospitalier de Valbrune",
    "12 rue de la Paix",
    "01000 BOURG EN BRESSE",
]


def test_a_norm_address_has_no_issue() -> None:
    assert address_issues(GOOD) == []
    assert address_issues([*GOOD[:3], "BP 12", "38043 GRENOBLE CEDEX 9"]) == []
    assert address_issues([*GOOD[:4], "97100 BASSE TERRE"]) == []


def test_accents_are_allowed_on_the_last_line() -> None:
    assert address_issues([*GOOD[:4], "25000 BESANÇON"]) == []


def test_seven_lines_are_one_too_many() -> None:
    issues = address_issues(["Madame A", "Service B", "C", "D", "Bâtiment E", *GOOD[3:]])
    assert [i.line for i in issues] == [7]
    assert "7 lines" in issues[0].message


def test_a_long_street_is_abbreviated_only_as_far_as_needed() -> None:
    line = "215 boulevard du Maréchal-de-Lattre-de-Tassigny"
    issues = address_issues([*GOOD[:3], line, GOOD[4]])
    hints = {i.hint for i in issues}
    assert "write '215 BD du MAL de Lattre de Tassigny'" in hints
    assert {i.line for i in issues} == {4}
    # Already short enough once BD is used: the marshal keeps his title.
    assert (
        abbreviate("40 boulevard du Maréchal Foch à Valbrune")
        == "40 BD du Maréchal Foch à Valbrune"
    )
    assert abbreviate("1 rue courte") is None


def test_an_organisation_name_gets_its_acronym_when_too_long() -> None:
    line = "Centre hospitalier universitaire de Grandvallon"
    issues = address_issues([GOOD[0], line, *GOOD[3:]])
    assert issues[0].hint.startswith("write 'CHU de Grandvallon'")
    assert issues[0].line == 2


def test_punctuation_from_the_street_down_is_reported_with_the_fix() -> None:
    issues = address_issues([*GOOD[:3], "12, rue de l'Hôpital", GOOD[4]])
    assert [(i.line, i.hint) for i in issues] == [(4, "write '12 rue de l Hôpital'")]


def test_punctuation_in_the_identity_lines_is_fine() -> None:
    assert address_issues(["M. Noël Dupont", "Centre hospitalier d'Ambérieu", *GOOD[3:]]) == []


def test_a_last_line_in_lower_case_gets_the_capitals() -> None:
    issues = address_issues([*GOOD[:4], "01000 Bourg-en-Bresse"])
    assert [(i.line, i.hint) for i in issues] == [(5, "write '01000 BOURG EN BRESSE'")]


def test_a_last_line_without_postcode_is_explained() -> None:
    issues = address_issues([*GOOD[:4], "BOURG EN BRESSE"])
    assert "5 digits" in issues[0].hint


def test_the_examples_of_a_last_line_are_in_the_readers_language() -> None:
    from campaign.i18n import language_of

    with language_of("fr"):
        issues = address_issues([*GOOD[:4], "BOURG EN BRESSE"])
    assert issues[0].hint.endswith(
        "«\u00a075013 PARIS\u00a0» ou «\u00a038043 GRENOBLE CEDEX 9\u00a0»"
    ), issues[0].hint
    assert "5 digits" not in issues[0].hint  # the sentence is French too


def test_postcodes() -> None:
    assert postcode_issue("01000") is None
    assert postcode_issue("") is None
    assert "01000" in (postcode_issue("1000") or "")
    assert postcode_issue("2A004") is not None
    assert postcode_issue("750013") is not None


def test_the_street_starts_the_delivery_lines() -> None:
    assert delivery_start(["A", "B", "Bâtiment C", "3 rue D", "75001 PARIS"]) == 3
    assert delivery_start(["A", "B", "3 rue D", "BP 4", "75001 PARIS"]) == 2
    assert delivery_start(["A", "Résidence des Pins", "75001 PARIS"]) == 1


words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéè' -,.", min_size=1, max_size=60)


@given(words)
def test_a_fixed_delivery_line_has_no_punctuation_left(line: str) -> None:
    fixed = strip_punctuation(line)
    assert not any(mark in fixed for mark in ",.'-")
    assert strip_punctuation(fixed) == fixed


@given(
    st.lists(
        st.sampled_from(["boulevard", "Saint", "avenue", "du", "Général", "Jean"]), max_size=12
    )
)
def test_an_abbreviation_fits_or_is_not_proposed(parts: list[str]) -> None:
    line = " ".join(["12", *parts])
    short = abbreviate(line)
    if len(line) <= MAX_WIDTH:
        assert short is None
    elif short is not None:
        assert len(short) <= MAX_WIDTH
        assert short.split()[0] == "12"


@given(words)
def test_every_issue_names_a_line_of_the_block_and_a_fix(street: str) -> None:
    lines = [*GOOD[:3], street.strip() or "x", "01000 Bourg-en-Bresse"]
    for issue in address_issues(lines):
        assert 1 <= issue.line <= len(lines)
        assert issue.hint


SETTINGS = """\
sender: {name: Collectif, email: collectif@example.org}
campaigns:
  essai:
    letter: letters/lettre.md
    recipients: recipients/d.xlsx
    email_column: Courriel
    subject: "Lettre"
"""


def test_check_reports_address_warnings_with_row_column_and_fix(tmp_path: Path) -> None:
    (tmp_path / "letters").mkdir()
    (tmp_path / "recipients").mkdir()
    (tmp_path / "letters" / "lettre.md").write_text(
        "{{ salutation(civilite) }}\n\nBonjour.\n", encoding="utf-8"
    )
    (tmp_path / "settings.yaml").write_text(SETTINGS, encoding="utf-8")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["Civilité", "Nom", "Établissement", "Adresse", "Code postal", "Ville", "Courriel"]
    )
    sheet.append(
        [
            "Madame",
            "Noël",
            "CH de Valbrune",
            "12 rue de la Paix",
            "01000",
            "BOURG EN BRESSE",
            "a@example.org",
        ]
    )
    sheet.append(
        [
            "Madame",
            "Roux",
            "CH de Valbrune",
            "12, rue de l'Hôpital",
            "1000",
            "Bourg-en-Bresse",
            "b@example.org",
        ]
    )
    sheet.append(
        ["Mme", "Arnaud", "CH de Valbrune", "3 rue X", "01000", "BOURG EN BRESSE", "c@example.org"]
    )
    book.save(tmp_path / "recipients" / "d.xlsx")
    inputs = load_inputs(load_settings(tmp_path / "settings.yaml").campaign("essai"))
    report = check_inputs(inputs)
    found = {(p.place.row, p.place.column, p.hint) for p in report.problems}
    assert report.errors == 0
    assert (3, "Adresse", "write '12 rue de l Hôpital'") in found
    assert (3, "Ville", "write '1000 BOURG EN BRESSE'") not in found  # the postcode is its own
    assert any(row == 3 and column == "Code postal" for row, column, _ in found)
    assert any(row == 3 and column == "Ville" for row, column, _ in found)
    assert not any(row == 2 for row, _, _ in found)
    # The salutation helper writes the title in full: "Mme" in a cell is fine there.
    assert not any(row == 4 for row, _, _ in found)


def check_csv(tmp_path: Path, letter: str, sheet: str) -> CheckReport:
    """`check` of a project made of one letter and one semicolon CSV (d.csv)."""
    (tmp_path / "letters").mkdir()
    (tmp_path / "recipients").mkdir()
    (tmp_path / "letters" / "lettre.md").write_text(letter, encoding="utf-8")
    (tmp_path / "settings.yaml").write_text(SETTINGS.replace("d.xlsx", "d.csv"), encoding="utf-8")
    (tmp_path / "recipients" / "d.csv").write_text(sheet, encoding="utf-8")
    return check_inputs(load_inputs(load_settings(tmp_path / "settings.yaml").campaign("essai")))


def test_check_warns_when_the_salutation_abbreviates_a_title(tmp_path: Path) -> None:
    report = check_csv(
        tmp_path,
        "{{ civilite }} la directrice,\n\nBonjour.\n\n"
        "Veuillez agréer, {{ civilite }} la directrice, nos salutations.\n",
        "Civilité;Nom;Courriel\nMadame;Noël;a@example.org\nMme;Roux;b@example.org\n",
    )
    titles = [p for p in report.problems if "abbreviated" in p.message]
    assert [(p.place.row, p.place.column) for p in titles] == [(3, "Civilité")]
    assert titles[0].hint is not None and "'Madame la directrice,'" in titles[0].hint


def test_check_warns_when_the_salutation_does_not_know_the_civility(tmp_path: Path) -> None:
    # "Dr" in Civilité: the letter opened "Madame, Monsieur," and check said nothing.
    report = check_csv(
        tmp_path,
        "{{ salutation(civilite, fonction) }}\n\nBonjour.\n",
        "Civilité;Fonction;Nom;Courriel\n"
        "Dr;directrice;Noël;a@example.org\nMme;directrice;Roux;b@example.org\n"
        ";directeur;Abel;c@example.org\nM.;directeur;Petit;d@example.org\n",
    )
    found = [p for p in report.problems if "civility" in p.message]
    assert [(p.place.row, p.place.column) for p in found] == [(2, "Civilité")]
    assert "'Dr'" in found[0].message and "'Madame, Monsieur,'" in found[0].message
    assert report.errors == 0 and report.ready == 4  # a warning: the letter can still go


def test_long_lists_are_checked_on_every_core_with_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaign import addressing

    (tmp_path / "letters").mkdir()
    (tmp_path / "recipients").mkdir()
    (tmp_path / "letters" / "lettre.md").write_text("Bonjour.\n", encoding="utf-8")
    (tmp_path / "settings.yaml").write_text(SETTINGS.replace("d.xlsx", "d.csv"), encoding="utf-8")
    lines = ["Nom;Adresse;Code postal;Ville;Courriel"]
    lines += [
        f"N{i};{i}, rue de l'Hôpital;1000;Bourg-en-Bresse;r{i}@example.org" for i in range(90)
    ]
    (tmp_path / "recipients" / "d.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    inputs = load_inputs(load_settings(tmp_path / "settings.yaml").campaign("essai"))
    alone = addressing.postal_problems(inputs)
    monkeypatch.setattr(addressing, "_PARALLEL_FROM", 10)
    shared = addressing.postal_problems(inputs)
    assert shared == alone
    rows = [p.place.row for p in alone if p.place.column == "Adresse"]
    assert rows == list(range(2, 22))  # the first 20 rows listed, in order
    assert any(p.message.startswith("70 more rows have the same warning") for p in alone)


def test_a_front_matter_address_is_the_one_checked(tmp_path: Path) -> None:
    report = check_csv(
        tmp_path,
        "---\naddress: |\n  {{ nom }}\n  {{ rue }}\n  {{ cp }} {{ ville }}\n---\nBonjour.\n",
        "Nom;Rue;CP;Ville;Courriel\n"
        "Noël;3 rue de la Paix;75013;PARIS;a@example.org\n"
        "Roux;3, rue de la Paix;75013;Paris;b@example.org\n",
    )
    assert {(p.place.row, p.hint) for p in report.problems} == {
        (3, "write '3 rue de la Paix'"),
        (3, "write '75013 PARIS'"),
    }

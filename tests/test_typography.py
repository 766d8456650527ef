"""French typography, dates and salutations."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from campaign.typography import NNBSP, date_fr, french, salutation


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Objet : la lettre", f"Objet{NNBSP}: la lettre"),
        ("Pourquoi ? Parce que ; enfin !", f"Pourquoi{NNBSP}? Parce que{NNBSP}; enfin{NNBSP}!"),
        ("le « Health Data Hub »", f"le «{NNBSP}Health Data Hub{NNBSP}»"),
        ("le «HDH»", f"le «{NNBSP}HDH{NNBSP}»"),
        ("l'arrêté d'avril", "l’arrêté d’avril"),
        ("n° 14130", "n°\u00a014130"),
        # A reference and its number, a date's parts: never apart at a line's end.
        ("de l'article 40, alinéa 2", "de l’article\u00a040, alinéa\u00a02"),
        ("Articles 40 et 41", "Articles\u00a040 et 41"),
        ("l'arrêté du 21 avril 2020,", "l’arrêté du 21\u00a0avril\u00a02020,"),
        ("le 1er mai 2020", "le 1er\u00a0mai\u00a02020"),
        ("nos 3 hôpitaux, 2020 mai, le 3, mai", "nos 3 hôpitaux, 2020 mai, le 3, mai"),
    ],
)
def test_french_spacing_and_apostrophes(typed: str, expected: str) -> None:
    assert french(typed) == expected


@pytest.mark.parametrize(
    "untouched",
    ["https://example.org/a?b=c", "à 10:30", "mailto:x@example.org", "'quoted'", "Quoi?!"],
)
def test_french_leaves_urls_times_and_unspaced_marks_alone(untouched: str) -> None:
    assert french(untouched) == untouched


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2020, 5, 7), "7 mai 2020"),
        (date(2020, 5, 1), "1er mai 2020"),
        (datetime(2021, 12, 11, 9, 30), "11 décembre 2021"),
        ("2020-02-01", "1er février 2020"),
        (date(2020, 8, 21), "21 août 2020"),
    ],
)
def test_dates_are_written_in_french(value: object, expected: str) -> None:
    assert date_fr(value) == expected


def test_date_fr_refuses_text_that_is_no_date() -> None:
    with pytest.raises(ValueError, match="not a date"):
        date_fr("le 7 mai")


@pytest.mark.parametrize(
    ("civility", "function", "expected"),
    [
        ("Madame", "Directrice", "Madame la Directrice,"),
        ("Monsieur", "Directeur", "Monsieur le Directeur,"),
        ("Mme", "Directrice générale", "Madame la Directrice générale,"),
        ("M.", "Directeur délégué", "Monsieur le Directeur délégué,"),
        ("Madame", "Directeur général adjoint", "Madame la Directrice générale adjointe,"),
        ("Monsieur", "Directrice", "Monsieur le Directeur,"),
        ("Monsieur", "Administrateur", "Monsieur l’Administrateur,"),
        ("Mme", "DIRECTRICE DES SOINS", "Madame la Directrice des soins,"),  # whatever the case
        ("Madame", "", "Madame,"),
        ("Monsieur", None, "Monsieur,"),
        ("", "Directrice", "Madame, Monsieur,"),
        (None, None, "Madame, Monsieur,"),
        ("Docteur", "Directeur", "Madame, Monsieur,"),
    ],
)
def test_salutation_agrees_with_civility_and_function(
    civility: object, function: object, expected: str
) -> None:
    assert salutation(civility, function) == expected


def test_incise_dashes_stay_with_the_words_they_enclose() -> None:
    text = french("acteurs — Commission nationale, hôpitaux —, le gouvernement")
    assert text == "acteurs —\u00a0Commission nationale, hôpitaux\u00a0—, le gouvernement"
    # A dash inside a compound word or without spaces is not an incise.
    assert french("Haute-Garonne—SOCR") == "Haute-Garonne—SOCR"

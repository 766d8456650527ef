"""Write the sample recipient spreadsheets: fictional people only, addresses at example.org/.com.

    python scripts/make_samples.py      # rewrites recipients/*.xlsx and recipients/*.csv

The output is deterministic (fixed seed), so re-running it changes nothing.
"""

from __future__ import annotations

import csv
import random
import unicodedata
from pathlib import Path

from openpyxl import Workbook

from campaign.postal import abbreviate, last_line_fix

ROOT = Path(__file__).resolve().parent.parent

FIRST_F = [
    "Camille",
    "Claire",
    "Élise",
    "Hélène",
    "Inès",
    "Juliette",
    "Léa",
    "Louise",
    "Maëlle",
    "Margaux",
    "Nathalie",
    "Océane",
    "Pauline",
    "Sophie",
    "Valérie",
    "Zoé",
    "Anaïs",
    "Agnès",
]
FIRST_M = [
    "Antoine",
    "Benoît",
    "Cédric",
    "Damien",
    "Étienne",
    "François",
    "Gaël",
    "Hugo",
    "Jérôme",
    "Julien",
    "Loïc",
    "Mathieu",
    "Nicolas",
    "Olivier",
    "Rémi",
    "Thibault",
    "Yannick",
    "Noël",
]
LAST = [
    "Arnaud",
    "Barbier",
    "Besnard",
    "Carré",
    "Chevalier",
    "Colin",
    "Delorme",
    "Dufresne",
    "Faure",
    "Fontaine",
    "Gauthier",
    "Guérin",
    "Hamel",
    "Jacquet",
    "Lacroix",
    "Lemaître",
    "Leroux",
    "Marchand",
    "Mercier",
    "Morel",
    "Noël",
    "Perrin",
    "Poirier",
    "Renaud",
    "Roussel",
    "Savary",
    "Tessier",
    "Vasseur",
    "Vidal",
    "Le Goff",
    "d’Aubigné",
    "N’Diaye",
]
# Fictional towns: no real hospital, no real director.
TOWNS = [
    "Valbrune",
    "Saint-Aurèle-sur-Marne",
    "Montclair-les-Bains",
    "Rochefleur",
    "Bellerive",
    "Combeval",
    "Fontclaire",
    "Haut-Castel",
    "Lormeaux",
    "Mirabel-en-Vaux",
    "Pradelles-le-Lac",
    "Quinsac-l’Étang",
    "Roquebelle",
    "Sarlande",
    "Tréval",
    "Vauclère",
    "Beaulieu-sous-Roche",
    "Chantemerle",
    "Grandvallon",
    "Saint-Ombre",
]
KINDS = [
    "Centre hospitalier de",
    "Centre hospitalier intercommunal de",
    "Hôpital local de",
    "Centre hospitalier universitaire de",
    "Groupe hospitalier de",
]
# Written to the postal norm (NF Z10-011): no punctuation from the street line down.
STREETS = [
    "rue de l Hôpital",
    "avenue des Tilleuls",
    "boulevard Pasteur",
    "rue du Docteur Roux",
    "place de la Santé",
    "chemin des Acacias",
    "allée Marie Curie",
    "rue Ambroise Paré",
]
FUNCTIONS_F = ["Directrice", "Directrice générale", "Directrice déléguée"]
FUNCTIONS_M = ["Directeur", "Directeur général", "Directeur délégué"]
ROLES = [
    "Médecin",
    "Infirmière",
    "Infirmier",
    "Ingénieur",
    "Ingénieure",
    "Pharmacienne",
    "Pharmacien",
    "Chercheuse",
    "Chercheur",
    "Étudiant",
    "Étudiante",
    "Juriste",
    "Sage-femme",
    "Kinésithérapeute",
    "Développeuse",
    "Développeur",
    "Data scientist",
    "Psychologue",
]
ORGS = [
    "Association Santé & Libertés",
    "Collectif des soignants",
    "École d’ingénieurs de Valbrune",
    "Cabinet médical du Parc",
    "Laboratoire d’informatique médicale",
    "Entreprise Numérique Libre",
    "",
    "Université de Rochefleur",
    "Réseau des pharmaciens",
    "Maison de santé de Tréval",
]


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(c if c.isalnum() else "-" for c in plain).strip("-").replace("--", "-")


def directors(rng: random.Random, count: int = 40) -> list[list[str]]:
    rows = []
    postcodes: dict[str, str] = {}  # one postcode a town: two hospitals of a town share it
    for i in range(count):
        female = rng.random() < 0.5
        first = rng.choice(FIRST_F if female else FIRST_M)
        last = rng.choice(LAST)
        town = TOWNS[i % len(TOWNS)]
        kind = KINDS[i % len(KINDS)]
        # Over 38 characters the address line takes the norm's abbreviation (CHU, CHI…).
        establishment = abbreviate(f"{kind} {town}") or f"{kind} {town}"
        department = rng.choice([1, 2, 4, 5, 6, 7, 8, 9, 13, 21, 33, 35, 44, 59, 69, 75])
        postcode = postcodes.setdefault(town, f"{department:02d}{rng.randint(0, 999):03d}")
        address = f"{rng.randint(1, 120)} {rng.choice(STREETS)}"
        function = rng.choice(FUNCTIONS_F if female else FUNCTIONS_M)
        domain = "example.org" if i % 3 else "example.com"
        email = f"{ascii_slug(first)}.{ascii_slug(last)}.{i + 1}@{domain}"
        rows.append(
            [
                "Madame" if female else "Monsieur",
                first,
                last,
                function,
                establishment,
                address,
                postcode,
                last_line_fix(town),  # the town as the last line wants it: BOURG EN BRESSE
                email,
            ]
        )
    # The extremes a reviewer must see: a long name, a long two-line address, empty optional cells,
    # all within the norm's 38 characters a line (the address block may write "Mme").
    rows[5][0:4] = ["Mme", "Marie-Hélène", "de La Tour-d’Auvergne", "Directrice"]
    rows[5][8] = "marie-helene.de-la-tour.6@example.org"
    # The street needs the norm's abbreviations to fit: BD for boulevard, MAL for maréchal.
    rows[9][5] = "Pavillon Ambroise-Paré bâtiment C\n215 BD du MAL de Lattre de Tassigny"
    rows[12][3] = ""  # no function: the salutation falls back to "Madame, Monsieur,"
    rows[12][0] = ""
    rows[17][4] = "CHI Vallées de la Brune et Haut-Castel"
    mailbox_demo(rows, first=1, last=2, email=8)
    return rows


def signatories(rng: random.Random, count: int = 712) -> list[list[str]]:
    rows = []
    for i in range(count):
        female = rng.random() < 0.5
        first = rng.choice(FIRST_F if female else FIRST_M)
        last = rng.choice(LAST)
        domain = rng.choice(["example.org", "example.com"])
        email = f"{ascii_slug(first)}.{ascii_slug(last)}.{i + 1}@{domain}"
        rows.append([first, last, rng.choice(ROLES), rng.choice(ORGS), email])
    mailbox_demo(rows, first=0, last=1, email=4)
    return rows


def mailbox_demo(rows: list[list[str]], *, first: int, last: int, email: int) -> None:
    """The last two rows play the mailbox demo: the local sink bounces `rebond.…` and answers
    `absence.…` with an out-of-office reply."""
    for row, kind in zip(rows[-2:], ("rebond", "absence"), strict=True):
        row[email] = f"{kind}.{ascii_slug(row[first])}.{ascii_slug(row[last])}@example.org"


def main() -> None:
    rng = random.Random(2020)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Directeurs"
    sheet.append(
        [
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
    )
    for index, row in enumerate(directors(rng)):
        # Most postcodes are text; every fourth is a number formatted 00000, the way French
        # organisers keep a lost zero (campaign reads it as the sheet shows it: 01000).
        postcode: str | int = int(row[6]) if index % 4 == 3 else row[6]
        sheet.append([*row[:6], postcode, *row[7:]])
    for cell in sheet["G"][1:]:
        if isinstance(cell.value, int):
            cell.number_format = "00000"
        else:
            cell.number_format = "@"
    book.save(ROOT / "recipients" / "directeurs-hopitaux.xlsx")

    path = ROOT / "recipients" / "signataires.csv"
    with path.open("w", encoding="cp1252", newline="") as handle:
        writer = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        writer.writerow(["Prénom", "Nom", "Fonction", "Organisation", "Courriel"])
        writer.writerows(signatories(rng))
    (ROOT / "recipients" / "suppression.csv").write_text(
        "email\n# Addresses that asked not to be written to again (fictional).\n"
        "etienne.marchand.41@example.com\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()

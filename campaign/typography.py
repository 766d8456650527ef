"""French typography, dates and salutations: the helpers letter templates may call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def salutation(civility: object = "", function: object = "") -> str:
    """`Madame la directrice,` / `Monsieur le directeur,` from civility and function."""
    civ = str(civility or "").strip().lower().rstrip(".")
    role = str(function or "").strip()
    female = civ in {"madame", "mme", "mademoiselle", "mlle"}
    male = civ in {"monsieur", "m", "mr"}
    if not (female or male):
        return "Madame, Monsieur,"
    if not role:
        return "Madame," if female else "Monsieur,"
    article = "la" if female else "le"
    return f"{'Madame' if female else 'Monsieur'} {article} {role[0].lower()}{role[1:]},"


FILTERS: dict[str, Callable[..., Any]] = {}
GLOBALS: dict[str, Any] = {"salutation": salutation}

"""Fuzzing the commands: arbitrary cells, headers, settings values and template snippets.

Each example runs the real command through the CLI runner; the outcome must be a success or a
clear error that names its place (file, row, column, line or settings key), never a traceback.
`render` is slow, so it gets a tiny sample and few examples; the whole file stays under a minute.
"""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaign.cli import main
from tests.smtp_server import make_project

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text a spreadsheet cell may hold: any Unicode (control characters, separators, emoji), with a
# bias towards what breaks templates, Markdown, HTML, headers and spreadsheets.
HOSTILE = [
    "{{ nom }}",
    "{% if %}",
    "}}",
    "[^1]",
    "<b>",
    "</p>",
    "&amp;",
    "*",
    "_",
    "`",
    "\\",
    "=1+2",
    "@SUM(A1)",
    "\r\nBcc: spy@example.com",
    "\x00",
    "\u2028",
    "\ufeff",
    '"',
    ";",
    ",",
    "josé",
    "😀",
]
cell = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(HOSTILE) | st.text(max_size=5), max_size=5).map("".join),
)
address = st.one_of(
    st.integers(1, 99).map(lambda n: f"p{n}@example.org"),
    st.sampled_from(
        ["jean@dupont@example.org", "@example.org", "x@", "josé@example.org", " a@example.org "]
    ),
    st.text(max_size=20),
)


def cli(settings_path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--settings", str(settings_path), *args])


@contextmanager
def mini_project() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield make_project(Path(tmp), port=25, recipients=2)


def write_sheet(settings_path: Path, header: list[str], rows: list[list[str]]) -> None:
    path = settings_path.parent / "recipients" / "people.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


PLACE_STARTS = ("letters/", "recipients/", "settings.", "smtp.", "campaigns.")


def assert_clear(result: Result, *places: str) -> None:
    """Success, or an error printed with its place; never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}"
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code != 0:  # rich wraps table cells at 80 columns: look for the start of names
        assert any(place in result.output for place in (*places, *PLACE_STARTS)), result.output


def assert_problems_have_places(result: Result) -> None:
    """Every problem of `check --json` names a file (and a row, line or key when it can)."""
    assert_clear(result, "settings.yaml", "people.csv", "mini.md")
    if result.output.lstrip().startswith("{"):
        for problem in json.loads(result.output)["problems"]:
            assert problem["file"] or problem["key"], problem


@FUZZ
@given(rows=st.lists(st.tuples(cell, cell, address), min_size=1, max_size=4))
def test_check_and_dry_run_survive_any_cells(rows: list[tuple[str, str, str]]) -> None:
    with mini_project() as path:
        write_sheet(path, ["prenom", "nom", "email"], [list(r) for r in rows])
        assert_problems_have_places(cli(path, "check", "--json"))
        assert_clear(cli(path, "send", "--dry-run", "--quiet"), "people.csv", "mini.md")


header = st.one_of(
    st.text(max_size=12), st.sampled_from(["", " ", "email", "Nom", "nom", "É", "1"])
)


@FUZZ
@given(headers=st.lists(header, min_size=1, max_size=5), values=st.lists(cell, max_size=5))
def test_check_survives_any_header_names(headers: list[str], values: list[str]) -> None:
    with mini_project() as path:
        write_sheet(path, [*headers, "email"], [[*values[: len(headers)], "a@example.org"]])
        assert_problems_have_places(cli(path, "check", "--json"))


scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**12),
    st.floats(allow_nan=True),
    st.text(max_size=15),
    st.sampled_from(["30s", "2m", "1h", "-1s", "10 parsecs", "0", "{{ nom }}", "../x", "/etc"]),
)
value = st.one_of(
    scalar, st.lists(scalar, max_size=3), st.dictionaries(st.text(max_size=5), scalar, max_size=2)
)
SETTINGS_KEYS = [
    ("smtp", "port"),
    ("smtp", "security"),
    ("smtp", "timeout"),
    ("smtp", "host"),
    ("smtp", "cert_bundle"),
    ("throttle", "per_minute"),
    ("throttle", "per_second"),
    ("throttle", "concurrency"),
    ("retry", "backoff"),
    ("retry", "max_attempts"),
    ("sender", "email"),
    ("sender", "name"),
    ("campaigns", "mini", "email_column"),
    ("campaigns", "mini", "to_name"),
    ("campaigns", "mini", "subject"),
    ("campaigns", "mini", "attachments"),
    ("campaigns", "mini", "letter"),
    ("campaigns", "mini", "recipients"),
    ("campaigns", "mini", "list_unsubscribe"),
    ("retention_days",),
    ("outbox",),
    ("default_campaign",),
    ("unknown_key",),
]


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(SETTINGS_KEYS), value), min_size=1, max_size=3))
def test_check_and_dry_run_survive_any_settings_values(
    changes: list[tuple[tuple[str, ...], Any]],
) -> None:
    with mini_project() as path:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for keys, new in changes:
            target = data
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = new
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        places = ("settings.yaml", "people.csv", "mini.md", "smtp.", "sender")
        assert_clear(cli(path, "check"), *places)
        assert_clear(cli(path, "send", "--dry-run", "--quiet"), *places)


SNIPPETS = [
    "{{ nom }}",
    "{{ prenom | upper }}",
    "{{ nom",
    "}}",
    "{% if nom %}",
    "{% endif %}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    "{{ inconnu }}",
    "{{ row['nom'] }}",
    "{{ ''.__class__ }}",
    "{{ 1 / 0 }}",
    "{{ nom * 100000 }}",
    "{# comment",
    "[^1]",
    "[^1]: note",
    "[^missing]",
    "<script>",
    "**",
    "\n---\n",
    "\n# titre\n",
    "\x00",
    "é",
]


@FUZZ
@given(parts=st.lists(st.sampled_from(SNIPPETS) | st.text(max_size=8), min_size=1, max_size=6))
def test_check_and_dry_run_survive_any_template(parts: list[str]) -> None:
    with mini_project() as path:
        letter = path.parent / "letters" / "mini.md"
        letter.write_text(letter.read_text(encoding="utf-8") + "".join(parts), encoding="utf-8")
        assert_problems_have_places(cli(path, "check", "--json"))
        assert_clear(cli(path, "send", "--dry-run", "--quiet"), "mini.md", "people.csv")


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=cell,
    last=cell,
    parts=st.lists(st.sampled_from(SNIPPETS), max_size=3),
)
def test_render_survives_hostile_cells_and_snippets(
    first: str, last: str, parts: list[str]
) -> None:
    with mini_project() as path:
        write_sheet(path, ["prenom", "nom", "email"], [[first, last, "p1@example.org"]])
        letter = path.parent / "letters" / "mini.md"
        letter.write_text(letter.read_text(encoding="utf-8") + "".join(parts), encoding="utf-8")
        result = cli(path, "render", "--jobs", "1", "--quiet")
        assert_clear(result, "people.csv", "mini.md")
        if result.exit_code == 0:
            pdfs = list((path.parent / "outbox" / "mini" / "letters").glob("*.pdf"))
            assert len(pdfs) == 1
            assert pdfs[0].read_bytes().startswith(b"%PDF")

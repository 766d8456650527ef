"""Property-based tests: no cell or header text crashes the loader or `check`; each row is accounted for.

"Accounted for" means: every data row that holds any text is either a recipient (ready, suppressed,
or invalid with an error at its row), or the whole file is refused by an error; every problem names
the file, and a row inside the sheet when it names one.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from campaign import recipients
from campaign.cli import main
from campaign.errors import Severity
from campaign.inputs import check_inputs, load_inputs
from campaign.recipients import RecipientList, Status, read_recipients
from campaign.settings import load_settings

# Any text a cell can hold in a CSV file: no NUL (that makes it binary), no lone surrogates.
cell_text = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30
)
# What a spreadsheet program can store: openpyxl refuses control characters other than \t \n \r.
xlsx_text = st.text(
    alphabet=st.characters(
        exclude_categories=("Cs",),
        exclude_characters="".join(chr(c) for c in range(32) if chr(c) not in "\t\n\r")
        + "\ufffe\uffff",
    ),
    max_size=30,
)


def addresses(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Valid addresses, the usual mistakes, and anything at all."""
    return st.one_of(
        st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8})?@example\.(org|com)", fullmatch=True),
        st.sampled_from(["bob@", "a@example.org.", "x@example,org", "a b@example.org", "", " "]),
        text,
    )


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def sheets(
    draw: st.DrawFn, text: st.SearchStrategy[str] = cell_text
) -> tuple[list[str], list[list[str]]]:
    """A header row (Nom, Courriel, then arbitrary headers) and rows of arbitrary cells."""
    extra = draw(st.lists(text, max_size=3))
    headers = ["Nom", "Courriel", *extra]
    rows = draw(
        st.lists(
            st.tuples(
                text, addresses(text), st.lists(text, min_size=len(extra), max_size=len(extra))
            ),
            max_size=6,
        )
    )
    return headers, [[name, email, *others] for name, email, others in rows]


def write_csv(path: Path, headers: list[str], rows: list[list[str]]) -> None:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([headers, *rows])
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")


def write_xlsx(path: Path, headers: list[str], rows: list[list[str]]) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for number, row in enumerate([headers, *rows], start=1):
        for column, text in enumerate(row, start=1):
            if text != "":
                cell = sheet.cell(row=number, column=column, value=text)
                cell.data_type = "s"  # text as typed: openpyxl would make "=0" a formula
    book.save(path)


def assert_accounted_for(result: RecipientList, rows: list[list[str]], shown: str) -> None:
    """Every row with text is a recipient or the file is refused; problems name their place."""
    last_row = len(rows) + 1
    for problem in result.problems:
        assert problem.place.file == shown
        assert problem.message
        if problem.place.row is not None:
            assert 1 <= problem.place.row <= last_row
    error_rows = {p.place.row for p in result.problems if p.severity is Severity.ERROR}
    by_row = {r.row: r for r in result.recipients}
    assert len(by_row) == len(result.recipients)  # one recipient per row
    for recipient in result.recipients:
        assert 2 <= recipient.row <= last_row
        assert (recipient.status is Status.INVALID) == (recipient.row in error_rows)
    file_refused = not result.recipients and any(
        p.severity is Severity.ERROR for p in result.problems
    )
    for number, cells in enumerate(rows, start=2):
        if any(c.strip() for c in cells) and not file_refused:
            assert number in by_row, f"row {number} neither read nor reported"


@FAST
@given(sheets())
def test_any_csv_cell_text_is_accepted_or_reported_with_its_row(
    sheet: tuple[list[str], list[list[str]]],
) -> None:
    headers, rows = sheet
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "liste.csv"
        write_csv(path, headers, rows)
        result = read_recipients(
            path,
            email_column="Courriel",
            required_columns=["Nom"],
            header_columns={"nom"},
            display="liste.csv",
        )
    assert_accounted_for(result, rows, "liste.csv")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sheets(xlsx_text))
def test_any_xlsx_cell_text_is_accepted_or_reported_with_its_row(
    sheet: tuple[list[str], list[list[str]]],
) -> None:
    headers, rows = sheet
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "liste.xlsx"
        write_xlsx(path, headers, rows)
        result = read_recipients(
            path, email_column="Courriel", header_columns={"nom"}, display="liste.xlsx"
        )
    assert_accounted_for(result, rows, "liste.xlsx")


@FAST
@given(st.binary(max_size=400))
def test_any_bytes_named_csv_are_read_or_refused_without_crashing(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "liste.csv"
        path.write_bytes(content)
        result = read_recipients(path, email_column="Courriel", display="liste.csv")
    for problem in result.problems:
        assert problem.place.file == "liste.csv"
    if not result.recipients:
        assert result.problems  # nothing read: it says why


SETTINGS = """\
sender: {name: Collectif, email: collectif@example.org}
campaigns:
  essai:
    letter: letters/lettre.md
    recipients: recipients/liste.csv
    email_column: Courriel
    to_name: "{{ nom }}"
    subject: "Pour {{ nom }}"
"""
LETTER = """\
Bonjour {{ nom }},

{% for header, value in row.items() %}- {{ header }} : {{ value }}
{% endfor %}
Ligne {{ row_number }}[^1].

[^1]: Note.
"""


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sheets())
def test_check_never_crashes_and_reports_every_invalid_row(
    sheet: tuple[list[str], list[list[str]]],
) -> None:
    headers, rows = sheet
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "letters").mkdir()
        (root / "recipients").mkdir()
        (root / "letters" / "lettre.md").write_text(LETTER, encoding="utf-8")
        write_csv(root / "recipients" / "liste.csv", headers, rows)
        (root / "settings.yaml").write_text(SETTINGS, encoding="utf-8")
        inputs = load_inputs(load_settings(root / "settings.yaml").campaign("essai"))
        report = check_inputs(inputs)
        result = CliRunner(env={"COLUMNS": "200"}).invoke(
            main, ["--settings", str(root / "settings.yaml"), "check"]
        )
    assert_accounted_for(inputs.recipients, rows, "recipients/liste.csv")
    assert report.total == report.ready + report.suppressed + report.invalid
    # A row whose merge fails is reported at that row, so it cannot pass as ready silently.
    failing_rows = {p.place.row for p in report.problems if p.severity is Severity.ERROR}
    assert all(r.row not in failing_rows for r in inputs.recipients.ready) or report.errors
    assert result.exit_code == (1 if report.errors else 0), result.output
    assert "Traceback" not in result.output
    assert report.summary() in " ".join(result.output.split())


local_parts = st.one_of(
    st.sampled_from(["WWW", "Postmaster", "INFO", "info", "Abuse", "Webmaster"]),  # RFC 2142
    st.from_regex(r"[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~.]{0,70}", fullmatch=True),
    st.text(max_size=20),
)
domains = st.one_of(
    st.sampled_from(
        [
            "example.org",
            "EXAMPLE.Com",
            "ch-bourg.example.org",
            "site.test",
            "localhost",
            "exemple.invalid",
            "xn--hpital-bva.example.org",
            "hôpital.example.org",
            "example",
            "example.org.",
            "-bad.example.org",
            "ab--cd.example.org",
            "a" * 64 + ".example.org",
            "example.123",
            "",
        ]
    ),
    st.from_regex(r"[a-zA-Z0-9.\-]{1,70}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(local_parts, domains, st.booleans())
def test_quick_address_validation_agrees_with_email_validator(
    local: str, domain: str, allow_special: bool
) -> None:
    address = f"{local}@{domain}"
    quick = recipients._validate(address, allow_special)
    whole = recipients._validate_whole(address, allow_special)
    if isinstance(whole, str):
        assert quick == whole
    else:
        assert not isinstance(quick, str), f"{address!r} accepted, email-validator says {whole}"
        assert str(quick) == str(whole)

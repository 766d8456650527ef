"""`campaign check`: templates against the spreadsheet, a dry merge of every row, the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from campaign import i18n
from campaign.cli import main
from campaign.errors import Severity
from campaign.inputs import CheckReport, check_inputs, load_inputs
from campaign.settings import load_settings

DATA = Path(__file__).resolve().parent / "data"

SETTINGS = """\
sender: {{name: Collectif, email: collectif@example.org}}
campaigns:
  essai:
    letter: letters/lettre.md
    recipients: recipients/{sheet}
    email_column: Courriel
    required_columns: [Nom]
    to_name: "{{{{ prenom }}}} {{{{ nom }}}}"
    subject: "{subject}"
    attach_pdf: false  # the postal norm's address checks have their own tests (test_postal.py)
"""

LETTER = """\
---
place: Paris
signature: Le collectif
---
Madame, Monsieur {{ nom }},

Votre établissement, {{ etablissement }}, est concerné[^arrete].

[^arrete]: Arrêté du 21 avril 2020.
"""


def make_project(
    root: Path,
    *,
    letter: str = LETTER,
    sheet: str = "same-rows.csv",
    subject: str = "Lettre pour {{ etablissement }}",
    suppression: str | None = None,
) -> Path:
    """A project folder around one of tests/data's spreadsheets; returns its settings.yaml."""
    (root / "letters").mkdir(parents=True)
    (root / "recipients").mkdir()
    (root / "letters" / "lettre.md").write_text(letter, encoding="utf-8")
    shutil.copy(DATA / sheet, root / "recipients" / sheet)
    if suppression is not None:
        (root / "recipients" / "suppression.csv").write_text(suppression, encoding="utf-8")
    path = root / "settings.yaml"
    path.write_text(SETTINGS.format(sheet=sheet, subject=subject), encoding="utf-8")
    return path


def check(settings: Path) -> CheckReport:
    return check_inputs(load_inputs(load_settings(settings).campaign("essai")))


def run_check(settings: Path, *args: str) -> Result:
    # A wide terminal, so that table cells are not wrapped and can be searched.
    return CliRunner(env={"COLUMNS": "400"}).invoke(
        main, ["--settings", str(settings), "check", *args]
    )


def flat(text: str) -> str:
    return "".join(text.split())  # rich wraps table cells; compare without whitespace


def test_a_clean_campaign_has_no_problems_and_exits_0(tmp_path: Path) -> None:
    settings = make_project(tmp_path)
    report = check(settings)
    assert report.problems == []
    assert (report.total, report.ready, report.suppressed, report.invalid) == (4, 4, 0, 0)
    result = run_check(settings)
    assert result.exit_code == 0, result.output
    assert "essai: 4 recipients, 4 ready, 0 suppressed, 0 errors, 0 warnings" in result.output


def test_suppressed_rows_are_counted_and_still_ready_rows_are_not(tmp_path: Path) -> None:
    settings = make_project(tmp_path, suppression="email\nnoel.dupont@example.org\n")
    report = check(settings)
    assert (report.total, report.ready, report.suppressed) == (4, 3, 1)
    assert report.errors == 0
    assert "4 recipients, 3 ready, 1 suppressed" in report.summary()


def test_an_unknown_placeholder_is_reported_once_with_its_line_and_a_suggestion(
    tmp_path: Path,
) -> None:
    letter = LETTER.replace("{{ etablissement }}", "{{ etablisement }}")
    settings = make_project(tmp_path, letter=letter)
    report = check(settings)
    unknown = [p for p in report.problems if "etablisement" in p.message]
    assert len(unknown) == 1  # once for the letter, not once per row
    [problem] = unknown
    assert problem.place.file == "letters/lettre.md"
    assert problem.place.line == 7  # the file's line, front matter included
    assert problem.hint == "did you mean {{ etablissement }}?"
    assert report.errors == 1
    result = run_check(settings)
    assert result.exit_code == 1
    assert "did you mean {{ etablissement }}?" in result.output


def test_an_unknown_placeholder_in_the_subject_names_the_settings_key(tmp_path: Path) -> None:
    settings = make_project(tmp_path, subject="Lettre pour {{ ville_ }}")
    report = check(settings)
    [problem] = [p for p in report.problems if "ville_" in p.message]
    assert problem.place.file is not None and "campaigns.essai.subject" in problem.place.file
    assert problem.hint == "did you mean {{ ville }}?"


def test_the_pdf_name_is_checked_like_the_subject(tmp_path: Path) -> None:
    settings = make_project(tmp_path)
    text = settings.read_text().replace(
        "    attach_pdf: false", '    pdf_name: "Lettre – {{ nom_ }}"\n    attach_pdf: false'
    )
    settings.write_text(text)
    report = check(settings)
    [problem] = [p for p in report.problems if "nom_" in p.message]
    assert problem.place.file is not None and "campaigns.essai.pdf_name" in problem.place.file
    assert problem.hint == "did you mean {{ nom }}?"


def test_an_unknown_placeholder_in_the_front_matter_names_the_key_and_its_file_line(
    tmp_path: Path,
) -> None:
    letter = LETTER.replace("signature: Le collectif", "signature: Le collectif de {{ vile }}")
    report = check(make_project(tmp_path, letter=letter))
    [problem] = [p for p in report.problems if "vile" in p.message]
    assert (problem.place.file, problem.place.line, problem.place.key) == (
        "letters/lettre.md",
        3,
        "signature",
    )
    assert problem.hint == "did you mean {{ ville }}?"


def test_a_footnote_called_without_text_is_reported_with_its_line(tmp_path: Path) -> None:
    letter = LETTER.replace("concerné[^arrete].", "concerné[^arrete][^senat].")
    report = check(make_project(tmp_path, letter=letter))
    [problem] = report.problems
    assert problem.message == "footnote [^senat] is called but has no text"
    assert (problem.place.file, problem.place.line) == ("letters/lettre.md", 7)


def test_a_footnote_text_never_called_is_reported_with_its_line(tmp_path: Path) -> None:
    letter = LETTER + "\n[^orpheline]: Jamais citée.\n"
    report = check(make_project(tmp_path, letter=letter))
    [problem] = report.problems
    assert problem.message == "footnote [^orpheline] has a text but is never called"
    assert problem.place.line == 11


def test_a_template_error_for_one_row_names_that_row(tmp_path: Path) -> None:
    # Row 4 (Anne-Sophie N'Diaye) has 0 beds: dividing by it fails for that row only.
    letter = LETTER.replace(
        "est concerné", "({{ 1000 // (lits | int) }} patients par lit) est concerné"
    )
    settings = make_project(tmp_path, letter=letter)
    report = check(settings)
    [problem] = report.problems
    assert problem.severity is Severity.ERROR
    assert (problem.place.file, problem.place.row) == ("recipients/same-rows.csv", 4)
    # Said in words an organiser reads, not as Python's exception class; Python's text follows.
    assert problem.message.startswith("template error: a division by zero (Python: ")
    assert "ZeroDivisionError" not in problem.message
    assert "letters/lettre.md, line 7" in problem.message
    assert (report.ready, report.invalid) == (3, 1)  # that row is not ready
    assert run_check(settings).exit_code == 1
    with i18n.language_of("fr"):
        [problem] = check(settings).problems
    assert problem.message.startswith("erreur dans le modèle : une division par zéro (Python : ")


def test_a_helper_refusing_a_cell_says_so_in_its_own_words(tmp_path: Path) -> None:
    letter = LETTER.replace("est concerné", "(depuis le {{ date_fr(nom) }}) est concerné")
    [problem, *_] = check(make_project(tmp_path, letter=letter)).problems
    assert problem.message.startswith("template error: ")
    assert "is not a date such as 2020-05-07" in problem.message
    assert "ValueError" not in problem.message and "Python" not in problem.message


def test_a_letter_error_does_not_hide_the_rows_that_fail(tmp_path: Path) -> None:
    # "every problem in one pass": a footnote without text hid row 4's failure, and the summary
    # said all 4 rows were ready; fixing the note then showed a new error.
    letter = LETTER.replace(
        "est concerné[^arrete].", "({{ 1000 // (lits | int) }} par lit) est concerné[^arrete][^x]."
    )
    report = check(make_project(tmp_path, letter=letter))
    messages = sorted((p.place.row or 0, p.message) for p in report.problems)
    assert [m for _, m in messages if "footnote" in m] == [
        "footnote [^x] is called but has no text"
    ]
    assert [row for row, m in messages if "division by zero" in m] == [4]
    assert report.ready == 3


def test_the_same_row_failure_is_listed_a_few_times_then_summed_up(tmp_path: Path) -> None:
    letter = "Bonjour {{ nom.upper(1) }},\n"  # fails on every row
    sheet = tmp_path / "many.csv"
    rows = "".join(f"P{i},N{i},n{i}@example.org\n" for i in range(12))
    sheet.write_text("Prénom,Nom,Courriel\n" + rows)
    settings = make_project(tmp_path / "p", letter=letter, subject="Objet")
    shutil.copy(sheet, tmp_path / "p" / "recipients" / "same-rows.csv")
    report = check(settings)
    rows = [p.place.row for p in report.problems if p.place.row is not None]
    assert rows == [2, 3, 4, 5, 6]
    assert any(p.message.startswith("7 more rows fail the same way") for p in report.problems)
    assert (report.total, report.ready, report.invalid) == (12, 0, 12)


def test_a_template_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    letter = LETTER.replace("{{ nom }}", "{{ nom | }}")
    report = check(make_project(tmp_path, letter=letter))
    [problem] = report.problems
    assert problem.message.startswith("template syntax error")
    assert (problem.place.file, problem.place.line) == ("letters/lettre.md", 5)


def test_sandbox_escape_attempt_is_a_template_error_not_a_crash(tmp_path: Path) -> None:
    letter = LETTER.replace("{{ nom }}", "{{ nom.__class__.__mro__[1].__subclasses__() }}")
    report = check(make_project(tmp_path, letter=letter))
    assert report.errors >= 1
    assert all(p.severity is Severity.ERROR for p in report.problems)


def test_recipient_problems_are_counted_in_the_summary(tmp_path: Path) -> None:
    letter = "Bonjour {{ prenom }} {{ nom }},\n"
    settings = make_project(
        tmp_path, letter=letter, sheet="hostile.csv", subject="Lettre pour {{ nom }}"
    )
    report = check(settings)
    assert report.total == 11  # the empty row is not a recipient
    assert report.invalid == 9
    assert report.ready == 2
    assert report.errors == 9
    assert report.warnings == 1
    assert report.summary() == "11 recipients, 2 ready, 0 suppressed, 9 errors, 1 warning"


def test_check_table_names_file_row_column_message_and_hint(tmp_path: Path) -> None:
    letter = "Bonjour {{ prenom }} {{ nom }},\n"
    settings = make_project(tmp_path, letter=letter, sheet="hostile.csv", subject="Objet")
    result = run_check(settings)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    line = next(line for line in result.output.splitlines() if "'bob@'" in line)
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    assert cells == [
        "error",
        "recipients/hostile.csv",
        "3",
        "Courriel",
        "not an email address: 'bob@' (There must be something after the @-sign.)",
        "did you mean bob@example.org?",
    ]
    assert "11 recipients, 2 ready, 0 suppressed, 9 errors, 1 warning" in result.output


def test_check_json_has_the_counts_and_every_problem_with_its_place(tmp_path: Path) -> None:
    letter = "Bonjour {{ prenom }} {{ nom }},\n"
    settings = make_project(tmp_path, letter=letter, sheet="hostile.csv", subject="Objet")
    result = run_check(settings, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["campaign"] == "essai"
    assert (report["recipients"], report["ready"], report["errors"]) == (11, 2, 9)
    by_row = {p["row"]: p for p in report["problems"]}
    assert by_row[3] == {
        "severity": "error",
        "file": "recipients/hostile.csv",
        "line": None,
        "row": 3,
        "column": "Courriel",
        "key": None,
        "message": "not an email address: 'bob@' (There must be something after the @-sign.)",
        "hint": "did you mean bob@example.org?",
    }
    assert by_row[7]["severity"] == "warning"


def test_check_json_of_a_clean_campaign_exits_0(tmp_path: Path) -> None:
    result = run_check(make_project(tmp_path), "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["problems"] == []


def test_a_binary_spreadsheet_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    settings = make_project(tmp_path, sheet="binary.csv")
    result = run_check(settings)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "workbook" in result.output
    assert "0 recipients" in result.output


def test_a_missing_subject_is_an_error(tmp_path: Path) -> None:
    settings = make_project(tmp_path)
    text = settings.read_text().replace('    subject: "Lettre pour {{ etablissement }}"\n', "")
    settings.write_text(text)
    report = check(settings)
    [problem] = report.problems
    assert problem.message == "the campaign has no subject"
    assert problem.place.key == "campaigns.essai.subject"


def test_a_malformed_front_matter_is_reported_with_its_line(tmp_path: Path) -> None:
    letter = LETTER.replace("place: Paris", "place: [Paris")
    report = check(make_project(tmp_path, letter=letter))
    assert report.errors >= 1
    assert report.problems[0].place.file == "letters/lettre.md"
    assert report.problems[0].place.line is not None


def test_a_front_matter_value_holding_a_colon_is_explained_with_its_file_line(
    tmp_path: Path,
) -> None:
    letter = LETTER.replace("place: Paris", "place: Paris : siège")
    report = check(make_project(tmp_path, letter=letter))
    [problem] = [p for p in report.problems if "YAML" in p.message]
    assert "holds ': '" in problem.message
    assert (problem.place.file, problem.place.line) == ("letters/lettre.md", 2)
    assert problem.hint is not None and "double quotes" in problem.hint


def test_check_on_a_missing_campaign_exits_2(tmp_path: Path) -> None:
    result = run_check(make_project(tmp_path), "autre")
    assert result.exit_code == 2
    assert "no campaign called 'autre'" in result.output


def test_the_quick_renders_give_exactly_what_jinja_renders(tmp_path: Path) -> None:
    from campaign.inputs import _merge_templates
    from campaign.letter import render_merged, render_template

    letter = LETTER.replace("{{ nom }}", "{{ nom | upper }} {{ row['Code postal'] }}")
    inputs = load_inputs(load_settings(make_project(tmp_path, letter=letter)).campaign("essai"))
    per_row, constant = _merge_templates(inputs)
    assert len(per_row) == 3  # the body, the subject, the display name
    assert len(constant) == 2  # place and signature read no cell: merged once, not per row
    for recipient in inputs.recipients.recipients:
        context = inputs.context(recipient)
        for template, where, helpers in per_row:
            jinja = template.render(context)  # Jinja's own way, context set up on every call
            assert render_merged(template, {**helpers, **context}) == jinja  # the dry merge's
            assert render_template(template, context, where) == jinja  # compose's, the log's
    assert "LEFÈVRE 01000" in render_merged(
        per_row[0][0], {**per_row[0][2], **inputs.context(inputs.recipients.recipients[0])}
    )


def test_long_lists_are_merged_on_every_core_with_the_same_findings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import campaign.inputs

    letter = LETTER.replace(
        "est concerné", "({{ 1000 // (lits | int) }} patients par lit) est concerné"
    )
    rows = "".join(f"P{i},N{i},Établissement {i},{i % 7},n{i}@example.org\n" for i in range(300))
    settings = make_project(tmp_path, letter=letter)
    (tmp_path / "recipients" / "same-rows.csv").write_text(
        "Prénom,Nom,Établissement,Lits,Courriel\n" + rows, encoding="utf-8"
    )
    serial = check(settings)
    monkeypatch.setattr(campaign.inputs, "_PARALLEL_FROM", 10)
    parallel = check(settings)
    assert parallel.problems == serial.problems
    assert (parallel.ready, parallel.invalid) == (serial.ready, serial.invalid) == (257, 43)
    assert [p.place.row for p in parallel.problems][:5] == [2, 9, 16, 23, 30]
    assert parallel.problems[-1].message.startswith("38 more rows fail the same way")


def test_a_macro_that_calls_itself_is_a_row_problem_not_a_crash(tmp_path: Path) -> None:
    letter = "{% macro f() %}{{ f() }}{% endmacro %}Bonjour {{ nom }} {{ f() }}\n"
    settings = make_project(tmp_path, letter=letter, subject="Objet")
    report = check(settings)
    assert report.ready == 0
    assert report.problems[0].place.row == 2
    assert "a macro or an include that calls itself without end" in report.problems[0].message
    result = run_check(settings)
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_a_header_reading_a_cell_by_its_original_name_is_guarded_too(tmp_path: Path) -> None:
    letter = "Bonjour {{ nom }},\n"
    settings = make_project(
        tmp_path, letter=letter, sheet="hostile.csv", subject="Pour {{ row['Prénom'] }}"
    )
    text = settings.read_text().replace('to_name: "{{ prenom }} {{ nom }}"', 'to_name: "{{ nom }}"')
    settings.write_text(text)
    report = check(settings)
    assert any(
        p.place.row == 9 and p.place.column == "Prénom" and "line break" in p.message
        for p in report.problems
    )

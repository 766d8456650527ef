"""The commands in French and in English: the locale, `language:` in settings.yaml, the proof pack.

The other tests read English (conftest sets LC_ALL=C.UTF-8); here each test says its language:
through the environment (in-process, monkeypatched; or for a new process) or the settings.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from openpyxl import load_workbook
from pypdf import PdfReader

from campaign.cli import main
from tests.conftest import Run, approve_proofed
from tests.smtp_server import FaultyServer, make_project

FRENCH = "fr_FR.UTF-8"


def speak(monkeypatch: pytest.MonkeyPatch, locale: str) -> None:
    """The environment of a French (or English) organiser: LANG only, as a desktop sets it."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", locale)


def with_language(settings: Path, language: str) -> Path:
    settings.write_text(
        f"language: {language}\n" + settings.read_text(encoding="utf-8"), encoding="utf-8"
    )
    return settings


def command(*args: str, locale: str) -> subprocess.CompletedProcess[str]:
    """`campaign ARGS` in a new process whose environment says `locale`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LANG"] = locale
    return subprocess.run(
        [sys.executable, "-m", "campaign.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_help_follows_the_environment() -> None:
    french = command("--help", locale=FRENCH)
    assert french.returncode == 0, french.stderr
    assert "Utilisation :" in french.stdout
    assert "Vérifier paramètres, lettre et destinataires" in french.stdout
    assert "Afficher ce message et quitter." in french.stdout  # click's own text too
    assert "Usage:" not in french.stdout
    assert "Utilisation : python -m campaign.cli [OPTIONS] COMMANDE [ARGUMENTS]…" in french.stdout
    assert "Options :" in french.stdout and "Commandes :" in french.stdout
    assert "..." not in french.stdout.split("Commandes")[1]  # whole summaries in French too
    english = command("--help", locale="C")
    assert "Usage: python -m campaign.cli [OPTIONS] COMMAND [ARGS]..." in english.stdout
    assert "Validate settings, letter and recipients; merge every row." in english.stdout
    # The technical names stay: commands and options.
    for name in ("check", "send", "status", "--settings"):
        assert name in french.stdout


def test_a_count_that_is_no_number_is_said_in_the_organisers_words() -> None:
    # click's own type name ("integer range") stayed English inside a French sentence.
    french = command("send", "--limit", "abc", locale=FRENCH)
    assert french.returncode == 2
    assert "pour «\u00a0--limit\u00a0» : «\u00a0abc\u00a0» n’est pas un nombre entier valide." in (
        french.stderr
    )
    assert "integer" not in french.stderr
    english = command("send", "--limit", "abc", locale="C")
    assert "'abc' is not a valid whole number." in english.stderr, english.stderr
    port = command("sink", "--port", "x", locale=FRENCH)
    assert "«\u00a0x\u00a0» n’est pas un nombre entier valide." in port.stderr, port.stderr


def test_a_port_in_use_is_said_in_french_not_in_the_systems_english(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        maildir = str(tmp_path / "boite")
        french = command("sink", "--port", port, "--maildir", maildir, locale=FRENCH)
        english = command("sink", "--port", port, "--maildir", maildir, locale="C")
    assert french.returncode == 2, french.stderr
    said = " ".join(french.stderr.split())
    assert f"impossible d’écouter sur 127.0.0.1:{port} : le port est déjà pris" in said, said
    assert "address already in use" not in said and "bind" not in said
    assert f"cannot listen on 127.0.0.1:{port}: the port is already taken" in english.stderr


def every_help(locale: str) -> dict[str, str]:
    """The help of every command, in a new process whose environment says `locale`."""
    script = (
        "import json\n"
        "from click.testing import CliRunner\n"
        "from campaign.cli import main\n"
        "print(json.dumps({n: CliRunner().invoke(main, [n, '--help']).output for n in main.commands}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LANG"] = locale
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    helps: dict[str, str] = json.loads(done.stdout)
    return helps


def test_the_values_in_the_help_are_named_in_french() -> None:
    """`--by NOM`, `[CAMPAGNE]`, `init DOSSIER`: no English placeholder left in a French help."""
    english_words = re.compile(r"\b(CAMPAIGN|NAME|TEXT|INTEGER|RANGE|ADDR|DIR|FILE|PATTERN|ROWS)\b")
    french, english = every_help(FRENCH), every_help("C")
    assert set(french) == set(english) and len(french) >= 10
    for name, text in french.items():
        assert text.startswith("Utilisation"), (name, text)
        assert not english_words.search(text), (name, english_words.findall(text), text)
    assert "--by NOM" in french["approve"] and "que NOM a approuvé" in french["approve"]
    assert "[CAMPAGNE]" in french["send"] and "CAMPAGNE est une clé" in french["send"]
    assert "init [OPTIONS] DOSSIER" in french["init"] and "Créer dans DOSSIER" in french["init"]
    assert "--test-to ADRESSE" in french["send"] and "à ADRESSE" in french["send"]
    assert "--limit N" in french["send"] and "--bounce MOTIF" in french["sink"]
    assert "--export FICHIER" in french["status"] and "FICHIER.csv" in french["status"]
    # English keeps its words.
    assert "--by NAME" in english["approve"] and "[CAMPAIGN]" in english["send"]
    assert "init [OPTIONS] DIR" in english["init"] and "--rows ROWS" in english["proof"]


def test_a_missing_settings_file_names_the_option_value_as_the_help_does(tmp_path: Path) -> None:
    french = command("--settings", str(tmp_path / "absent.yaml"), "check", locale=FRENCH)
    assert french.returncode == 2
    assert "--settings FICHIER" in french.stderr and "PATH" not in french.stderr


def test_a_usage_error_of_click_is_french_too() -> None:
    done = command("chek", locale=FRENCH)
    assert done.returncode == 2
    # In French quotes, though click writes its names with repr ('chek') in its code.
    assert (
        "Erreur : Commande inconnue : «\u00a0chek\u00a0». Vouliez-vous dire «\u00a0check\u00a0» ?"
    ) in done.stderr
    assert "'" not in done.stderr
    unknown = command("send", "--retry-faild", locale=FRENCH)
    assert unknown.returncode == 2
    assert "Option inconnue : «\u00a0--retry-faild\u00a0»" in unknown.stderr
    assert "«\u00a0--retry-failed\u00a0» ?" in unknown.stderr
    english = command("chek", locale="C")
    assert "Error: No such command 'chek'. Did you mean 'check'?" in english.stderr


def test_check_in_french_and_in_english(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speak(monkeypatch, FRENCH)
    french = run("check")
    assert french.exit_code == 0, french.output
    # French puts a space before the colon, English does not.
    assert "-05 : 40 destinataires, 40 prêts, 0 exclu, 0 erreur, 0 avertissement" in french.output
    speak(monkeypatch, "C")
    english = run("check")
    assert "-05: 40 recipients, 40 ready, 0 suppressed, 0 errors, 0 warnings" in english.output


def test_a_check_problem_is_said_in_french(
    run: Run, few_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = few_project / "recipients" / "few.csv"
    csv.write_text(
        csv.read_text(encoding="utf-8").replace("camille@example.org", "camille@"),
        encoding="utf-8",
    )
    speak(monkeypatch, FRENCH)
    result = run("check", "hopitaux-2020-05")
    assert result.exit_code == 1
    assert "gravité" in result.output and "conseil" in result.output  # the table's headings
    assert "1 erreur, 2 avertissements" in result.output
    report = json.loads(run("check", "hopitaux-2020-05", "--json").output)
    problem = next(p for p in report["problems"] if p["row"] == 4)
    assert problem["severity"] == "error"  # --json keeps the technical values
    assert problem["message"] == (
        "ce n’est pas une adresse électronique : «\u00a0camille@\u00a0» (Il manque la partie "
        "après le @.)"
    )  # French quotes, and email-validator's own reason in French too, not its English
    assert problem["hint"].startswith("vouliez-vous dire")
    speak(monkeypatch, "C")
    report = json.loads(run("check", "hopitaux-2020-05", "--json").output)
    problem = next(p for p in report["problems"] if p["row"] == 4)
    assert problem["message"] == (
        "not an email address: 'camille@' (There must be something after the @-sign.)"
    )


def test_a_settings_error_in_both_languages(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = project / "settings.yaml"
    settings.write_text(
        settings.read_text(encoding="utf-8").replace("  port: 8025", "  port: huit"),
        encoding="utf-8",
    )
    speak(monkeypatch, FRENCH)
    french = run("check")
    assert french.exit_code == 2
    assert "erreur :" in french.output
    assert (
        "clé «\u00a0smtp.port\u00a0» : un nombre entier est attendu (et non «\u00a0huit\u00a0»)"
    ) in french.output  # French quotes around the key and the value
    speak(monkeypatch, "C")
    english = run("check")
    assert "key 'smtp.port': expected a whole number" in english.output
    assert "expected a whole number (not 'huit')" in english.output


def test_the_settings_language_wins_over_the_environment(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_language(project / "settings.yaml", "fr")
    speak(monkeypatch, "C")
    assert "40 destinataires, 40 prêts" in run("check").output
    # Its own errors too: the language is read before the rest is validated.
    settings.write_text(
        settings.read_text(encoding="utf-8").replace("smtp:", "smtpp:"), encoding="utf-8"
    )
    assert "clé inconnue «\u00a0smtpp\u00a0»" in run("check").output
    settings.write_text("language: en\n" + settings.read_text(encoding="utf-8").split("\n", 1)[1])
    speak(monkeypatch, FRENCH)
    assert "unknown key 'smtpp'" in run("check").output


def test_help_reads_no_settings(project: Path) -> None:
    with_language(project / "settings.yaml", "fr")
    done = command("--settings", str(project / "settings.yaml"), "--help", locale="C")
    assert "Usage:" in done.stdout


def test_send_and_status_in_french(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = with_language(make_project(tmp_path, port=server.port, recipients=1), "fr")
        sent = CliRunner().invoke(main, ["--settings", str(settings), "send", "--quiet"])
        assert sent.exit_code == 0, sent.output
        flat = " ".join(sent.output.split())
        # Plurals agree: one message, one connection.
        assert "cette session : 1 envoyé, 0 différé, 0 en échec, 0 incertain" in flat
        assert "sur 1 connexion" in flat
        assert "journal d’envoi : 1 envoyé" in flat
        status = CliRunner().invoke(main, ["--settings", str(settings), "status"])
        shown = " ".join(status.output.split())
        assert "journal d’envoi" in shown
        assert "envoyé" in shown  # the table's heading: the state in French
        assert "approbation : " in shown
        assert "1 session d’envoi" in shown
        # --json keeps the technical names.
        data = CliRunner().invoke(main, ["--settings", str(settings), "status", "--json"])
        assert '"sent": 1' in data.output


def test_send_summary_in_english_agrees_with_its_numbers(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=1)
        sent = CliRunner().invoke(main, ["--settings", str(settings), "send", "--quiet"])
        assert "over 1 connection" in sent.output
        assert "1 connections" not in sent.output


def cover_text(project: Path) -> str:
    pdf = project / "outbox" / "hopitaux-2020-05" / "proofs" / "proofs.pdf"
    return " ".join(PdfReader(pdf).pages[0].extract_text().split())


def test_the_proof_pack_speaks_the_letters_language(
    run: Run, few_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    speak(monkeypatch, "C")  # the organiser's terminal is English; the letter is French
    result: Result = approve_proofed(run, "hopitaux-2020-05", "--by", "Maître Dupont")
    assert result.exit_code == 0, result.output
    french = cover_text(few_project)
    for words in ("Épreuves", "Pourquoi cette ligne", "Fait le", "ÉPREUVE — NE PAS ENVOYER"):
        assert words in french
    # French typography: a narrow no-break space before the colon.
    pdf = few_project / "outbox" / "hopitaux-2020-05" / "proofs" / "proofs.pdf"
    assert "Épreuves\u202f: hopitaux-2020-05" in PdfReader(pdf).pages[0].extract_text()
    index = (few_project / "outbox" / "hopitaux-2020-05" / "proofs" / "index.html").read_text(
        encoding="utf-8"
    )
    assert "Ouvrir le PDF" in index and "Open the PDF" not in index
    # The command to approve names its value in French, and the sample's list keeps the French
    # space before the colon after a row's link.
    assert "--by NOM" in index and "--by NAME" not in index
    assert "--by NOM" in french
    assert re.search(r'<a href="#row-2">Ligne 2\u202f: [^<]+</a>', index), index

    settings = few_project / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace(
            "    letter: letters/lettre-hopitaux.md\n",
            "    letter: letters/lettre-hopitaux.md\n    lang: en\n",
        ),
        encoding="utf-8",
    )
    speak(monkeypatch, FRENCH)  # now the other way round
    assert run("proof", "hopitaux-2020-05", "--rows", "2").exit_code == 0
    english = cover_text(few_project)
    for words in ("Proofs: hopitaux-2020-05", "Why this row", "Made on", "PROOF — DO NOT SEND"):
        assert words in english
    assert "Épreuves" not in english


def test_the_status_report_speaks_the_language_of_the_run(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = with_language(make_project(tmp_path, port=server.port, recipients=2), "fr")
        assert CliRunner().invoke(main, ["--settings", str(settings), "send", "-q"]).exit_code == 0
        page = tmp_path / "suivi.html"
        done = CliRunner().invoke(
            main, ["--settings", str(settings), "status", "--report", str(page)]
        )
        assert done.exit_code == 0, done.output
        assert "rapport écrit dans" in done.output
        html = page.read_text(encoding="utf-8")
        assert '<html lang="fr">' in html
        for words in ("Où en est chaque destinataire", "2 destinataires dans le journal d’envoi"):
            assert words in html
        assert "Where each recipient stands" not in html


def test_the_exports_open_in_a_french_excel_in_french(tmp_path: Path) -> None:
    # French Excel splits a .csv at `;` (`,` is its decimal mark): a comma export opened as one
    # column, with English headers and states.
    with FaultyServer() as server:
        settings = with_language(make_project(tmp_path, port=server.port, recipients=2), "fr")
        assert CliRunner().invoke(main, ["--settings", str(settings), "send", "-q"]).exit_code == 0
    log, sheet = tmp_path / "journal.csv", tmp_path / "suivi.xlsx"
    for args in (["--export", str(log)], ["--export", str(sheet), "--with-sheet"]):
        done = CliRunner().invoke(main, ["--settings", str(settings), "status", *args])
        assert done.exit_code == 0, done.output
    with log.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    assert len(rows) == 2 and rows[0]["état"] == "envoyé", rows
    assert rows[0]["envoyé le"].startswith("20") and rows[0]["tentatives"] == "1"
    book = load_workbook(sheet).active
    assert book is not None
    header = [cell.value for cell in book[1]]
    states = [row[header.index("état")] for row in book.iter_rows(min_row=2, values_only=True)]
    assert states == ["envoyé", "envoyé"]


def test_the_terminal_never_breaks_a_line_at_a_no_break_space() -> None:
    """`civilité « Madame »` (no-break spaces) stays on one line of a table, at every width."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    from campaign.cli.output import console

    console.rich()  # the command line's console: what it sets up holds for every table it prints
    reason = "l’une des 3 premières lignes ; champ adresse le plus long ; civilité\u00a0«\u202fMadame\u202f»"
    for width in range(40, 80):  # wide enough for the reason's longest unbreakable part
        out = StringIO()
        table = Table()
        table.add_column("ligne")
        table.add_column("pourquoi cette ligne", overflow="fold")
        table.add_row("2", reason)
        Console(file=out, width=width).print(table)
        lines = out.getvalue().splitlines()
        assert any("civilité\u00a0«\u202fMadame\u202f»" in line for line in lines), (width, lines)
        assert all(line.split("│")[-2:-1] != [" »"] for line in lines), (width, lines)


def test_a_refused_send_names_the_reviewer_in_french(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_language(project / "settings.yaml", "fr")
    speak(monkeypatch, "C")
    refused = run("send", "hopitaux-2020-05")
    assert refused.exit_code == 1, refused.output
    said = " ".join(refused.output.split())
    assert "pas encore approuvée" in said and "campaign approve hopitaux-2020-05 --by NOM" in said


def test_messages_too_big_for_the_server_are_said_in_french(tmp_path: Path) -> None:
    (tmp_path / "letters").mkdir()
    (tmp_path / "letters" / "annexe.pdf").write_bytes(os.urandom(30_000))  # ~41 KB encoded
    with FaultyServer(size_limit=20_000) as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=2, extra="attachments: [letters/annexe.pdf]"
        )
        sent = CliRunner().invoke(
            main, ["--settings", str(with_language(settings, "fr")), "send", "--quiet"]
        )
    assert sent.exit_code == 2, sent.output
    flat = " ".join(sent.output.split())
    assert "qu’accepte 127.0.0.1 (SIZE 20000)" in flat and "20 Ko" in flat
    assert "annexe.pdf (41 Ko)" in flat
    assert "aucune tentative de destinataire n’a été consommée" in flat
    assert server.stored == []

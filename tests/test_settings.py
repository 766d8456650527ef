"""settings.yaml: every mistake is named with its key and line, and exits 2 without a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import Result

from campaign.errors import SettingsError
from campaign.settings import Settings, load_settings, parse_duration
from tests.conftest import Run

MINIMAL = """\
sender:
  name: Collectif
  email: collectif@example.org
smtp:
  host: 127.0.0.1
  port: 8025
campaigns:
  essai:
    letter: letters/lettre.md
    recipients: recipients/liste.csv
    email_column: Courriel
    subject: "Bonjour {{ nom }}"
"""


def make_project(root: Path, settings: str = MINIMAL) -> Path:
    """A minimal project: settings.yaml, one letter, one spreadsheet; returns settings.yaml."""
    (root / "letters").mkdir(parents=True, exist_ok=True)
    (root / "recipients").mkdir(exist_ok=True)
    (root / "letters" / "lettre.md").write_text("Bonjour {{ nom }},\n", encoding="utf-8")
    (root / "recipients" / "liste.csv").write_text(
        "Nom,Courriel\nAna,ana@example.org\n", encoding="utf-8"
    )
    path = root / "settings.yaml"
    path.write_text(settings, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line of `text` that contains `fragment`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def fails(path: Path) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    assert caught.value.exit_code == 2
    return caught.value


def assert_exit_2(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    flat = "".join(result.output.split())  # rich wraps long lines, even inside words
    for fragment in fragments:
        assert "".join(fragment.split()) in flat, result.output


def edit(project: Path, old: str, new: str) -> str:
    path = project / "settings.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return text


def test_minimal_settings_load_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(make_project(tmp_path))
    assert isinstance(settings, Settings)
    assert settings.throttle.per_minute == 30
    assert settings.retry.backoff == [30.0, 120.0, 600.0, 1800.0]
    campaign = settings.campaign(None)  # the only one
    assert campaign.name == "essai"
    assert campaign.path(campaign.config.letter) == tmp_path / "letters" / "lettre.md"
    assert campaign.outbox == tmp_path / "outbox" / "essai"


def test_paths_are_relative_to_the_settings_folder_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(Path("project/settings.yaml"))
    assert settings.campaign("essai").path(Path("letters/lettre.md")).is_file()


def test_unknown_key_is_named_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    text = MINIMAL.replace("  port: 8025\n", "  port: 8025\n  hots: mail.example.org\n")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "smtp.hots"
    assert err.place.line == line_of(text, "hots:")
    assert "unknown key 'hots'" in err.message
    assert "did you mean 'host'?" in err.message


def test_unknown_key_without_a_close_match_lists_the_keys(tmp_path: Path) -> None:
    text = MINIMAL + "    colour: blue\n"
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "campaigns.essai.colour"
    assert err.place.line == line_of(text, "colour:")
    assert "email_column" in err.message


def test_reserved_internal_names_are_unknown_keys(tmp_path: Path) -> None:
    text = MINIMAL + "root: /etc\n"
    err = fails(make_project(tmp_path, text))
    assert err.message == "unknown key 'root'"
    assert err.place.line == line_of(text, "root:")


def test_wrong_type_is_named_with_its_key_and_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("port: 8025", "port: huit")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "smtp.port"
    assert err.place.line == line_of(text, "port:")
    assert err.message == "expected a whole number (not 'huit')"


def test_a_key_left_empty_is_said_empty_not_none(tmp_path: Path) -> None:
    text = MINIMAL.replace("  name: Collectif", "  name:")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "sender.name"
    assert err.message == "expected text (it is empty)"  # not "(not 'None')"


def test_an_imap_oauth2_token_must_come_from_a_command(tmp_path: Path) -> None:
    # A token expires within the hour: a variable exported once would be stale by the next run.
    text = MINIMAL + (
        "mailbox:\n  imap: {host: imap.example.org, username: collectif@example.org, "
        "auth: xoauth2, password_env: JETON}\n"
    )
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "mailbox.imap"
    assert err.message == "auth: xoauth2 needs a password_command that prints a fresh access token"
    fine = text.replace(
        "password_env: JETON", "password_command: oama access collectif@example.org"
    )
    imap = load_settings(make_project(tmp_path, fine)).mailbox
    assert imap is not None and imap.imap is not None and imap.imap.auth == "xoauth2"


def test_a_choice_outside_the_allowed_values_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("  port: 8025\n", "  port: 8025\n  security: ssl\n")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "smtp.security"
    assert "'none', 'starttls' or 'tls'" in err.message


def test_several_mistakes_are_reported_in_one_pass(tmp_path: Path) -> None:
    text = MINIMAL.replace("port: 8025", "port: 99999") + "throttle: {per_minute: -1}\n"
    err = fails(make_project(tmp_path, text))
    assert "2 problems" in err.message
    assert f"line {line_of(text, 'port:')}, key 'smtp.port'" in err.message
    assert "key 'throttle.per_minute'" in err.message


def test_missing_section_is_named(tmp_path: Path) -> None:
    text = MINIMAL.split("campaigns:")[0]
    err = fails(make_project(tmp_path, text))
    assert err.message == "missing key 'campaigns'"


def test_an_invalid_sender_address_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("collectif@example.org", "collectif@")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "sender.email"
    assert err.place.line == 3


def test_malformed_yaml_names_its_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("  port: 8025", "  port: [8025")
    err = fails(make_project(tmp_path, text))
    assert err.message.startswith("not valid YAML")
    assert err.place.line is not None and err.place.line >= line_of(text, "port:")


@pytest.mark.parametrize(
    ("before", "after", "line", "said", "hint"),
    [
        # A French organiser's mistake: "campaigns:" one space in, under sender.
        ("campaigns:", " campaigns:", 7, "not indented like the lines of its section", "line up"),
        ("  port: 8025", "\tport: 8025", 6, "a tab is used to indent", "spaces only"),
        ('subject: "Bonjour {{ nom }}"', "subject: Objet : {{ nom }}", 12, "holds ': '", "quotes"),
        (
            'subject: "Bonjour {{ nom }}"',
            'subject: "Bonjour {{ nom }}',
            12,
            "never closed",
            "close",
        ),
        ("  port: 8025", "  port: @8025", 6, "starts with '@'", "double quotes"),
    ],
)
def test_a_yaml_mistake_is_said_in_plain_words_with_what_to_do(
    tmp_path: Path, before: str, after: str, line: int, said: str, hint: str
) -> None:
    err = fails(make_project(tmp_path, MINIMAL.replace(before, after)))
    assert err.message.startswith("not valid YAML: "), err.message
    assert said in err.message, err.message
    assert "<block" not in err.message and "token" not in err.message
    assert err.hint is not None and hint in err.hint, err.hint
    assert err.place.line == line


def test_a_list_instead_of_a_mapping_is_refused(tmp_path: Path) -> None:
    err = fails(make_project(tmp_path, "- sender\n- campaigns\n"))
    assert "must be a mapping" in err.message


def test_missing_settings_file_suggests_settings_option(tmp_path: Path) -> None:
    err = fails(tmp_path / "absent.yaml")
    assert "settings file not found" in err.message
    assert err.hint is not None and "--settings" in err.hint


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_settings(path).sender.name == "Collectif"


def test_a_clear_password_is_refused_with_the_password_env_hint(tmp_path: Path) -> None:
    text = MINIMAL.replace("  port: 8025\n", "  port: 8025\n  password: hunter2\n")
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "smtp.password"
    assert err.place.line == line_of(text, "password:")
    assert err.hint is not None and "password_env" in err.hint
    assert "hunter2" not in str(err)


def test_the_password_comes_from_the_named_environment_variable(tmp_path: Path) -> None:
    text = MINIMAL.replace("  port: 8025\n", "  port: 8025\n  password_env: CAMPAIGN_TEST_PW\n")
    settings = load_settings(make_project(tmp_path, text))
    os.environ.pop("CAMPAIGN_TEST_PW", None)
    with pytest.raises(SettingsError, match="CAMPAIGN_TEST_PW is not set"):
        settings.smtp.password()
    os.environ["CAMPAIGN_TEST_PW"] = "s3cret"
    try:
        assert settings.smtp.password() == "s3cret"
    finally:
        del os.environ["CAMPAIGN_TEST_PW"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("10min", 600.0), ("1h", 3600.0), ("1.5", 1.5), (45, 45.0)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_durations_in_settings_are_seconds(tmp_path: Path) -> None:
    text = MINIMAL + "retry: {max_attempts: 3, backoff: [30s, 2m]}\n"
    text = text.replace("  port: 8025\n", "  port: 8025\n  timeout: 2m\n")
    settings = load_settings(make_project(tmp_path, text))
    assert settings.retry.backoff == [30.0, 120.0]
    assert settings.smtp.timeout == 120.0


def test_a_bad_duration_names_its_list_item(tmp_path: Path) -> None:
    text = MINIMAL + "retry:\n  backoff:\n    - 30s\n    - deux minutes\n"
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "retry.backoff.1"
    assert err.place.line == line_of(text, "deux minutes")
    assert "is not a duration such as 30s, 2m or 1h" in err.message


def test_a_missing_letter_is_named_with_its_key_and_line(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    (tmp_path / "letters" / "lettre.md").unlink()
    err = fails(path)
    assert err.place.key == "campaigns.essai.letter"
    assert err.place.line == line_of(MINIMAL, "letter:")
    assert err.message == "file not found: letters/lettre.md"


def test_a_missing_file_names_the_file_of_its_folder_it_likely_meant(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    recipients = tmp_path / "recipients"
    (recipients / "liste.csv").rename(recipients / "liste-2020.csv")
    err = fails(path)
    assert err.message == "file not found: recipients/liste.csv"
    assert err.hint is not None and err.hint.startswith("did you mean 'recipients/liste-2020.csv'?")
    assert "relative to the folder of settings.yaml" in err.hint
    (recipients / "liste-2020.csv").rename(recipients / "autre-chose.xlsx")
    err = fails(path)  # nothing of that name near: where the path starts from, only
    assert err.hint is not None and "did you mean" not in err.hint


def test_missing_letter_and_spreadsheet_are_reported_together(tmp_path: Path) -> None:
    path = make_project(tmp_path)
    (tmp_path / "letters" / "lettre.md").unlink()
    (tmp_path / "recipients" / "liste.csv").unlink()
    err = fails(path)
    assert "2 problems" in err.message
    assert "campaigns.essai.letter" in err.message
    assert "campaigns.essai.recipients" in err.message


def test_an_attachment_outside_the_project_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.pdf").write_bytes(b"%PDF-1.4")
    text = MINIMAL + "    attachments: [../secret.pdf]\n"
    err = fails(make_project(tmp_path / "project", text))
    assert err.place.key == "campaigns.essai.attachments.0"
    assert "outside the project folder" in err.message


def test_a_link_inside_the_project_pointing_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.pdf").write_bytes(b"%PDF-1.4")
    text = MINIMAL + "    attachments: [letters/annexe.pdf]\n"
    path = make_project(tmp_path / "project", text)
    (tmp_path / "project" / "letters" / "annexe.pdf").symlink_to(tmp_path / "secret.pdf")
    assert "outside the project folder" in fails(path).message


def test_choosing_a_campaign(tmp_path: Path) -> None:
    second = MINIMAL + (
        "  autre:\n    letter: letters/lettre.md\n    recipients: recipients/liste.csv\n"
    )
    settings = load_settings(make_project(tmp_path, second))
    with pytest.raises(SettingsError, match="several campaigns") as caught:
        settings.campaign(None)
    assert caught.value.hint is not None and "essai, autre" in caught.value.hint
    assert settings.campaign("autre").config.email_column == "email"
    with pytest.raises(SettingsError, match="no campaign called 'nope'"):
        settings.campaign("nope")
    chosen = load_settings(make_project(tmp_path, second + "default_campaign: autre\n"))
    assert chosen.campaign(None).name == "autre"


# -- through the command line: exit 2, no traceback -----------------------------------------------


def test_cli_unknown_key_exits_2(project: Path, run: Run) -> None:
    text = edit(project, "  timeout: 30s\n", "  timeout: 30s\n  colour: blue\n")
    assert_exit_2(
        run("check"), f"settings.yaml, line {line_of(text, 'colour:')}", "unknown key 'colour'"
    )


def test_cli_wrong_type_exits_2(project: Path, run: Run) -> None:
    text = edit(project, "per_minute: 3000", "per_minute: beaucoup")
    assert_exit_2(run("check"), f"line {line_of(text, 'per_minute')}", "throttle.per_minute")


def test_cli_clear_password_exits_2(project: Path, run: Run) -> None:
    edit(project, "  timeout: 30s\n", "  timeout: 30s\n  password: hunter2\n")
    result = run("check")
    assert_exit_2(result, "smtp.password", "password_env")
    assert "hunter2" not in result.output


def test_cli_missing_spreadsheet_exits_2(project: Path, run: Run) -> None:
    (project / "recipients" / "signataires.csv").unlink()
    assert_exit_2(
        run("check", "merci-signataires"),
        "campaigns.merci-signataires.recipients",
        "file not found: recipients/signataires.csv",
    )


def test_cli_missing_letter_exits_2(project: Path, run: Run) -> None:
    (project / "letters" / "lettre-hopitaux.md").unlink()
    assert_exit_2(run("check"), "campaigns.hopitaux-2020-05.letter", "file not found")


def test_cli_attachment_outside_project_exits_2(project: Path, run: Run) -> None:
    edit(project, "    attachments: []", "    attachments: [/etc/hostname]")
    assert_exit_2(run("check"), "attachments.0", "outside the project folder")


def test_cli_bad_duration_exits_2(project: Path, run: Run) -> None:
    edit(project, "backoff: [30s, 2m, 10m, 30m]", "backoff: [30s, soon]")
    assert_exit_2(run("check"), "retry.backoff.1", "'soon' is not a duration")


def test_cli_missing_settings_file_exits_2(tmp_path: Path, run: Run) -> None:
    assert_exit_2(run("check", settings=tmp_path / "none.yaml"), "settings file not found")


def test_no_campaign_at_all_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.split("campaigns:")[0] + "campaigns: {}\n"
    err = fails(make_project(tmp_path, text))
    assert err.message == "no campaign is defined"
    assert err.place.line == line_of(text, "campaigns:")


def test_a_campaign_name_that_would_escape_the_outbox_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace("  essai:", '  "../../elsewhere":')
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "campaigns.../../elsewhere"
    assert err.place.line == line_of(text, "elsewhere")
    assert "cannot be used as a folder name" in err.message


def test_a_default_campaign_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "default_campaign: essais\n"
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "default_campaign"
    assert err.place.line == line_of(text, "default_campaign")
    assert err.hint == "the campaigns are: essai"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.1.example.com", False),
        ("127.attacker.example", False),
        ("localhost.evil", False),
        ("128.0.0.1", False),
        ("smtp.example.org", False),
    ],
)
def test_only_real_loopback_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    from campaign.settings import Smtp

    assert Smtp(host=host).is_loopback is loopback


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (
            "contact@example.org",
            "is neither a mailto: address nor an https: page; write e.g. "
            "mailto:contact@example.org?subject=unsubscribe",
        ),
        ("http://example.org/desinscription", "is neither a mailto: address nor an https: page"),
        ("mailto:contact@", "'contact@' is not an email address"),
    ],
)
def test_a_list_unsubscribe_that_is_no_mailto_or_https_uri_is_refused(
    tmp_path: Path, value: str, said: str
) -> None:
    text = MINIMAL + f"    list_unsubscribe: {value}\n"
    err = fails(make_project(tmp_path, text))
    assert err.place.key == "campaigns.essai.list_unsubscribe"
    assert said in err.message


def test_a_list_unsubscribe_uri_is_accepted_as_written(tmp_path: Path) -> None:
    for value in ("mailto:desinscription@example.org?subject=stop", "https://example.org/d?c=1"):
        text = MINIMAL + f"    list_unsubscribe: <{value}>\n"
        assert (
            load_settings(make_project(tmp_path, text)).campaign("essai").config.list_unsubscribe
            == value
        )

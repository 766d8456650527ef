"""SMTP settings mistakes (issue 10 §3) and OAuth2 login (issue 13 §5), in `campaign.smtpsession`.

Each mistake must stop `send` once, before the first message, with exit 2, the setting's key and
what to write instead; no recipient's row may turn deferred or failed, and the server must see at
most one login attempt. `check` finds what it can without a network. Fast variants run against
aiosmtpd (tests/smtp_server.py); the same mistakes against the real Postfix (submission port with
STARTTLS and Dovecot SASL, tests/mailservers.py) count the failed logins in Postfix's own log.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import Result

from campaign.ledger import Ledger, State
from campaign.smtpsession import helo_name
from tests.conftest import cli, said
from tests.mailservers import USERS, Postfix, auth_failures
from tests.smtp_server import FaultyServer, make_project, tls_contexts

USER = "collectif"
POSTFIX_USER = "collectif@example.org"


def untouched(settings: Path) -> None:
    """No recipient was tried: every row of the delivery log is pending with no attempt."""
    path = settings.parent / "outbox" / "mini" / "delivery.sqlite"
    if not path.exists():
        return  # refused before the log was even opened
    with Ledger(path) as log:
        deliveries = list(log.deliveries())
    assert deliveries
    assert {d.state for d in deliveries} == {State.PENDING}
    assert {d.attempts for d in deliveries} == {0}


def check_finds(settings: Path, key: str, severity: str = "error") -> str:
    """Run `check --json`; assert it reports a problem of `severity` at `key`; its message."""
    result = cli(settings, "check", "--json")
    assert result.exit_code == (1 if severity == "error" else 0), result.output
    found = [
        p
        for p in json.loads(result.output)["problems"]
        if p["key"] == key and p["severity"] == severity
    ]
    assert found, result.output
    return f"{found[0]['message']} ({found[0]['hint']})"


def settings_error(result: Result, key: str) -> str:
    """Assert a settings error (exit 2, no traceback) naming `key`; the output, unwrapped."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = said(result)
    assert f"key '{key}'" in text, text
    return text


# --- the password and the login -------------------------------------------------------------


def test_wrong_password_is_tried_once_then_stops_the_run_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "pw-Zq81-not-it")
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=6,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_env: SMTP_TEST_PASSWORD",
            throttle="per_minute: null\n  per_day: 100000\n  concurrency: 3",
        )
        result = cli(settings, "send", "--quiet")
        assert server.auth_commands == 1  # one mechanism, on one connection: no lock-out
        assert server.failed_logins == 1
        assert server.stored == []
    text = settings_error(result, "smtp.username")
    assert "refused the login of collectif: 535" in text
    assert f"{settings}, key 'smtp.username'" in text  # the file and the key, first
    assert "SMTP_TEST_PASSWORD" in text and "pw-Zq81-not-it" not in result.output
    untouched(settings)


def test_plain_is_used_over_tls_and_login_when_only_login_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "right")
    for auth, mechanism in (("auto", "PLAIN"), ("login", "LOGIN")):
        with FaultyServer(starttls=context, users={USER: "right"}) as server:
            settings = make_project(
                tmp_path / auth,
                port=server.port,
                recipients=2,
                smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
                f"  password_env: SMTP_TEST_PASSWORD\n  auth: {auth}",
            )
            result = cli(settings, "send", "--quiet")
            assert result.exit_code == 0, result.output
            assert server.auth_commands == server.logins == server.connections
            assert server.state.mechanisms == [mechanism] * server.connections


def test_empty_password_variable_is_refused_before_connecting_and_by_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "")
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_env: SMTP_TEST_PASSWORD",
        )
        checked = check_finds(settings, "smtp.password_env")
        result = cli(settings, "send", "--quiet")
        assert server.connections == 0
    assert "SMTP_TEST_PASSWORD is empty" in checked
    text = settings_error(result, "smtp.password_env")
    assert "SMTP_TEST_PASSWORD is empty" in text
    untouched(settings)


def test_password_command_printing_nothing_is_refused_before_connecting(tmp_path: Path) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=1,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_command: 'true'",
        )
        result = cli(settings, "send", "--quiet")
        assert server.connections == 0
    assert "printed nothing" in settings_error(result, "smtp.password_command")


def test_username_without_any_password_source_is_found_by_check(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1, smtp=f"username: {USER}")
    assert "no password is named" in check_finds(settings, "smtp.password_env")
    result = cli(settings, "send", "--quiet")
    settings_error(result, "smtp.password_env")


def test_a_password_in_clear_to_a_remote_host_is_found_by_check(tmp_path: Path) -> None:
    settings = make_project(
        tmp_path, port=587, recipients=1, smtp=f"username: {USER}\n  password_env: HOME"
    )
    settings.write_text(settings.read_text().replace("host: 127.0.0.1", "host: smtp.example.org"))
    assert "unencrypted to smtp.example.org" in check_finds(settings, "smtp.security")


def test_a_mechanism_the_server_does_not_offer_names_smtp_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "right")
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=1,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_env: SMTP_TEST_PASSWORD\n  auth: xoauth2\n  password_command: echo x",
        )
        settings.write_text(
            settings.read_text().replace("  password_env: SMTP_TEST_PASSWORD\n", "")
        )
        result = cli(settings, "send", "--quiet")
        assert server.auth_commands == 0
    text = settings_error(result, "smtp.auth")
    assert "does not offer AUTH XOAUTH2 (it offers LOGIN PLAIN)" in text


# --- the TLS mode of the port ---------------------------------------------------------------


def test_security_none_on_a_starttls_port_advises_starttls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, _ = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "right")
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=3,
            smtp=f"security: none\n  username: {USER}\n  password_env: SMTP_TEST_PASSWORD",
        )
        result = cli(settings, "send", "--quiet")
        assert server.auth_commands == 0  # the password never went out in clear
    text = settings_error(result, "smtp.security")
    assert "offers AUTH only after STARTTLS" in text and "set security: starttls" in text
    untouched(settings)


def test_security_none_without_login_on_a_starttls_port_advises_starttls(tmp_path: Path) -> None:
    context, _ = tls_contexts(tmp_path)
    with FaultyServer(starttls=context) as server:  # 530 Must issue a STARTTLS command first
        settings = make_project(tmp_path, port=server.port, recipients=3, smtp="security: none")
        result = cli(settings, "send", "--quiet")
        assert server.stored == []
    text = settings_error(result, "smtp.security")
    assert "requires STARTTLS (530" in text and "set security: starttls" in text
    untouched(settings)


def test_security_tls_on_a_starttls_port_advises_starttls(tmp_path: Path) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=3,
            smtp=f"security: tls\n  cert_bundle: {bundle}",
        )
        result = cli(settings, "send", "--quiet")
        assert server.stored == []
    text = settings_error(result, "smtp.security")
    assert "speaks plain SMTP, not TLS" in text and "set security: starttls" in text
    untouched(settings)


def test_starttls_on_an_implicit_tls_port_advises_tls(tmp_path: Path) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(implicit_tls=context) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}",
        )
        settings.write_text(settings.read_text().replace("timeout: 5s", "timeout: 1s"))
        result = cli(settings, "send", "--quiet")
        assert server.stored == []
    text = settings_error(result, "smtp.security")
    assert "implicit TLS" in text and "set security: tls" in text
    untouched(settings)


def test_username_on_a_server_that_offers_no_login_names_the_username(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, bundle = tls_contexts(tmp_path)
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "right")
    with FaultyServer(starttls=context, offer_auth=False) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_env: SMTP_TEST_PASSWORD",
        )
        result = cli(settings, "send", "--quiet")
        assert server.auth_commands == 0 and server.stored == []
    assert "offers no login" in settings_error(result, "smtp.username")
    untouched(settings)


def test_port_465_without_tls_is_a_warning_of_check(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=465, recipients=1, smtp="security: starttls")
    checked = check_finds(settings, "smtp.security", "warning")
    assert "port 465 speaks TLS from the first byte" in checked


# --- the certificate authority ----------------------------------------------------------------


def test_missing_cert_bundle_is_found_by_check_and_send_never_connects(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp="security: starttls\n  cert_bundle: certs/absent.pem",
        )
        checked = check_finds(settings, "smtp.cert_bundle")
        result = cli(settings, "send", "--quiet")
        assert server.connections == 0
    assert "certificate bundle not found" in checked
    # Resolved beside settings.yaml, and said so.
    assert str(tmp_path / "certs" / "absent.pem") in settings_error(result, "smtp.cert_bundle")


def test_a_host_name_that_does_not_exist_stops_the_run_at_once(tmp_path: Path) -> None:
    # Not a server down to wait for ten minutes: a typo. The name has a space, which the
    # resolver refuses itself: no DNS query leaves the machine.
    with FaultyServer() as server:
        settings = make_project(
            tmp_path, port=server.port, recipients=2, smtp="outage_limit: 2s\n  probe_interval: 1s"
        )
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("host: 127.0.0.1", "host: smtp exemple.org"), encoding="utf-8")
    assert "smtp exemple.org" in settings.read_text(encoding="utf-8")
    result = cli(settings, "send", "--quiet")
    text = settings_error(result, "smtp.host")
    assert "no server is called smtp exemple.org" in text and "check the spelling" in text
    untouched(settings)


def test_a_cert_bundle_that_is_no_certificate_is_found_by_check(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    settings = make_project(
        tmp_path, port=25, recipients=1, smtp="security: starttls\n  cert_bundle: ca.pem"
    )
    checked = check_finds(settings, "smtp.cert_bundle")
    assert "not a readable PEM certificate bundle" in checked


def test_relative_cert_bundle_is_relative_to_the_settings_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    context, _ = tls_contexts(project)  # writes project/ca.pem
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with FaultyServer(starttls=context) as server:
        settings = make_project(
            project,
            port=server.port,
            recipients=2,
            smtp="security: starttls\n  cert_bundle: ca.pem",
        )
        result = cli(settings, "send", "--quiet")
        assert len(server.stored) == 2
    assert result.exit_code == 0, result.output


def test_cert_bundle_of_another_authority_names_the_cert_bundle(tmp_path: Path) -> None:
    (tmp_path / "right").mkdir()
    (tmp_path / "other").mkdir()
    context, _ = tls_contexts(tmp_path / "right")
    _, other = tls_contexts(tmp_path / "other")
    with FaultyServer(starttls=context) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {other}",
        )
        result = cli(settings, "send", "--quiet")
        assert server.stored == []
    text = settings_error(result, "smtp.cert_bundle")
    assert "was rejected" in text and "not signed by the authority" in text
    untouched(settings)


# --- the EHLO name --------------------------------------------------------------------------


def test_ehlo_uses_helo_name_and_otherwise_never_a_bare_localhost(tmp_path: Path) -> None:
    with FaultyServer() as server:
        named = make_project(
            tmp_path / "named", port=server.port, recipients=1, smtp="helo_name: mail.example.org"
        )
        assert cli(named, "send", "--quiet").exit_code == 0
        plain = make_project(tmp_path / "plain", port=server.port, recipients=1)
        assert cli(plain, "send", "--quiet").exit_code == 0
        names = server.helo_names
    assert names[0] == "mail.example.org"
    assert names[-1].lower() != "localhost"
    assert "." in names[-1] or names[-1] == "[127.0.0.1]"


def test_helo_name_falls_back_to_the_address_literal() -> None:
    assert helo_name("relay.example.org", "host.example.com", None) == "relay.example.org"
    assert helo_name(None, "host.example.com", ("192.0.2.1", 4000)) == "host.example.com"
    assert helo_name(None, "localhost", ("192.0.2.1", 4000)) == "[192.0.2.1]"
    assert helo_name(None, "localhost.localdomain", ("192.0.2.1", 4000)) == "[192.0.2.1]"
    assert helo_name(None, "box", ("2001:db8::1", 4000, 0, 0)) == "[IPv6:2001:db8::1]"


@pytest.mark.parametrize(
    "fqdn", ["MacBook-Pro-de-Marie.local", "PC-JDUPONT.home", "portable.lan", "poste.home.arpa."]
)
def test_a_name_only_the_local_network_knows_is_not_said_to_the_provider(fqdn: str) -> None:
    # The provider writes the EHLO name into the Received line every recipient can read.
    assert helo_name(None, fqdn, ("192.168.1.23", 4000)) == "[192.168.1.23]"
    assert helo_name("mail.example.org", fqdn, ("192.168.1.23", 4000)) == "mail.example.org"


# --- OAuth2 ---------------------------------------------------------------------------------


def _oauth_project(tmp_path: Path, port: int, bundle: Path, auth: str, token: str) -> Path:
    """A project whose password_command prints `token`, as `oama access` would."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "token.txt").write_text(token + "\n", encoding="utf-8")
    return make_project(
        tmp_path,
        port=port,
        recipients=3,
        smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {POSTFIX_USER}\n"
        f"  auth: {auth}\n  password_command: cat {tmp_path / 'token.txt'}",
    )


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_oauth2_token_from_password_command_logs_in(tmp_path: Path, auth: str) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context, tokens={POSTFIX_USER: "ya29.token-ok"}) as server:
        settings = _oauth_project(tmp_path, server.port, bundle, auth, "ya29.token-ok")
        result = cli(settings, "send", "--quiet")
        assert result.exit_code == 0, result.output
        assert len(server.stored) == 3
        assert server.logins == server.connections
        mechanism, blob = server.state.auth_seen[0]
    assert mechanism == auth.upper()
    if auth == "xoauth2":
        assert blob == f"user={POSTFIX_USER}\x01auth=Bearer ya29.token-ok\x01\x01".encode()
    else:  # RFC 7628: gs2 header, host and port, the bearer token
        assert (
            blob
            == (
                f"n,a={POSTFIX_USER},\x01host=127.0.0.1\x01port={server.port}\x01"
                "auth=Bearer ya29.token-ok\x01\x01"
            ).encode()
        )


@pytest.mark.parametrize("auth", ["xoauth2", "oauthbearer"])
def test_oauth2_token_refused_is_a_settings_error_naming_the_command(
    tmp_path: Path, auth: str
) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context, tokens={POSTFIX_USER: "ya29.fresh"}) as server:
        settings = _oauth_project(tmp_path, server.port, bundle, auth, "ya29.expired")
        result = cli(settings, "send", "--quiet")
        assert server.auth_commands == 1 and server.failed_logins == 1
        assert server.stored == []
    text = settings_error(result, "smtp.password_command")
    assert "refused the OAuth2 token" in text and "may have expired" in text
    assert "ya29.expired" not in result.output
    untouched(settings)


def test_oauth2_settings_are_checked_offline(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=1,
            smtp="security: starttls\n  auth: xoauth2\n  password_env: HOME",
        )
        checked = cli(settings, "check", "--json")
        assert server.connections == 0  # check never touches the network
    assert checked.exit_code == 1
    problems = json.loads(checked.output)["problems"]
    keys = {p["key"] for p in problems if p["severity"] == "error"}
    assert {"smtp.username", "smtp.password_command"} <= keys


def test_oauthbearer_error_challenge_status_is_reported(tmp_path: Path) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context, tokens={POSTFIX_USER: "good"}) as server:
        settings = _oauth_project(tmp_path, server.port, bundle, "oauthbearer", "bad")
        result = cli(settings, "send", "--quiet")
    assert "status invalid_token" in settings_error(result, "smtp.password_command")
    assert base64.b64encode(b"bad") not in result.output.encode()


# --- the real Postfix: submission on 587-like port, STARTTLS then Dovecot SASL ----------------


def _postfix_project(tmp_path: Path, postfix: Postfix, smtp: str) -> Path:
    return make_project(
        tmp_path,
        port=postfix.submission_port,
        recipients=4,
        smtp=f"username: {POSTFIX_USER}\n  password_env: SMTP_TEST_PASSWORD\n  {smtp}",
    )


def test_postfix_wrong_password_logs_exactly_one_failed_login(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_PASSWORD", "not-the-password")
    settings = _postfix_project(
        tmp_path, postfix, f"security: starttls\n  cert_bundle: {postfix.ca_bundle}"
    )
    mark = postfix.log_mark()
    result = cli(settings, "send", "--quiet")
    assert "refused the login" in settings_error(result, "smtp.username")
    log = postfix.log_since(mark)
    assert auth_failures(log) == 1, log
    untouched(settings)
    # The right password then delivers everyone: the refused run cost nobody anything.
    monkeypatch.setenv("SMTP_TEST_PASSWORD", USERS[POSTFIX_USER])
    assert cli(settings, "send", "--quiet").exit_code == 0
    assert len(postfix.wait_delivered(4, mark=mark)) == 4


def test_postfix_security_none_on_submission_advises_starttls(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_PASSWORD", USERS[POSTFIX_USER])
    settings = _postfix_project(tmp_path, postfix, "security: none")
    mark = postfix.log_mark()
    result = cli(settings, "send", "--quiet")
    assert "set security: starttls" in settings_error(result, "smtp.security")
    assert auth_failures(postfix.log_since(mark)) == 0
    untouched(settings)


def test_postfix_tls_on_submission_is_a_settings_error(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_PASSWORD", USERS[POSTFIX_USER])
    settings = _postfix_project(
        tmp_path, postfix, f"security: tls\n  cert_bundle: {postfix.ca_bundle}"
    )
    result = cli(settings, "send", "--quiet")
    text = settings_error(result, "smtp.security")
    assert "speaks plain SMTP" in text and "set security: starttls" in text
    untouched(settings)


def test_postfix_wrong_ca_names_the_cert_bundle(
    tmp_path: Path, postfix: Postfix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_TEST_PASSWORD", USERS[POSTFIX_USER])
    settings = _postfix_project(
        tmp_path, postfix, f"security: starttls\n  cert_bundle: {postfix.wrong_ca_bundle}"
    )
    mark = postfix.log_mark()
    result = cli(settings, "send", "--quiet")
    assert "not signed by the authority" in settings_error(result, "smtp.cert_bundle")
    assert auth_failures(postfix.log_since(mark)) == 0
    untouched(settings)

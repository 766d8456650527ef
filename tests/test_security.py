"""Security (SPEC §11): private files, a password that never leaks, TLS and AUTH rules, paths that
stay in the project, the template sandbox, escaping, safe exports and awkward addresses.

Every SMTP server here is real (aiosmtpd on 127.0.0.1); no packet leaves 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import csv
import email
import re
import secrets
import socket
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import Result
from openpyxl import load_workbook

from campaign.errors import DeliveryError
from campaign.ledger import Ledger, State
from campaign.settings import Smtp
from campaign.sink import read_log
from tests.conftest import RunningSink, cli, said
from tests.smtp_server import FaultyServer, make_project, tls_contexts

USER = "collectif"


def no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output


def write_people(root: Path, rows: list[tuple[str, str, str]]) -> None:
    """Rewrite the mini project's spreadsheet with proper CSV quoting (commas, quotes, newlines)."""
    with (root / "recipients" / "people.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prenom", "nom", "email"])
        writer.writerows(rows)


def states(root: Path) -> dict[str, State]:
    with Ledger(root / "outbox" / "mini" / "delivery.sqlite") as log:
        return {d.address: d.state for d in log.deliveries()}


def dry_run_messages(root: Path) -> list[EmailMessage]:
    folder = root / "outbox" / "mini" / "dry-run"
    return [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]


# --- private files and the password ---------------------------------------------------------


def _use_starttls_server(project: Path, port: int, bundle: Path) -> None:
    settings = project / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    block = (
        f"smtp:\n  host: 127.0.0.1\n  port: {port}\n  security: starttls\n"
        f"  cert_bundle: {bundle}\n  username: {USER}\n  password_env: SECURITY_TEST_PASSWORD\n"
        "  timeout: 10s\n\nthrottle:"
    )
    settings.write_text(re.sub(r"(?s)smtp:\n.*?\nthrottle:", block, text), encoding="utf-8")


def test_a_full_run_leaves_private_files_and_never_the_password(
    few_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pw-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("SECURITY_TEST_PASSWORD", password)
    context, bundle = tls_contexts(few_project)
    with FaultyServer(starttls=context, users={USER: password}) as server:
        _use_starttls_server(few_project, server.port, bundle)
        settings = few_project / "settings.yaml"
        export = few_project / "outbox" / "export.csv"
        results = [
            cli(settings, "check"),
            cli(settings, "render", "--jobs", "1", "--quiet"),
            cli(settings, "proof"),
            cli(settings, "approve", "--by", "Maître Dupont"),
            cli(settings, "send", "--dry-run", "--quiet"),
            cli(settings, "send", "--quiet"),
            cli(settings, "status", "--export", str(export)),
            cli(settings, "status", "--json"),
        ]
        assert server.logins >= 1  # the password was used, over STARTTLS
        assert len(server.stored) == 3
    for result in results:
        no_traceback(result)
        assert result.exit_code == 0, result.output

    outbox = few_project / "outbox" / "hopitaux-2020-05"
    for kind in ("letters", "proofs", "dry-run"):
        assert any((outbox / kind).iterdir()), kind
    folders = [outbox, *(p for p in outbox.rglob("*") if p.is_dir())]
    files = [p for p in outbox.rglob("*") if p.is_file()] + [export]
    assert len(files) > 10
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {"0o700"}
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o600"}

    # The password in every form it travels in (AUTH PLAIN and LOGIN use base64).
    forms = [
        password.encode(),
        base64.b64encode(password.encode()),
        base64.b64encode(f"\0{USER}\0{password}".encode()),
    ]
    everything = [p for p in few_project.rglob("*") if p.is_file()]
    for path in everything:
        data = path.read_bytes()
        assert not any(form in data for form in forms), path
    for result in results:
        assert password not in result.output.replace("\n", "")


def test_a_wrong_password_is_not_repeated_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(16)
    monkeypatch.setenv("SECURITY_TEST_PASSWORD", wrong)
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context, users={USER: "right"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"security: starttls\n  cert_bundle: {bundle}\n  username: {USER}\n"
            "  password_env: SECURITY_TEST_PASSWORD",
        )
        result = cli(settings, "send")
        status = cli(settings, "status", "--json")
    no_traceback(result)
    assert result.exit_code == 2
    assert "refused the login of collectif: 535" in said(result)
    assert "SECURITY_TEST_PASSWORD" in said(result)  # names the variable, not its value
    assert wrong not in result.output + status.output
    for path in (tmp_path / "outbox").rglob("*"):
        if path.is_file():
            assert wrong.encode() not in path.read_bytes()


# --- TLS and AUTH ---------------------------------------------------------------------------


def _loopback_alias() -> str | None:
    """A host name that resolves to 127.x but is not spelled as loopback in the settings."""
    for name in (socket.gethostname(), "vm", "runsc", "localhost.localdomain"):
        try:
            address = socket.gethostbyname(name)
        except OSError:
            continue
        if address.startswith("127.") and not Smtp(host=name).is_loopback:
            return name
    return None


def test_auth_over_plaintext_to_a_remote_host_is_refused_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alias = _loopback_alias()
    if alias is None:
        pytest.skip("no host name here resolves to 127.0.0.1 without being spelled loopback")
    monkeypatch.setenv("SECURITY_TEST_PASSWORD", "s3cret")
    with FaultyServer(users={USER: "s3cret"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"username: {USER}\n  password_env: SECURITY_TEST_PASSWORD",
        )
        settings.write_text(settings.read_text().replace("host: 127.0.0.1", f"host: {alias}"))
        result = cli(settings, "send")
        assert server.connections == 0  # refused before any connection
    no_traceback(result)
    assert result.exit_code == 2
    assert f"refusing to send the password for {USER} unencrypted to {alias}" in said(result)
    assert "smtp.security" in said(result)
    assert "sent" not in states(tmp_path).values()


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("127.0.0.1.example.com"),
        pytest.param("127.attacker.example"),
        "localhost.evil",
        "128.0.0.1",
    ],
)
def test_a_name_that_only_looks_like_loopback_gets_no_password_in_clear(host: str) -> None:
    from campaign.dispatch import Dispatcher
    from campaign.logwriter import NullWriter
    from campaign.settings import Retry
    from campaign.throttle import Throttle

    smtp = Smtp(host=host, username=USER, password_env="SECURITY_TEST_PASSWORD")
    with pytest.raises(DeliveryError, match="refusing to send the password"):
        Dispatcher(smtp=smtp, retry=Retry(), throttle=Throttle([]), writer=NullWriter())


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_over_plaintext_to_loopback_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECURITY_TEST_PASSWORD", "s3cret")
    with FaultyServer(users={USER: "s3cret"}) as server:
        settings = make_project(
            tmp_path,
            port=server.port,
            recipients=2,
            smtp=f"username: {USER}\n  password_env: SECURITY_TEST_PASSWORD",
        )
        result = cli(settings, "send", "--quiet")
        assert server.logins >= 1
    assert result.exit_code == 0, result.output


def test_self_signed_certificate_is_refused_unless_cert_bundle_names_its_ca(
    tmp_path: Path,
) -> None:
    context, bundle = tls_contexts(tmp_path)
    with FaultyServer(starttls=context) as server:
        settings = make_project(tmp_path, port=server.port, recipients=2, smtp="security: starttls")
        refused = cli(settings, "send")
        assert server.stored == []
        text = settings.read_text()
        settings.write_text(
            text.replace("security: starttls", f"security: starttls\n  cert_bundle: {bundle}")
        )
        accepted = cli(settings, "send", "--quiet")
        assert len(server.stored) == 2
    no_traceback(refused)
    assert refused.exit_code == 2
    assert re.search(r"TLS certificate of 127\.0\.0\.1:\d+ was rejected", refused.output)
    assert "smtp.cert_bundle" in said(refused)
    assert accepted.exit_code == 0, accepted.output


# --- files that must stay in the project -----------------------------------------------------


@pytest.mark.parametrize("how", ["relative", "absolute", "link"])
def test_attachment_outside_the_project_is_refused(tmp_path: Path, how: str) -> None:
    root = tmp_path / "project"
    outside = tmp_path / "secret.pdf"
    outside.write_bytes(b"%PDF-1.7 not for the recipients")
    settings = make_project(root, port=25, recipients=1)
    if how == "relative":
        named = "../secret.pdf"
    elif how == "absolute":
        named = str(outside)
    else:
        (root / "letters" / "annexe.pdf").symlink_to(outside)
        named = "letters/annexe.pdf"
    text = settings.read_text().replace(
        "attach_pdf: false", f"attach_pdf: false\n    attachments: [{named}]"
    )
    settings.write_text(text)
    for command in (["check"], ["send", "--dry-run"], ["send"]):
        result = cli(settings, *command)
        no_traceback(result)
        assert result.exit_code == 2, result.output
        assert "outside the project folder" in said(result)
        assert "attachments" in said(result)
    assert not (root / "outbox" / "mini" / "dry-run").exists()


def test_letter_linked_from_outside_the_project_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "project"
    settings = make_project(root, port=25, recipients=1)
    letter = root / "letters" / "mini.md"
    outside = tmp_path / "elsewhere.md"
    outside.write_text(letter.read_text())
    letter.unlink()
    letter.symlink_to(outside)
    result = cli(settings, "check")
    assert result.exit_code == 2
    assert "outside the project folder" in said(result)


# --- the template sandbox and escaping -------------------------------------------------------

REACHING = [
    "{{ cycler.__init__.__globals__ }}",
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
]


@pytest.mark.parametrize("snippet", REACHING)
def test_template_reaching_for_python_internals_is_stopped_naming_the_line(
    tmp_path: Path, snippet: str
) -> None:
    settings = make_project(tmp_path, port=25, recipients=2)
    letter = tmp_path / "letters" / "mini.md"
    letter.write_text(letter.read_text().replace("Voici la lettre", f"{snippet}\nVoici la lettre"))
    result = cli(settings, "check", "--json")
    no_traceback(result)
    assert result.exit_code == 1
    assert "sandbox forbids" in said(result)
    assert "letters/mini.md, line 6" in said(result)
    assert "uid=" not in said(result) and "<class" not in said(result)
    send = cli(settings, "send", "--dry-run")
    assert send.exit_code == 1
    assert "cannot be sent (dry run)" in said(send)


def test_html_in_cells_is_escaped_in_the_html_email(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    write_people(
        tmp_path,
        [
            ("<b>Jean</b>", "<script>alert(1)</script>", "jean@example.org"),
            ("Ana", '<img src="x" onerror="alert(2)">', "ana@example.org"),
        ],
    )
    result = cli(settings, "send", "--dry-run", "--quiet")
    assert result.exit_code == 0, result.output
    first, second = dry_run_messages(tmp_path)
    html = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert "<script>alert(1)</script>" in text  # the plain text shows the cell as it is
    assert first["Subject"] == "Lettre pour <b>Jean</b>"
    other = second.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<img" not in other and "&lt;img" in other


def test_a_line_break_in_a_header_cell_cannot_add_a_bcc(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    write_people(tmp_path, [("Jean\r\nBcc: spy@example.com", "Dupont", "jean@example.org")])
    result = cli(settings, "check", "--json")
    assert result.exit_code == 1
    assert '"row": 2' in said(result)
    assert '"column": "prenom"' in said(result)
    assert cli(settings, "send", "--dry-run").exit_code == 1
    assert not (tmp_path / "outbox" / "mini" / "dry-run").exists()


# --- exports ----------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example","clic")', "+33 1 2", "-2+3", "@SUM(A1:A2)"]


def test_exports_neutralise_cells_that_would_start_a_formula(tmp_path: Path) -> None:
    with FaultyServer() as server:
        settings = make_project(tmp_path, port=server.port, recipients=1)
        write_people(
            tmp_path,
            [(f, "Nom", f"p{i}@example.org") for i, f in enumerate(FORMULAS)],
        )
        text = settings.read_text().replace(
            'to_name: "{{ prenom }} {{ nom }}"', 'to_name: "{{ prenom }}"'
        )
        settings.write_text(text)
        assert cli(settings, "send", "--quiet").exit_code == 0
    csv_path, xlsx_path = tmp_path / "log.csv", tmp_path / "log.xlsx"
    assert cli(settings, "status", "--export", str(csv_path)).exit_code == 0
    assert cli(settings, "status", "--export", str(xlsx_path)).exit_code == 0

    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        names = [row["name"] for row in csv.DictReader(handle)]
    assert names == ["'" + f for f in FORMULAS]
    sheet = load_workbook(xlsx_path).active
    assert sheet is not None
    header = [c.value for c in sheet[1]]
    column = header.index("name") + 1
    cells = [sheet.cell(row=r, column=column) for r in range(2, 2 + len(FORMULAS))]
    assert [c.value for c in cells] == ["'" + f for f in FORMULAS]
    assert {c.data_type for c in cells} == {"s"}  # text, never a formula
    for path in (csv_path, xlsx_path):
        assert path.stat().st_mode & 0o777 == 0o600


# --- addresses ------------------------------------------------------------------------------


def test_an_address_with_two_at_signs_is_reported_on_its_row(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    write_people(
        tmp_path, [("Jean", "Dupont", "jean@dupont@example.org"), ("Ana", "B", "ana@example.org")]
    )
    result = cli(settings, "check", "--json")
    no_traceback(result)
    assert result.exit_code == 1
    assert '"row": 2' in said(result)
    assert '"column": "email"' in said(result)
    assert "jean@dupont@example.org" in said(result)


def test_display_names_with_commas_and_quotes_stay_one_recipient(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    write_people(
        tmp_path,
        [
            ("Jean", 'Dupont, "JJ" <boss@example.com>', "jean@example.org"),
            ("Zoé", "d'Aubigné; Martin", "zoe@example.org"),
        ],
    )
    result = cli(settings, "send", "--dry-run", "--quiet")
    assert result.exit_code == 0, result.output
    first, second = dry_run_messages(tmp_path)
    to = first["To"].addresses
    assert len(to) == 1
    assert to[0].addr_spec == "jean@example.org"
    assert to[0].display_name == 'Jean Dupont, "JJ" <boss@example.com>'
    assert [a.addr_spec for a in second["To"].addresses] == ["zoe@example.org"]
    assert second["To"].addresses[0].display_name == "Zoé d'Aubigné; Martin"


IDN_ROWS = [
    ("José", "Alvarez", "josé@example.org"),
    ("Ulla", "Bücher", "user@bücher.example"),
    ("Anne", "Martin", "anne@example.org"),
]


def _idn_project(tmp_path: Path, port: int) -> Path:
    settings = make_project(tmp_path, port=port, recipients=1)
    write_people(tmp_path, IDN_ROWS)
    text = settings.read_text().replace("approval:", "allow_special_domains: true\n    approval:")
    settings.write_text(text)
    return settings


def test_internationalised_addresses_are_sent_with_smtputf8_when_offered(tmp_path: Path) -> None:
    log = tmp_path / "received.tsv"
    with RunningSink(tmp_path / "sink", log=log) as sink:  # the sink offers SMTPUTF8
        settings = _idn_project(tmp_path, sink.port)
        assert cli(settings, "check").exit_code == 0
        result = cli(settings, "send", "--quiet")
    no_traceback(result)
    assert result.exit_code == 0, result.output
    envelopes = sorted(r for item in read_log(log) for r in item.recipients)
    assert envelopes == ["anne@example.org", "josé@example.org", "user@xn--bcher-kva.example"]
    stored = [  # SMTPUTF8 messages carry UTF-8 headers (RFC 6532)
        email.message_from_string(p.read_text(encoding="utf-8"), policy=policy.default)  # type: ignore[misc]
        for p in (tmp_path / "sink" / "new").iterdir()
    ]
    to = {m["To"].addresses[0].addr_spec for m in stored}
    assert "josé@example.org" in to


def test_internationalised_mailbox_without_smtputf8_fails_alone_with_a_clear_reason(
    tmp_path: Path,
) -> None:
    with FaultyServer() as server:  # aiosmtpd without SMTPUTF8
        settings = _idn_project(tmp_path, server.port)
        result = cli(settings, "send", "--quiet")
        status = cli(settings, "status")
        received = sorted(r for s in server.stored for r in s.recipients)
    no_traceback(result)
    assert result.exit_code == 1
    assert received == ["anne@example.org", "user@xn--bcher-kva.example"]
    log = states(tmp_path)
    assert log["josé@example.org"] is State.FAILED
    assert log["anne@example.org"] is State.SENT
    assert "SMTPUTF8" in said(status)
    assert "josé@example.org" in said(status)


def test_an_address_with_slashes_cannot_move_the_dry_run_file(tmp_path: Path) -> None:
    settings = make_project(tmp_path, port=25, recipients=1)
    write_people(tmp_path, [("Jean", "Dupont", "up/down/jean@example.org")])  # RFC 5322 allows /
    before = {p for p in tmp_path.rglob("*")}
    result = cli(settings, "send", "--dry-run", "--quiet")
    no_traceback(result)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "outbox" / "mini" / "dry-run"
    created = {p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"} - before
    assert [p.parent for p in created] == [folder]
    assert [p.name for p in created] == ["0002-up-down-jean-example.org.eml"]

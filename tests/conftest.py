"""Shared fixtures: a throw-away copy of the sample project, and a way to run the command."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

# The tests read the English messages unless they ask for French (tests/test_i18n.py): the
# environment says C (in UTF-8) for this process and every command it starts, before campaign.cli is
# imported (its --help texts are read then).
for _variable in ("LANGUAGE", "LC_MESSAGES"):
    os.environ.pop(_variable, None)
os.environ["LC_ALL"] = os.environ["LANG"] = "C.UTF-8"

import pytest  # noqa: E402
from click.testing import CliRunner, Result  # noqa: E402

from campaign import i18n  # noqa: E402
from campaign.cli import main  # noqa: E402
from campaign.sink import Remote  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _language_of_the_environment() -> Iterator[None]:
    """A command that read `language: fr` in-process leaves no trace on the next test."""
    yield
    i18n.use_language(None)


DATA = Path(__file__).resolve().parent / "data"

Run = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the sample project (settings, letters, recipients) in a temporary folder."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "settings.yaml", root / "settings.yaml")
    shutil.copytree(REPO / "letters", root / "letters")
    shutil.copytree(REPO / "recipients", root / "recipients")
    (root / "outbox").mkdir()
    return root


@pytest.fixture
def run(project: Path) -> Run:
    """Run `campaign --settings <project>/settings.yaml ARGS...` in-process."""

    def invoke(*args: str, settings: Path | None = None) -> Result:
        runner = CliRunner()
        path = settings or project / "settings.yaml"
        return runner.invoke(main, ["--settings", str(path), *args], catch_exceptions=True)

    return invoke


# --- letters and PDFs (issue 3): a project with a few recipients, so that rendering stays fast ---

FEW_RECIPIENTS = [
    {
        "Civilité": "Madame",
        "Prénom": "Élise",
        "Nom": "Le Goff",
        "Fonction": "Directrice déléguée",
        "Établissement": "Centre hospitalier de Valbrune",
        "Adresse": "Bâtiment A\n48 allée Marie-Curie",
        "Code postal": "69485",
        "Ville": "VALBRUNE",
        "Courriel": "elise.le-goff@example.org",
    },
    {
        "Civilité": "Monsieur",
        "Prénom": "Noël",
        "Nom": "d’Aubigné",
        "Fonction": "Directeur",
        "Établissement": "Hôpital local de Montclair-les-Bains",
        "Adresse": "7 chemin des Acacias",
        "Code postal": "02453",
        "Ville": "MONTCLAIR-LES-BAINS",
        "Courriel": "noel.daubigne@example.com",
    },
    {
        "Civilité": "",
        "Prénom": "Camille",
        "Nom": "<b> *x* _y_",
        "Fonction": "",
        "Établissement": "[^1] {{ 7*7 }} &amp;",
        "Adresse": "1 rue de la Paix",
        "Code postal": "75002",
        "Ville": "PARIS",
        "Courriel": "camille@example.org",
    },
]


def write_few_recipients(root: Path, rows: list[dict[str, str]] | None = None) -> Path:
    """Point the hospital campaign of the project at `recipients/few.csv`, holding `rows`."""
    import csv

    rows = FEW_RECIPIENTS if rows is None else rows
    path = root / "recipients" / "few.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=list(rows[0]) if rows else list(FEW_RECIPIENTS[0])
        )
        writer.writeheader()
        writer.writerows(rows)
    settings = root / "settings.yaml"
    text = settings.read_text(encoding="utf-8")
    settings.write_text(
        text.replace("recipients/directeurs-hopitaux.xlsx", "recipients/few.csv"), encoding="utf-8"
    )
    return path


@pytest.fixture
def few_project(project: Path) -> Path:
    """The sample project whose hospital campaign has the three `FEW_RECIPIENTS`."""
    write_few_recipients(project)
    return project


def cli(settings: Path, *args: str) -> Result:
    """Run `campaign --settings SETTINGS ARGS…` in-process."""
    return CliRunner().invoke(main, ["--settings", str(settings), *args])


def said(result: Result) -> str:
    """The command's output (stdout and stderr) with rich's line wrapping undone."""
    return " ".join(result.output.split())


# --- reliability and security (issue 6): the real local sink, running in a thread ---


class RunningSink:
    """The project's own sink (`campaign.sink`) on 127.0.0.1, port 0, in a thread."""

    def __init__(
        self, maildir: Path, *, log: Path | None = None, remote: Remote | None = None
    ) -> None:
        import asyncio
        import threading

        from campaign.sink import MaildirHandler

        self.maildir = maildir
        self.port = 0
        self._handler = MaildirHandler(maildir, log=log, remote=remote)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        from campaign.sink import serve

        async def main() -> None:
            self._stop = asyncio.Event()
            await serve(self._handler, port=0, on_ready=self._on_ready, stop=self._stop)

        self._loop.run_until_complete(main())

    def _on_ready(self, port: int) -> None:
        self.port = port
        self._ready.set()

    @property
    def stored(self) -> int:
        """How many messages the sink says it stored (what `campaign sink` prints at its end)."""
        return self._handler.count

    def __enter__(self) -> RunningSink:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()


def approve_proofed(run: Run, campaign: str, *args: str) -> Result:
    """Proof one row (approve refuses content that no proof pack shows), then approve."""
    proofed = run("proof", campaign, "--rows", "2", "-q")
    assert proofed.exit_code == 0, proofed.output
    return run("approve", campaign, *args)


# --- real mail servers (issue 10): Dovecot alone, and Postfix on top of it (tests/mailservers.py) ---


from tests.mailservers import Dovecot, Postfix, make_root, missing  # noqa: E402


def need_real_servers(*, postfix: bool) -> None:
    """Skip with the reason when the machine cannot run them; fail when CI asked for them."""
    import os

    reason = missing(postfix=postfix)
    if reason is None:
        return
    if os.environ.get("CAMPAIGN_REAL_SERVERS") == "1":
        pytest.fail(f"CAMPAIGN_REAL_SERVERS=1 but the real mail servers cannot run: {reason}")
    pytest.skip(f"real mail servers: {reason} (CAMPAIGN_REAL_SERVERS=1 makes this a failure)")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """A Dovecot of its own (IMAP on a free loopback port, LMTP, auth), for the whole session."""
    need_real_servers(postfix=False)
    root = make_root()
    server = Dovecot(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postfix_instance(dovecot: Dovecot) -> Iterator[Postfix]:
    """The session's Postfix on top of `dovecot` (use `postfix`, which resets it per test)."""
    need_real_servers(postfix=True)
    server = Postfix(dovecot.root, dovecot).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postfix(postfix_instance: Postfix) -> Postfix:
    """The session's Postfix, back to its first configuration, running, with empty Maildirs."""
    postfix_instance.reset()
    return postfix_instance

"""Real mail servers for tests: Dovecot, and Postfix on top of it, all in a temporary folder.

`Dovecot(root)` runs `dovecot -c ROOT/dovecot/dovecot.conf -F` with its own base_dir and
state_dir: IMAP on a free 127.0.0.1 port, LMTP and auth listeners as unix sockets of its own folder,
users from a passwd-file, Maildirs under ROOT/mail, a Sent folder flagged `\\Sent` (RFC 6154).

`Postfix(root, dovecot)` runs `postfix -c ROOT/postfix start`: its own main.cf/master.cf, queue,
data folder and log file (`maillog`), listening on 127.0.0.1 only (an SMTP port, and a submission
port that requires STARTTLS and Dovecot SASL), delivering example.org and example.com to Dovecot
by LMTP, unable to relay anywhere (`default_transport = error`). A private CA signs its
certificate (`ca_bundle`); `wrong_ca_bundle` is an unrelated CA. Tests change main.cf parameters
with `configure(...)` (which reloads) and per-recipient replies with `refuse(...)`.

Nothing under /etc is written: Postfix reads only its default main.cf's defaults (command and daemon
folders). Each daemon is stopped by its process id. `missing()` names what the machine lacks, so
the fixtures skip with that reason (or fail when CAMPAIGN_REAL_SERVERS=1).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTMAP = "/usr/sbin/postmap"
MAIL_USER = "nobody"  # owner of the Maildirs: a system user that is neither root nor dovecot

USERS = {"collectif@example.org": "mot-de-passe-1", "autre@example.com": "mot-de-passe-2"}
# The key Dovecot checks OAuth2 access tokens with (JWT, HS256, validated locally: no
# authorisation server, no network), and the issuer the tokens name.
TOKEN_KEY = b"campaign-tests-oauth2-signing-key"
TOKEN_ISSUER = "https://auth.example.org"


def access_token(user: str, *, key: bytes = TOKEN_KEY, lifetime: int = 3600) -> str:
    """An OAuth2 access token for `user` as a provider issues it: a JWT signed with HS256."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    now = int(time.time())
    claims = {"sub": user, "email": user, "iss": TOKEN_ISSUER, "iat": now, "nbf": now}
    claims["exp"] = now + lifetime
    signed = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()
    return f"{signed}.{part(signature)}"


def missing(*, postfix: bool = True) -> str | None:
    """Why the real servers cannot run here, or None."""
    needed = [DOVECOT, DOVEADM] + ([POSTFIX, POSTCONF, POSTMAP] if postfix else [])
    absent = [path for path in needed if not os.access(path, os.X_OK)]
    if absent:
        return "not installed: " + ", ".join(absent)
    if not Path("/usr/lib/dovecot/lmtp").exists():
        return "not installed: dovecot-lmtpd (/usr/lib/dovecot/lmtp)"
    if os.geteuid() != 0:
        return "Postfix and Dovecot test instances need root (they switch to their own users)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _stop_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def make_root() -> Path:
    """A fresh folder other users may traverse (the daemons switch to postfix/dovecot/nobody)."""
    root = Path(tempfile.mkdtemp(prefix="campaign-mailservers-"))
    root.chmod(0o755)
    return root


@dataclass
class Dovecot:
    """A Dovecot instance of its own: IMAP on 127.0.0.1:`imap_port`, LMTP and auth sockets."""

    root: Path
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    imap_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def folder(self) -> Path:
        return self.root / "dovecot"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def lmtp_socket(self) -> Path:
        return self.folder / "run" / "lmtp"

    @property
    def auth_socket(self) -> Path:
        return self.folder / "run" / "auth-postfix"

    @property
    def config(self) -> Path:
        return self.folder / "dovecot.conf"

    def start(self) -> Dovecot:
        import pwd

        self.folder.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "state"):
            (self.folder / sub).mkdir(exist_ok=True)
            (self.folder / sub).chmod(0o755)
        owner = pwd.getpwnam(MAIL_USER)
        self.mail.mkdir(exist_ok=True)
        os.chown(self.mail, owner.pw_uid, owner.pw_gid)
        lines = []
        for user, password in self.users.items():
            hashed = _run(DOVEADM, "pw", "-s", "SHA512-CRYPT", "-p", password).strip()
            lines.append(f"{user}:{hashed}")
        passwd = self.folder / "users"
        passwd.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # OAuth2 (XOAUTH2, OAUTHBEARER): tokens validated against a key in a folder, looked up
        # as <azp>/<alg>/<kid> ("default" for a token that names none).
        keys = self.folder / "oauth2-keys"
        (keys / "default" / "HS256").mkdir(parents=True, exist_ok=True)
        (keys / "default" / "HS256" / "default").write_bytes(base64.b64encode(TOKEN_KEY))
        for folder in (keys, keys / "default", keys / "default" / "HS256"):
            folder.chmod(0o755)
        oauth2 = self.folder / "oauth2.conf.ext"
        oauth2.write_text(
            f"introspection_mode = local\nlocal_validation_key_dict = fs:posix:prefix={keys}/\n"
            f"username_attribute = email\nissuers = {TOKEN_ISSUER}\n",
            encoding="utf-8",
        )
        self.imap_port = free_port()
        self.config.write_text(
            _DOVECOT_CONF.format(
                run=self.folder / "run",
                state=self.folder / "state",
                log=self.folder / "dovecot.log",
                mail=self.mail,
                passwd=passwd,
                port=self.imap_port,
                uid=owner.pw_uid,
                gid=owner.pw_gid,
                lmtp=self.lmtp_socket,
                auth=self.auth_socket,
                oauth2=oauth2,
            ),
            encoding="utf-8",
        )
        self.process = subprocess.Popen(
            [DOVECOT, "-c", str(self.config), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "stderr.log").open("wb"),
        )
        try:
            try:
                _wait_port(self.imap_port)
            except RuntimeError as err:
                raise RuntimeError(f"{err}; Dovecot said: {self.log()}") from None
            deadline = time.monotonic() + 10
            while not (self.lmtp_socket.exists() and self.auth_socket.exists()):
                if time.monotonic() > deadline:
                    raise RuntimeError("Dovecot made no LMTP/auth socket: " + self.log())
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            # our child: wait() reaps it (a zombie would still answer kill(pid, 0))
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def log(self) -> str:
        parts = [self.folder / "dovecot.log", self.folder / "stderr.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def maildir(self, address: str) -> Path:
        local, domain = address.lower().split("@")
        return self.mail / domain / local / "Maildir"

    def messages(self, address: str, folder: str = "INBOX") -> list[EmailMessage]:
        """The messages delivered to `address` (`folder`: INBOX or e.g. Sent), oldest first."""
        base = self.maildir(address)
        if folder != "INBOX":
            base = base / f".{folder}"
        files = [
            p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir()
        ]
        files.sort(key=lambda p: (p.stat().st_mtime, p.name))
        return [
            message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in files
        ]

    def all_messages(self) -> dict[str, list[EmailMessage]]:
        """Every delivered INBOX message, by address."""
        found: dict[str, list[EmailMessage]] = {}
        if not self.mail.is_dir():
            return found
        for domain in sorted(p for p in self.mail.iterdir() if p.is_dir()):
            for user in sorted(p for p in domain.iterdir() if p.is_dir()):
                address = f"{user.name}@{domain.name}"
                messages = self.messages(address)
                if messages:
                    found[address] = messages
        return found

    def clear(self) -> None:
        """Forget every delivered message (between tests)."""
        if self.mail.is_dir():
            for child in self.mail.iterdir():
                shutil.rmtree(child, ignore_errors=True)


_DOVECOT_CONF = """\
# A test instance: nothing shared with the machine's own Dovecot.
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
first_valid_uid = 1
mail_location = maildir:{mail}/%d/%n/Maildir
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2}
}}
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%d/%n allow_all_users=yes
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
service auth {{
  # for Postfix's smtpd, which runs as the postfix user
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@example.org
}}
"""


@dataclass
class Postfix:
    """A Postfix instance of its own on 127.0.0.1: `smtp_port` (plain) and `submission_port`."""

    root: Path
    dovecot: Dovecot
    smtp_port: int = 0
    submission_port: int = 0
    ca_bundle: Path = Path()
    wrong_ca_bundle: Path = Path()
    _baseline: str = ""
    _changed: bool = False

    @property
    def config_dir(self) -> Path:
        return self.root / "postfix"

    @property
    def queue(self) -> Path:
        return self.root / "spool"

    @property
    def maillog(self) -> Path:
        return self.root / "postfix.log"

    @property
    def refusals(self) -> Path:
        return self.config_dir / "refusals"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "MAIL_CONFIG": str(self.config_dir)}

    def _postfix(self, *args: str) -> str:
        return _run(POSTFIX, "-c", str(self.config_dir), *args, env=self._env())

    def start(self) -> Postfix:
        import trustme

        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        self.queue.mkdir(exist_ok=True)
        ca, wrong = trustme.CA(), trustme.CA()
        self.ca_bundle = self.root / "ca.pem"
        self.wrong_ca_bundle = self.root / "wrong-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        wrong.cert_pem.write_to_path(str(self.wrong_ca_bundle))
        cert = ca.issue_cert("localhost", "127.0.0.1")
        chain = self.config_dir / "server.pem"
        key = self.config_dir / "server.key"
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        self.refusals.write_text("# address  reply\n", encoding="utf-8")
        _run(POSTMAP, f"hash:{self.refusals}")
        (self.config_dir / "recipients").write_text(
            "/^[^@]+@example\\.(org|com)$/ OK\n", encoding="utf-8"
        )
        self.smtp_port, self.submission_port = free_port(), free_port()
        self.maillog.touch()
        self.maillog.chmod(0o644)
        main = _MAIN_CF.format(
            config=self.config_dir,
            queue=self.queue,
            data=self.root / "data",
            maillog=self.maillog,
            root=self.root,
            lmtp=self.dovecot.lmtp_socket,
            auth=self.dovecot.auth_socket,
            cert=chain,
            key=key,
        )
        (self.config_dir / "main.cf").write_text(main, encoding="utf-8")
        self._baseline = main
        (self.config_dir / "master.cf").write_text(
            _MASTER_CF.format(smtp=self.smtp_port, submission=self.submission_port),
            encoding="utf-8",
        )
        self._make_queue()
        self._postfix("start")
        try:
            _wait_port(self.smtp_port)
            _wait_port(self.submission_port)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_queue(self) -> None:
        """The queue's folders with their owners, as postfix-files lists them.

        Not `postfix set-permissions`: it also chmods the files of meta_directory (/etc/postfix).
        """
        import grp
        import pwd

        postfix = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        for name in (*_QUEUE_FOLDERS, "maildrop", "public"):
            folder = self.queue / name
            folder.mkdir(exist_ok=True)
            os.chown(folder, postfix.pw_uid, postdrop if name in ("maildrop", "public") else -1)
            folder.chmod({"maildrop": 0o730, "public": 0o710}.get(name, 0o700))
        (self.queue / "pid").mkdir(exist_ok=True)
        (self.queue / "pid").chmod(0o755)
        data = self.root / "data"
        os.chown(data, postfix.pw_uid, postfix.pw_gid)
        data.chmod(0o700)

    def master_pid(self) -> int | None:
        path = self.queue / "pid" / "master.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(path.read_text().strip())
            os.kill(pid, 0)
            return pid
        return None

    def stop(self) -> None:
        """Stop the instance (its master, by process id); the queue and log stay."""
        pid = self.master_pid()
        if pid is not None:
            _stop_pid(pid)  # SIGTERM: the master stops its children and exits

    def restart(self) -> None:
        """Start again after `stop` (same ports, queue and configuration)."""
        if self.master_pid() is None:
            self._postfix("start")
        _wait_port(self.smtp_port)
        _wait_port(self.submission_port)

    def configure(self, **params: str | int) -> None:
        """Set main.cf parameters (e.g. smtpd_client_message_rate_limit=10) and reload."""
        args = [f"{key}={value}" for key, value in params.items()]
        _run(POSTCONF, "-c", str(self.config_dir), "-e", *args)
        self.reload()

    def refuse(self, replies: dict[str, str]) -> None:
        """Answer RCPT TO for each address with its reply (e.g. '550 5.1.1 User unknown')."""
        lines = [f"{address} {reply}" for address, reply in replies.items()]
        self.refusals.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run(POSTMAP, f"hash:{self.refusals}")
        self.reload()

    def reload(self) -> None:
        self._changed = True
        self._postfix("reload")
        time.sleep(0.5)  # the master restarts its services on the next connection; let it settle

    def reset(self) -> None:
        """Back to the first configuration, running, no refusals, empty Maildirs (between tests)."""
        self.restart()
        if self._changed:
            (self.config_dir / "main.cf").write_text(self._baseline, encoding="utf-8")
            self.refusals.write_text("# address  reply\n", encoding="utf-8")
            _run(POSTMAP, f"hash:{self.refusals}")
            self.reload()
            self._changed = False
        self.dovecot.clear()

    def log_mark(self) -> int:
        """The log's current size: pass it to `log_since` to read one test's lines only."""
        return self.maillog.stat().st_size

    def log_since(self, mark: int = 0) -> str:
        with self.maillog.open("rb") as handle:
            handle.seek(mark)
            return handle.read().decode("utf-8", errors="replace")

    def wait_delivered(self, count: int, *, mark: int = 0, seconds: float = 30.0) -> list[str]:
        """Wait until `count` messages were delivered by LMTP since `mark`; the log's lines."""
        deadline = time.monotonic() + seconds
        while True:
            lines = delivered(self.log_since(mark))
            if len(lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.1)


_QUEUE_FOLDERS = (
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
    "saved", "trace",
)  # fmt: skip


def queue_ids(log: str) -> list[str]:
    """The queue IDs smtpd gave to accepted messages, in log order (one per message)."""
    return re.findall(r"postfix/(?:submission/)?smtpd\[\d+\]: ([0-9A-F]{6,}): client=", log)


def delivered(log: str) -> list[str]:
    """The LMTP delivery lines (`status=sent`) of the log."""
    return [line for line in log.splitlines() if "relay=" in line and "status=sent" in line]


def sessions(log: str) -> int:
    """How many SMTP sessions smtpd accepted (one `connect from` line each)."""
    return len(re.findall(r"smtpd\[\d+\]: connect from ", log))


def auth_failures(log: str) -> int:
    return len(re.findall(r"SASL \w+ authentication failed", log))


_MAIN_CF = """\
# A test instance of Postfix: everything in {root}, loopback only, no relay.
compatibility_level = 3.6
config_directory = {config}
queue_directory = {queue}
data_directory = {data}
maillog_file = {maillog}
maillog_file_prefixes = {root}
myhostname = mx.example.org
mydomain = example.org
myorigin = example.org
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
default_transport = error:this test server relays nowhere
relay_transport = error:this test server relays nowhere
local_transport = error:no local delivery here
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
virtual_mailbox_domains = example.org, example.com
virtual_mailbox_maps = regexp:{config}/recipients
virtual_transport = lmtp:unix:{lmtp}
smtpd_sasl_type = dovecot
smtpd_sasl_path = {auth}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_recipient_restrictions = check_recipient_access hash:{config}/refusals, permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# anvil exempts mynetworks by default: the limits must apply on loopback too
smtpd_client_event_limit_exceptions =
anvil_rate_time_unit = 60s
"""

_MASTER_CF = """\
127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@contextlib.contextmanager
def running(*, postfix: bool = True) -> Iterator[tuple[Dovecot, Postfix | None]]:
    """Dovecot (and Postfix) in a fresh folder, stopped and removed at the end."""
    root = make_root()
    dovecot = Dovecot(root)
    server: Postfix | None = None
    try:
        dovecot.start()
        if postfix:
            server = Postfix(root, dovecot).start()
        yield dovecot, server
    finally:
        if server is not None:
            server.stop()
        dovecot.stop()
        shutil.rmtree(root, ignore_errors=True)

"""A real aiosmtpd server for tests, in its own thread on 127.0.0.1, that misbehaves on request.

`FaultyServer(faults=[Fault(...)])` can reply 421/451/452/550/554 at MAIL, RCPT, the DATA command
or the final dot; drop the connection before the 354, after the 354, or after storing the message
without replying; delay a reply; cap the messages per connection; require STARTTLS (trustme
certificate) or implicit TLS; require AUTH (passwords, or OAuth2 tokens over XOAUTH2 and
OAUTHBEARER; or offer no AUTH at all); limit the rate like a provider (`RateLimit`: N messages
per window, then 450 4.7.1, and 421 closing after repeated refusals); go down (`down()`: stop
listening, cut every session) and come back on the same port (`up()`); advertise DSN and record
the MAIL/RCPT arguments (`dsn=True`); offer PIPELINING (unless `pipelining=False`). It stores
what it accepts in memory, with the time, the connection and the envelope's arguments, so tests
count copies per Message-ID, and counts the logins it saw (AUTH commands, accepted, refused) and
the EHLO names clients gave.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from campaign.sink import message_id_of


@dataclass
class Fault:
    """Misbehave at `stage` ("mail", "rcpt", "data" = the DATA command, "dot" = the final dot).

    `action`: "reply" (answer `code text`), "drop" (close the connection; at "data" that is before
    the 354; "after_354" sends the 354 then closes), "store_drop" (at "dot": keep the message, then
    close without replying), "delay" (wait `seconds`, then carry on). It fires `times` times
    (0: always), only for `recipient` when given.
    """

    stage: str
    action: str = "reply"
    code: int = 451
    text: str = "4.3.0 try again later"
    recipient: str | None = None
    times: int = 1
    seconds: float = 0.0
    fired: int = 0

    def applies(self, stage: str, recipients: list[str]) -> bool:
        if self.stage != stage or (self.times and self.fired >= self.times):
            return False
        if self.recipient is not None and self.recipient.lower() not in (
            r.lower() for r in recipients
        ):
            return False
        self.fired += 1
        return True


@dataclass
class RateLimit:
    """Accept `messages` per sliding `window` seconds (all connections); then answer MAIL with
    `450 4.7.1 Error: too much mail`, and after `close_after` refusals on a connection, 421 and close.
    """

    messages: int
    window: float
    close_after: int = 3
    accepted: list[float] = field(default_factory=list)
    refusals: int = 0

    def allows(self, now: float) -> bool:
        self.accepted = [t for t in self.accepted if t > now - self.window]
        return len(self.accepted) < self.messages


@dataclass
class Stored:
    message_id: str
    recipients: list[str]
    data: bytes
    at: float
    connection: int
    mail_args: str = ""  # the MAIL FROM argument as the client wrote it (parameters included)
    rcpt_args: list[str] = field(default_factory=list)  # each RCPT TO argument, likewise


@dataclass
class _State:
    faults: list[Fault]
    per_connection: int | None
    stored: list[Stored] = field(default_factory=list)
    connections: int = 0
    mails: int = 0  # MAIL commands received
    logins: int = 0
    failed_logins: int = 0
    auth_commands: int = 0
    auth_seen: list[tuple[str, bytes]] = field(default_factory=list)  # OAuth2: mechanism, blob
    mechanisms: list[str] = field(default_factory=list)  # of every AUTH command, in order
    helo_names: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # OAuth2: user → the token accepted
    rate: RateLimit | None = None
    counter: itertools.count[int] = field(default_factory=itertools.count)
    dsn: bool = False  # advertise DSN (RFC 3461) and take its MAIL and RCPT parameters
    pipelining: bool = True  # advertise PIPELINING (RFC 2920), as Postfix and providers do
    on_store: Callable[[Stored], None] | None = None  # e.g. file it in Sent, as Gmail does
    live: set[asyncio.Transport] = field(default_factory=set)  # open sessions, cut by `down`


class _Handler:
    def __init__(self, state: _State) -> None:
        self.state = state

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.state.dsn:
            responses.insert(1, "250-DSN")
        if self.state.pipelining:  # aiosmtpd reads commands in order: pipelined ones too
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        fault = _fault(self.state, "rcpt", [address])
        if fault is not None:
            if fault.action == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.action == "drop":
                server.transport.abort()
                return ""
            else:
                return f"{fault.code} {fault.text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        fault = _fault(self.state, "dot", envelope.rcpt_tos)
        record = Stored(
            message_id_of(data),
            list(envelope.rcpt_tos),
            data,
            time.time(),
            server.connection_id,
            server.mail_args,
            list(server.rcpt_args),
        )
        if fault is not None:
            if fault.action == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.action == "drop":
                server.transport.abort()
                return "451 not sent"
            elif fault.action == "store_drop":
                self.state.stored.append(record)
                server.transport.abort()
                return "250 not sent"
            else:
                return f"{fault.code} {fault.text}"
        self.state.stored.append(record)
        if self.state.on_store is not None:
            self.state.on_store(record)
        server.messages += 1
        if self.state.rate is not None:
            self.state.rate.accepted.append(time.time())
        return "250 2.0.0 OK queued"


class _OAuthHandler(_Handler):
    """Also offers XOAUTH2 and OAUTHBEARER (aiosmtpd's `auth_MECHANISM` hooks on the handler)."""

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        blob = await _initial_response(server, args)
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        return await self._judge(server, "XOAUTH2", blob, fields.get("user"), fields.get("auth"))

    async def auth_OAUTHBEARER(self, server: Any, args: list[str]) -> AuthResult:
        blob = await _initial_response(server, args)
        header, _, rest = blob.decode().partition("\x01")
        fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
        user = next((p[2:] for p in header.split(",") if p.startswith("a=")), None)
        return await self._judge(server, "OAUTHBEARER", blob, user, fields.get("auth"))

    async def _judge(
        self, server: Any, mechanism: str, blob: bytes, user: str | None, auth: str | None
    ) -> AuthResult:
        self.state.auth_seen.append((mechanism, blob))
        token = auth.removeprefix("Bearer ") if auth else None
        if user is not None and token is not None and self.state.tokens.get(user) == token:
            self.state.logins += 1
            return AuthResult(success=True)
        self.state.failed_logins += 1
        # As Gmail and Microsoft do: a JSON error challenge, then the refusal.
        status = "400" if mechanism == "XOAUTH2" else "invalid_token"
        await server.challenge_auth(json.dumps({"status": status, "schemes": "bearer"}))
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


async def _initial_response(server: Any, args: list[str]) -> bytes:
    if len(args) > 1:
        return base64.b64decode(args[1])
    answer = await server.challenge_auth("")
    return answer if isinstance(answer, bytes) else b""


def _fault(state: _State, stage: str, recipients: list[str]) -> Fault | None:
    for fault in state.faults:
        if fault.applies(stage, recipients):
            return fault
    return None


class _Session(SMTP):  # type: ignore[misc]
    state: _State

    def __init__(self, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, hostname="test-server", **kwargs)
        self.state = handler.state
        self.connection_id = next(self.state.counter)
        self.messages = 0
        self.refused = 0
        self.mail_args = ""
        self.rcpt_args: list[str] = []
        self.state.connections += 1

    def _without_dsn(self, arg: str, names: tuple[str, ...]) -> str:
        """The argument without the DSN parameters, which aiosmtpd itself does not know."""
        if not self.state.dsn:
            return arg
        return " ".join(w for w in arg.split(" ") if not w.upper().startswith(names))

    async def smtp_RCPT(self, arg: str) -> None:
        self.rcpt_args.append(arg)
        await super().smtp_RCPT(self._without_dsn(arg, ("NOTIFY=", "ORCPT=")))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.state.live.add(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.state.live.discard(self.transport)
        super().connection_lost(error)

    async def smtp_EHLO(self, hostname: str) -> None:
        self.state.helo_names.append(hostname)
        await super().smtp_EHLO(hostname)

    async def smtp_AUTH(self, arg: str) -> None:
        self.state.auth_commands += 1
        self.state.mechanisms.append(arg.split()[0].upper() if arg.split() else "")
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        self.state.mails += 1
        cap = self.state.per_connection
        if cap is not None and self.messages >= cap:
            await self.push("421 4.7.0 too many messages on this connection, closing")
            self.transport.close()
            return
        if await self._misbehave(_fault(self.state, "mail", [])):
            return
        rate = self.state.rate
        if rate is not None and not rate.allows(time.time()):
            rate.refusals += 1
            self.refused += 1
            if self.refused >= rate.close_after:
                await self.push("421 4.7.0 Error: too many errors, closing")
                self.transport.close()
            else:
                await self.push("450 4.7.1 Error: too much mail from 127.0.0.1")
            return
        self.mail_args, self.rcpt_args = arg, []
        await super().smtp_MAIL(self._without_dsn(arg, ("RET=", "ENVID=")))

    async def smtp_DATA(self, arg: str) -> None:
        recipients = list(self.envelope.rcpt_tos) if self.envelope else []
        if await self._misbehave(_fault(self.state, "data", recipients)):
            return
        await super().smtp_DATA(arg)

    async def _misbehave(self, fault: Fault | None) -> bool:
        """Act out a command's fault; True when the command must not go on as usual."""
        if fault is None:
            return False
        if fault.action == "delay":
            await asyncio.sleep(fault.seconds)
            return False
        if fault.action == "after_354":
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await asyncio.sleep(0.05)
            self.transport.abort()
        elif fault.action == "drop":
            self.transport.abort()
        else:
            await self.push(f"{fault.code} {fault.text}")
            if fault.code == 421:
                self.transport.close()
        return True


class FaultyServer:
    """Run the misbehaving server in a thread; use as a context manager."""

    def __init__(
        self,
        *,
        faults: list[Fault] | None = None,
        per_connection: int | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
        idle_timeout: float | None = None,
        rate: RateLimit | None = None,
        dsn: bool = False,
        on_store: Callable[[Stored], None] | None = None,
        port: int = 0,
        tokens: dict[str, str] | None = None,
        offer_auth: bool = True,
        pipelining: bool = True,
        size_limit: int | None = 2**25,
    ) -> None:
        self.size_limit = size_limit  # advertised as SIZE in EHLO (None: not advertised)
        self.state = _State(
            list(faults or []),
            per_connection,
            rate=rate,
            tokens=tokens or {},
            dsn=dsn,
            on_store=on_store,
            pipelining=pipelining,
        )
        self.oauth = tokens is not None
        self.offer_auth = offer_auth
        self.idle_timeout = idle_timeout
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.users = users
        self.port = port  # 0: a free port, chosen at start (and kept by `up` after `down`)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    @property
    def stored(self) -> list[Stored]:
        return self.state.stored

    @property
    def mails(self) -> int:
        return self.state.mails

    @property
    def connections(self) -> int:
        return self.state.connections

    @property
    def logins(self) -> int:
        return self.state.logins

    @property
    def failed_logins(self) -> int:
        return self.state.failed_logins

    @property
    def auth_commands(self) -> int:
        """AUTH commands received: each is one login attempt."""
        return self.state.auth_commands

    @property
    def helo_names(self) -> list[str]:
        return self.state.helo_names

    def copies(self) -> Counter[str]:
        """How many copies of each Message-ID the server stored."""
        return Counter(s.message_id for s in self.state.stored)

    def copies_to(self, address: str) -> int:
        return sum(1 for s in self.state.stored if address.lower() in map(str.lower, s.recipients))

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def down(self) -> None:
        """An outage: stop listening and cut every open session, as a stopped server would."""
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)

    def up(self) -> None:
        """Back after `down`, on the same port."""
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        handler = _OAuthHandler(self.state) if self.oauth else _Handler(self.state)
        options: dict[str, Any] = {"data_size_limit": self.size_limit}
        if self.idle_timeout is not None:
            options["timeout"] = self.idle_timeout  # aiosmtpd closes a connection idle this long
        if self.starttls is not None:
            options.update(tls_context=self.starttls, require_starttls=True)
        if self.users is not None or self.oauth:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.starttls is not None or self.implicit_tls is not None,
            )
        if not self.offer_auth:
            options["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        self._server = await self._loop.create_server(
            lambda: _Session(handler, **options),
            host="127.0.0.1",
            port=self.port,
            ssl=self.implicit_tls,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self.state.live):
            transport.abort()  # Server.close() leaves open sessions running (Python < 3.13)
        self.state.live.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.users is not None
            and self.users.get(data.login.decode()) == data.password.decode()
        )
        if ok:
            self.state.logins += 1
        else:
            self.state.failed_logins += 1
        return AuthResult(success=ok, handled=False)


def tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a trustme certificate for 127.0.0.1, and the CA bundle file."""
    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    bundle = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return server_ctx, bundle


LETTER = """---
subject: "Lettre pour {{ prenom }}"
---
Madame, Monsieur {{ nom }},

Voici la lettre[^1] promise, avec « guillemets ».

[^1]: Une note de bas de page.
"""


def make_project(
    root: Path,
    *,
    port: int,
    recipients: int = 5,
    smtp: str = "",
    throttle: str = "per_minute: null\n  per_day: 100000\n  concurrency: 2",
    retry: str = "max_attempts: 3\n  backoff: [1h]",
    rows: list[tuple[str, str, str]] | None = None,
    suppressed: list[str] | None = None,
    extra: str = "",
) -> Path:
    """A small project (text letter, CSV of `recipients` people) sending to 127.0.0.1:`port`.

    Returns the settings.yaml path. No PDF is attached, so a send costs only SMTP.
    """
    (root / "letters").mkdir(parents=True, exist_ok=True)
    (root / "recipients").mkdir(exist_ok=True)
    (root / "letters" / "mini.md").write_text(LETTER, encoding="utf-8")
    people = rows or [
        (f"Prénom{i}", f"Nom{i}", f"personne{i:04d}@example.org") for i in range(1, recipients + 1)
    ]
    lines = ["prenom,nom,email"] + [",".join(row) for row in people]
    (root / "recipients" / "people.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "recipients" / "suppression.csv").write_text(
        "email\n" + "".join(f"{a}\n" for a in suppressed or []), encoding="utf-8"
    )
    settings = root / "settings.yaml"
    settings.write_text(
        f"""sender:
  name: Collectif Données de santé
  email: collectif@example.org
  reply_to: contact@example.org
smtp:
  host: 127.0.0.1
  port: {port}
  timeout: 5s
  {smtp}
throttle:
  {throttle}
retry:
  {retry}
campaigns:
  mini:
    letter: letters/mini.md
    recipients: recipients/people.csv
    email_column: email
    to_name: "{{{{ prenom }}}} {{{{ nom }}}}"
    attach_pdf: false
    approval: {{required: false}}
    {extra}
""",
        encoding="utf-8",
    )
    return settings

"""SMTP settings → an open, logged-in connection, or one settings error that says what to change.

Takes the `smtp:` section and the password (or OAuth2 access token) read once for the run; gives
an aiosmtplib client that has said EHLO with a proper name, upgraded to TLS as the settings ask
and logged in. Every settings mistake the server reveals (the TLS mode of the port, the
certificate authority, a port that offers no AUTH, a password or token refused) becomes a
`ServerSettingsError` (exit 2) naming the key and what to write instead, decided from what the
server offered in EHLO (or answered on a probe), never from the words of an exception.

`SessionOpener` makes the run log in once: the first connection logs in before any other opens,
and once a login is refused no connection tries again (a provider locks an account after a few
failures; Postfix logged four per run when every mechanism was tried on every connection).

`smtp_problems` finds what can be found without a server (for `campaign check`), and
`preflight` what must hold before a send connects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
from pathlib import Path

import aiosmtplib

from campaign.errors import Place, Problem, ServerSettingsError, unknown_host
from campaign.i18n import _, quoted
from campaign.settings import Smtp

OAUTH = ("xoauth2", "oauthbearer")
IMPLICIT_TLS_PORT, SUBMISSION_PORT = 465, 587


def _error(message: str, key: str, hint: str) -> ServerSettingsError:
    return ServerSettingsError(message, place=Place(key=key), hint=hint)


# --- offline: what the settings alone tell ------------------------------------------------------


def _static_problems(smtp: Smtp) -> list[Problem]:
    """The faults of the section that need neither the server nor the password."""
    problems: list[Problem] = []
    if smtp.username and smtp.security == "none" and not smtp.is_loopback:
        problems.append(
            Problem.error(
                _("refusing to send the password for {username} unencrypted to {host}").format(
                    username=smtp.username, host=smtp.host
                ),
                Place(key="smtp.security"),
                _("set smtp.security to starttls or tls"),
            )
        )
    if smtp.cert_bundle is not None:
        problems += _bundle_problems(smtp.cert_bundle)
    if smtp.auth in OAUTH:
        if not smtp.username:
            problems.append(
                Problem.error(
                    _("auth: {auth} needs the account's address").format(auth=smtp.auth),
                    Place(key="smtp.username"),
                    _("set smtp.username to the address the token was issued for"),
                )
            )
        if not smtp.password_command:
            problems.append(
                Problem.error(
                    _(
                        "auth: {auth} needs a password_command that prints a fresh access token"
                    ).format(auth=smtp.auth),
                    Place(key="smtp.password_command"),
                    (
                        _(
                            "e.g. password_command: oama access you@example.org (an access token expires within an hour: it is read again for each run)"
                        )
                    ),
                )
            )
    elif smtp.auth != "auto" and not smtp.username:
        problems.append(
            Problem.error(
                _("auth: {auth} is set but no smtp.username").format(auth=smtp.auth),
                Place(key="smtp.username"),
                _("set smtp.username, or remove smtp.auth if the server needs no login"),
            )
        )
    if smtp.username and not (smtp.password_env or smtp.password_command):
        problems.append(
            Problem.error(
                _("smtp.username is {username} but no password is named").format(
                    username=smtp.username
                ),
                Place(key="smtp.password_env"),
                (
                    _(
                        "set password_env: CAMPAIGN_SMTP_PASSWORD and export that variable (or give a password_command)"
                    )
                ),
            )
        )
    return problems


def _bundle_problems(bundle: Path) -> list[Problem]:
    place = Place(key="smtp.cert_bundle")
    if not bundle.is_file():
        return [
            Problem.error(
                _("certificate bundle not found: {bundle}").format(bundle=bundle),
                place,
                (
                    _(
                        "name the PEM file of the certificate authority; a relative path is relative to the folder of settings.yaml"
                    )
                ),
            )
        ]
    try:
        ssl.create_default_context(cafile=str(bundle))
    except (OSError, ssl.SSLError, ValueError) as err:
        return [
            Problem.error(
                _("{bundle} is not a readable PEM certificate bundle ({err})").format(
                    bundle=bundle, err=err
                ),
                place,
                _("name the PEM file (-----BEGIN CERTIFICATE-----) of the certificate authority"),
            )
        ]
    return []


def smtp_problems(smtp: Smtp) -> list[Problem]:
    """What `campaign check` can find in the smtp section without connecting (or running a command)."""
    import os

    problems = _static_problems(smtp)
    if smtp.username and smtp.password_env:
        value = os.environ.get(smtp.password_env)
        if not value:
            # Unset may only mean "not exported in this shell yet"; set but empty is a mistake.
            report = Problem.warning if value is None else Problem.error
            if value is None:
                said = _("the environment variable {name} is not set")
            else:
                said = _("the environment variable {name} is empty")
            problems.append(
                report(
                    said.format(name=smtp.password_env),
                    Place(key="smtp.password_env"),
                    _("export {name}=... (the password of {username}) before sending").format(
                        name=smtp.password_env, username=smtp.username
                    ),
                )
            )
    if smtp.port == IMPLICIT_TLS_PORT and smtp.security != "tls":
        problems.append(
            Problem.warning(
                _("port 465 speaks TLS from the first byte, but security is {security}").format(
                    security=smtp.security
                ),
                Place(key="smtp.security"),
                _("set security: tls for port 465 (or port: 587 with security: starttls)"),
            )
        )
    if smtp.port == SUBMISSION_PORT and smtp.security == "tls":
        problems.append(
            Problem.warning(
                _("port 587 starts in clear and upgrades with STARTTLS, but security is tls"),
                Place(key="smtp.security"),
                _("set security: starttls for port 587 (or port: 465 with security: tls)"),
            )
        )
    return problems


def preflight(smtp: Smtp, password: str | None) -> None:
    """Refuse before connecting what the settings and the password read show is wrong."""
    errors = _static_problems(smtp)  # all errors: the warnings live in smtp_problems
    if password:  # given by the caller (a script): where it came from does not matter
        errors = [p for p in errors if p.place.key != "smtp.password_env"]
    if not errors and smtp.username and not password:
        source = "password_command" if smtp.password_command else "password_env"
        what = (
            _("the password command printed nothing ({command})").format(
                command=smtp.password_command
            )
            if smtp.password_command
            else _("the environment variable {name} is empty").format(name=smtp.password_env)
        )
        hint = (
            _("run the command yourself to see why; for OAuth2 it must print the access token")
            if smtp.password_command
            else _("export {name}=... with the password of {username}").format(
                name=smtp.password_env, username=smtp.username
            )
        )
        raise _error(what, f"smtp.{source}", hint)
    if errors:
        first = errors[0]
        raise ServerSettingsError(first.message, place=first.place, hint=first.hint)


# --- online: one connection -------------------------------------------------------------------


def _tls_context(smtp: Smtp) -> ssl.SSLContext | None:
    if smtp.security == "none":
        return None
    cafile = str(smtp.cert_bundle) if smtp.cert_bundle else None
    return ssl.create_default_context(cafile=cafile)


# Names a home or office network gives a machine, which no one outside it knows (RFC 6762 .local,
# RFC 8375 home.arpa, ICANN's .internal; the boxes' .home, .lan, .box): not the FQDN RFC 5321
# asks for, and often the organiser's own name (`MacBook-Pro-de-Marie.local`), which the
# provider would write into every recipient's Received line.
_PRIVATE_SUFFIXES = (
    ".local",
    ".localdomain",
    ".home.arpa",
    ".internal",
    ".home",
    ".lan",
    ".box",
    ".intranet",
    ".corp",
    ".private",
)


def helo_name(configured: str | None, fqdn: str, local: tuple[str, ...] | None) -> str:
    """The EHLO name: smtp.helo_name, else a public FQDN, else the address literal (RFC 5321 §4.1.4).

    Never a bare `localhost` (a remote server scores it as a spammer's), nor a name only the
    local network knows (it names the machine, often its owner, in every recipient's headers).
    """
    if configured:
        return configured
    name = fqdn.lower().rstrip(".")
    if "." in name and not name.startswith("localhost") and not name.endswith(_PRIVATE_SUFFIXES):
        return fqdn
    address = local[0] if local else "127.0.0.1"
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


class SessionOpener:
    """Opens the run's connections: preflight once, log in once, never retry a refused login."""

    def __init__(self, smtp: Smtp, password: str | None) -> None:
        preflight(smtp, password)
        self.smtp = smtp
        self.password = password
        self.logins = 0  # AUTH exchanges started this run (one per connection at most)
        self._context = _tls_context(smtp)
        self._fqdn: str | None = None
        self._verified = False  # a connection got through: the settings are right
        self._refused: ServerSettingsError | None = None
        self._first: asyncio.Lock | None = None

    async def open(self) -> aiosmtplib.SMTP:
        """A connected, logged-in client; `ServerSettingsError` when the settings are wrong."""
        if self._refused is not None:
            raise self._refused
        if self._verified:
            return await self._open()
        if self._first is None:
            self._first = asyncio.Lock()
        async with self._first:  # the first login finishes before another connection tries
            if self._refused is not None:
                raise self._refused
            try:
                client = await self._open()
            except ServerSettingsError as err:
                self._refused = err
                raise
            self._verified = True
            return client

    async def _open(self) -> aiosmtplib.SMTP:
        smtp = self.smtp
        if self._fqdn is None:
            self._fqdn = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=smtp.host,
            port=smtp.port,
            timeout=smtp.timeout,
            use_tls=smtp.security == "tls",
            start_tls=False,  # done below, so that EHLO's offer is seen first
            validate_certs=True,
            tls_context=self._context,
            local_hostname=smtp.helo_name or self._fqdn or "localhost",
        )
        try:
            await self._connect(client)
            sockname = client.get_transport_info("sockname")
            client.local_hostname = helo_name(smtp.helo_name, self._fqdn, sockname)
            await _greet(client)
            if smtp.security == "starttls":
                await self._starttls(client)
            if smtp.username:
                await self._login(client)
        except BaseException:
            client.close()
            raise
        return client

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        smtp = self.smtp
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectTimeoutError:
            # A server that says nothing may be waiting for a TLS hello (an implicit-TLS port).
            if smtp.security != "tls" and not self._verified and await self._speaks_tls():
                raise _error(
                    (
                        _(
                            "{host}:{port} speaks TLS from the first byte (implicit TLS), but security is {security}"
                        ).format(host=smtp.host, port=smtp.port, security=smtp.security)
                    ),
                    "smtp.security",
                    (
                        _(
                            "set security: tls for this port (usually 465), or use port 587 with security: starttls"
                        )
                    ),
                ) from None
            raise
        except aiosmtplib.SMTPConnectError as err:
            cause = err.__cause__
            # Once a connection got through, a name that stops resolving is an outage.
            unknown = unknown_host(
                smtp.host, "smtp.host", "smtp.office365.com, ssl0.ovh.net", cause
            )
            if unknown is not None and not self._verified:
                raise unknown from None
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise self._certificate_error(cause) from None
            if isinstance(cause, ssl.SSLError) and not self._verified:
                offers = await self._plain_offer()
                if offers is not None:
                    mode = "starttls" if "starttls" in offers else "none"
                    raise _error(
                        _("{host}:{port} speaks plain SMTP, not TLS, but security is tls").format(
                            host=smtp.host, port=smtp.port
                        ),
                        "smtp.security",
                        _("set security: {mode} for this port").format(mode=mode)
                        + (_(" (port 587 is the STARTTLS port)") if mode == "starttls" else "")
                        + _(", or use port 465 with security: tls"),
                    ) from None
            raise

    async def _starttls(self, client: aiosmtplib.SMTP) -> None:
        smtp = self.smtp
        if not client.supports_extension("starttls"):
            raise _error(
                _("{host}:{port} does not offer STARTTLS").format(host=smtp.host, port=smtp.port),
                "smtp.security",
                _("use security: tls (usually port 465) or ask the provider"),
            )
        try:
            await client.starttls(tls_context=self._context)
        except ssl.SSLCertVerificationError as err:
            raise self._certificate_error(err) from None
        except aiosmtplib.SMTPConnectError as err:
            if isinstance(err.__cause__, ssl.SSLCertVerificationError):
                raise self._certificate_error(err.__cause__) from None
            raise
        await _greet(client)  # RFC 3207: forget what was offered before TLS, ask again

    def _certificate_error(self, cause: ssl.SSLCertVerificationError) -> ServerSettingsError:
        smtp = self.smtp
        why = cause.verify_message or cause.reason
        where = _("the TLS certificate of {address} was rejected: {why}").format(
            address=f"{smtp.host}:{smtp.port}", why=why
        )
        if smtp.cert_bundle is not None:
            return _error(
                _("{where} (it is not signed by the authority in {cert_bundle})").format(
                    where=where, cert_bundle=smtp.cert_bundle
                ),
                "smtp.cert_bundle",
                (
                    _(
                        "name the certificate authority that signed this server's certificate, or remove smtp.cert_bundle for a provider with a public certificate"
                    )
                ),
            )
        return _error(
            where,
            "smtp.host",
            (
                _(
                    "check smtp.host (the name must match the certificate); for a private certificate authority set smtp.cert_bundle"
                )
            ),
        )

    async def _login(self, client: aiosmtplib.SMTP) -> None:
        smtp = self.smtp
        assert smtp.username is not None
        offered = list(client.server_auth_methods)
        plain_text = client.get_transport_info("sslcontext") is None
        if not offered:
            if plain_text and client.supports_extension("starttls"):
                raise _advise_starttls(smtp, _("offers AUTH only after STARTTLS"))
            raise _error(
                (
                    _(
                        "{host}:{port} offers no login (no AUTH in its EHLO reply), but smtp.username is {username}"
                    ).format(host=smtp.host, port=smtp.port, username=smtp.username)
                ),
                "smtp.username",
                (
                    _(
                        "remove smtp.username if this server needs no login; for a provider's submission port use port 587 with security: starttls (or 465 with tls)"
                    )
                ),
            )
        mechanism = _mechanism(smtp, offered)
        secret = self.password or ""
        self.logins += 1
        try:
            if mechanism == "plain":
                await client.auth_plain(smtp.username, secret)
            elif mechanism == "login":
                await client.auth_login(smtp.username, secret)
            elif mechanism == "xoauth2":
                await client.auth_xoauth2(smtp.username, secret)
            else:
                await _auth_oauthbearer(client, smtp, secret)
        except aiosmtplib.SMTPResponseException as err:
            raise login_refused(smtp, client, err.code, err.message, mechanism) from None

    async def _speaks_tls(self) -> bool:
        """Whether the port completes a TLS handshake (certificate not checked: only the mode)."""
        probe = ssl.create_default_context()
        probe.check_hostname, probe.verify_mode = False, ssl.CERT_NONE
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self.smtp.host, self.smtp.port, ssl=probe),
                self.smtp.timeout,
            )
            writer.close()
            return True
        return False

    async def _plain_offer(self) -> set[str] | None:
        """The extensions a plain-text EHLO on the port offers, or None if it is no SMTP server."""
        client = aiosmtplib.SMTP(
            hostname=self.smtp.host,
            port=self.smtp.port,
            timeout=self.smtp.timeout,
            use_tls=False,
            start_tls=False,
            local_hostname=helo_name(self.smtp.helo_name, self._fqdn or "", None),
        )
        try:
            await client.connect()
            await _greet(client)
            return set(client.esmtp_extensions)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return None
        finally:
            client.close()


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO for a server that knows no extensions."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        await client.helo()


def _mechanism(smtp: Smtp, offered: list[str]) -> str:
    """The one mechanism this run logs in with: the configured one, or PLAIN, else LOGIN."""
    if smtp.auth != "auto":
        if smtp.auth not in offered:
            raise _error(
                (
                    _(
                        "{host}:{port} does not offer AUTH {mechanism} (it offers {mechanisms})"
                    ).format(
                        host=smtp.host,
                        port=smtp.port,
                        mechanism=smtp.auth.upper(),
                        mechanisms=" ".join(m.upper() for m in offered),
                    )
                ),
                "smtp.auth",
                _("set smtp.auth to one of the mechanisms offered (or auto for a password)"),
            )
        return smtp.auth
    for mechanism in ("plain", "login"):
        if mechanism in offered:
            return mechanism
    oauth = [m for m in OAUTH if m in offered]
    raise _error(
        (
            _("{host}:{port} offers no password login (it offers {mechanisms})").format(
                host=smtp.host, port=smtp.port, mechanisms=" ".join(m.upper() for m in offered)
            )
        ),
        "smtp.auth",
        _("set auth: {oauth} with a password_command that prints an OAuth2 token").format(
            oauth=oauth[0]
        )
        if oauth
        else _("ask the provider which login its submission server expects"),
    )


async def _auth_oauthbearer(client: aiosmtplib.SMTP, smtp: Smtp, token: str) -> None:
    """RFC 7628 OAUTHBEARER: gs2 header, host, port and the bearer token in one response."""
    assert smtp.username is not None
    blob = (
        f"n,a={smtp.username.replace('=', '=3D').replace(',', '=2C')},\x01"
        f"host={smtp.host}\x01port={smtp.port}\x01auth=Bearer {token}\x01\x01"
    )
    encoded = base64.b64encode(blob.encode()).decode("ascii")
    reply = await client.execute_command(b"AUTH", b"OAUTHBEARER", encoded.encode("ascii"))
    if reply.code == 334:
        # An error challenge (JSON): RFC 7628 §3.2.3 answers it with %x01 to end the exchange.
        challenge = reply.message
        reply = await client.execute_command(base64.b64encode(b"\x01"))
        if reply.code != 235:
            raise aiosmtplib.SMTPAuthenticationError(
                reply.code,
                _("{message} ({oauth_status})").format(
                    message=reply.message, oauth_status=_oauth_status(challenge)
                ),
            )
    if reply.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(reply.code, reply.message)


def _oauth_status(challenge: str) -> str:
    """The `status` of a JSON error challenge, e.g. invalid_token; the raw text otherwise."""
    try:
        data = json.loads(base64.b64decode(challenge))
        return f"status {data.get('status', '?')}"
    except (ValueError, TypeError, AttributeError):
        return challenge


def _advise_starttls(smtp: Smtp, what: str) -> ServerSettingsError:
    return _error(
        _("{host}:{port} {what}, but security is none").format(
            host=smtp.host, port=smtp.port, what=what
        ),
        "smtp.security",
        _("set security: starttls for this port (587 is the usual submission port)"),
    )


def refused_sender(smtp: Smtp, sender: str, code: int, text: str) -> ServerSettingsError:
    """The settings error for a server that refuses the sender's address (every message's)."""
    message = _("{host} refuses to send as {sender}: {code} {text}").format(
        host=smtp.host, sender=sender, code=code, text=text
    )
    if smtp.username:
        hint = _(
            "set sender.email to the address of the account {username}, or to one the provider lets it send as; no recipient's attempts were used"
        ).format(username=smtp.username)
    else:
        hint = _(
            "set sender.email to an address this server accepts as sender; no recipient's attempts were used"
        )
    return _error(message, "sender.email", hint)


def refused_client(smtp: Smtp, kind: str, code: int, text: str) -> ServerSettingsError:
    """The settings error for a server that refuses this machine, its EHLO name or to relay."""
    said = f"{code} {text}"
    if kind == "relay" and not smtp.username:
        message = _("{host} does not relay mail for this machine without a login: {reply}")
        key, hint = (
            "smtp.username",
            _(
                "set smtp.username and smtp.password_env, and the provider's submission port (587 with starttls, or 465 with tls); no recipient's attempts were used"
            ),
        )
    elif kind == "relay":
        message = _("{host} does not relay mail for {username}: {reply}")
        key, hint = (
            "smtp.host",
            _(
                "send through the sending server of the account's provider (its submission port); no recipient's attempts were used"
            ),
        )
    elif kind == "helo":
        message = _("{host} refuses the name this machine gave it: {reply}")
        key, hint = (
            "smtp.helo_name",
            _(
                "set smtp.helo_name to this machine's full name (e.g. {example}); no recipient's attempts were used"
            ),
        )
    else:
        message = _("{host} refuses mail from this machine: {reply}")
        key, hint = (
            "smtp.host",
            _(
                "send through your provider's sending server, with a login (smtp.username); no recipient's attempts were used"
            ),
        )
    return _error(
        message.format(host=smtp.host, username=smtp.username, reply=said),
        key,
        hint.format(example="poste.example.org"),
    )


def login_refused(
    smtp: Smtp, client: aiosmtplib.SMTP, code: int, text: str, mechanism: str | None = None
) -> ServerSettingsError:
    """The settings error for a refused login, or for a 530 at MAIL (authentication required)."""
    in_clear = client.get_transport_info("sslcontext") is None
    if in_clear and client.supports_extension("starttls") and smtp.security == "none":
        return _advise_starttls(
            smtp, _("requires STARTTLS ({code} {text})").format(code=code, text=text)
        )
    if not smtp.username:
        return _error(
            _("{host} requires a login: {code} {text}").format(
                host=smtp.host, code=code, text=text
            ),
            "smtp.username",
            _("set smtp.username and smtp.password_env (the password of the sending account)"),
        )
    if mechanism in OAUTH:
        return _error(
            _("{host} refused the OAuth2 token of {username}: {code} {text}").format(
                host=smtp.host, username=smtp.username, code=code, text=text
            ),
            "smtp.password_command",
            (
                _(
                    "the token printed by {password_command} may have expired or lack the SMTP permission: run it again (or re-authorise the account), then send again"
                ).format(password_command=quoted(smtp.password_command))
            ),
        )
    where = f"${smtp.password_env}" if smtp.password_env else _("the password command's output")
    return _error(
        _("{host} refused the login of {username}: {code} {text}").format(
            host=smtp.host, username=smtp.username, code=code, text=text
        ),
        "smtp.username",
        (
            _(
                "check smtp.username and the password in {where}; nothing was sent and no recipient's attempts were used"
            ).format(where=where)
        ),
    )

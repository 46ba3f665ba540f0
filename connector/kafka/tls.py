"""TLS towards Kafka: the client's SSL context, and why a TLS connection fails.

The files (CA bundle, client certificate, key) are read once per process, in a thread
(`load_ssl_context`, at the start of `order-sync run` and of every command), and every client built
afterwards shares that context: a client rebuilt on the event loop later (the control reader after
a broker outage, the status publisher) reads no file there. README "Kafka security": the files are
read at start-up.

aiokafka reports any failed bootstrap as `Unable to bootstrap from [...]`, hiding the ssl error (an
unknown CA, a certificate the broker refused). `tls_failure` then makes a handshake of its own with
each bootstrap server in turn and names the first failure; `client.unreachable` puts it in the one
line a command prints and `order-sync run` logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from pathlib import Path

from pydantic import SecretStr

from connector.config import KafkaSettings
from connector.errors import ConfigError

#: The probe's connection and handshake.
PROBE_TIMEOUT_S = 5.0
#: After a handshake that succeeded, how long to wait for the broker to refuse it: under TLS 1.3 a
#: server checks the client's certificate after the client considers the handshake done.
REFUSAL_WAIT_S = 0.5
#: `[SSL: CODE] text (_ssl.c:123)` -> `text`.
_SSL_TEXT = re.compile(r"^\[[^\]]*\]\s*(?P<text>.*?)\s*(\(_ssl\.c:\d+\))?$")


#: What an SSL context is made from: the files and the key's password.
_TlsFiles = tuple[Path | None, Path | None, Path | None, SecretStr | None]
#: The contexts made in this process, by what they were made from.
_contexts: dict[_TlsFiles, ssl.SSLContext] = {}


def uses_tls(settings: KafkaSettings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def _files(settings: KafkaSettings) -> _TlsFiles:
    return (settings.ssl_cafile, settings.ssl_certfile, settings.ssl_keyfile, settings.ssl_key_password)


async def load_ssl_context(settings: KafkaSettings) -> None:
    """Make the process's SSL context for `settings` in a thread (file reads stay off the event
    loop), once; a no-op without TLS. Raises `ConfigError` as `ssl_context` does."""
    if not uses_tls(settings) or _files(settings) in _contexts:
        return
    context = await asyncio.to_thread(ssl_context, settings)
    _contexts.setdefault(_files(settings), context)


def shared_ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The context `load_ssl_context` made for `settings`; made here, on the caller's thread, only
    where nothing loaded it first (a tool or a test building a client directly)."""
    context = _contexts.get(_files(settings))
    if context is None:
        context = _contexts.setdefault(_files(settings), ssl_context(settings))
    return context


class _KeyIsEncrypted(Exception):
    """The private key needs a password and none is configured (OpenSSL would ask on a terminal)."""


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """Verifies the brokers against SSL_CAFILE (or the system's CAs); presents SSL_CERTFILE when set.
    The key password leaves its SecretStr only here, for OpenSSL, and is never logged. A file that
    cannot be used is a `ConfigError` naming the key."""
    try:
        context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"invalid configuration: kafka.ssl_cafile: cannot load {settings.ssl_cafile}: {_reason(exc)}"
        ) from None
    if settings.ssl_certfile is None:
        return context
    secret = settings.ssl_key_password

    def password() -> str:
        if secret is None:
            raise _KeyIsEncrypted
        return secret.get_secret_value()

    files = ", ".join(str(f) for f in (settings.ssl_certfile, settings.ssl_keyfile) if f)
    try:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password)
    except _KeyIsEncrypted:
        raise ConfigError(
            f"invalid configuration: kafka.ssl_key_password: the private key ({files}) is encrypted;"
            " set its password"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        reason = _reason(exc)
        if reason == "PEM lib":
            reason = (
                "not a PEM certificate and its key, or a wrong ssl_key_password"
                if secret is not None
                else "not a PEM certificate and its key"
            )
        raise ConfigError(
            f"invalid configuration: kafka.ssl_certfile: cannot load the client certificate ({files}):"
            f" {reason}"
        ) from None
    return context


def bootstrap_addresses(settings: KafkaSettings) -> list[tuple[str, int]]:
    addresses = []
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        if host and port.isdigit():
            addresses.append((host.strip("[]"), int(port)))
    return addresses


async def tls_failure(settings: KafkaSettings) -> tuple[str, str] | None:
    """The first bootstrap server (`host:port`) a TLS connection to fails, and why; or None: not TLS,
    no server reachable at all (not a TLS problem), or every handshake succeeds."""
    if not uses_tls(settings):
        return None
    await load_ssl_context(settings)
    context = shared_ssl_context(settings)
    for host, port in bootstrap_addresses(settings):
        failure = await _handshake(settings, context, host, port)
        if failure is not None:
            return f"{host}:{port}", failure
    return None


async def _handshake(settings: KafkaSettings, context: ssl.SSLContext, host: str, port: int) -> str | None:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        return f"certificate verify failed: {exc.verify_message or _reason(exc)}"
    except ssl.SSLError as exc:
        return _refused(settings, exc)
    except (OSError, TimeoutError):
        return None
    try:
        async with asyncio.timeout(REFUSAL_WAIT_S):
            data = await reader.read(1)
    except TimeoutError:
        return None  # the broker waits for a request: the handshake is accepted
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        data = b""
    except ssl.SSLError as exc:
        return _refused(settings, exc)
    except OSError:
        data = b""
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
    if data:
        return None  # a broker never speaks first, but this one did speak TLS
    return _refusal(settings, "it closed the connection after the handshake")


def _refused(settings: KafkaSettings, exc: ssl.SSLError) -> str:
    reason = _reason(exc)
    if "alert" not in reason:
        # The broker said nothing in TLS (WRONG_VERSION_NUMBER: a plaintext listener) or our side failed.
        return f"TLS handshake failed: {reason}"
    return _refusal(settings, reason)


def _refusal(settings: KafkaSettings, detail: str) -> str:
    suspect = "no client certificate?" if settings.ssl_certfile is None else "our client certificate?"
    return f"the broker refused the TLS handshake ({suspect}): {detail}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.args and isinstance(exc.args[-1], str):
        match = _SSL_TEXT.match(exc.args[-1])
        if match and match.group("text"):
            return match.group("text")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

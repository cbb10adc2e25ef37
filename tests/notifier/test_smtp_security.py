"""SMTP settings (issue 5, Build 4): IMI_SMTP_HOST and IMI_SMTP_PORT, IMI_SMTP_SECURITY (``tls`` from
the first byte, ``starttls`` upgrading the connection, ``none``) and IMI_SMTP_USERNAME /
IMI_SMTP_PASSWORD, against a real aiosmtpd server on loopback with a certificate of a test
authority. Mail never goes in clear to a server whose certificate is not trusted, and a server that
refuses the credentials delays mail without losing it."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notifier.models import DeliveryStatus
from services.notifier.state import notifier
from shared.contracts import exchange
from tests.notifier.world import NotifierWorld, Recorder, SmtpServer, notifier_world

USERNAME = "imi-notifier"
PASSWORD = "s3cret-relay-password"
RECEIVERS = 3  # a new request: two handlers and the authority's address


class SessionRecorder(Recorder):
    """Records, for each message, whether its session was encrypted and who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[bool, bytes | None]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login if session.authenticated else None
        self.sessions.append((encrypted, login))
        return await super().handle_DATA(server, session, envelope)


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    accepted = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USERNAME.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd itself answers a refusal with 535.
    return AuthResult(success=accepted, handled=False, auth_data=auth_data if accepted else None)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test certificate authority and a server certificate for 127.0.0.1 it signed: (CA, cert, key)."""
    directory = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("IMI test CA"))
        .issuer_name(_name("IMI test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def server_tls(certificates: tuple[Path, Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates[1], certificates[2])
    return context


@pytest.fixture
def trust_the_test_ca(certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifier trusts the system's certificate authorities (OpenSSL's SSL_CERT_FILE): here the test one."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))


@contextmanager
def serving(recorder: Recorder, **options: Any) -> Iterator[SmtpServer]:
    server = SmtpServer(recorder, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def new_request(world: NotifierWorld) -> None:
    await world.deliver(exchange.REQUEST_RECEIVED, world.change(actor="fi_board"))


def a_world(tmp_path: Path, smtp: SmtpServer, **smtp_settings: Any) -> AbstractAsyncContextManager[NotifierWorld]:
    return notifier_world(tmp_path, smtp, settings_overrides=smtp_settings)


async def test_starttls_with_credentials_sends_only_over_an_encrypted_authenticated_session(
    tmp_path, server_tls, trust_the_test_ca
):
    recorder = SessionRecorder()
    with serving(
        recorder, tls_context=server_tls, require_starttls=True, authenticator=authenticator, auth_required=True
    ) as smtp:
        async with a_world(
            tmp_path, smtp, smtp_security="starttls", smtp_username=USERNAME, smtp_password=PASSWORD
        ) as world:
            await new_request(world)
            assert await world.send_all() == RECEIVERS
            assert recorder.sessions == [(True, USERNAME.encode())] * RECEIVERS
            assert notifier(world.runtime).mailer.open_connections == 1  # one session carried them all


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_implicit_tls_from_the_first_byte(tmp_path, server_tls, trust_the_test_ca):
    recorder = SessionRecorder()
    # aiosmtpd counts only a STARTTLS upgrade as TLS when it decides to offer AUTH.
    tls = {"ssl_context": server_tls, "auth_require_tls": False}
    with serving(recorder, **tls, authenticator=authenticator, auth_required=True) as smtp:
        async with a_world(
            tmp_path, smtp, smtp_security="tls", smtp_username=USERNAME, smtp_password=PASSWORD
        ) as world:
            await new_request(world)
            assert await world.send_all() == RECEIVERS
            assert recorder.sessions == [(True, USERNAME.encode())] * RECEIVERS


async def test_refused_credentials_delay_the_mail_and_the_right_ones_send_it(tmp_path, server_tls, trust_the_test_ca):
    recorder = SessionRecorder()
    with serving(recorder, tls_context=server_tls, authenticator=authenticator, auth_required=True) as smtp:
        async with a_world(
            tmp_path, smtp, smtp_security="starttls", smtp_username=USERNAME, smtp_password="wrong"
        ) as world:
            await new_request(world)
            result = await world.send()
            assert (result.sent, result.failed) == (0, 0)
            rows = await world.mail()
            assert {d.status for d in rows} == {DeliveryStatus.queued}  # waiting, not lost, not failed
            assert any("535" in (d.last_error or "") for d in rows)
            assert notifier(world.runtime).metrics.smtp_up._value.get() == 0
            assert recorder.received == []

        # ops correct IMI_SMTP_PASSWORD and restart the service: the mail that waited goes out
        async with notifier_world(
            tmp_path,
            smtp,
            populate_world=False,
            settings_overrides={"smtp_security": "starttls", "smtp_username": USERNAME, "smtp_password": PASSWORD},
        ) as restarted:
            restarted.clock.travel(timedelta(hours=1))
            assert await restarted.send_all() == RECEIVERS
            assert recorder.sessions == [(True, USERNAME.encode())] * RECEIVERS


async def test_a_relay_certified_by_an_internal_authority_is_trusted_through_the_ca_file_setting(
    tmp_path, server_tls, certificates
):
    """IMI_SMTP_CA_FILE: the notifier trusts the given authorities for the relay, without touching
    the system's trust store (no SSL_CERT_FILE here)."""
    recorder = SessionRecorder()
    with serving(recorder, tls_context=server_tls, require_starttls=True) as smtp:
        async with a_world(tmp_path, smtp, smtp_security="starttls", smtp_ca_file=certificates[0]) as world:
            await new_request(world)
            assert await world.send_all() == RECEIVERS
            assert len(recorder.received) == RECEIVERS


async def test_an_untrusted_certificate_sends_nothing(tmp_path, server_tls):
    recorder = SessionRecorder()
    with serving(recorder, tls_context=server_tls, require_starttls=True) as smtp:
        async with a_world(tmp_path, smtp, smtp_security="starttls") as world:
            await new_request(world)
            assert (await world.send()).sent == 0
            rows = await world.mail()
            assert {d.status for d in rows} == {DeliveryStatus.queued}
            assert any("CERTIFICATE_VERIFY_FAILED" in (d.last_error or "") for d in rows)
            assert recorder.received == []


async def test_security_none_never_upgrades_even_when_the_server_offers_starttls(tmp_path, server_tls):
    recorder = SessionRecorder()
    with serving(recorder, tls_context=server_tls) as smtp:
        async with a_world(tmp_path, smtp, smtp_security="none") as world:
            await new_request(world)
            assert await world.send_all() == RECEIVERS
            assert recorder.sessions == [(False, None)] * RECEIVERS

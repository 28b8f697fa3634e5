"""DESIGN 11, ``rediss://``: the fleet's Redis over TLS, certificates and host names
always verified, ``coordination.ca_file`` adding the CA that signed the server's.

Against a real redis-server listening with TLS only, its certificate signed by a CA
made for the test.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.fakes.criteo import FakeCriteo
from tests.conftest import demo_env, run_cli
from tests.coordination.conftest import Fleet, get_coordination, get_status
from tests.ports import free_port
from tests.redis_server import RedisServer, require_redis_server

API = "/2026-07/advertisers/me"


@dataclass(frozen=True)
class TlsRedis:
    port: int
    ca_file: Path  # the CA that signed the server's certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_certificates(directory: Path) -> Path:
    """A CA, and a server certificate it signs for the name localhost only."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("criteo-proxy test CA"))
        .issuer_name(_name("criteo-proxy test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost")]
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory / "ca.crt"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    """A redis-server that also listens with TLS (its plain port tells when it is up),
    stopped by its PID."""
    require_redis_server()
    directory = tmp_path / "tls-redis"
    directory.mkdir()
    ca_file = _write_certificates(directory)
    tls_port = free_port()
    server = RedisServer(
        directory,
        extra_args=[
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(directory / "server.crt"),
            "--tls-key-file", str(directory / "server.key"),
            "--tls-ca-cert-file", str(ca_file),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    server.start()
    try:
        yield TlsRedis(tls_port, ca_file)
    finally:
        server.stop()


async def test_a_fleet_over_tls_with_the_ca_file_joins(
    criteo: FakeCriteo,
    fleet: Fleet,
    tls_redis: TlsRedis,
    http: aiohttp.ClientSession,
) -> None:
    url = f"rediss://localhost:{tls_redis.port}/0"
    config = fleet.config(url, coordination={"ca_file": str(tls_redis.ca_file)})
    members = [await fleet.start(config) for _ in range(2)]
    for member in members:
        assert await get_status(http, member.url) == 200
    assert len(criteo.token_requests) == 1  # the second member took the token over TLS
    coordination = await get_coordination(http, members[1].url)
    assert coordination["state"] == "up"
    assert coordination["redis"] == url
    for member in members:
        assert await member.stop() == 0


@pytest.mark.parametrize(
    ("host", "with_ca_file"),
    [
        ("localhost", False),  # a CA the system does not know
        ("127.0.0.1", True),  # signed by the CA, but for localhost only
    ],
)
async def test_a_certificate_that_does_not_verify_is_refused(
    criteo: FakeCriteo,
    fleet: Fleet,
    tls_redis: TlsRedis,
    host: str,
    with_ca_file: bool,
) -> None:
    url = f"rediss://{host}:{tls_redis.port}/0"
    extra = {"ca_file": str(tls_redis.ca_file)} if with_ca_file else {}
    config = fleet.config(url, coordination=extra)
    check = await run_cli("check", "--config", str(config), env=demo_env())
    (line,) = [line for line in check.stdout.splitlines() if "coordination:" in line]
    assert line.startswith(f"coordination:   Redis {url}:"), line
    assert "answers" not in line
    assert "certificate" in line.lower() or "verify" in line.lower(), line

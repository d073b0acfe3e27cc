"""TLS to the catalog on a real Postgres that accepts TLS only (as RDS 15+ does).

The test makes its own throwaway cluster (initdb/pg_ctl from /usr/lib/postgresql/*/bin) on
a free port with ``ssl = on``, a CA and a server certificate it signs itself, and a
pg_hba.conf of ``hostssl`` lines only, so a plain connection is refused by the server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from datalake.catalog import db
from datalake.catalog.connect import DatabaseTLSError

pytestmark = pytest.mark.postgres

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
    [shutil.which("initdb")] if shutil.which("initdb") else []
)


@dataclass
class TlsServer:
    port: int
    ca: Path
    wrong_ca: Path
    driver: str = "pg8000"

    def url(self, host: str = "127.0.0.1", **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        base = f"postgresql+{self.driver}://postgres@{host}:{self.port}/postgres"
        return base + (f"?{q}" if q else "")


def _pem_ca(name: str) -> tuple[object, object, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert, cert.public_bytes(serialization.Encoding.PEM)


def _server_cert(ca_key: object, ca_cert: object) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)  # type: ignore[attr-defined]
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[attr-defined]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=db.DRIVERS)
def tls_server(tls_cluster: TlsServer, request: pytest.FixtureRequest) -> TlsServer:
    """The server, through each driver: pg8000 (the workers) and psycopg (the API)."""
    return dataclasses.replace(tls_cluster, driver=request.param)


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[TlsServer]:
    if not INITDB:
        pytest.skip(
            "NO initdb: the TLS tests need a PostgreSQL server installation "
            "(apt-get install postgresql); TLS to the catalog is UNTESTED in this run"
        )
    pytest.importorskip("cryptography", reason="the test signs its certificates with it")
    bindir = Path(INITDB[-1]).parent
    tmp = Path(tempfile.mkdtemp(prefix="dl-pg-tls-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        tmp.chmod(0o777)
    data = tmp / "data"
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    ca_key, ca_cert, ca_pem = _pem_ca("datalake test CA")
    _, _, wrong_pem = _pem_ca("some other CA")
    cert_pem, key_pem = _server_cert(ca_key, ca_cert)
    (tmp / "ca.pem").write_bytes(ca_pem)
    (tmp / "wrong-ca.pem").write_bytes(wrong_pem)
    (data / "server.crt").write_bytes(cert_pem)
    (data / "server.key").write_bytes(key_pem)
    (data / "server.key").chmod(0o600)
    # TLS only: no `host` line, so a plain TCP connection finds no pg_hba entry
    (data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    if run_as:
        shutil.chown(data / "server.key", "postgres", "postgres")
        shutil.chown(data / "server.crt", "postgres", "postgres")
        shutil.chown(data / "pg_hba.conf", "postgres", "postgres")
    port = _free_port()
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c ssl=on"
    log = tmp / "server.log"
    subprocess.run(
        [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield TlsServer(port, tmp / "ca.pem", tmp / "wrong-ca.pem")
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        db.get_engine.cache_clear()
        shutil.rmtree(tmp, ignore_errors=True)


def _ssl_in_use(url: str) -> bool:
    engine = db.get_engine(url)
    try:
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                ).scalar()
            )
    finally:
        engine.dispose()


def test_sslmode_require_connects_over_tls(tls_server: TlsServer) -> None:
    assert _ssl_in_use(tls_server.url(sslmode="require"))


def test_verify_full_with_the_right_ca_connects(tls_server: TlsServer) -> None:
    for host in ("127.0.0.1", "localhost"):
        url = tls_server.url(host, sslmode="verify-full", sslrootcert=str(tls_server.ca))
        assert _ssl_in_use(url)


def test_verify_ca_with_the_right_ca_connects(tls_server: TlsServer) -> None:
    assert _ssl_in_use(tls_server.url(sslmode="verify-ca", sslrootcert=str(tls_server.ca)))


def test_a_plain_connection_is_refused(tls_server: TlsServer) -> None:
    with pytest.raises(DBAPIError) as info:
        _ssl_in_use(tls_server.url(sslmode="disable"))
    assert "no encryption" in str(info.value)


def test_verify_full_with_the_wrong_ca_fails_with_a_clear_message(tls_server: TlsServer) -> None:
    url = tls_server.url(sslmode="verify-full", sslrootcert=str(tls_server.wrong_ca))
    with pytest.raises(DatabaseTLSError) as info:
        _ssl_in_use(url)
    message = str(info.value)
    assert "\n" not in message
    assert "certificate did not verify" in message, message
    assert f"127.0.0.1:{tls_server.port}" in message
    # and through the catalog's own session scope: the same error, not a TransientError
    with pytest.raises(DatabaseTLSError), db.session_scope(db.get_engine(url)) as s:
        s.execute(text("SELECT 1"))


def test_require_with_a_ca_checks_the_chain_as_libpq_does(tls_server: TlsServer) -> None:
    url = tls_server.url(sslmode="require", sslrootcert=str(tls_server.wrong_ca))
    with pytest.raises(DatabaseTLSError):
        _ssl_in_use(url)


def test_the_server_is_really_up(tls_server: TlsServer) -> None:
    # guards the refusal test above: the port answers, only plain TCP is turned away
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", tls_server.port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail("the TLS server is not listening")

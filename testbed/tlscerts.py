"""A throwaway PKI made with openssl, as docker's "protect the daemon socket" guide makes one: a
CA, a server certificate for 127.0.0.1/localhost and a client certificate (EC P-256 keys,
quick to make)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(name: str, cwd: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name, cwd=cwd)


def _signed(name: str, cn: str, ext: str, ca: str, cwd: Path) -> None:
    _key(f"{name}-key.pem", cwd)
    _openssl("req", "-new", "-key", f"{name}-key.pem", "-subj", f"/CN={cn}", "-out",
             f"{name}.csr", cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-days", "2", "-sha256", "-in", f"{name}.csr", "-CA",
             f"{ca}.pem", "-CAkey", f"{ca}-key.pem", "-CAcreateserial", "-out",
             f"{name}.pem", "-extfile", f"{name}.ext", cwd=cwd)


def make_ca(d: Path, name: str = "ca") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    _key(f"{name}-key.pem", d)
    _openssl("req", "-new", "-x509", "-days", "2", "-sha256", "-key", f"{name}-key.pem",
             "-subj", f"/CN=dockyard test {name}", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem"


def client_cert(d: Path, name: str, ca: str = "ca") -> tuple[Path, Path]:
    """A client certificate signed by the CA ``ca`` in ``d``: (cert, key)."""
    _signed(name, name, "extendedKeyUsage = clientAuth\n", ca, d)
    return d / f"{name}.pem", d / f"{name}-key.pem"


def make_pki(d: Path) -> Pki:
    ca = make_ca(d)
    _signed("server", "localhost", "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage = serverAuth\n", "ca", d)
    cert, key = client_cert(d, "client")
    return Pki(d, ca, d / "server.pem", d / "server-key.pem", cert, key)

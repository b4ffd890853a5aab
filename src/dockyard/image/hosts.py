"""Per-registry host configuration: endpoints, mirrors, insecure registries and TLS material.

Loaded from the engine's daemon.json-like config (``insecure-registries``,
``registry-mirrors``) plus certificate directories laid out like docker's ``certs.d``::

    <certs_dir>/<host[:port]>/*.crt            extra CAs (ca.crt by convention)
    <certs_dir>/<host[:port]>/<name>.cert      a client certificate ...
    <certs_dir>/<host[:port]>/<name>.key       ... and its key

Insecure registries behave as in docker: the client tries HTTPS first without verifying the
certificate, then plain HTTP. That order (rather than plain HTTP straight away for loopback)
lets a TLS registry on 127.0.0.1 work under the default configuration, and costs one refused
TLS handshake on loopback when the registry speaks plain HTTP. Every other registry needs
verified TLS. CIDR entries match IP literals and ``localhost`` only: a registry named by DNS
must be listed by name, so deciding whether to skip TLS never depends on a DNS answer.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import ssl
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/dockyard/daemon.json")
DEFAULT_CERTS_DIRS: tuple[Path, ...] = (
    Path("/etc/dockyard/certs.d"),
    Path("/etc/docker/certs.d"),
)
# Docker always treats loopback as insecure; ARCHITECTURE.md keeps that default.
DEFAULT_INSECURE: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

HUB_DOMAIN = "docker.io"
HUB_API_HOST = "registry-1.docker.io"

_LOCALHOST_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to reach a registry's API at."""

    url: str          # "https://registry-1.docker.io" (no trailing slash, no /v2)
    host: str         # "registry-1.docker.io": what certs.d and credentials are keyed by
    insecure: bool    # skip TLS verification (and allow plain HTTP) for this host
    mirror: bool = False  # a pull-through mirror: used for pulls only

    @property
    def scheme(self) -> str:
        return self.url.partition(":")[0]

    @property
    def credentials_host(self) -> str:
        """The key credentials are looked up under (the Hub's API host logs in as docker.io)."""
        return HUB_DOMAIN if self.host == HUB_API_HOST else self.host


@dataclass(frozen=True, slots=True)
class TLSFiles:
    ca_files: tuple[Path, ...] = ()
    client_pairs: tuple[tuple[Path, Path], ...] = ()  # (cert, key)


def split_host_port(host: str) -> tuple[str, int | None]:
    """``"[::1]:5000"`` → ``("::1", 5000)``; ``"example.com"`` → ``("example.com", None)``."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise InvalidArgument(f"invalid registry host {host!r}")
        name, rest = host[1:end], host[end + 1:]
        if rest and not rest.startswith(":"):
            raise InvalidArgument(f"invalid registry host {host!r}")
        port = rest[1:]
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    if not port:
        return name, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid port in registry host {host!r}")
    return name, int(port)


def _host_ips(host: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    try:
        name, _ = split_host_port(host)
    except InvalidArgument:
        return ()
    if name.lower() == "localhost":
        return _LOCALHOST_IPS
    try:
        return (ipaddress.ip_address(name),)
    except ValueError:
        return ()


class HostsConfig:
    """What the registry client needs to know about each host. Thread-safe."""

    def __init__(
        self,
        *,
        insecure_registries: Iterable[str] = DEFAULT_INSECURE,
        registry_mirrors: Iterable[str] = (),
        certs_dirs: Sequence[Path | str] = DEFAULT_CERTS_DIRS,
    ) -> None:
        self._insecure_hosts: set[str] = set()
        self._insecure_nets: list[IPNetwork] = []
        for entry in insecure_registries:
            self._add_insecure(entry)
        self.registry_mirrors: tuple[str, ...] = tuple(
            _check_mirror(m) for m in registry_mirrors)
        self.certs_dirs = tuple(Path(d) for d in certs_dirs)
        self._contexts: dict[tuple[str, bool], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: Path | str | None = DEFAULT_CONFIG_PATH,
        *,
        certs_dirs: Sequence[Path | str] = DEFAULT_CERTS_DIRS,
    ) -> HostsConfig:
        """Read the engine config file; a missing file (or ``None``) means the defaults.

        Like docker, the file's ``insecure-registries`` add to the loopback default.
        """
        doc: object = {}
        if path is not None:
            try:
                raw = Path(path).read_bytes()
            except FileNotFoundError:
                raw = b""
            except OSError as e:
                raise InvalidArgument(f"{path}: cannot read engine config: {e.strerror}") from None
            if raw.strip():
                try:
                    doc = json.loads(raw)
                except ValueError as e:
                    raise InvalidArgument(f"{path}: invalid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{path}: expected a JSON object")
        insecure = _str_list(doc.get("insecure-registries"), f"{path}: insecure-registries")
        mirrors = _str_list(doc.get("registry-mirrors"), f"{path}: registry-mirrors")
        return cls(
            insecure_registries=(*DEFAULT_INSECURE, *insecure),
            registry_mirrors=mirrors,
            certs_dirs=certs_dirs,
        )

    # --- insecure registries -----------------------------------------------------------

    def _add_insecure(self, entry: str) -> None:
        if "://" in entry:
            raise InvalidArgument(
                f"insecure registry {entry!r} should not contain '://'",
                hint="list it as host or host:port, or as a CIDR such as 10.0.0.0/8")
        if "/" in entry:
            try:
                self._insecure_nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise InvalidArgument(f"insecure registry {entry!r}: invalid CIDR") from None
            return
        split_host_port(entry)  # validates
        self._insecure_hosts.add(entry.lower())

    def is_insecure(self, host: str) -> bool:
        """May ``host`` (host[:port]) be reached without verified TLS?"""
        if host.lower() in self._insecure_hosts:
            return True
        return any(ip in net for ip in _host_ips(host) for net in self._insecure_nets)

    # --- endpoints -----------------------------------------------------------------------

    def endpoints(self, domain: str, *, push: bool = False) -> list[Endpoint]:
        """Where to reach ``domain`` (a reference's domain), in the order to try.

        Mirrors first (docker.io pulls only), then the registry itself; an insecure host
        appears twice, https then http.
        """
        out: list[Endpoint] = []
        if domain == HUB_DOMAIN and not push:
            for m in self.registry_mirrors:
                host = urlsplit(m).netloc
                out.append(Endpoint(m, host, self.is_insecure(host), mirror=True))
        host = HUB_API_HOST if domain == HUB_DOMAIN else domain
        insecure = self.is_insecure(host) or self.is_insecure(domain)
        out.append(Endpoint(f"https://{host}", host, insecure))
        if insecure:
            out.append(Endpoint(f"http://{host}", host, insecure))
        return out

    def endpoint_for_url(self, url: str) -> Endpoint:
        """An endpoint for an arbitrary URL (a token realm, a redirect target)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgument(f"not an http(s) URL: {url!r}")
        host = parts.netloc.rpartition("@")[2]
        return Endpoint(f"{parts.scheme}://{host}", host, self.is_insecure(host))

    # --- TLS -----------------------------------------------------------------------------

    def tls_files(self, host: str) -> TLSFiles:
        """CA files and client certificate pairs for ``host`` from every certs dir."""
        cas: list[Path] = []
        pairs: list[tuple[Path, Path]] = []
        for base in self.certs_dirs:
            d = base / host
            try:
                names = sorted(os.listdir(d))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as e:
                raise InvalidArgument(f"{d}: cannot read certificates: {e.strerror}") from None
            for name in names:
                if name.endswith(".crt"):
                    cas.append(d / name)
                elif name.endswith(".cert"):
                    key = d / (name[: -len(".cert")] + ".key")
                    if not key.exists():
                        raise InvalidArgument(
                            f"missing key {key.name} for client certificate {d / name}")
                    pairs.append((d / name, key))
                elif name.endswith(".key"):
                    cert = d / (name[: -len(".key")] + ".cert")
                    if not cert.exists():
                        raise InvalidArgument(
                            f"missing client certificate {cert.name} for key {d / name}")
        return TLSFiles(tuple(cas), tuple(pairs))

    def ssl_context(self, host: str, *, verify: bool = True) -> ssl.SSLContext:
        """The system CAs plus ``host``'s own CAs and client certificate; cached per host.

        ``verify=False`` is for insecure registries: TLS without checking the certificate.
        """
        key = (host, verify)
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        files = self.tls_files(host)
        if verify:
            ctx = ssl.create_default_context()
        else:
            # Nothing is verified, so the system CA bundle (tens of ms to load) is not needed.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for ca in files.ca_files if verify else ():
            try:
                ctx.load_verify_locations(cafile=str(ca))
            except (ssl.SSLError, OSError) as e:
                raise InvalidArgument(f"{ca}: not a usable CA certificate: {e}") from None
        for cert, keyfile in files.client_pairs:
            try:
                ctx.load_cert_chain(str(cert), str(keyfile))
            except (ssl.SSLError, OSError) as e:
                raise InvalidArgument(
                    f"{cert}: not a usable client certificate/key pair: {e}") from None
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        with self._lock:
            return self._contexts.setdefault(key, ctx)


def _check_mirror(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"invalid registry mirror {url!r}: want http(s)://host[:port]")
    if "@" in parts.netloc or parts.query or parts.fragment:
        shown = url.rsplit("@", maxsplit=1)[-1]  # never echo credentials
        raise InvalidArgument(
            f"invalid registry mirror {shown!r}: no credentials, query or fragment allowed")
    return url.rstrip("/")


def _str_list(v: object, where: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidArgument(f"{where}: expected a list of strings")
    return list(v)

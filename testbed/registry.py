"""A real OCI distribution registry on loopback, for tests and benchmarks.

Owns starting Debian's ``docker-registry`` (CNCF distribution v2) with a config of our own —
never ``/etc/docker/registry/config.yml``, which listens on all interfaces — optionally behind
TLS (a throwaway CA made with the ``openssl`` CLI) and htpasswd basic auth; stopping it by PID;
and pushing images into it with ``skopeo``.

Layout of a registry's workdir::

    config.yml          the registry's config (addr 127.0.0.1:<port>)
    registry.log        its stdout/stderr (log level warn, plus the access log)
    storage/            storage.filesystem.rootdirectory
    htpasswd            bcrypt entries, when auth is on
    certs/ca.key        the CA's key (kept out of the trust dir below)
    certs/ca/ca.crt     the CA; ``certs/ca`` is a containers-style cert dir (skopeo --*-cert-dir)
    certs/server.crt    127.0.0.1 + localhost, signed by the CA
    certs/server.key
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from testbed.procs import stop_child

log = logging.getLogger(__name__)

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"
HOST = "127.0.0.1"

# The registry's bind can lose the race for a port we found free; try a new port this often.
_BIND_ATTEMPTS = 5
_LOG_TAIL_BYTES = 4000

# Children we started, so stop_registry can reap them (a zombie still answers kill(pid, 0)).
_children: dict[int, subprocess.Popen[bytes]] = {}


class RegistryError(RuntimeError):
    """The registry could not be started, or a push into it failed."""


@dataclass(frozen=True, slots=True)
class Registry:
    host: str  # "127.0.0.1:<port>"
    url: str  # "http://127.0.0.1:<port>" or "https://..."
    tls: bool
    ca_cert: Path | None  # the CA that signed the server cert (TLS variant)
    username: str | None
    password: str | None = field(repr=False)  # kept out of test reports and logs
    pid: int
    workdir: Path  # storage, config, certs, log

    @property
    def port(self) -> int:
        return int(self.host.rpartition(":")[2])

    @property
    def cert_dir(self) -> Path | None:
        """A directory holding only ``ca.crt``: what containers tools take as a cert dir."""
        return self.ca_cert.parent if self.ca_cert is not None else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)


# --------------------------------------------------------------------------- start / stop


def start_registry(
    workdir: Path,
    *,
    tls: bool = False,
    auth: tuple[str, str] | None = None,
    timeout: float = 15.0,
) -> Registry:
    """Start a registry on a free 127.0.0.1 port with its state in ``workdir``.

    Returns once ``GET /v2/`` answers (200, or 401 when ``auth`` is set). Raises RegistryError
    with the tail of the registry's log if it exits or does not answer within ``timeout``.
    """
    if shutil.which(REGISTRY_BIN) is None:
        raise RegistryError(f"{REGISTRY_BIN} not found on PATH (Debian package docker-registry)")
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    storage = workdir / "storage"
    storage.mkdir(exist_ok=True)

    ca_cert: Path | None = None
    server_cert: tuple[Path, Path] | None = None
    if tls:
        ca_cert, server_cert = _make_certs(workdir / "certs")
    htpasswd: Path | None = None
    if auth is not None:
        htpasswd = _make_htpasswd(workdir / "htpasswd", *auth)

    last_error = ""
    for _attempt in range(_BIND_ATTEMPTS):
        port = _free_port()
        config = _write_config(workdir, port, server_cert=server_cert, htpasswd=htpasswd)
        reg = Registry(
            host=f"{HOST}:{port}",
            url=f"{'https' if tls else 'http'}://{HOST}:{port}",
            tls=tls,
            ca_cert=ca_cert,
            username=auth[0] if auth else None,
            password=auth[1] if auth else None,
            pid=0,
            workdir=workdir,
        )
        proc = _spawn(config, reg.log_path)
        reg = dataclasses.replace(reg, pid=proc.pid)
        try:
            ready = _wait_ready(reg, proc, timeout)
        except BaseException:
            stop_registry(reg)
            raise
        if ready:
            log.debug("registry %s up (pid %d)", reg.url, reg.pid)
            return reg
        stop_registry(reg)
        last_error = _log_tail(reg.log_path)
        if "address already in use" not in last_error:
            break
        log.debug("registry lost the race for port %d; retrying", port)
    raise RegistryError(
        f"{REGISTRY_BIN} exited during startup (workdir {workdir}); log tail:\n{last_error}"
    )


def stop_registry(reg: Registry, *, timeout: float = 10.0) -> None:
    """SIGTERM the registry by PID, wait, SIGKILL after ``timeout``. Idempotent."""
    proc = _children.pop(reg.pid, None)
    if proc is not None:
        if not stop_child(proc, timeout):
            log.warning("registry pid %d ignored SIGTERM; killed", reg.pid)
        return
    # Not our child (another process started it): only signal it if the PID still names a
    # registry serving this workdir's config, so a recycled PID is never hit.
    if not _is_our_registry(reg.pid, reg.workdir):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(reg.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _is_our_registry(reg.pid, reg.workdir):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(reg.pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` names a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised comm, which may itself contain spaces or parens.
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def registry_pids(under: Path | None = None) -> list[int]:
    """PIDs of live ``docker-registry serve`` processes, optionally only those whose config
    lies under ``under`` — for leak checks."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if len(argv) < 3 or not argv[0].endswith(b"registry") or argv[1] != b"serve":
            continue
        config = Path(os.fsdecode(argv[2]))
        if under is not None and not config.is_relative_to(under.resolve()):
            continue
        if pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# --------------------------------------------------------------------------- pushing


def push_oci_layout(reg: Registry, layout: Path, tag_in_layout: str, repo: str, tag: str) -> str:
    """Copy ``oci:layout:tag_in_layout`` to ``repo:tag``; returns the pushed manifest digest."""
    return _skopeo_push(reg, f"oci:{layout}:{tag_in_layout}", repo, tag)


def push_docker_archive(
    reg: Registry, archive: Path, repo: str, tag: str, *, ref_in_archive: str | None = None
) -> str:
    """Copy a ``docker save`` archive to ``repo:tag``; returns the pushed manifest digest.

    skopeo keeps the docker schema2 format and gzips the archive's uncompressed layers.
    ``ref_in_archive`` ("name:tag" or "@N") picks one image from a multi-image archive.
    """
    src = f"docker-archive:{archive}"
    if ref_in_archive is not None:
        src += f":{ref_in_archive}"
    return _skopeo_push(reg, src, repo, tag)


def skopeo_dest_args(reg: Registry) -> list[str]:
    """The ``--dest-*`` flags that let skopeo write to ``reg``."""
    args: list[str] = []
    if reg.tls:
        assert reg.cert_dir is not None
        args.append(f"--dest-cert-dir={reg.cert_dir}")
    else:
        args.append("--dest-tls-verify=false")
    if reg.auth is not None:
        args.append(f"--dest-creds={reg.auth[0]}:{reg.auth[1]}")
    else:
        args.append("--dest-no-creds")
    return args


def http_client(reg: Registry, *, timeout: float = 30.0) -> httpx.Client:
    """An httpx client for ``reg``: base URL, its CA, its credentials, no proxies."""
    return httpx.Client(
        base_url=reg.url,
        verify=_ssl_context(reg),
        auth=reg.auth,
        timeout=timeout,
        trust_env=False,
        follow_redirects=True,
    )


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- internals


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _write_config(
    workdir: Path,
    port: int,
    *,
    server_cert: tuple[Path, Path] | None,
    htpasswd: Path | None,
) -> Path:
    http: dict[str, object] = {
        "addr": f"{HOST}:{port}",
        "secret": secrets.token_hex(32),
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if server_cert is not None:
        http["tls"] = {"certificate": str(server_cert[0]), "key": str(server_cert[1])}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "dockyard-testbed", "path": str(htpasswd)}}
    path = workdir / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    # REGISTRY_* variables override the config file; never let the caller's leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=config.parent,
            env=env,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def _wait_ready(reg: Registry, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once /v2/ answers; False if the process exited; raises on timeout."""
    expected = 401 if reg.auth is not None else 200
    deadline = time.monotonic() + timeout
    # No auth on purpose: with htpasswd on, an unauthenticated 401 proves the auth layer is up.
    with httpx.Client(verify=_ssl_context(reg), timeout=1.0, trust_env=False) as client:
        while True:
            if proc.poll() is not None:
                return False
            try:
                resp = client.get(f"{reg.url}/v2/")
            except httpx.TransportError:
                pass
            else:
                if resp.status_code == expected:
                    return True
                raise RegistryError(
                    f"{reg.url}/v2/ answered {resp.status_code}, expected {expected}; "
                    f"log tail:\n{_log_tail(reg.log_path)}"
                )
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{REGISTRY_BIN} (pid {proc.pid}) did not answer {reg.url}/v2/ within "
                    f"{timeout} s; log tail:\n{_log_tail(reg.log_path)}"
                )
            time.sleep(0.05)


def _ssl_context(reg: Registry) -> ssl.SSLContext | bool:
    if not reg.tls:
        return False
    assert reg.ca_cert is not None
    return ssl.create_default_context(cafile=str(reg.ca_cert))


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"


def _is_our_registry(pid: int, workdir: Path) -> bool:
    return pid > 0 and pid in registry_pids(under=workdir)


def _run(argv: list[str], what: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)
    except subprocess.CalledProcessError as e:
        raise RegistryError(f"{what} failed ({e.returncode}): {e.stderr.strip()}") from e


def _make_certs(certs: Path) -> tuple[Path, tuple[Path, Path]]:
    """A throwaway CA and a server cert for 127.0.0.1/localhost signed by it."""
    if shutil.which("openssl") is None:
        raise RegistryError("openssl not found on PATH")
    ca_dir = certs / "ca"
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = certs / "ca.key", ca_dir / "ca.crt"
    key, csr, crt = certs / "server.key", certs / "server.csr", certs / "server.crt"
    ext = certs / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        ["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_crt),
         "-days", "2", "-subj", "/CN=dockyard testbed CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        "openssl (CA)",
    )  # fmt: skip
    _run(
        ["openssl", "req", "-new", *ec, "-keyout", str(key), "-out", str(csr),
         "-subj", "/CN=127.0.0.1"],
        "openssl (server CSR)",
    )  # fmt: skip
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _run(
        ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
         "-CAcreateserial", "-CAserial", str(certs / "ca.srl"), "-days", "2",
         "-extfile", str(ext), "-out", str(crt)],
        "openssl (sign server cert)",
    )  # fmt: skip
    for private in (ca_key, key):
        private.chmod(0o600)
    return ca_crt, (crt, key)


def _make_htpasswd(path: Path, username: str, password: str) -> Path:
    if shutil.which("htpasswd") is None:
        raise RegistryError("htpasswd not found on PATH (Debian package apache2-utils)")
    # -i reads the password from stdin; -b would show it on argv in /proc.
    proc = subprocess.run(
        ["htpasswd", "-Bni", username],
        input=password,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise RegistryError(f"htpasswd failed ({proc.returncode}): {proc.stderr.strip()}")
    path.write_text(proc.stdout.strip() + "\n")
    path.chmod(0o600)
    return path


def _skopeo_push(reg: Registry, src: str, repo: str, tag: str) -> str:
    if shutil.which(SKOPEO_BIN) is None:
        raise RegistryError(f"{SKOPEO_BIN} not found on PATH")
    with tempfile.TemporaryDirectory(prefix="skopeo-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        argv = [
            SKOPEO_BIN,
            # Tests push their own images; do not depend on the host's /etc/containers/policy.json.
            "--insecure-policy",
            "copy",
            "--quiet",
            f"--digestfile={digestfile}",
            *skopeo_dest_args(reg),
            src,
            f"docker://{reg.host}/{repo}:{tag}",
        ]
        shown = [a if not a.startswith("--dest-creds=") else "--dest-creds=***" for a in argv]
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
        except subprocess.CalledProcessError as e:
            raise RegistryError(
                f"{' '.join(shown)} failed ({e.returncode}): {e.stderr.strip()}"
            ) from e
        digest = digestfile.read_text().strip()
    if not digest.startswith("sha256:"):
        raise RegistryError(f"skopeo wrote an unexpected digest {digest!r}")
    return digest

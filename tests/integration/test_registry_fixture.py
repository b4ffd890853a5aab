"""The registry test bed: a real docker-registry on loopback serves what skopeo pushed."""

from __future__ import annotations

import dataclasses
import gzip
import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from testbed import registry as registry_mod
from testbed.registry import (
    Registry,
    RegistryError,
    http_client,
    pid_alive,
    push_docker_archive,
    push_oci_layout,
    registry_pids,
    sha256_digest,
    stop_registry,
)

if TYPE_CHECKING:
    from testbed.fixtures_registry import RegistryFactory
    from testbed.images import BuiltImage

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ACCEPT = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST])


@pytest.fixture(scope="module")
def busybox_image() -> BuiltImage:
    from testbed.images import busybox

    return busybox()


def get_manifest(client: httpx.Client, repo: str, ref: str) -> tuple[dict[str, Any], bytes, str]:
    """GET a manifest; check its digest header against its body. Returns (json, body, digest)."""
    resp = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
    assert resp.status_code == 200, resp.text
    body = resp.content
    digest = resp.headers["Docker-Content-Digest"]
    assert digest == sha256_digest(body)
    manifest = json.loads(body)
    # mediaType is optional in an OCI manifest (umoci omits it); the registry then serves the
    # type the manifest was pushed with. Either way body and header must agree.
    media_type = resp.headers["Content-Type"]
    assert manifest.setdefault("mediaType", media_type) == media_type
    return manifest, body, digest


def get_blob(client: httpx.Client, repo: str, descriptor: dict[str, Any]) -> bytes:
    """GET a blob and check it against its descriptor's digest and size."""
    resp = client.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
    assert resp.status_code == 200, resp.text
    assert sha256_digest(resp.content) == descriptor["digest"]
    assert len(resp.content) == descriptor["size"]
    return resp.content


def check_pushed_image(reg: Registry, repo: str, tag: str, pushed_digest: str) -> dict[str, Any]:
    """Pull manifest, config and every layer back over HTTP; return the manifest."""
    with http_client(reg) as client:
        manifest, body, digest = get_manifest(client, repo, tag)
        assert digest == pushed_digest
        assert manifest["schemaVersion"] == 2
        assert manifest["mediaType"] in (OCI_MANIFEST, DOCKER_MANIFEST)

        by_digest = client.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT})
        assert by_digest.status_code == 200
        assert by_digest.content == body
        head = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
        assert head.headers["Docker-Content-Digest"] == digest

        config = json.loads(get_blob(client, repo, manifest["config"]))
        layers = [get_blob(client, repo, layer) for layer in manifest["layers"]]
        # Each layer, uncompressed, is what the config's rootfs lists.
        diff_ids = [
            sha256_digest(gzip.decompress(blob) if _is_gzip(blob) else blob) for blob in layers
        ]
        assert diff_ids == config["rootfs"]["diff_ids"]
    return manifest


def _is_gzip(blob: bytes) -> bool:
    return blob[:2] == b"\x1f\x8b"


# --------------------------------------------------------------------------- plain HTTP


def test_registry_answers_v2_on_loopback_only(registry: Registry) -> None:
    assert registry.url == f"http://{registry.host}"
    resp = httpx.get(f"{registry.url}/v2/", trust_env=False)
    assert resp.status_code == 200
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    # The listening socket is bound to 127.0.0.1, not the wildcard address.
    assert registry_mod.HOST == "127.0.0.1"
    assert _listening_addresses(registry.port) == {"127.0.0.1"}
    assert registry_pids(under=registry.workdir) == [registry.pid]


def test_push_oci_layout_then_pull_over_http(registry: Registry, busybox_image: BuiltImage) -> None:
    """The acceptance point: skopeo pushes busybox, httpx pulls it back byte for byte."""
    pushed = push_oci_layout(
        registry, busybox_image.oci_layout, busybox_image.tag, "testbed/busybox", "oci"
    )
    assert pushed.startswith("sha256:")
    # skopeo copied the OCI manifest unchanged, so its digest survives the push.
    assert pushed == busybox_image.manifest_digest

    manifest = check_pushed_image(registry, "testbed/busybox", "oci", pushed)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["digest"] == busybox_image.config_digest
    assert [layer["digest"] for layer in manifest["layers"]] == list(busybox_image.layer_digests)

    with http_client(registry) as client:
        tags = client.get("/v2/testbed/busybox/tags/list").json()
    assert "oci" in tags["tags"]


def test_push_docker_archive_is_schema2(
    registry: Registry, busybox_image: BuiltImage, tmp_path: Path
) -> None:
    archive = busybox_image.docker_archive
    if archive is None:
        archive = tmp_path / "busybox.tar"
        src = f"oci:{busybox_image.oci_layout}:{busybox_image.tag}"
        dest = f"docker-archive:{archive}:testbed/busybox:docker"
        subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", src, dest], check=True)
    pushed = push_docker_archive(registry, archive, "testbed/busybox", "docker")

    manifest = check_pushed_image(registry, "testbed/busybox", "docker", pushed)
    # docker-archive keeps the docker format; its uncompressed layers are gzipped on the way.
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {DOCKER_LAYER_GZIP}
    # The config blob travels unchanged (gzip does not touch diff_ids), so neither its digest
    # nor the filesystem it describes differs from the OCI image's.
    assert manifest["config"]["digest"] == busybox_image.config_digest
    with http_client(registry) as client:
        config = json.loads(get_blob(client, "testbed/busybox", manifest["config"]))
    assert config["rootfs"]["diff_ids"] == list(busybox_image.diff_ids)


def test_missing_manifest_is_404(registry: Registry) -> None:
    with http_client(registry) as client:
        resp = client.get("/v2/testbed/nothing/manifests/latest", headers={"Accept": ACCEPT})
    assert resp.status_code == 404
    assert resp.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


# --------------------------------------------------------------------------- TLS + auth


def test_tls_registry_requires_basic_auth(tls_registry: Registry) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    assert tls_registry.ca_cert is not None
    assert tls_registry.cert_dir is not None
    assert sorted(p.name for p in tls_registry.cert_dir.iterdir()) == ["ca.crt"]
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_cert))
    v2 = f"{tls_registry.url}/v2/"

    anonymous = httpx.get(v2, verify=ctx, trust_env=False)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="')

    assert tls_registry.auth is not None
    user, password = tls_registry.auth
    authed = httpx.get(v2, verify=ctx, auth=(user, password), trust_env=False)
    assert authed.status_code == 200

    wrong = httpx.get(v2, verify=ctx, auth=(user, password + "x"), trust_env=False)
    assert wrong.status_code == 401


def test_tls_cert_covers_ip_and_localhost(tls_registry: Registry) -> None:
    ctx = ssl.create_default_context(cafile=str(tls_registry.ca_cert))
    for host in ("127.0.0.1", "localhost"):
        resp = httpx.get(
            f"https://{host}:{tls_registry.port}/v2/",
            verify=ctx,
            auth=tls_registry.auth,
            trust_env=False,
        )
        assert resp.status_code == 200


def test_tls_registry_rejects_plain_http_and_unknown_ca(tls_registry: Registry) -> None:
    # Go's TLS server answers a plaintext request with a bare 400, never with the API.
    resp = httpx.get(f"http://{tls_registry.host}/v2/", trust_env=False)
    assert resp.status_code == 400
    assert "HTTP request to an HTTPS server" in resp.text
    assert "Docker-Distribution-API-Version" not in resp.headers
    # Without our CA the certificate does not verify.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/", verify=ssl.create_default_context(), trust_env=False)


def test_push_over_tls_with_credentials(tls_registry: Registry, busybox_image: BuiltImage) -> None:
    pushed = push_oci_layout(
        tls_registry, busybox_image.oci_layout, busybox_image.tag, "testbed/busybox", "tls"
    )
    assert pushed == busybox_image.manifest_digest
    check_pushed_image(tls_registry, "testbed/busybox", "tls", pushed)


def test_push_with_wrong_password_fails(tls_registry: Registry, busybox_image: BuiltImage) -> None:
    impostor = dataclasses.replace(tls_registry, password="not-the-password")
    with pytest.raises(RegistryError, match=r"unauthorized|authentication required") as excinfo:
        push_oci_layout(
            impostor, busybox_image.oci_layout, busybox_image.tag, "testbed/busybox", "nope"
        )
    assert "not-the-password" not in str(excinfo.value)
    with http_client(tls_registry) as client:
        resp = client.get("/v2/testbed/busybox/manifests/nope", headers={"Accept": ACCEPT})
    assert resp.status_code == 404


# --------------------------------------------------------------------------- lifecycle


def test_stop_registry_leaves_no_process(fresh_registry: RegistryFactory) -> None:
    reg = fresh_registry(tls=True, auth=("someone", "secret"))
    assert pid_alive(reg.pid)
    stop_registry(reg)
    assert not pid_alive(reg.pid)
    assert registry_pids(under=reg.workdir) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{reg.url}/v2/", verify=False, trust_env=False, timeout=2)
    stop_registry(reg)  # idempotent


def test_start_retries_when_the_port_is_taken(
    fresh_registry: RegistryFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lose the race on purpose: the first "free" port is held by someone else's listener.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = registry_mod._free_port
        monkeypatch.setattr(
            registry_mod, "_free_port", lambda: next(ports, None) or real_free_port()
        )
        reg = fresh_registry()
    assert reg.port != taken
    assert "address already in use" in reg.log_path.read_text()
    assert httpx.get(f"{reg.url}/v2/", trust_env=False).status_code == 200


def test_start_failure_reports_log_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write_config = registry_mod._write_config

    def broken_config(workdir: Path, port: int, **kw: Any) -> Path:
        path = real_write_config(workdir, port, **kw)
        path.write_text(path.read_text().replace("filesystem:", "nosuchdriver:"))
        return path

    monkeypatch.setattr(registry_mod, "_write_config", broken_config)
    with pytest.raises(RegistryError, match="nosuchdriver"):
        registry_mod.start_registry(tmp_path / "broken")
    assert registry_pids(under=tmp_path) == []


def test_session_registries_are_distinct(registry: Registry, tls_registry: Registry) -> None:
    assert registry.pid != tls_registry.pid
    assert registry.port != tls_registry.port
    assert registry_pids(under=registry.workdir) == [registry.pid]
    assert registry_pids(under=tls_registry.workdir) == [tls_registry.pid]
    assert registry.workdir != tls_registry.workdir


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of TCP sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1]))
            else:
                raw = bytes.fromhex(addr_hex)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found

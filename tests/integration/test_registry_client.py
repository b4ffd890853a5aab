"""The registry client against a real registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dockyard.errors import NotFound, PermissionDenied, Unavailable
from dockyard.image.auth import AuthStore
from dockyard.image.hosts import HostsConfig
from dockyard.image.reference import Reference, parse_reference
from dockyard.image.registry import RegistryClient
from dockyard.model.image import (
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Digest,
    Manifest,
    parse_image_config,
    parse_manifest_document,
)
from testbed.registry import Registry, push_oci_layout

if TYPE_CHECKING:
    from testbed.fixtures_registry import RegistryFactory
    from testbed.images import BuiltImage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox_image() -> BuiltImage:
    from testbed.images import busybox

    return busybox()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_for(tmp_path: Path, reg: Registry, *, certs: bool = False, login: bool = False,
               password: str | None = None, insecure: bool = True) -> RegistryClient:
    """A client whose config lives in tmp_path: certs.d (optionally with the registry's CA)
    and a config.json (optionally logged in)."""
    certs_d = tmp_path / "certs.d"
    certs_d.mkdir(exist_ok=True)
    if certs:
        assert reg.ca_cert is not None
        (certs_d / reg.host).mkdir(exist_ok=True)
        shutil.copy(reg.ca_cert, certs_d / reg.host / "ca.crt")
    store = AuthStore(tmp_path / "docker" / "config.json")
    if login:
        assert reg.username is not None and reg.password is not None
        store.login(reg.host, reg.username, password if password is not None else reg.password)
    hosts = HostsConfig(insecure_registries=["127.0.0.0/8"] if insecure else [],
                        certs_dirs=[certs_d])
    return RegistryClient(hosts, store, sleep=lambda s: None, retries=1)


def blob(client: RegistryClient, ref: Reference, desc: Descriptor) -> bytes:
    with client.open_blob(ref, desc) as stream:
        data = b"".join(stream)
    assert sha256(data) == desc.digest and len(data) == desc.size
    return data


def pull_and_check(client: RegistryClient, ref: Reference, image: BuiltImage) -> None:
    raw, media_type, digest = client.get_manifest(ref)
    assert digest == image.manifest_digest == sha256(raw)
    assert media_type == OCI_MANIFEST
    manifest = parse_manifest_document(raw, media_type)
    assert isinstance(manifest, Manifest)
    assert manifest.config.digest == image.config_digest
    config = parse_image_config(blob(client, ref, manifest.config))
    assert config.diff_ids == image.diff_ids
    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True):
        data = blob(client, ref, layer)
        # The client hands out raw bytes: still gzip, as stored.
        assert data[:2] == b"\x1f\x8b"
        assert sha256(gzip.decompress(data)) == diff_id


def test_pull_busybox_over_plain_http(registry: Registry, busybox_image: BuiltImage,
                                      tmp_path: Path) -> None:
    push_oci_layout(registry, busybox_image.oci_layout, busybox_image.tag, "client/busybox", "v1")
    ref = parse_reference(f"{registry.host}/client/busybox:v1")
    with client_for(tmp_path, registry) as client:
        pull_and_check(client, ref, busybox_image)
        by_digest = ref.without_tag().with_digest(busybox_image.manifest_digest)
        assert client.get_manifest(by_digest)[2] == busybox_image.manifest_digest
        head = client.head_manifest(ref)
        assert head.digest == busybox_image.manifest_digest
        assert head.media_type == OCI_MANIFEST
        assert "v1" in client.list_tags(ref)


def test_resume_blob_with_range(registry: Registry, busybox_image: BuiltImage,
                                tmp_path: Path) -> None:
    push_oci_layout(registry, busybox_image.oci_layout, busybox_image.tag, "client/range", "v1")
    ref = parse_reference(f"{registry.host}/client/range:v1")
    with client_for(tmp_path, registry) as client:
        manifest = parse_manifest_document(client.get_manifest(ref)[0])
        assert isinstance(manifest, Manifest)
        layer = manifest.layers[0]
        whole = blob(client, ref, layer)
        offset = layer.size // 3
        with client.open_blob(ref, layer, offset) as stream:
            assert stream.resumed and stream.offset == offset
            assert b"".join(stream) == whole[offset:]


def test_parallel_blob_downloads(registry: Registry, busybox_image: BuiltImage,
                                 tmp_path: Path) -> None:
    push_oci_layout(registry, busybox_image.oci_layout, busybox_image.tag, "client/par", "v1")
    ref = parse_reference(f"{registry.host}/client/par:v1")
    errors: list[BaseException] = []
    with client_for(tmp_path, registry) as client:
        manifest = parse_manifest_document(client.get_manifest(ref)[0])
        assert isinstance(manifest, Manifest)

        def worker() -> None:
            try:
                blob(client, ref, manifest.layers[0])
                blob(client, ref, manifest.config)
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_missing_manifest_is_not_found(registry: Registry, tmp_path: Path) -> None:
    ref = parse_reference(f"{registry.host}/client/nothing:here")
    with client_for(tmp_path, registry) as client, pytest.raises(NotFound) as excinfo:
        client.get_manifest(ref)
    assert str(excinfo.value).startswith(
        f"manifest unknown: {registry.host}/client/nothing:here not found")


# --- TLS and auth -------------------------------------------------------------------------


def test_tls_with_ca_from_certs_d_and_login(tls_registry: Registry, busybox_image: BuiltImage,
                                            tmp_path: Path) -> None:
    push_oci_layout(tls_registry, busybox_image.oci_layout, busybox_image.tag,
                    "client/tls", "v1")
    ref = parse_reference(f"{tls_registry.host}/client/tls:v1")
    # Not insecure: the certificate must verify against the CA in certs.d.
    with client_for(tmp_path, tls_registry, certs=True, login=True, insecure=False) as client:
        pull_and_check(client, ref, busybox_image)


def test_tls_without_the_ca_fails_verification(tls_registry: Registry,
                                                tmp_path: Path) -> None:
    ref = parse_reference(f"{tls_registry.host}/client/tls:v1")
    with client_for(tmp_path, tls_registry, login=True, insecure=False) as client, \
            pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED") as excinfo:
        client.get_manifest(ref)
    assert tls_registry.host in str(excinfo.value)


def test_tls_on_insecure_loopback_needs_no_ca(tls_registry: Registry,
                                              busybox_image: BuiltImage,
                                              tmp_path: Path) -> None:
    # The default configuration: loopback is insecure, so https is tried unverified first.
    push_oci_layout(tls_registry, busybox_image.oci_layout, busybox_image.tag,
                    "client/tls", "v2")
    ref = parse_reference(f"{tls_registry.host}/client/tls:v2")
    with client_for(tmp_path, tls_registry, login=True) as client:
        assert client.get_manifest(ref)[2] == busybox_image.manifest_digest


def test_wrong_password_is_permission_denied(tls_registry: Registry, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    ref = parse_reference(f"{tls_registry.host}/client/tls:v1")
    bad = "not-the-password-" + "x" * 8
    with client_for(tmp_path, tls_registry, certs=True, login=True, password=bad,
                    insecure=False) as client, pytest.raises(PermissionDenied) as excinfo:
        client.get_manifest(ref)
    message = str(excinfo.value)
    assert "incorrect username or password" in message
    assert tls_registry.host in message
    assert bad not in message and bad not in repr(excinfo.value)
    assert bad not in caplog.text
    assert excinfo.value.hint == f"run 'dockyard login {tls_registry.host}'"


def test_no_credentials_is_pull_access_denied(tls_registry: Registry, tmp_path: Path) -> None:
    ref = parse_reference(f"{tls_registry.host}/client/tls:v1")
    with client_for(tmp_path, tls_registry, certs=True, insecure=False) as client, \
            pytest.raises(PermissionDenied, match="pull access denied for"):
        client.get_manifest(ref)


# --- push ---------------------------------------------------------------------------------


def _tiny_image() -> tuple[bytes, bytes, bytes]:
    """(layer.tar.gz, config, manifest) of a one-file image."""
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"hello from dockyard\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = tar_buf.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/hello"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(layer),
                    "size": len(layer)}],
    }).encode()
    return layer, config, manifest


def _push_tiny(client: RegistryClient, ref: Reference) -> tuple[str, bytes]:
    layer, config, manifest = _tiny_image()
    for data, mt in ((layer, OCI_LAYER_GZIP), (config, OCI_CONFIG)):
        desc = Descriptor(mt, Digest(sha256(data)), len(data))
        assert not client.blob_exists(ref, desc.digest)
        client.push_blob(ref, desc, io.BytesIO(data))
        assert client.blob_exists(ref, desc.digest)
    digest = client.put_manifest(ref, manifest, OCI_MANIFEST)
    assert digest == sha256(manifest)
    return digest, layer


def test_push_then_skopeo_inspects(fresh_registry: RegistryFactory, tmp_path: Path) -> None:
    reg = fresh_registry()
    ref = parse_reference(f"{reg.host}/client/pushed:v1")
    with client_for(tmp_path, reg) as client:
        digest, layer = _push_tiny(client, ref)
        assert client.get_manifest(ref)[2] == digest
        # A cross-repository mount of a blob the registry has.
        other = parse_reference(f"{reg.host}/client/other:v1")
        assert client.mount_blob(other, Digest(sha256(layer)), "client/pushed")
        assert client.blob_exists(other, Digest(sha256(layer)))
        # A mount of a blob it lacks falls back (and cancels the opened upload).
        assert not client.mount_blob(other, Digest("sha256:" + "1" * 64), "client/pushed")
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{reg.host}/client/pushed:v1"],
        check=True, capture_output=True, text=True, timeout=60)
    info = json.loads(out.stdout)
    assert info["Digest"] == digest
    assert info["Layers"] == [sha256(layer)]
    assert info["Architecture"] == "amd64"


def test_push_over_tls_with_auth_and_tag_pages(tls_registry: Registry, tmp_path: Path) -> None:
    ref = parse_reference(f"{tls_registry.host}/client/pushed-tls:t0")
    with client_for(tmp_path, tls_registry, certs=True, login=True, insecure=False) as client:
        digest, _ = _push_tiny(client, ref)
        _, _, manifest = _tiny_image()
        for i in range(1, 5):
            client.put_manifest(ref.with_tag(f"t{i}"), manifest, OCI_MANIFEST)
        assert sorted(client.list_tags(ref, page_size=2)) == [f"t{i}" for i in range(5)]
        assert client.head_manifest(ref.with_tag("t3")).digest == digest


def test_push_without_credentials_is_denied(tls_registry: Registry, tmp_path: Path) -> None:
    ref = parse_reference(f"{tls_registry.host}/client/denied:v1")
    data = b"nope"
    desc = Descriptor("application/octet-stream", Digest(sha256(data)), len(data))
    with client_for(tmp_path, tls_registry, certs=True, insecure=False) as client, \
            pytest.raises(PermissionDenied, match="access denied"):
        client.push_blob(ref, desc, io.BytesIO(data))

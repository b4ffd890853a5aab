"""What a registry may serve: indexes (platform choice), gzip, zstd and plain layers, schema1
(refused), every tag of a repository, a docker.io mirror; and podman pulling what we pushed."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from testbed import images as tb_images
from testbed.engine import Engine
from testbed.fake_registry import FakeRegistry, sha256
from testbed.registry import Registry, push_oci_layout

pytestmark = pytest.mark.integration

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


class Parts:
    """The busybox image's config and uncompressed layer, to re-serve in other shapes."""

    def __init__(self, img: tb_images.BuiltImage) -> None:
        blobs = img.oci_layout / "blobs" / "sha256"
        self.config = (blobs / img.config_digest[7:]).read_bytes()
        self.manifest = json.loads((blobs / img.manifest_digest[7:]).read_bytes())
        assert len(img.layer_digests) == 1
        self.tar = gzip.decompress((blobs / img.layer_digests[0][7:]).read_bytes())
        self.gz = (blobs / img.layer_digests[0][7:]).read_bytes()

    def serve(self, reg: FakeRegistry, repo: str, tag: str, layer: bytes, media_type: str,
              annotations: dict[str, str] | None = None) -> tuple[str, bytes]:
        cfg = reg.add_blob(self.config)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cfg, "size": len(self.config)},
            "layers": [{"mediaType": media_type, "digest": reg.add_blob(layer),
                        "size": len(layer)}],
        }
        if annotations:
            manifest["annotations"] = annotations
        raw = json.dumps(manifest).encode()
        return reg.add_manifest(repo, tag, raw, OCI_MANIFEST), raw


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    try:
        yield reg
    finally:
        reg.stop()


def _has_busybox(engine: Engine, name: str) -> None:
    doc = json.loads(engine.run("image", "inspect", name).stdout)[0]
    assert (Path(doc["GraphDriver"]["Data"]["UpperDir"]) / "bin" / "busybox").is_file()


@pytest.mark.parametrize(("kind", "media_type"), [
    ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ("plain", "application/vnd.oci.image.layer.v1.tar"),
    ("gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"),
])
def test_layer_compressions(engine: Engine, fake: FakeRegistry, busybox: tb_images.BuiltImage,
                            kind: str, media_type: str) -> None:
    parts = Parts(busybox)
    layer = {"zstd": zstandard.ZstdCompressor().compress(parts.tar), "plain": parts.tar,
             "gzip": parts.gz}[kind]
    parts.serve(fake, "fmt/bb", kind, layer, media_type)
    name = f"{fake.host}/fmt/bb:{kind}"
    engine.run("pull", name)
    _has_busybox(engine, name)
    assert engine.run("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == \
        busybox.config_digest
    assert engine.run("image", "fsck").returncode == 0


def test_schema1_is_refused(engine: Engine, fake: FakeRegistry) -> None:
    raw = json.dumps({"schemaVersion": 1, "name": "old/image", "tag": "v1",
                      "fsLayers": [], "history": []}).encode()
    fake.add_manifest("old/image", "v1",
                      raw, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    p = engine.run("pull", f"{fake.host}/old/image:v1", check=False)
    assert p.returncode == 1
    assert "schema 1 is too old" in p.stderr and "Traceback" not in p.stderr
    assert engine.run("images", "-q").stdout == ""


def test_index_platform_choice(engine: Engine, fake: FakeRegistry,
                               busybox: tb_images.BuiltImage) -> None:
    parts = Parts(busybox)
    amd, amd_raw = parts.serve(fake, "multi/bb", "amd64-only", parts.gz,
                               "application/vnd.oci.image.layer.v1.tar+gzip",
                               {"which": "amd64"})
    arm, arm_raw = parts.serve(fake, "multi/bb", "arm64-only", parts.gz,
                               "application/vnd.oci.image.layer.v1.tar+gzip",
                               {"which": "arm64"})
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_raw),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_raw),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"attestation"), "size": 10,
         "platform": {"os": "unknown", "architecture": "unknown"}},
    ]}
    raw_index = json.dumps(index).encode()
    index_digest = fake.add_manifest("multi/bb", "latest", raw_index, OCI_INDEX)
    name = f"{fake.host}/multi/bb:latest"

    engine.run("pull", "--platform", "linux/arm64", name)
    doc = json.loads(engine.run("image", "inspect", name).stdout)[0]
    assert doc["Descriptor"]["digest"] == arm
    assert doc["RepoDigests"] == [f"{fake.host}/multi/bb@{index_digest}"]
    engine.run("rmi", name)
    engine.run("pull", name)                      # the host's platform: amd64 here
    doc = json.loads(engine.run("image", "inspect", name).stdout)[0]
    assert doc["Descriptor"]["digest"] == amd
    none = engine.run("pull", "--platform", "linux/s390x", name, check=False)
    assert none.returncode == 1
    assert "no matching manifest for linux/s390x" in none.stderr
    bad = engine.run("pull", "--platform", "linux", name, check=False)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_pull_all_tags(engine: Engine, fake: FakeRegistry,
                       busybox: tb_images.BuiltImage) -> None:
    parts = Parts(busybox)
    for tag in ("v1", "v2", "v3"):
        parts.serve(fake, "tags/bb", tag, parts.gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    out = engine.run("pull", "--all-tags", f"{fake.host}/tags/bb").stdout
    assert f"Pulling all tags of {fake.host}/tags/bb" in out
    tags = engine.run("images", "--format", "{{.Tag}}").stdout.split()
    assert sorted(tags) == ["v1", "v2", "v3"]
    clash = engine.run("pull", "-a", f"{fake.host}/tags/bb:v1", check=False)
    assert clash.returncode == 125 and "--all-tags" in clash.stderr


def test_docker_hub_names_go_to_the_mirror(tmp_path: Path, registry: Registry,
                                           busybox: tb_images.BuiltImage) -> None:
    """``busybox`` means docker.io/library/busybox; a mirror serves it (no traffic elsewhere:
    the mirror answers, so docker.io is never asked)."""
    push_oci_layout(registry, busybox.oci_layout, busybox.tag, "library/busybox", "latest")
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"registry-mirrors": [registry.url]}))
    eng = Engine(tmp_path / "root", config)
    out = eng.run("pull", "busybox").stdout
    assert "Status: Downloaded newer image for busybox:latest" in out
    assert out.rstrip().endswith("docker.io/library/busybox:latest")
    assert eng.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.strip() == \
        "busybox:latest"
    _has_busybox(eng, "busybox")


def test_podman_pulls_what_dockyard_pushed(engine: Engine, registry: Registry,
                                           busybox: tb_images.BuiltImage) -> None:
    from testbed.podman import remove_podman, start_podman

    src = f"{registry.host}/interop/src:latest"
    push_oci_layout(registry, busybox.oci_layout, busybox.tag, "interop/src", "latest")
    engine.run("pull", src)
    dest = f"{registry.host}/interop/pushed:v1"
    engine.run("tag", src, dest)
    engine.run("push", dest)
    podman = start_podman(insecure_registries=[registry.host])  # short runroot path
    try:
        podman.run("pull", dest, check=True)
        out = podman.run("run", "--rm", "--network", "none", dest, "echo", "pushed-by-dockyard",
                         check=True)
        assert "pushed-by-dockyard" in out.stdout
    finally:
        remove_podman(podman)


def test_a_shared_layer_is_downloaded_once(engine: Engine, fake: FakeRegistry,
                                           busybox: tb_images.BuiltImage) -> None:
    """Two images on one base: the second pull fetches only its own layer."""
    parts = Parts(busybox)
    base = fake.add_blob(parts.gz)
    extra_tar = tb_images_extra_layer()
    extra = fake.add_blob(extra_tar)
    for repo, layers, diff_ids in (
            ("shared/one", [base], [busybox.diff_ids[0]]),
            ("shared/two", [base, extra], [busybox.diff_ids[0], sha256(extra_tar)])):
        config = json.loads(parts.config)
        config["rootfs"]["diff_ids"] = diff_ids
        raw_cfg = json.dumps(config).encode()
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": fake.add_blob(raw_cfg), "size": len(raw_cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                                if d == base else "application/vnd.oci.image.layer.v1.tar",
                                "digest": d,
                                "size": len(parts.gz if d == base else extra_tar)}
                               for d in layers]}
        fake.add_manifest(repo, "latest", json.dumps(manifest).encode(), OCI_MANIFEST)
    engine.run("pull", f"{fake.host}/shared/one")
    out = engine.run("pull", f"{fake.host}/shared/two").stdout
    assert f"{base[7:19]}: Already exists" in out
    gets = [r for r in fake.requests_to(base[7:]) if r.method == "GET"]
    assert len(gets) == 1
    assert len(engine.blobs() & {base[7:], extra[7:]}) == 2


def tb_images_extra_layer() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"only in the second image\n"
        info = tarfile.TarInfo("etc/second")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_progress_in_a_terminal(engine: Engine, fake: FakeRegistry,
                                busybox: tb_images.BuiltImage) -> None:
    """In a terminal, pull draws bars (rich) and still ends with docker's lines."""
    import os
    import pty
    import sys

    parts = Parts(busybox)
    parts.serve(fake, "tty/bb", "latest", parts.gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "dockyard.cli.main", "--root",
                                  str(engine.root), "pull", f"{fake.host}/tty/bb"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")
    text = out.decode(errors="replace")
    assert "Pull complete" in text
    assert "Status: Downloaded newer image for" in text


def test_images_filters_and_formats(engine: Engine, fake: FakeRegistry,
                                    busybox: tb_images.BuiltImage) -> None:
    parts = Parts(busybox)
    config = json.loads(parts.config)
    config.setdefault("config", {})["Labels"] = {"tier": "web", "team": "yard"}
    parts.config = json.dumps(config).encode()
    parts.serve(fake, "filt/web", "v1", parts.gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    parts.config = json.dumps({**config, "config": {"Labels": {"tier": "db"}}}).encode()
    parts.serve(fake, "filt/db", "v1", parts.gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    engine.run("pull", f"{fake.host}/filt/web:v1")
    engine.run("pull", f"{fake.host}/filt/db:v1")

    def names(*args: str) -> list[str]:
        return engine.run("images", "--format", "{{.Repository}}", *args).stdout.split()

    assert names("--filter", "label=tier=web") == [f"{fake.host}/filt/web"]
    assert names("--filter", "label=team") == [f"{fake.host}/filt/web"]
    assert names("--filter", f"reference={fake.host}/filt/d*") == [f"{fake.host}/filt/db"]
    assert names("--filter", "dangling=true") == []
    engine.run("tag", f"{fake.host}/filt/web:v1", "other:1")
    engine.run("rmi", f"{fake.host}/filt/web:v1", "other:1")
    assert f"{fake.host}/filt/web" not in names()
    rows = [json.loads(line) for line in
            engine.run("images", "--format", "json").stdout.splitlines()]
    assert [r["Repository"] for r in rows] == [f"{fake.host}/filt/db"]
    assert set(rows[0]) >= {"ID", "Repository", "Tag", "Size", "CreatedSince", "Digest"}
    table = engine.run("images", "--digests").stdout.splitlines()
    assert table[0].split()[:4] == ["REPOSITORY", "TAG", "DIGEST", "IMAGE"]
    assert table[1].split()[2].startswith("sha256:")
    bad = engine.run("images", "--filter", "color=red", check=False)
    assert bad.returncode == 1 and "invalid filter 'color'" in bad.stderr

"""The offline image factory without root: layouts validate, blobs verify, builds repeat."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from testbed import images
from testbed.images import BuiltImage, ExpectedEntry
from testbed.specs import image_schema_dir

REPO = Path(__file__).resolve().parents[2]
SCHEMA_DIR = image_schema_dir()
needs_schemas = pytest.mark.skipif(
    not SCHEMA_DIR.is_dir(), reason=f"image-spec schemas not found at {SCHEMA_DIR}"
)


# ---------------------------------------------------------------------------------------------
# helpers


def _schema_registry() -> Registry[Any]:
    """Every schema under the id it declares; relative refs are found by file name.

    The image-spec schemas refer to each other as ``defs.json`` and so on, relative to whichever
    id is in force, so a retriever maps any such URL back to the file of that name.
    """

    def load(name: str) -> Resource[Any]:
        contents = json.loads((SCHEMA_DIR / name).read_text())
        return Resource.from_contents(contents, default_specification=DRAFT4)

    def retrieve(uri: str) -> Resource[Any]:
        name = uri.rsplit("/", 1)[-1]
        if not (SCHEMA_DIR / name).is_file():
            raise LookupError(uri)
        return load(name)

    registry: Registry[Any] = Registry(retrieve=retrieve)  # type: ignore[call-arg]
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        resource = load(path.name)
        declared = resource.id()
        if declared:
            registry = registry.with_resource(declared, resource)
    return registry


def _validate(instance: object, schema_file: str) -> None:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    validator = jsonschema.Draft4Validator(
        schema,
        registry=_schema_registry(),
        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER,
    )
    validator.validate(instance)


def _blob(image: BuiltImage, digest: str) -> bytes:
    return (image.oci_layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _json_blob(image: BuiltImage, digest: str) -> Any:
    return json.loads(_blob(image, digest))


def _layer_members(image: BuiltImage, digest: str) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=_open_blob(image, digest))) as tar:
        return tar.getmembers()


def _open_blob(image: BuiltImage, digest: str) -> Any:
    return open(image.oci_layout / "blobs" / "sha256" / digest.removeprefix("sha256:"), "rb")


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("testbed-cache")


@pytest.fixture(scope="module")
def busybox_image(cache: Path) -> BuiltImage:
    return images.busybox(cache)


@pytest.fixture(scope="module")
def torture_image(cache: Path) -> BuiltImage:
    return images.torture(cache)


@pytest.fixture(params=["busybox", "torture"])
def image(request: pytest.FixtureRequest) -> BuiltImage:
    value: BuiltImage = request.getfixturevalue(f"{request.param}_image")
    return value


# ---------------------------------------------------------------------------------------------
# layout, schemas and digests


@needs_schemas
def test_schema_registry_resolves_the_spec_schemas() -> None:
    # A wrong digest must fail through the $ref chain into defs-descriptor.json.
    bad = {"mediaType": "application/json", "digest": "nope", "size": 1}
    with pytest.raises(jsonschema.ValidationError):
        _validate(bad, "content-descriptor.json")


@needs_schemas
def test_layout_index_manifest_and_config_validate(image: BuiltImage) -> None:
    layout = image.oci_layout
    _validate(json.loads((layout / "oci-layout").read_text()), "image-layout-schema.json")
    index = json.loads((layout / "index.json").read_text())
    _validate(index, "image-index-schema.json")
    [desc] = index["manifests"]
    assert desc["digest"] == image.manifest_digest
    assert desc["annotations"] == {"org.opencontainers.image.ref.name": image.tag}
    manifest = _json_blob(image, image.manifest_digest)
    _validate(manifest, "image-manifest-schema.json")
    assert manifest["config"]["mediaType"] == images.MEDIA_TYPE_CONFIG
    assert manifest["config"]["digest"] == image.config_digest
    assert tuple(layer["digest"] for layer in manifest["layers"]) == image.layer_digests
    assert {layer["mediaType"] for layer in manifest["layers"]} == {images.MEDIA_TYPE_LAYER}
    config = _json_blob(image, image.config_digest)
    _validate(config, "config-schema.json")
    assert config["os"] == "linux"
    assert config["architecture"] == images.host_architecture()[0]
    assert config["config"]["Env"] == [images.PATH_ENV]
    assert tuple(config["rootfs"]["diff_ids"]) == image.diff_ids
    assert len(config["history"]) == len(image.layer_digests)


def test_every_blob_matches_its_name_and_descriptor(image: BuiltImage) -> None:
    blobs = image.oci_layout / "blobs" / "sha256"
    for path in blobs.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
    index = json.loads((image.oci_layout / "index.json").read_text())
    manifest = _json_blob(image, image.manifest_digest)
    descriptors = [*index["manifests"], manifest["config"], *manifest["layers"]]
    for desc in descriptors:
        assert len(_blob(image, desc["digest"])) == desc["size"]
    assert {p.name for p in blobs.iterdir()} == {
        d["digest"].removeprefix("sha256:") for d in descriptors
    }


def test_diff_ids_are_the_uncompressed_layers(image: BuiltImage) -> None:
    assert len(image.diff_ids) == len(image.layer_digests)
    for digest, diff_id in zip(image.layer_digests, image.diff_ids, strict=True):
        raw = gzip.decompress(_blob(image, digest))
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id


def test_layers_have_fixed_metadata(image: BuiltImage) -> None:
    for digest in image.layer_digests:
        blob = _blob(image, digest)
        assert blob[4:8] == b"\0\0\0\0"  # gzip MTIME
        for member in _layer_members(image, digest):
            assert member.uname == member.gname == ""
            if member.name != "data/old-mtime":
                assert member.mtime == 0, member.name


def test_builds_are_deterministic(tmp_path: Path, busybox_image: BuiltImage) -> None:
    again_bb = images.busybox(tmp_path / "again")
    again_torture = images.torture(tmp_path / "again")
    assert again_bb.manifest_digest == busybox_image.manifest_digest
    assert again_bb.oci_layout != busybox_image.oci_layout
    assert again_torture.manifest_digest == images.torture(tmp_path / "third").manifest_digest
    assert again_bb.docker_archive is not None and busybox_image.docker_archive is not None
    assert again_bb.docker_archive.read_bytes() == busybox_image.docker_archive.read_bytes()


def test_the_cache_is_reused(cache: Path, busybox_image: BuiltImage) -> None:
    marker = busybox_image.oci_layout.parent / ".complete"
    before = marker.stat().st_ino
    assert images.busybox(cache) == busybox_image
    assert marker.stat().st_ino == before
    assert busybox_image.oci_layout.parent.parent == cache
    assert busybox_image.oci_layout.parent.name.startswith("busybox-")


def test_an_incomplete_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    first = images.torture(tmp_path)
    (first.oci_layout.parent / ".complete").unlink()
    (first.oci_layout / "index.json").write_text("garbage")
    second = images.torture(tmp_path)
    assert second == first
    assert json.loads((second.oci_layout / "index.json").read_text())["schemaVersion"] == 2


def test_concurrent_builds_share_one_cache_entry(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "testbed.images", "busybox", "--cache", str(tmp_path)]
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    assert len({out for out, _ in outputs}) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [
        outputs[0][0].decode().splitlines()[0].split("/")[-2]
    ]


def test_default_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_TESTBED_CACHE", "/somewhere/else")
    assert images.default_cache_dir() == Path("/somewhere/else")
    monkeypatch.delenv("DOCKYARD_TESTBED_CACHE")
    assert images.default_cache_dir() == Path("/var/cache/dockyard-testbed")


def test_cli_prints_layout_and_digest(tmp_path: Path, torture_image: BuiltImage) -> None:
    argv = [sys.executable, "-m", "testbed.images", "torture", "--cache", str(tmp_path)]
    out = subprocess.run(argv, cwd=REPO, check=True, capture_output=True, text=True).stdout
    layout, digest = out.splitlines()
    assert Path(layout).joinpath("index.json").is_file()
    assert digest == torture_image.manifest_digest
    as_json = subprocess.run([*argv, "--json"], cwd=REPO, check=True, capture_output=True).stdout
    assert json.loads(as_json)["diff_ids"] == list(torture_image.diff_ids)


# ---------------------------------------------------------------------------------------------
# docker archive


def test_docker_archive_matches_the_oci_image(image: BuiltImage) -> None:
    assert image.docker_archive is not None
    with tarfile.open(image.docker_archive) as tar:

        def read(name: str) -> bytes:
            f = tar.extractfile(name)
            assert f is not None
            return f.read()

        [entry] = json.loads(read("manifest.json"))
        assert entry["RepoTags"] == [f"{image.name}:{image.tag}"]
        config = read(entry["Config"])
        assert "sha256:" + hashlib.sha256(config).hexdigest() == image.config_digest
        assert config == _blob(image, image.config_digest)
        layer_hashes = tuple(
            "sha256:" + hashlib.sha256(read(name)).hexdigest() for name in entry["Layers"]
        )
        assert layer_hashes == image.diff_ids
        repositories = json.loads(read("repositories"))
        top = entry["Layers"][-1].split("/")[0]
        assert repositories == {image.name: {image.tag: top}}


# ---------------------------------------------------------------------------------------------
# busybox


def test_busybox_layer_links_every_applet(busybox_image: BuiltImage) -> None:
    [digest] = busybox_image.layer_digests
    members = {m.name: m for m in _layer_members(busybox_image, digest)}
    binary = members["bin/busybox"]
    assert binary.isreg() and binary.mode == 0o755
    assert binary.size == Path("/bin/busybox").stat().st_size
    listing = subprocess.run(
        ["/bin/busybox", "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    applets = [a for a in listing if a not in ("linuxrc", "bin/busybox")]
    for applet in applets:
        assert members[applet].islnk() and members[applet].linkname == "bin/busybox", applet
    assert "linuxrc" not in members
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    for name in ("proc", "sys", "dev", "root", "etc"):
        assert members[name].isdir()
    with tarfile.open(fileobj=gzip.GzipFile(fileobj=_open_blob(busybox_image, digest))) as tar:
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None
        lines = passwd.read().decode().splitlines()
    assert lines[0].startswith("root:x:0:0:")
    assert lines[1].startswith("nobody:x:65534:65534:")
    config = _json_blob(busybox_image, busybox_image.config_digest)
    assert config["config"]["Cmd"] == ["sh"]


# ---------------------------------------------------------------------------------------------
# torture: the layers, merged in Python, give exactly torture_expected()


def _merge(layers: list[list[tarfile.TarInfo]]) -> dict[str, tarfile.TarInfo]:
    """A minimal overlay of tar layers with AUFS whiteouts (what an unpacker must do)."""
    tree: dict[str, tarfile.TarInfo] = {}

    def drop_below(path: str, keep_self: bool) -> None:
        for name in [n for n in tree if n == path or n.startswith(path + "/")]:
            if not (keep_self and name == path):
                del tree[name]

    for members in layers:
        for m in members:
            name = m.name.rstrip("/")
            parent, _, base = name.rpartition("/")
            if base == ".wh..wh..opq":
                drop_below(parent, keep_self=True)
            elif base.startswith(".wh."):
                drop_below(f"{parent}/{base[4:]}" if parent else base[4:], keep_self=False)
            else:
                if name in tree and not (m.isdir() and tree[name].isdir()):
                    drop_below(name, keep_self=False)
                tree[name] = m
    return tree


def test_torture_layers_merge_into_the_expected_rootfs(torture_image: BuiltImage) -> None:
    layers = [_layer_members(torture_image, d) for d in torture_image.layer_digests]
    assert len(layers) == 2
    merged = _merge(layers)
    expected = images.torture_expected()
    present = {path for path, want in expected.items() if want is not None}
    assert set(merged) == present
    contents: dict[str, bytes] = {}
    with tarfile.open(
        fileobj=gzip.GzipFile(fileobj=_open_blob(torture_image, torture_image.layer_digests[1]))
    ) as tar:
        for m in tar.getmembers():
            if m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                contents[m.name] = f.read()
    with tarfile.open(
        fileobj=gzip.GzipFile(fileobj=_open_blob(torture_image, torture_image.layer_digests[0]))
    ) as tar:
        for m in tar.getmembers():
            if m.isreg() and m.name not in contents:
                f = tar.extractfile(m)
                assert f is not None
                contents[m.name] = f.read()
    kinds = {
        tarfile.REGTYPE: "file",
        tarfile.LNKTYPE: "file",
        tarfile.DIRTYPE: "dir",
        tarfile.SYMTYPE: "symlink",
        tarfile.FIFOTYPE: "fifo",
        tarfile.CHRTYPE: "char",
    }
    for path in sorted(present):
        want = expected[path]
        assert isinstance(want, ExpectedEntry)
        m = merged[path]
        assert kinds[m.type] == want.kind, path
        if m.islnk():
            assert m.linkname == want.hardlink_to, path
            assert contents[m.linkname] == want.content, path
            m = merged[m.linkname]
        elif want.hardlink_to is not None:
            raise AssertionError(f"{path} should be a hardlink")
        if want.kind != "symlink":
            assert m.mode == want.mode, path
        assert (m.uid, m.gid) == (want.uid, want.gid), path
        if want.kind == "file" and not merged[path].islnk():
            assert contents[path] == want.content, path
        if want.target is not None:
            assert m.linkname == want.target, path
        if want.rdev is not None:
            assert (m.devmajor, m.devminor) == want.rdev, path
        if want.mtime is not None:
            assert m.mtime == want.mtime, path
        xattrs = {
            k.removeprefix("SCHILY.xattr."): v.encode()
            for k, v in m.pax_headers.items()
            if k.startswith("SCHILY.xattr.")
        }
        assert xattrs == dict(want.xattrs), path


def test_torture_layer2_uses_both_whiteout_forms(torture_image: BuiltImage) -> None:
    names = [m.name for m in _layer_members(torture_image, torture_image.layer_digests[1])]
    assert "opaque/.wh..wh..opq" in names
    assert "data/.wh.to-delete.txt" in names
    assert ".wh.whole-dir" in names


def test_check_rootfs_reports_differences(tmp_path: Path) -> None:
    expected: dict[str, ExpectedEntry | None] = {
        "file": ExpectedEntry("file", 0o644, uid=os.getuid(), gid=os.getgid(), content=b"x"),
        "link": ExpectedEntry("symlink", 0o777, uid=os.getuid(), gid=os.getgid(), target="file"),
        "gone": None,
    }
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "file").chmod(0o644)
    (tmp_path / "link").symlink_to("file")
    assert images.check_rootfs(tmp_path, expected) == []
    (tmp_path / "gone").write_bytes(b"")
    (tmp_path / "file").write_bytes(b"y")
    (tmp_path / "extra").mkdir()
    problems = images.check_rootfs(tmp_path, expected)
    assert problems == [
        "file: content b'y', want b'x'",
        "gone: must not exist",
        "extra: not expected",
    ]


# ---------------------------------------------------------------------------------------------
# pure helpers


def test_apt_mirror_parsing() -> None:
    sources = (
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n"
    )
    assert images._mirror_in_sources(sources, "bookworm") == "http://mirror.example/debian"
    disabled = "Enabled: no\nTypes: deb\nURIs: http://x.example/debian\nSuites: bookworm\n"
    assert images._mirror_in_sources(disabled, "bookworm") is None
    listing = (
        "deb-src http://a/debian bookworm main\ndeb [arch=amd64] http://b/debian/ bookworm main\n"
    )
    assert images._mirror_in_list(listing, "bookworm") == "http://b/debian"
    assert images.apt_mirror().startswith(("http://", "https://", "file:/"))


@pytest.mark.parametrize(
    ("rel", "skipped"),
    [
        ("proc/1", True),
        ("proc", False),
        ("dev/null", True),
        ("var/lib/apt/lists/lock", True),
        ("var/lib/apt/lists", False),
        ("var/cache/apt/archives/bash_5.2_amd64.deb", True),
        ("var/cache/apt/archives/partial", False),
        ("var/cache/apt/pkgcache.bin", True),
        ("etc/resolv.conf", True),
        ("etc/hosts", False),
        ("usr/bin/bash", False),
    ],
)
def test_debian_rootfs_filter(rel: str, skipped: bool) -> None:
    assert images._debian_skip(rel) is skipped


def test_static_elf_detection() -> None:
    assert images._is_static_elf(Path("/bin/busybox"))
    assert not images._is_static_elf(Path(sys.executable).resolve())
    assert not images._is_static_elf(Path(__file__))


# ---------------------------------------------------------------------------------------------
# debian without a mirror: the newest older debootstrap cache is used


def _fake_rootfs_cache(cache: Path, date: str) -> Path:
    rootfs_cache = cache / f"debian-rootfs-{date}"
    for rel in ("etc", "usr/local/bin", "proc", "var/lib/apt/lists"):
        (rootfs_cache / "rootfs" / rel).mkdir(parents=True)
    (rootfs_cache / "rootfs" / "etc" / "os-release").write_text(f"fake {date}\n")
    (rootfs_cache / "rootfs" / "var/lib/apt/lists/lock").write_text("")
    (rootfs_cache / ".complete").write_text("{}")
    return rootfs_cache


def test_debian_falls_back_to_an_older_rootfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_TESTBED_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    _fake_rootfs_cache(tmp_path, "20000101")
    _fake_rootfs_cache(tmp_path, "20000102")
    image = images.debian(tmp_path)
    assert len(image.layer_digests) == 2
    bottom = {m.name for m in _layer_members(image, image.layer_digests[0])}
    assert bottom == {"etc", "etc/os-release", "usr", "usr/local", "usr/local/bin", "proc"} | {
        "var",
        "var/lib",
        "var/lib/apt",
        "var/lib/apt/lists",
    }
    top = {m.name: m for m in _layer_members(image, image.layer_digests[1])}
    assert top["usr/local/bin/hello"].mode == 0o755
    with tarfile.open(
        fileobj=gzip.GzipFile(fileobj=_open_blob(image, image.layer_digests[1]))
    ) as tar:
        release = tar.extractfile("etc/dockyard-release")
        assert release is not None
        assert b"debian-rootfs-20000102" in release.read()
    assert not list(tmp_path.glob(".*tmp-*"))  # the failed debootstrap left nothing behind
    config = _json_blob(image, image.config_digest)
    assert config["config"]["Cmd"] == ["bash"]


def test_debian_without_mirror_or_cache_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_TESTBED_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    with pytest.raises(images.ImageBuildError, match="debootstrap"):
        images.debian(tmp_path)
    assert not list(tmp_path.glob(".*tmp-*"))

"""`dockyard save`, `load` and `import` as a user runs them, against throwaway engine roots;
and the archives as podman, skopeo and docker see them (both ways)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images

pytestmark = pytest.mark.integration

DOCKYARD = [sys.executable, "-m", "dockyard.cli.main"]


class Engine:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, check: bool = True, stdin: bytes | None = None,
            stdin_file: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[bytes]:
        cmd = [*DOCKYARD, "--root", str(self.root), *args]
        if stdin_file is not None:
            with open(stdin_file, "rb") as f:
                proc = subprocess.run(cmd, stdin=f, capture_output=True, timeout=timeout,
                                      check=False)
        else:
            proc = subprocess.run(cmd, input=stdin if stdin is not None else b"",
                                  capture_output=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout.decode()}\n{proc.stderr.decode()}")
        return proc

    def out(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout.decode()  # type: ignore[arg-type]

    def service(self) -> object:
        from dockyard.engine.config import load_config
        from dockyard.engine.images import ImageService

        return ImageService(load_config(root=str(self.root)))

    def images(self) -> dict[str, tuple[str, ...]]:
        """image id -> its references (in-process: independent of the table renderer)."""
        svc = self.service()
        return {r.id: r.references for r in svc.images()}  # type: ignore[attr-defined]

    def blobs(self) -> set[str]:
        d = self.root / "content" / "blobs" / "sha256"
        return set(os.listdir(d)) if d.exists() else set()

    def assert_clean_tmp(self) -> None:
        tmp = self.root / "tmp"
        assert not tmp.exists() or os.listdir(tmp) == []


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "root")


@pytest.fixture
def engine2(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "root2")


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture(scope="module")
def torture() -> tb_images.BuiltImage:
    return tb_images.torture()


def _docker_archive(img: tb_images.BuiltImage) -> Path:
    assert img.docker_archive is not None
    return img.docker_archive


def _oci_tar(img: tb_images.BuiltImage, dest: Path) -> Path:
    with tarfile.open(dest, "w") as tar:
        for name in sorted(os.listdir(img.oci_layout)):
            tar.add(img.oci_layout / name, arcname=name)
    return dest


@pytest.fixture
def rootfs_of(engine: Engine) -> Iterator[object]:
    """Mount an image's layers read-only (overlay), yield the mount point; undone after."""
    from dockyard.image.mounter import mount_all, unmount

    done: list[tuple[Path, str]] = []

    def mount(image: str, where: Path) -> Path:
        svc = engine.service()
        rec = svc.resolve(image)  # type: ignore[attr-defined]
        key = f"check-{len(done)}"
        mounts = svc.snapshots.view(key, [la.chain_id for la in rec.layers])  # type: ignore[attr-defined]
        where.mkdir()
        mount_all(mounts, str(where))
        done.append((where, key))
        return where

    yield mount
    svc = engine.service()
    for where, key in done:
        unmount(str(where))
        svc.snapshots.remove(key)  # type: ignore[attr-defined]


# --- load ------------------------------------------------------------------------------------


def test_load_docker_archive(engine: Engine, busybox: tb_images.BuiltImage) -> None:
    out = engine.out("load", "-i", str(_docker_archive(busybox)))
    assert out == "Loaded image: busybox:latest\n"
    assert engine.images() == {busybox.config_digest: ("docker.io/library/busybox:latest",)}
    svc = engine.service()
    rec = svc.resolve("busybox")  # type: ignore[attr-defined]
    assert [la.diff_id for la in rec.layers] == list(busybox.diff_ids)
    assert svc.snapshots.has_layer(rec.layers[0].chain_id)  # type: ignore[attr-defined]
    # again, from stdin: the same image, nothing new
    blobs = engine.blobs()
    out = engine.out("load", stdin_file=_docker_archive(busybox))
    assert out == "Loaded image: busybox:latest\n"
    assert engine.blobs() == blobs
    engine.assert_clean_tmp()


def test_load_oci_layout_tar_dir_and_compressed(engine: Engine, busybox: tb_images.BuiltImage,
                                                tmp_path: Path) -> None:
    oci = _oci_tar(busybox, tmp_path / "oci.tar")
    # The testbed's index names the manifest "latest" only: a tag without a repository.
    out = engine.out("load", "-q", "-i", str(oci))
    assert out == f"Loaded image ID: {busybox.config_digest}\n"
    rec = engine.service().resolve(busybox.config_digest)  # type: ignore[attr-defined]
    assert rec.manifest_digest == busybox.manifest_digest
    assert [la.blob_digest for la in rec.layers] == list(busybox.layer_digests)
    assert engine.out("load", "-i", str(busybox.oci_layout)) == out
    gz = tmp_path / "oci.tar.gz"
    gz.write_bytes(gzip.compress(oci.read_bytes(), compresslevel=1))
    assert engine.out("load", stdin_file=gz) == out
    assert list(engine.images()) == [busybox.config_digest]
    engine.assert_clean_tmp()


def test_torture_layers_unpack(engine: Engine, torture: tb_images.BuiltImage,
                               rootfs_of: object, tmp_path: Path) -> None:
    assert engine.out("load", "-i", str(_docker_archive(torture))) == \
        "Loaded image: torture:latest\n"
    rootfs = rootfs_of("torture", tmp_path / "mnt")  # type: ignore[operator]
    assert tb_images.check_rootfs(rootfs) == []


def test_torture_from_oci_layout(engine: Engine, torture: tb_images.BuiltImage,
                                 rootfs_of: object, tmp_path: Path) -> None:
    engine.out("load", "-i", str(_oci_tar(torture, tmp_path / "t.tar")))
    rootfs = rootfs_of(torture.config_digest, tmp_path / "mnt")  # type: ignore[operator]
    assert tb_images.check_rootfs(rootfs) == []


# --- save ------------------------------------------------------------------------------------


def test_save_load_round_trip(engine: Engine, engine2: Engine, busybox: tb_images.BuiltImage,
                              torture: tb_images.BuiltImage, tmp_path: Path) -> None:
    engine.out("load", "-i", str(_docker_archive(busybox)))
    engine.out("load", "-i", str(_docker_archive(torture)))
    engine.out("tag", "busybox", "example.com/team/box:v1")
    saved = tmp_path / "saved.tar"
    engine.out("save", "-o", str(saved), "busybox", "torture:latest",
               "example.com/team/box:v1")
    with tarfile.open(saved) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= names
    assert sorted(t for e in manifest for t in e["RepoTags"]) == \
        ["busybox:latest", "example.com/team/box:v1", "torture:latest"]
    # deterministic, and the same to stdout
    again = engine.run("save", "busybox", "torture:latest", "example.com/team/box:v1").stdout
    assert again == saved.read_bytes()

    out = engine2.out("load", "-i", str(saved)).splitlines()
    assert sorted(out) == ["Loaded image: busybox:latest",
                           "Loaded image: example.com/team/box:v1",
                           "Loaded image: torture:latest"]
    assert engine2.images() == engine.images()
    a = engine.service().resolve("torture")  # type: ignore[attr-defined]
    b = engine2.service().resolve("torture")  # type: ignore[attr-defined]
    assert (a.id, a.manifest_digest, a.layers) == (b.id, b.manifest_digest, b.layers)


def test_save_by_id_and_repository(engine: Engine, engine2: Engine,
                                   busybox: tb_images.BuiltImage, tmp_path: Path) -> None:
    engine.out("load", "-i", str(_docker_archive(busybox)))
    engine.out("tag", "busybox", "busybox:other")
    out = engine.run("save", busybox.config_digest[7:19]).stdout
    assert engine2.out("load", stdin=out) == f"Loaded image ID: {busybox.config_digest}\n"
    out = engine.run("save", "busybox").stdout       # no tag: every tag of the repository
    assert sorted(engine2.out("load", stdin=out).splitlines()) == \
        ["Loaded image: busybox:latest", "Loaded image: busybox:other"]


def test_save_errors(engine: Engine, busybox: tb_images.BuiltImage, tmp_path: Path) -> None:
    proc = engine.run("save", "-o", str(tmp_path / "x.tar"), "nosuch", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode() == "Error: No such image: nosuch\n"
    assert not (tmp_path / "x.tar").exists()
    assert not any(n.startswith(".dockyard-save") for n in os.listdir(tmp_path))
    proc = engine.run("save", check=False)
    assert proc.returncode == 125
    engine.out("load", "-i", str(_docker_archive(busybox)))
    # a terminal on stdout
    primary, secondary = os.openpty()
    try:
        proc2 = subprocess.run([*DOCKYARD, "--root", str(engine.root), "save", "busybox"],
                               stdout=secondary, stderr=subprocess.PIPE, timeout=60,
                               check=False)
    finally:
        os.close(secondary)
        os.close(primary)
    assert proc2.returncode == 1
    assert b"cowardly refusing to save to a terminal. Use the -o flag or redirect" in \
        proc2.stderr


# --- other tools ---------------------------------------------------------------------------


def _skopeo(*args: str) -> dict[str, object]:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120,
                          check=True)
    doc: dict[str, object] = json.loads(proc.stdout)
    return doc


def test_skopeo_reads_save(engine: Engine, busybox: tb_images.BuiltImage,
                           tmp_path: Path) -> None:
    # From the OCI layout: the layers stay gzip-compressed blobs in the saved archive.
    engine.out("load", "-i", str(busybox.oci_layout))
    engine.out("tag", busybox.config_digest, "busybox")
    saved = tmp_path / "saved.tar"
    engine.out("save", "-o", str(saved), "busybox")
    doc = _skopeo("inspect", f"docker-archive:{saved}")
    assert doc["Layers"] == list(busybox.diff_ids)   # skopeo reports the uncompressed layers
    doc = _skopeo("inspect", f"oci-archive:{saved}")
    assert doc["Digest"] == busybox.manifest_digest
    assert doc["Layers"] == list(busybox.layer_digests)
    cfg = _skopeo("inspect", "--config", f"oci-archive:{saved}")
    assert hashlib.sha256(json.dumps(cfg).encode()).hexdigest()  # parses as a config
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": list(busybox.diff_ids)}


@pytest.fixture
def podman() -> Iterator[object]:
    from testbed.podman import remove_podman, start_podman

    p = start_podman()
    try:
        yield p
    finally:
        remove_podman(p)


def test_podman_loads_save_and_runs_it(engine: Engine, busybox: tb_images.BuiltImage,
                                       podman: object, tmp_path: Path) -> None:
    engine.out("load", "-i", str(_docker_archive(busybox)))
    saved = tmp_path / "saved.tar"
    engine.out("save", "-o", str(saved), "busybox")
    name = podman.load(saved)  # type: ignore[attr-defined]
    assert name == "docker.io/library/busybox:latest"
    ids = podman.run("images", "-q", "--no-trunc", check=True).stdout.split()  # type: ignore[attr-defined]
    assert ids == [busybox.config_digest]
    run = podman.run("run", "--rm", "busybox", "echo", "hi", timeout=120)  # type: ignore[attr-defined]
    assert (run.returncode, run.stdout) == (0, "hi\n"), run.stderr


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_loads(engine: Engine, torture: tb_images.BuiltImage, podman: object,
                           fmt: str, tmp_path: Path, rootfs_of: object) -> None:
    name = podman.load(_docker_archive(torture))  # type: ignore[attr-defined]
    assert name == "localhost/torture:latest"     # podman's name for a short "torture:latest"
    out = tmp_path / "podman.tar"
    podman.run("save", "--format", fmt, "-o", str(out), name, check=True,  # type: ignore[attr-defined]
               timeout=120)
    assert engine.out("load", "-i", str(out)) == f"Loaded image: {name}\n"
    ((image_id, refs),) = engine.images().items()
    assert refs == (name,)
    if fmt == "docker-archive":     # podman's oci-archive rewrites the config (another id)
        assert image_id == torture.config_digest
    rootfs = rootfs_of(name, tmp_path / "mnt")  # type: ignore[operator]
    assert tb_images.check_rootfs(rootfs) == []


def test_docker_loads_save(engine: Engine, busybox: tb_images.BuiltImage,
                           tmp_path: Path) -> None:
    from testbed.dockerd import start_dockerd, stop_dockerd

    engine.out("load", "-i", str(_docker_archive(busybox)))
    saved = tmp_path / "saved.tar"
    engine.out("save", "-o", str(saved), "busybox")
    daemon = start_dockerd()
    try:
        assert daemon.load(saved) == "busybox:latest"
        ids = daemon.run("images", "-q", "--no-trunc", check=True).stdout.split()
        assert ids == [busybox.config_digest]
        back = tmp_path / "docker.tar"
        daemon.run("save", "-o", str(back), "busybox", check=True)
    finally:
        stop_dockerd(daemon)
    engine2 = Engine(tmp_path / "root2")
    assert engine2.out("load", "-i", str(back)) == "Loaded image: busybox:latest\n"
    assert list(engine2.images()) == [busybox.config_digest]


# --- import ----------------------------------------------------------------------------------


def _layer_tar(img: tb_images.BuiltImage) -> bytes:
    with tarfile.open(_docker_archive(img)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        return tar.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]


def test_import_rootfs(engine: Engine, busybox: tb_images.BuiltImage, tmp_path: Path,
                       rootfs_of: object) -> None:
    layer = _layer_tar(busybox)
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(layer, compresslevel=1))
    out = engine.out("import", "-c", 'CMD ["/bin/sh", "-c", "echo hi"]',
                     "-c", 'ENV A=1 B="two words"', "--change", "WORKDIR /srv",
                     "-c", "EXPOSE 80 53/udp", "-c", "USER nobody",
                     "-c", "LABEL a=b", "-c", "ENTRYPOINT /bin/env", "-m", "from a test",
                     str(src), "example.com/imported:v1")
    image_id = out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    svc = engine.service()
    rec = svc.resolve("example.com/imported:v1")  # type: ignore[attr-defined]
    assert rec.id == image_id
    assert [la.diff_id for la in rec.layers] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    raw = svc.raw_config(rec)  # type: ignore[attr-defined]
    assert raw["os"] == "linux" and raw["architecture"]
    assert raw["config"] == {
        "Cmd": ["/bin/sh", "-c", "echo hi"], "Env": ["A=1", "B=two words"],
        "WorkingDir": "/srv", "ExposedPorts": {"80/tcp": {}, "53/udp": {}}, "User": "nobody",
        "Labels": {"a": "b"}, "Entrypoint": ["/bin/sh", "-c", "/bin/env"]}
    assert raw["history"][0]["comment"] == "from a test"
    rootfs = rootfs_of("example.com/imported:v1", tmp_path / "mnt")  # type: ignore[operator]
    assert (rootfs / "bin" / "busybox").is_file()
    # stdin, uncompressed, no name
    out = engine.out("import", "-", stdin=layer)
    other = out.strip()
    assert other.startswith("sha256:") and other != image_id   # created differs
    assert engine.images()[other] == ()
    assert svc.raw_config(svc.resolve(other))["history"][0]["comment"] == "Imported from -"  # type: ignore[attr-defined]
    engine.assert_clean_tmp()


def test_import_errors(engine: Engine, tmp_path: Path) -> None:
    src = tmp_path / "r.tar"
    with tarfile.open(src, "w") as tar:
        tar.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    proc = engine.run("import", "-c", "FROM x", str(src), check=False)
    assert (proc.returncode, proc.stderr.decode()) == \
        (1, "Error: FROM is not a valid change command\n")
    proc = engine.run("import", str(tmp_path / "missing.tar"), check=False)
    assert proc.returncode == 1 and b"no such file" in proc.stderr
    proc = engine.run("import", "-", stdin=b"", check=False)
    assert proc.returncode == 1 and b"empty" in proc.stderr
    proc = engine.run("import", "-", stdin=b"this is not a tar file" * 100, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(b"Error: ") and b"Traceback" not in proc.stderr
    assert engine.images() == {}
    engine.assert_clean_tmp()


# --- bad archives ------------------------------------------------------------------------------


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _docker_members(img: tb_images.BuiltImage) -> dict[str, bytes]:
    out = {}
    with tarfile.open(_docker_archive(img)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


def _oci_with(img: tb_images.BuiltImage, path: Path, *, size: int = 0,
              digest: str = "") -> Path:
    """The image's OCI layout as a tar, its layer descriptor changed (size + ``size``, or
    another digest)."""
    blobs = img.oci_layout / "blobs" / "sha256"
    manifest = json.loads((blobs / img.manifest_digest[7:]).read_bytes())
    layer = manifest["layers"][0]
    layer["size"] += size
    if digest:
        layer["digest"] = f"sha256:{digest}"
    raw = json.dumps(manifest).encode()
    index = json.loads((img.oci_layout / "index.json").read_bytes())
    index["manifests"][0].update(digest=f"sha256:{hashlib.sha256(raw).hexdigest()}",
                                 size=len(raw))
    members = {"oci-layout": (img.oci_layout / "oci-layout").read_bytes(),
               "index.json": json.dumps(index).encode(),
               f"blobs/sha256/{hashlib.sha256(raw).hexdigest()}": raw}
    for blob in blobs.iterdir():
        members[f"blobs/sha256/{blob.name}"] = blob.read_bytes()
    return _tar(path, members)


def _bad_archives(busybox: tb_images.BuiltImage, tmp: Path) -> dict[str, tuple[Path, str]]:
    good = _docker_members(busybox)
    manifest = json.loads(good["manifest.json"])
    layer_name = manifest[0]["Layers"][0]
    cases: dict[str, tuple[Path, str]] = {}
    not_tar = tmp / "not.tar"
    not_tar.write_bytes(b"hello world\n" * 200)
    cases["not a tar"] = (not_tar, "not a tar file")
    cases["escape"] = (_tar(tmp / "escape.tar", {**good, "../evil": b"x"}),
                       "points outside the archive")
    missing = dict(good)
    del missing[layer_name]
    cases["missing layer"] = (_tar(tmp / "missing.tar", missing), "is missing")
    wrong = dict(good)
    wrong[layer_name] = good[layer_name][:-1024] + b"\0" * 1024 + b"\0" * 512  # other bytes
    cases["diff_id mismatch"] = (_tar(tmp / "wrong.tar", wrong),
                                 "does not match the image config")
    gz = dict(good)
    bogus = bytearray(good[layer_name])
    with tarfile.open(fileobj=io.BytesIO(good[layer_name])) as layer:
        first = next(m for m in layer if m.isfile() and m.size > 0)
    bogus[first.offset_data] ^= 0xFF     # a file's content: still a tar, another diff_id
    gz[layer_name] = gzip.compress(bytes(bogus), compresslevel=1)
    cases["gzip diff_id mismatch"] = (_tar(tmp / "gz.tar", gz), "diff_id")
    cases["oci size lie"] = (_oci_with(busybox, tmp / "size.tar", size=1),
                             "its descriptor says")
    cases["oci missing blob"] = (_oci_with(busybox, tmp / "blob.tar", digest="0" * 64),
                                 "is missing")
    cases["no manifest"] = (_tar(tmp / "none.tar", {"hello": b"x"}), "no manifest.json")
    bad_json = {**good, "manifest.json": b"[{"}
    cases["bad json"] = (_tar(tmp / "json.tar", bad_json), "not valid JSON")
    return cases


def test_bad_archives_leave_nothing(engine: Engine, busybox: tb_images.BuiltImage,
                                    tmp_path: Path) -> None:
    cases = _bad_archives(busybox, tmp_path)
    for what, (path, message) in cases.items():
        proc = engine.run("load", "-i", str(path), check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, (what, err)
        assert err.startswith("Error: ") and "Traceback" not in err, (what, err)
        assert message in err, (what, err)
        assert engine.images() == {}, what
        assert engine.blobs() == set(), (what, engine.blobs())
        engine.assert_clean_tmp()
        proc = engine.run("load", stdin_file=path, check=False)
        assert proc.returncode == 1, (what, proc.stderr)
        engine.assert_clean_tmp()
    # and the good archive still loads afterwards
    assert engine.out("load", "-i", str(_docker_archive(busybox))) == \
        "Loaded image: busybox:latest\n"


def test_load_usage(engine: Engine) -> None:
    proc = engine.run("load", "-i", "/nonexistent/x.tar", check=False)
    assert proc.returncode == 1
    assert proc.stderr.decode().startswith("Error: open /nonexistent/x.tar")
    proc = engine.run("load", "--bogus", check=False)
    assert proc.returncode == 125
    proc = engine.run("load", stdin=b"", check=False)
    assert proc.returncode == 1 and b"empty" in proc.stderr

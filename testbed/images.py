"""The offline image factory: deterministic OCI images for the tests and the demo.

This module owns three images, built without a registry and cached on disk:

``busybox``
    One layer: the host's static ``/bin/busybox``, a hardlink per applet, a minimal
    ``/etc/passwd`` and ``/etc/group``, and the usual empty mount points.
``debian``
    A ``debootstrap --variant=minbase bookworm`` rootfs (layer 1, rebuilt once per UTC day) with
    a few files added on top (layer 2).
``torture``
    A synthetic two-layer image that exercises what an unpacker must get right: whiteouts,
    opaque directories, hardlinks, symlinks, device nodes, fifos, xattrs, setuid/setgid bits,
    ownership, mtimes and awkward names. :func:`torture_expected` describes the merged rootfs.

Every image is written as an OCI image layout and as a ``docker save`` archive. Layer tars are
built entry by entry with fixed metadata (uid/gid from the recipe, no user/group names, mtime 0
unless a recipe says otherwise) and gzip-compressed with mtime 0, so the same inputs give the same
digests on every run.

The cache is ``<cache_dir>/<name>-<key>/`` where ``key`` hashes :data:`RECIPE_VERSION` and the
recipe's inputs. A build takes ``<name>-<key>.lock`` (``flock``), writes into a temporary
directory beside the target, writes ``.complete`` last and renames the directory into place, so a
concurrent reader sees either nothing or a whole image. Bump :data:`RECIPE_VERSION` whenever a
recipe below changes.

The debian recipe also keeps its debootstrap output in ``<cache_dir>/debian-rootfs-YYYYMMDD/``
(UTC date; the same lock-and-rename dance). When today's is missing and debootstrap fails (no
network), the newest older one is used. Only the two newest are kept. The mirror is
``$DOCKYARD_TESTBED_DEBIAN_MIRROR``, else the machine's apt sources, else deb.debian.org.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import fcntl
import gzip
import hashlib
import io
import json
import logging
import os
import platform
import re
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

#: Bump whenever a recipe changes, so every cached image is rebuilt.
RECIPE_VERSION = 2

TAG = "latest"
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

DEFAULT_CACHE_DIR = Path("/var/cache/dockyard-testbed")
CACHE_ENV = "DOCKYARD_TESTBED_CACHE"

DEBIAN_SUITE = "bookworm"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "DOCKYARD_TESTBED_DEBIAN_MIRROR"
DEBOOTSTRAP_TIMEOUT = 1800.0
#: Daily debootstrap rootfs caches to keep; older ones are pruned after a new one is made.
DEBIAN_ROOTFS_KEEP = 2
#: Debian images (other than the current one) older than this are pruned.
DEBIAN_IMAGE_MAX_AGE = 3 * 24 * 3600.0

_OCI_DIR = "oci"
_DOCKER_ARCHIVE = "docker-archive.tar"
_COMPLETE = ".complete"
_GZIP_LEVEL = 6
_COPY_CHUNK = 1 << 20


class ImageBuildError(RuntimeError):
    """An image could not be built (missing tool, failed debootstrap, unreadable input)."""


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """A built, cached image: where its layout and archive are, and its digests."""

    name: str
    tag: str
    oci_layout: Path
    docker_archive: Path | None
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]
    diff_ids: tuple[str, ...]


def default_cache_dir() -> Path:
    """``$DOCKYARD_TESTBED_CACHE`` if set, else ``/var/cache/dockyard-testbed``."""
    value = os.environ.get(CACHE_ENV)
    return Path(value) if value else DEFAULT_CACHE_DIR


# --------------------------------------------------------------------------------------------
# Layer writing


class LayerWriter:
    """Adds entries with fixed metadata to one layer tar (PAX format, so xattrs survive)."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self._tar = tar
        self._entries: dict[str, tarfile.TarInfo] = {}

    def add(self, info: tarfile.TarInfo, data: io.BufferedIOBase | None = None) -> None:
        self._tar.addfile(info, data)
        self._entries[info.name] = info

    @staticmethod
    def _info(
        name: str,
        kind: bytes,
        mode: int,
        *,
        uid: int = 0,
        gid: int = 0,
        mtime: int = EPOCH,
        xattrs: Mapping[str, bytes] | None = None,
    ) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid = uid
        info.gid = gid
        info.uname = ""
        info.gname = ""
        info.mtime = mtime
        if xattrs:
            info.pax_headers = _xattr_pax_headers(xattrs)
        return info

    def directory(
        self, name: str, mode: int = 0o755, *, uid: int = 0, gid: int = 0, mtime: int = EPOCH
    ) -> None:
        self.add(self._info(name, tarfile.DIRTYPE, mode, uid=uid, gid=gid, mtime=mtime))

    def file(
        self,
        name: str,
        content: bytes,
        mode: int = 0o644,
        *,
        uid: int = 0,
        gid: int = 0,
        mtime: int = EPOCH,
        xattrs: Mapping[str, bytes] | None = None,
    ) -> None:
        info = self._info(name, tarfile.REGTYPE, mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs)
        info.size = len(content)
        self.add(info, io.BytesIO(content))

    def symlink(self, name: str, target: str, *, uid: int = 0, gid: int = 0) -> None:
        info = self._info(name, tarfile.SYMTYPE, 0o777, uid=uid, gid=gid)
        info.linkname = target
        self.add(info)

    def hardlink(self, name: str, target: str) -> None:
        """A hardlink to ``target``, an earlier entry of the same layer."""
        # As GNU tar and Go's archive/tar write it: a hardlink header carries its inode's mode
        # and owner. Extractors chmod/chown through the link, so anything else changes the file.
        src = self._entries.get(target)
        if src is None:
            raise ImageBuildError(f"hardlink {name}: target {target} is not in this layer")
        info = self._info(name, tarfile.LNKTYPE, src.mode, uid=src.uid, gid=src.gid,
                          mtime=int(src.mtime))
        info.linkname = target
        self.add(info)

    def fifo(self, name: str, mode: int = 0o644, *, uid: int = 0, gid: int = 0) -> None:
        self.add(self._info(name, tarfile.FIFOTYPE, mode, uid=uid, gid=gid))

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o666) -> None:
        info = self._info(name, tarfile.CHRTYPE, mode)
        info.devmajor = major
        info.devminor = minor
        self.add(info)

    def whiteout(self, path: str) -> None:
        """An AUFS whiteout deleting ``path`` from the layers below."""
        parent, _, base = path.rpartition("/")
        self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"", mode=0o644)

    def opaque(self, directory: str) -> None:
        """Marks ``directory`` opaque: nothing below it in lower layers shows through."""
        self.file(f"{directory}/.wh..wh..opq", b"", mode=0o644)


def _xattr_pax_headers(xattrs: Mapping[str, bytes]) -> dict[str, str]:
    # tarfile writes a value it cannot encode as UTF-8 with hdrcharset=BINARY, which is how
    # binary xattrs (security.capability) round-trip through surrogateescape.
    return {
        f"SCHILY.xattr.{key}": value.decode("utf-8", "surrogateescape")
        for key, value in sorted(xattrs.items())
    }


def _add_tree(writer: LayerWriter, root: Path, skip: Callable[[str], bool]) -> None:
    """Adds everything below ``root`` (not ``root`` itself), sorted, depth first.

    ``skip(relpath)`` drops an entry and, for a directory, everything below it. A second name for
    an inode already added becomes a hardlink to the first name.
    """
    first_name: dict[tuple[int, int], str] = {}

    def walk(rel_dir: str) -> None:
        with os.scandir(root / rel_dir if rel_dir else root) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if skip(rel):
                continue
            path = root / rel
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = st.st_uid
            info.gid = st.st_gid
            info.uname = ""
            info.gname = ""
            info.mtime = int(st.st_mtime)
            xattrs = _read_xattrs(path)
            if xattrs:
                info.pax_headers = _xattr_pax_headers(xattrs)
            if fmt == stat.S_IFREG and st.st_nlink > 1 and (st.st_dev, st.st_ino) in first_name:
                info.type = tarfile.LNKTYPE
                info.linkname = first_name[(st.st_dev, st.st_ino)]
                writer.add(info)
            elif fmt == stat.S_IFREG:
                if st.st_nlink > 1:
                    first_name[(st.st_dev, st.st_ino)] = rel
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                with open(path, "rb") as data:
                    writer.add(info, data)
            elif fmt == stat.S_IFDIR:
                info.type = tarfile.DIRTYPE
                writer.add(info)
                walk(rel)
            elif fmt == stat.S_IFLNK:
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                writer.add(info)
            elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
                info.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
                info.devmajor = os.major(st.st_rdev)
                info.devminor = os.minor(st.st_rdev)
                writer.add(info)
            elif fmt == stat.S_IFIFO:
                info.type = tarfile.FIFOTYPE
                writer.add(info)
            else:
                log.debug("not adding %s to a layer: sockets cannot be archived", path)

    walk("")


def _read_xattrs(path: Path) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}  # the filesystem has no xattrs at all
        raise
    return {name: os.getxattr(path, name, follow_symlinks=False) for name in names}


# --------------------------------------------------------------------------------------------
# Recipes and the image writer


LayerRecipe = Callable[[LayerWriter], None]


@dataclass(frozen=True, slots=True)
class _Layer:
    created_by: str
    write: LayerRecipe


@dataclass(frozen=True, slots=True)
class _Recipe:
    name: str
    inputs: tuple[str, ...]
    layers: tuple[_Layer, ...]
    cmd: tuple[str, ...]


def host_architecture() -> tuple[str, str | None]:
    """The OCI architecture (and variant) of this machine, from ``uname -m``."""
    machine = platform.machine()
    table: dict[str, tuple[str, str | None]] = {
        "x86_64": ("amd64", None),
        "amd64": ("amd64", None),
        "aarch64": ("arm64", None),
        "arm64": ("arm64", None),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i386": ("386", None),
        "i686": ("386", None),
        "ppc64le": ("ppc64le", None),
        "s390x": ("s390x", None),
        "riscv64": ("riscv64", None),
    }
    if machine not in table:
        raise ImageBuildError(f"no OCI architecture known for machine {machine!r}")
    return table[machine]


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _put_blob(blobs: Path, data: bytes, media_type: str) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = blobs / digest.removeprefix("sha256:")
    path.write_bytes(data)
    _fsync_file(path)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _gzip_blob(tar_path: Path, blobs: Path) -> dict[str, Any]:
    staging = blobs / ".ingest"
    with open(tar_path, "rb") as src, open(staging, "wb") as raw:
        # filename="" and mtime=0 keep the gzip header free of anything run-specific.
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0
        ) as gz:
            shutil.copyfileobj(src, gz, _COPY_CHUNK)
        raw.flush()
        os.fsync(raw.fileno())
    digest = _sha256_file(staging)
    size = staging.stat().st_size
    staging.rename(blobs / digest.removeprefix("sha256:"))
    return {"mediaType": MEDIA_TYPE_LAYER, "digest": digest, "size": size}


def _write_layer_tar(layer: _Layer, path: Path) -> None:
    with open(path, "wb") as raw:
        with tarfile.open(
            fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8"
        ) as tar:
            layer.write(LayerWriter(tar))
        raw.flush()
        os.fsync(raw.fileno())


def _chain_ids(diff_ids: list[str]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def _write_image(recipe: _Recipe, out: Path) -> None:
    layout = out / _OCI_DIR
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    work = out / ".layers"
    work.mkdir()

    arch, variant = host_architecture()
    tar_paths: list[Path] = []
    diff_ids: list[str] = []
    layer_descs: list[dict[str, Any]] = []
    for i, layer in enumerate(recipe.layers):
        tar_path = work / f"{i}.tar"
        _write_layer_tar(layer, tar_path)
        tar_paths.append(tar_path)
        diff_ids.append(_sha256_file(tar_path))
        layer_descs.append(_gzip_blob(tar_path, blobs))

    config: dict[str, Any] = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": list(recipe.cmd)},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": layer.created_by, "comment": "dockyard testbed"}
            for layer in recipe.layers
        ],
    }
    platform_desc: dict[str, str] = {"architecture": arch, "os": "linux"}
    if variant:
        config["variant"] = variant
        platform_desc["variant"] = variant
    config_bytes = _canonical_json(config)
    config_desc = _put_blob(blobs, config_bytes, MEDIA_TYPE_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    manifest_desc = _put_blob(blobs, _canonical_json(manifest), MEDIA_TYPE_MANIFEST)
    manifest_desc["annotations"] = {ANNOTATION_REF_NAME: TAG}
    manifest_desc["platform"] = platform_desc
    index = {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": [manifest_desc]}
    (layout / "index.json").write_bytes(_canonical_json(index))
    (layout / "oci-layout").write_bytes(_canonical_json({"imageLayoutVersion": "1.0.0"}))

    _write_docker_archive(
        out / _DOCKER_ARCHIVE,
        repo_tag=(recipe.name, TAG),
        config_bytes=config_bytes,
        config_digest=config_desc["digest"],
        layer_tars=tar_paths,
        diff_ids=diff_ids,
    )
    shutil.rmtree(work)


def _write_docker_archive(
    path: Path,
    *,
    repo_tag: tuple[str, str],
    config_bytes: bytes,
    config_digest: str,
    layer_tars: list[Path],
    diff_ids: list[str],
) -> None:
    """Writes the classic ``docker save`` layout: ``<id>/layer.tar``, config, manifest.json."""
    layer_ids = [chain.removeprefix("sha256:") for chain in _chain_ids(diff_ids)]
    config_name = config_digest.removeprefix("sha256:") + ".json"
    repo, tag = repo_tag
    manifest = [
        {
            "Config": config_name,
            "RepoTags": [f"{repo}:{tag}"],
            "Layers": [f"{layer_id}/layer.tar" for layer_id in layer_ids],
        }
    ]
    repositories = {repo: {tag: layer_ids[-1]}}

    def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.size = size
        info.mtime = EPOCH
        return info

    with open(path, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(member(config_name, size=len(config_bytes)), io.BytesIO(config_bytes))
            done: set[str] = set()
            for layer_id, layer_tar in zip(layer_ids, layer_tars, strict=True):
                if layer_id in done:
                    continue
                done.add(layer_id)
                tar.addfile(member(layer_id, tarfile.DIRTYPE))
                tar.addfile(member(f"{layer_id}/VERSION", size=3), io.BytesIO(b"1.0"))
                with open(layer_tar, "rb") as data:
                    size = os.fstat(data.fileno()).st_size
                    tar.addfile(member(f"{layer_id}/layer.tar", size=size), data)
            for name, value in (("manifest.json", manifest), ("repositories", repositories)):
                data_bytes = _canonical_json(value)
                tar.addfile(member(name, size=len(data_bytes)), io.BytesIO(data_bytes))
        raw.flush()
        os.fsync(raw.fileno())


def _load(name: str, image_dir: Path) -> BuiltImage:
    layout = image_dir / _OCI_DIR
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_bytes())
    descs = [
        d for d in index["manifests"] if d.get("annotations", {}).get(ANNOTATION_REF_NAME) == TAG
    ]
    if len(descs) != 1:
        raise ImageBuildError(f"{layout}/index.json has no single manifest tagged {TAG!r}")
    manifest_digest: str = descs[0]["digest"]
    manifest = json.loads((blobs / manifest_digest.removeprefix("sha256:")).read_bytes())
    config_digest: str = manifest["config"]["digest"]
    config = json.loads((blobs / config_digest.removeprefix("sha256:")).read_bytes())
    archive = image_dir / _DOCKER_ARCHIVE
    return BuiltImage(
        name=name,
        tag=TAG,
        oci_layout=layout,
        docker_archive=archive if archive.exists() else None,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layer_digests=tuple(layer["digest"] for layer in manifest["layers"]),
        diff_ids=tuple(config["rootfs"]["diff_ids"]),
    )


def _cache_key(recipe: _Recipe) -> str:
    arch, variant = host_architecture()
    material = _canonical_json([RECIPE_VERSION, recipe.name, TAG, arch, variant, *recipe.inputs])
    return hashlib.sha256(material).hexdigest()[:16]


def _build_cached(
    recipe: _Recipe, cache_dir: Path, hold: Callable[[], contextlib.AbstractContextManager[Any]]
) -> BuiltImage:
    """Returns the cached image for ``recipe``, building it first if needed.

    ``hold`` is entered around the build itself (the debian recipe uses it to keep its rootfs
    from being pruned while it is read).
    """
    stem = f"{recipe.name}-{_cache_key(recipe)}"
    target = cache_dir / stem
    if (target / _COMPLETE).exists():
        return _load(recipe.name, target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _flock(cache_dir / f"{stem}.lock"):
        if (target / _COMPLETE).exists():
            return _load(recipe.name, target)
        # We hold the lock, so any leftover is from a build that died.
        if target.exists():
            _remove_tree(target)
        for stale in cache_dir.glob(f".{stem}.tmp-*"):
            _remove_tree(stale)
        log.info("building the %s image into %s", recipe.name, target)
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=cache_dir))
        try:
            tmp.chmod(0o755)
            with hold():
                _write_image(recipe, tmp)
            (tmp / _COMPLETE).write_bytes(
                _canonical_json({"recipe": RECIPE_VERSION, "inputs": list(recipe.inputs)})
            )
            _fsync_file(tmp / _COMPLETE)
            tmp.rename(target)
            _fsync_file(cache_dir)
        except BaseException:
            _remove_tree(tmp)
            raise
        log.info("built the %s image in %.1fs", recipe.name, time.monotonic() - started)
    return _load(recipe.name, target)


# --------------------------------------------------------------------------------------------
# Locks, mounts and removal


@contextlib.contextmanager
def _flock(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Holds an ``flock`` on ``path``; yields False if ``blocking`` is off and it is taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            op |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, op)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _mount_points_below(path: Path) -> list[str]:
    real = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == real or point.startswith(real + "/"):
                found.append(point)
    # Deepest first, so nested mounts come off before their parents.
    return sorted(found, key=len, reverse=True)


def _unmount_below(path: Path) -> None:
    for point in _mount_points_below(path):
        log.warning("unmounting %s left behind below %s", point, path)
        subprocess.run(["umount", "--lazy", point], check=False)
    left = _mount_points_below(path)
    if left:
        raise ImageBuildError(f"cannot unmount {', '.join(left)}; refusing to touch {path}")


def _remove_tree(path: Path) -> None:
    """``rm -rf`` that never descends into a mount (debootstrap mounts /proc and /sys)."""
    if not path.exists():
        return
    _unmount_below(path)
    shutil.rmtree(path)


# --------------------------------------------------------------------------------------------
# busybox

_BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

_BUSYBOX_DIRS: dict[str, int] = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}
_BUSYBOX_PASSWD = (
    b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_BUSYBOX_GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def _is_static_elf(path: Path) -> bool:
    """True if ``path`` is an ELF executable without a program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF":
            return False
        end = "<" if header[5] == 1 else ">"
        if header[4] == 2:
            (phoff,) = struct.unpack_from(end + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", header, 0x36)
        else:
            (phoff,) = struct.unpack_from(end + "I", header, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", header, 0x2A)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(
        struct.unpack_from(end + "I", table, i * phentsize)[0] != pt_interp for i in range(phnum)
    )


def _find_busybox() -> Path:
    for candidate in _BUSYBOX_CANDIDATES:
        if candidate.is_file() and _is_static_elf(candidate):
            return candidate
    raise ImageBuildError(
        "no static busybox found at /bin/busybox; install the busybox-static package"
    )


def _busybox_recipe() -> _Recipe:
    source = _find_busybox()
    binary = source.read_bytes()
    listing = subprocess.run(
        [str(source), "--list-full"], check=True, capture_output=True, text=True
    ).stdout
    applets = sorted({line.strip().lstrip("/") for line in listing.splitlines() if line.strip()})
    # linuxrc is the initrd init applet; it has no place at the root of a container image.
    applets = [a for a in applets if a not in ("bin/busybox", "linuxrc")]

    dirs = dict(_BUSYBOX_DIRS)
    for applet in applets:
        parent = applet.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = parent.rpartition("/")[0]

    def write(w: LayerWriter) -> None:
        for name in sorted(dirs):
            w.directory(name, dirs[name])
        w.file("bin/busybox", binary, mode=0o755)
        # Hardlinks, as in Docker Hub's busybox: one inode, every applet name.
        for applet in applets:
            w.hardlink(applet, "bin/busybox")
        w.file("etc/group", _BUSYBOX_GROUP)
        w.file("etc/passwd", _BUSYBOX_PASSWD)

    digest = "sha256:" + hashlib.sha256(binary).hexdigest()
    return _Recipe(
        name="busybox",
        inputs=(digest,),
        layers=(_Layer(f"COPY {source} /bin/busybox + {len(applets)} applet links", write),),
        cmd=("sh",),
    )


def busybox(cache_dir: Path | None = None) -> BuiltImage:
    """The one-layer busybox image, built from the host's static busybox."""
    return _build_cached(
        _busybox_recipe(), cache_dir or default_cache_dir(), contextlib.nullcontext
    )


# --------------------------------------------------------------------------------------------
# debian


def apt_mirror(suite: str = DEBIAN_SUITE) -> str:
    """``$DOCKYARD_TESTBED_DEBIAN_MIRROR``, else the first ``deb`` URI in this machine's apt
    sources that serves ``suite``, else deb.debian.org."""
    override = os.environ.get(MIRROR_ENV)
    if override:
        return override
    files = [Path("/etc/apt/sources.list")]
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            found = _mirror_in_sources(text, suite)
        else:
            found = _mirror_in_list(text, suite)
        if found:
            return found
    return DEFAULT_DEBIAN_MIRROR


def _usable_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "file:/"))


def _mirror_in_list(text: str, suite: str) -> str | None:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite and _usable_uri(words[1]):
            return words[1].rstrip("/")
    return None


def _mirror_in_sources(text: str, suite: str) -> str | None:
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    for stanza in re.split(r"\n\s*\n", "\n".join(lines)):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            for uri in fields.get("uris", "").split():
                if _usable_uri(uri):
                    return uri.rstrip("/")
    return None


_ROOTFS_PREFIX = "debian-rootfs-"
_ROOTFS_NAME = re.compile(r"^debian-rootfs-(\d{8})$")
_DEBIAN_IMAGE_NAME = re.compile(r"^debian-[0-9a-f]{16}$")


def _debootstrap(target: Path, mirror: str) -> None:
    log_path = target.parent / "debootstrap.log"
    argv = ["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(target), mirror]
    log.info("running %s (output in %s)", " ".join(argv), log_path)
    env = dict(os.environ, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
    try:
        with open(log_path, "wb") as out:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=DEBOOTSTRAP_TIMEOUT,
                check=False,
            )
    except FileNotFoundError as e:
        raise ImageBuildError("debootstrap is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise ImageBuildError(f"debootstrap took over {DEBOOTSTRAP_TIMEOUT:.0f}s") from e
    finally:
        _unmount_below(target)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise ImageBuildError(
            f"debootstrap failed with status {result.returncode}:\n" + "\n".join(tail)
        )


_DEBOOTSTRAP_FAILED: set[tuple[Path, str]] = set()


def _complete_rootfs_caches(cache_dir: Path) -> list[Path]:
    """Complete debootstrap caches, newest first."""
    found = [
        p
        for p in cache_dir.glob(_ROOTFS_PREFIX + "*")
        if _ROOTFS_NAME.match(p.name) and (p / _COMPLETE).exists()
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)


def _debian_rootfs(cache_dir: Path) -> Path:
    """Today's (UTC) debootstrap cache dir, made now if needed; else the newest older one."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    stem = _ROOTFS_PREFIX + today
    target = cache_dir / stem
    if (target / _COMPLETE).exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _flock(cache_dir / f"{stem}.lock"):
        if (target / _COMPLETE).exists():
            return target
        older = _complete_rootfs_caches(cache_dir)
        if older and (cache_dir, stem) in _DEBOOTSTRAP_FAILED:
            return older[0]  # this process tried today already; don't wait on the mirror again
        if target.exists():
            _remove_tree(target)
        for stale in cache_dir.glob(f".{stem}.tmp-*"):
            _remove_tree(stale)
        mirror = apt_mirror()
        tmp = Path(tempfile.mkdtemp(prefix=f".{stem}.tmp-", dir=cache_dir))
        started = time.monotonic()
        try:
            tmp.chmod(0o755)
            _debootstrap(tmp / "rootfs", mirror)
            (tmp / _COMPLETE).write_bytes(
                _canonical_json({"mirror": mirror, "suite": DEBIAN_SUITE})
            )
            subprocess.run(["sync", "-f", str(tmp)], check=False)
            tmp.rename(target)
        except ImageBuildError as e:
            _remove_tree(tmp)
            _DEBOOTSTRAP_FAILED.add((cache_dir, stem))
            if not older:
                raise
            log.warning("%s\nfalling back to the older debootstrap cache %s", e, older[0])
            return older[0]
        except BaseException:
            _remove_tree(tmp)
            raise
        log.info("debootstrap took %.1fs", time.monotonic() - started)
    _prune_debian(cache_dir, keep_rootfs=target)
    return target


def _prune_debian(cache_dir: Path, *, keep_rootfs: Path) -> None:
    """Drops old debootstrap caches and debian images nobody is building or reading."""
    for old in _complete_rootfs_caches(cache_dir)[DEBIAN_ROOTFS_KEEP:]:
        if old == keep_rootfs:
            continue
        with _flock(cache_dir / f"{old.name}.lock", blocking=False) as free:
            if free:
                log.info("pruning the old debootstrap cache %s", old)
                _remove_tree(old)
    now = time.time()
    for image_dir in cache_dir.iterdir():
        complete = image_dir / _COMPLETE
        if not _DEBIAN_IMAGE_NAME.match(image_dir.name) or not complete.exists():
            continue
        if now - complete.stat().st_mtime < DEBIAN_IMAGE_MAX_AGE:
            continue
        with _flock(cache_dir / f"{image_dir.name}.lock", blocking=False) as free:
            if free:
                log.info("pruning the old debian image %s", image_dir)
                _remove_tree(image_dir)


_DEBIAN_SKIP_EXACT = frozenset({"etc/hostname", "etc/resolv.conf"})
_DEBIAN_SKIP_BELOW = ("proc/", "sys/", "dev/", "var/lib/apt/lists/")


def _debian_skip(rel: str) -> bool:
    """What the rootfs layer leaves out: pseudo-filesystems, apt caches, the host's identity."""
    if rel in _DEBIAN_SKIP_EXACT or rel.startswith(_DEBIAN_SKIP_BELOW):
        return True
    if rel.startswith("var/cache/apt/archives/") and rel.endswith(".deb"):
        return True
    return rel.startswith("var/cache/apt/") and rel.endswith(".bin") and rel.count("/") == 3


_HELLO = b'#!/bin/sh\necho "hello from debian"\n'


def _debian_recipe(rootfs_cache: Path) -> _Recipe:
    rootfs = rootfs_cache / "rootfs"

    def write_rootfs(w: LayerWriter) -> None:
        _add_tree(w, rootfs, _debian_skip)

    def write_additions(w: LayerWriter) -> None:
        # Parent directories repeat layer 1's metadata, so this layer changes only its files.
        for rel in ("etc", "usr", "usr/local", "usr/local/bin"):
            st = os.lstat(rootfs / rel)
            w.directory(
                rel, stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime)
            )
        release = f"dockyard testbed debian {DEBIAN_SUITE} ({rootfs_cache.name})\n"
        w.file("etc/dockyard-release", release.encode())
        w.file("usr/local/bin/hello", _HELLO, mode=0o755)

    return _Recipe(
        name="debian",
        inputs=(rootfs_cache.name,),
        layers=(
            _Layer(
                f"debootstrap --variant=minbase {DEBIAN_SUITE} ({rootfs_cache.name})", write_rootfs
            ),
            _Layer("COPY dockyard-release /etc/; COPY hello /usr/local/bin/", write_additions),
        ),
        cmd=("bash",),
    )


def debian(cache_dir: Path | None = None) -> BuiltImage:
    """The two-layer Debian bookworm image (needs root, and the mirror once per UTC day)."""
    cache = cache_dir or default_cache_dir()
    rootfs_cache = _debian_rootfs(cache)

    @contextlib.contextmanager
    def hold_rootfs() -> Iterator[None]:
        with _flock(cache / f"{rootfs_cache.name}.lock", shared=True):
            if not (rootfs_cache / _COMPLETE).exists():
                raise ImageBuildError(f"{rootfs_cache} was pruned meanwhile; try again")
            yield

    return _build_cached(_debian_recipe(rootfs_cache), cache, hold_rootfs)


# --------------------------------------------------------------------------------------------
# torture

TORTURE_UNICODE_NAME = "data/space and ünïcødé ☃.txt"
TORTURE_OLD_MTIME = 1_234_567_890

FileKind = Literal["file", "dir", "symlink", "fifo", "char", "block"]


@dataclass(frozen=True, slots=True)
class ExpectedEntry:
    """What one path of the merged torture rootfs must be.

    ``mode`` is the permission bits with setuid/setgid/sticky (``stat.S_IMODE``); it is not
    checked for symlinks. ``xattrs`` lists every ``user.*`` xattr the path must have (and no
    others). ``hardlink_to`` names another path that must share this path's inode. ``mtime`` is
    checked only when set.
    """

    kind: FileKind
    mode: int
    uid: int = 0
    gid: int = 0
    content: bytes | None = None
    target: str | None = None
    hardlink_to: str | None = None
    rdev: tuple[int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()
    mtime: int | None = None


def _torture_layer1(w: LayerWriter) -> None:
    w.directory("bin")
    w.file("bin/setuid", b"#!/bin/sh\necho setuid\n", mode=0o4755)
    w.directory("data")
    w.file("data/regular.txt", b"regular file\n")
    w.hardlink("data/hardlink.txt", "data/regular.txt")
    w.file("data/to-delete.txt", b"layer 2 deletes me\n")
    w.file("data/to-modify.txt", b"original\n")
    w.file("data/empty", b"")
    w.file(TORTURE_UNICODE_NAME, b"awkward name\n")
    w.file("data/owned-1000", b"uid 1000\n", mode=0o640, uid=1000, gid=1000)
    w.file("data/owned-nobody", b"nobody\n", mode=0o600, uid=65534, gid=65534)
    w.file("data/old-mtime", b"old\n", mtime=TORTURE_OLD_MTIME)
    w.file(
        "data/xattr.txt",
        b"has xattrs\n",
        xattrs={"user.dockyard": b"hello", "user.second": b"world"},
    )
    w.fifo("data/fifo")
    w.directory("dev")
    w.char_device("dev/mynull", 1, 3)
    w.directory("links")
    w.symlink("links/absolute", "/data/regular.txt")
    w.symlink("links/dangling", "../nowhere")
    w.symlink("links/relative", "../data/regular.txt")
    w.directory("opaque")
    w.file("opaque/old-a", b"hidden by the opaque marker\n")
    w.directory("opaque/sub")
    w.file("opaque/sub/old-b", b"hidden too\n")
    w.directory("shared", mode=0o2775, gid=1000)
    w.file("shared/file", b"in a setgid dir\n", gid=1000)
    w.directory("whole-dir")
    w.file("whole-dir/inner", b"the whole dir goes\n")


def _torture_layer2(w: LayerWriter) -> None:
    w.whiteout("whole-dir")
    w.directory("data")
    w.whiteout("data/to-delete.txt")
    w.file("data/to-modify.txt", b"modified in layer 2\n", mode=0o600)
    w.directory("layer2")
    w.file("layer2/file", b"layer two\n")
    w.hardlink("layer2/hardlink", "layer2/file")
    w.directory("opaque")
    w.opaque("opaque")
    w.file("opaque/new", b"new in layer 2\n")


def torture_expected() -> dict[str, ExpectedEntry | None]:
    """The merged torture rootfs: relative path -> entry, or None where nothing may exist.

    It lists every path the rootfs holds, so a checker may also flag anything extra
    (:func:`check_rootfs` with ``strict=True``).
    """
    d: FileKind = "dir"
    f: FileKind = "file"
    regular = ExpectedEntry(f, 0o644, content=b"regular file\n")
    return {
        "bin": ExpectedEntry(d, 0o755),
        "bin/setuid": ExpectedEntry(f, 0o4755, content=b"#!/bin/sh\necho setuid\n"),
        "data": ExpectedEntry(d, 0o755),
        "data/regular.txt": regular,
        "data/hardlink.txt": ExpectedEntry(
            f, 0o644, content=b"regular file\n", hardlink_to="data/regular.txt"
        ),
        "data/to-modify.txt": ExpectedEntry(f, 0o600, content=b"modified in layer 2\n"),
        "data/empty": ExpectedEntry(f, 0o644, content=b""),
        TORTURE_UNICODE_NAME: ExpectedEntry(f, 0o644, content=b"awkward name\n"),
        "data/owned-1000": ExpectedEntry(f, 0o640, uid=1000, gid=1000, content=b"uid 1000\n"),
        "data/owned-nobody": ExpectedEntry(f, 0o600, uid=65534, gid=65534, content=b"nobody\n"),
        "data/old-mtime": ExpectedEntry(f, 0o644, content=b"old\n", mtime=TORTURE_OLD_MTIME),
        "data/xattr.txt": ExpectedEntry(
            f,
            0o644,
            content=b"has xattrs\n",
            xattrs=(("user.dockyard", b"hello"), ("user.second", b"world")),
        ),
        "data/fifo": ExpectedEntry("fifo", 0o644),
        "dev": ExpectedEntry(d, 0o755),
        "dev/mynull": ExpectedEntry("char", 0o666, rdev=(1, 3)),
        "layer2": ExpectedEntry(d, 0o755),
        "layer2/file": ExpectedEntry(f, 0o644, content=b"layer two\n"),
        "layer2/hardlink": ExpectedEntry(
            f, 0o644, content=b"layer two\n", hardlink_to="layer2/file"
        ),
        "links": ExpectedEntry(d, 0o755),
        "links/absolute": ExpectedEntry("symlink", 0o777, target="/data/regular.txt"),
        "links/dangling": ExpectedEntry("symlink", 0o777, target="../nowhere"),
        "links/relative": ExpectedEntry("symlink", 0o777, target="../data/regular.txt"),
        "opaque": ExpectedEntry(d, 0o755),
        "opaque/new": ExpectedEntry(f, 0o644, content=b"new in layer 2\n"),
        "shared": ExpectedEntry(d, 0o2775, gid=1000),
        "shared/file": ExpectedEntry(f, 0o644, gid=1000, content=b"in a setgid dir\n"),
        # Deleted by layer 2, and the whiteout markers themselves never reach the rootfs.
        "data/to-delete.txt": None,
        "data/.wh.to-delete.txt": None,
        "opaque/old-a": None,
        "opaque/sub": None,
        "opaque/sub/old-b": None,
        "opaque/.wh..wh..opq": None,
        "whole-dir": None,
        "whole-dir/inner": None,
        ".wh.whole-dir": None,
    }


_KIND_OF_FORMAT: dict[int, FileKind] = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
}


def check_rootfs(
    rootfs: Path,
    expected: Mapping[str, ExpectedEntry | None] | None = None,
    *,
    strict: bool = True,
) -> list[str]:
    """Compares an unpacked rootfs with ``expected`` (default: :func:`torture_expected`).

    Returns one line per difference; empty means the rootfs is right. With ``strict``, a path
    present in the rootfs but not listed is a difference too.
    """
    expected = torture_expected() if expected is None else expected
    problems: list[str] = []
    for rel, want in sorted(expected.items()):
        path = rootfs / rel
        if want is None:
            if os.path.lexists(path):
                problems.append(f"{rel}: must not exist")
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{rel}: missing")
            continue
        problems += [f"{rel}: {p}" for p in _compare(rootfs, path, st, want)]
    if strict:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            for name in dirnames + filenames:
                rel = os.path.relpath(os.path.join(dirpath, name), rootfs)
                if rel not in expected:
                    problems.append(f"{rel}: not expected")
    return problems


def _compare(rootfs: Path, path: Path, st: os.stat_result, want: ExpectedEntry) -> list[str]:
    problems: list[str] = []
    kind = _KIND_OF_FORMAT.get(stat.S_IFMT(st.st_mode))
    if kind != want.kind:
        return [f"is a {kind}, want a {want.kind}"]
    if want.kind != "symlink" and stat.S_IMODE(st.st_mode) != want.mode:
        problems.append(f"mode {stat.S_IMODE(st.st_mode):o}, want {want.mode:o}")
    if (st.st_uid, st.st_gid) != (want.uid, want.gid):
        problems.append(f"owner {st.st_uid}:{st.st_gid}, want {want.uid}:{want.gid}")
    if want.content is not None and path.read_bytes() != want.content:
        problems.append(f"content {path.read_bytes()!r}, want {want.content!r}")
    if want.target is not None and os.readlink(path) != want.target:
        problems.append(f"target {os.readlink(path)!r}, want {want.target!r}")
    if want.rdev is not None:
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if rdev != want.rdev:
            problems.append(f"device {rdev}, want {want.rdev}")
    if want.mtime is not None and int(st.st_mtime) != want.mtime:
        problems.append(f"mtime {int(st.st_mtime)}, want {want.mtime}")
    if want.hardlink_to is not None:
        other = os.lstat(rootfs / want.hardlink_to)
        if (other.st_dev, other.st_ino) != (st.st_dev, st.st_ino):
            problems.append(f"not a hardlink of {want.hardlink_to}")
    if want.kind != "symlink":
        have = {k: v for k, v in _read_xattrs(path).items() if k.startswith("user.")}
        if have != dict(want.xattrs):
            problems.append(f"user xattrs {have}, want {dict(want.xattrs)}")
    return problems


def _torture_recipe() -> _Recipe:
    return _Recipe(
        name="torture",
        inputs=(),
        layers=(
            _Layer("torture layer 1: every kind of entry", _torture_layer1),
            _Layer("torture layer 2: whiteouts, opaque dir, changes", _torture_layer2),
        ),
        cmd=(),
    )


def torture(cache_dir: Path | None = None) -> BuiltImage:
    """The two-layer unpacker torture image; :func:`torture_expected` is its merged rootfs."""
    return _build_cached(
        _torture_recipe(), cache_dir or default_cache_dir(), contextlib.nullcontext
    )


# --------------------------------------------------------------------------------------------
# pullbench

#: Bump when the pullbench recipe below changes (its own key input, so the other images stay).
PULLBENCH_VERSION = 1


@dataclass(frozen=True, slots=True)
class _SyntheticLayer:
    """One generated layer: ``files`` files below ``top``, ``per_dir`` to a subdirectory.

    ``random_bytes`` of pseudo-random (incompressible) and ``text_bytes`` of word-salad text
    (gzip takes it to about 28 %) are spread over the files with sizes that vary about 256-fold.
    ``mixed`` files hold both (random first); otherwise the first files hold the random bytes and
    the rest the text.
    """

    top: str
    created_by: str
    files: int
    random_bytes: int
    text_bytes: int
    per_dir: int = 50
    mixed: bool = False
    mode: int = 0o644


_MB = 1_000_000

#: With the debian minbase rootfs (~121 MB of tar, ~49 MB gzipped, ~6,650 entries) as layer 1,
#: about ISSUE 4's image: 5 gzip layers, ~129 MB compressed, ~229 MB of tar, ~8,600 entries.
_PULLBENCH_LAYERS = (
    _SyntheticLayer("opt/pullbench/lib", "COPY lib/ /opt/pullbench/lib/ (binaries)",
                    files=240, random_bytes=36 * _MB, text_bytes=0, per_dir=40, mode=0o755),
    _SyntheticLayer("usr/share/pullbench/doc", "COPY doc/ /usr/share/pullbench/doc/ (text)",
                    files=1250, random_bytes=0, text_bytes=24_500_000, per_dir=50),
    _SyntheticLayer("opt/pullbench/assets", "COPY assets/ /opt/pullbench/assets/ (mixed)",
                    files=360, random_bytes=12 * _MB, text_bytes=12 * _MB, per_dir=40,
                    mixed=True),
    _SyntheticLayer("var/lib/pullbench", "RUN pullbench-init (data files)",
                    files=64, random_bytes=20_500_000, text_bytes=1 * _MB, per_dir=16),
)


def _shake(label: str, size: int) -> bytes:
    """``size`` deterministic pseudo-random bytes named by ``label`` (SHAKE-256 is a standard,
    so the bytes, and the image's digests, do not depend on Python's ``random``)."""
    return hashlib.shake_256(label.encode()).digest(size)


def _vocabulary() -> list[bytes]:
    seed = _shake("pullbench/vocabulary", 4096)
    words: list[bytes] = []
    pos = 0
    for n in range(256):
        length = 2 + seed[pos] % 9
        pos += 1
        word = bytes(ord("a") + b % 26 for b in seed[pos : pos + length])
        pos += length
        words.append(word + (b"\n" if n % 12 == 0 else b" "))
    return words


def _text(label: str, size: int, vocabulary: list[bytes]) -> bytes:
    """``size`` bytes of text: words picked by a SHAKE stream, a newline every dozen or so."""
    if size <= 0:
        return b""
    # The shortest word is 3 bytes with its separator: size // 3 + 1 picks always suffice.
    picks = _shake(label, size // 3 + 1)
    return b"".join(map(vocabulary.__getitem__, picks))[:size]


def _split_sizes(label: str, count: int, total: int) -> list[int]:
    """``count`` sizes summing to ``total``, spread log-uniformly over a factor of 256."""
    if count <= 0:
        return []
    weights = [2.0 ** (b / 32) for b in _shake(label, count)]
    scale = total / sum(weights)
    sizes = [int(w * scale) for w in weights]
    sizes[-1] += total - sum(sizes)
    return sizes


def _synthetic_layer_writer(
    spec: _SyntheticLayer, index: int, parents: Callable[[LayerWriter, str], None]
) -> LayerRecipe:
    def write(w: LayerWriter) -> None:
        vocabulary = _vocabulary()
        parents(w, spec.top)
        w.directory(spec.top)
        tag = f"pullbench/{PULLBENCH_VERSION}/layer{index}"
        if spec.mixed:
            randoms = _split_sizes(f"{tag}/random-sizes", spec.files, spec.random_bytes)
            texts = _split_sizes(f"{tag}/text-sizes", spec.files, spec.text_bytes)
        else:
            n_random = (
                spec.files * spec.random_bytes // (spec.random_bytes + spec.text_bytes)
                if spec.random_bytes + spec.text_bytes
                else 0
            )
            if spec.random_bytes and spec.text_bytes:
                n_random = min(max(n_random, 1), spec.files - 1)
            randoms = _split_sizes(f"{tag}/random-sizes", n_random, spec.random_bytes)
            randoms += [0] * (spec.files - n_random)
            texts = [0] * n_random
            texts += _split_sizes(f"{tag}/text-sizes", spec.files - n_random, spec.text_bytes)
        subdir = ""
        for i in range(spec.files):
            if i % spec.per_dir == 0:
                subdir = f"{spec.top}/d{i // spec.per_dir:03d}"
                w.directory(subdir)
            kind = "bin" if texts[i] == 0 else ("dat" if randoms[i] else "txt")
            name = f"{subdir}/f{i:04d}.{kind}"
            content = _shake(f"{tag}/{name}", randoms[i]) + _text(
                f"{tag}/{name}/text", texts[i], vocabulary
            )
            w.file(name, content, mode=spec.mode)

    return write


def _pullbench_recipe(rootfs_cache: Path) -> _Recipe:
    rootfs = rootfs_cache / "rootfs"

    def write_rootfs(w: LayerWriter) -> None:
        _add_tree(w, rootfs, _debian_skip)

    def parents(w: LayerWriter, top: str) -> None:
        # Each parent repeats the rootfs layer's metadata where it has one, so a layer changes
        # only what it adds.
        parts = top.split("/")
        for depth in range(1, len(parts)):
            rel = "/".join(parts[:depth])
            try:
                st = os.lstat(rootfs / rel)
            except FileNotFoundError:
                w.directory(rel)
                continue
            w.directory(
                rel, stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime)
            )

    layers = [
        _Layer(
            f"debootstrap --variant=minbase {DEBIAN_SUITE} ({rootfs_cache.name})", write_rootfs
        )
    ]
    for index, spec in enumerate(_PULLBENCH_LAYERS, start=2):
        layers.append(_Layer(spec.created_by, _synthetic_layer_writer(spec, index, parents)))
    return _Recipe(
        name="pullbench",
        inputs=(rootfs_cache.name, f"pullbench-v{PULLBENCH_VERSION}"),
        layers=tuple(layers),
        cmd=("bash",),
    )


_PULLBENCH_IMAGE_NAME = re.compile(r"^pullbench-[0-9a-f]{16}$")


def _prune_pullbench(cache_dir: Path, *, keep: Path) -> None:
    """Drops pullbench images (about 360 MB each) of older rootfs caches nobody is using."""
    now = time.time()
    for image_dir in cache_dir.iterdir():
        complete = image_dir / _COMPLETE
        if image_dir == keep or not _PULLBENCH_IMAGE_NAME.match(image_dir.name):
            continue
        if not complete.exists() or now - complete.stat().st_mtime < DEBIAN_IMAGE_MAX_AGE:
            continue
        with _flock(cache_dir / f"{image_dir.name}.lock", blocking=False) as free:
            if free:
                log.info("pruning the old pullbench image %s", image_dir)
                _remove_tree(image_dir)


def pullbench(cache_dir: Path | None = None) -> BuiltImage:
    """The pull benchmark's image (issue 4): 5 gzip layers, ~129 MB compressed, ~229 MB of tar.

    Layer 1 is the debian image's rootfs layer (same debootstrap cache, so the same needs:
    root, and the mirror once per UTC day); layers 2-5 hold ~1,960 generated files, binary
    (SHAKE-256 output, incompressible) and text (word salad, ~28 % after gzip), fully
    determined by :data:`PULLBENCH_VERSION`. Building it cold takes some 20-40 s.
    """
    cache = cache_dir or default_cache_dir()
    rootfs_cache = _debian_rootfs(cache)

    @contextlib.contextmanager
    def hold_rootfs() -> Iterator[None]:
        with _flock(cache / f"{rootfs_cache.name}.lock", shared=True):
            if not (rootfs_cache / _COMPLETE).exists():
                raise ImageBuildError(f"{rootfs_cache} was pruned meanwhile; try again")
            yield

    recipe = _pullbench_recipe(rootfs_cache)
    image = _build_cached(recipe, cache, hold_rootfs)
    _prune_pullbench(cache, keep=cache / f"{recipe.name}-{_cache_key(recipe)}")
    return image


# --------------------------------------------------------------------------------------------
# CLI

_BUILDERS: dict[str, Callable[[Path | None], BuiltImage]] = {
    "busybox": busybox,
    "debian": debian,
    "torture": torture,
    "pullbench": pullbench,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.images",
        description="Build (or find in the cache) a test-bed image; print its layout and digest.",
    )
    parser.add_argument("image", choices=sorted(_BUILDERS))
    parser.add_argument(
        "--cache", type=Path, help=f"cache directory (default: {DEFAULT_CACHE_DIR})"
    )
    parser.add_argument("--json", action="store_true", help="print every field as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        image = _BUILDERS[args.image](args.cache)
    except (ImageBuildError, OSError, subprocess.CalledProcessError) as e:
        print(f"error: cannot build {args.image}: {e}", file=sys.stderr)
        return 1
    if args.json:
        fields = {
            "name": image.name,
            "tag": image.tag,
            "oci_layout": str(image.oci_layout),
            "docker_archive": str(image.docker_archive) if image.docker_archive else None,
            "manifest_digest": image.manifest_digest,
            "config_digest": image.config_digest,
            "layer_digests": list(image.layer_digests),
            "diff_ids": list(image.diff_ids),
        }
        print(json.dumps(fields, indent=2))
    else:
        print(image.oci_layout)
        print(image.manifest_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

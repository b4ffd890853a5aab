"""What ``diff``, ``export``, ``commit`` and ``cp`` do with a container's filesystem.

Where the filesystem is:

* the container's own changes are its snapshot: the overlay snapshotter's ``upper/`` (whiteouts
  as 0:0 character devices, opaque directories marked ``trusted.overlay.opaque=y``), or the copy
  snapshotter's ``fs/``, a whole merged copy that is compared with its image's layers (docker's
  "naive diff" for vfs);
* the merged view is the running container's mounted ``<bundle>/rootfs``; a stopped container's
  saved mounts (``mounts.json``) are mounted for the time of one command under ``<root>/tmp``
  (the copy snapshotter's ``fs/`` and a layerless upper are used as they are).

A container's tree is untrusted, and a running container may change it while we read it. Every
path inside it is resolved by :class:`Root` as if the rootfs were ``/`` (openat2's
``RESOLVE_IN_ROOT`` by hand): one component at a time relative to a descriptor of its parent,
never following the component itself; a symlink's target is resolved again from the root and
``..`` stops there. A symlink ``/x -> /etc`` in the container therefore leads to the container's
``/etc``, never the host's, and a directory swapped for a symlink behind our back makes the
lookup fail (``O_NOFOLLOW``) rather than escape. Files are then opened, created, chowned and
listed relative to those descriptors.

``commit`` writes the changes as a layer the way docker does (AUFS whiteouts ``.wh.<name>`` and
``.wh..wh..opq`` in the tar, gzip), and registers the image through the pull path (verified
ingest, the layer unpacked into the snapshotter, the image row written last), so the new image
runs at once.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from dockyard.errors import FailedPrecondition, InvalidArgument, NotFound, SyscallError

if TYPE_CHECKING:
    from dockyard.engine.containers import Container, ContainerService
    from dockyard.image.snapshot import Mount
    from dockyard.image.store import ImageRecord

OPAQUE_XATTR = "trusted.overlay.opaque"
WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 255
_CHUNK = 1 << 20


# --- resolution inside a root -------------------------------------------------------------------


@dataclass(slots=True)
class Location:
    """A name in a directory: ``fd`` (an O_PATH descriptor of the directory, owned) and
    ``name`` (one component; "" when the location is the directory ``fd`` itself)."""

    fd: int
    name: str

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Location:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lstat(self) -> os.stat_result | None:
        try:
            if not self.name:
                return os.fstat(self.fd)
            return os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None


class Root:
    """A directory in which paths are resolved as if it were ``/`` (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.fd = os.open(self.path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, unsafe: str, *, follow: bool = False) -> Location:
        """Where ``unsafe`` leads inside the root. Symlinks in the directories on the way are
        followed (inside the root); the last component only with ``follow`` or when the path
        ends in ``/`` or ``/.``. The last component need not exist; the ones before must
        (FileNotFoundError, NotADirectoryError otherwise)."""
        if unsafe.endswith(("/", "/.")) or unsafe in ("", "."):
            follow = True
        pending = [p for p in unsafe.split("/") if p]
        stack = [os.dup(self.fd)]
        links = 0
        try:
            while pending:
                name = pending.pop(0)
                if name == ".":
                    continue
                if name == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if not pending:
                        return Location(stack.pop(), name)
                    raise FileNotFoundError(errno.ENOENT, "no such file or directory",
                                            unsafe) from None
                if stat.S_ISLNK(st.st_mode) and (pending or follow):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
                    target = os.readlink(name, dir_fd=stack[-1])
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop())
                    pending = [p for p in target.split("/") if p] + pending
                    continue
                if not pending:
                    return Location(stack.pop(), name)
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", unsafe)
                stack.append(os.open(name, _O_PATH_DIR, dir_fd=stack[-1]))
            return Location(stack.pop(), "")
        finally:
            for fd in stack:
                os.close(fd)

    def open_dir(self, unsafe: str) -> int:
        """A readable descriptor of the directory ``unsafe`` (symlinks followed inside)."""
        with self.resolve(unsafe, follow=True) as loc:
            return os.open(loc.name or ".", _O_READ_DIR, dir_fd=loc.fd)

    def makedirs(self, unsafe: str, mode: int = 0o755,
                 owner: tuple[int, int] | None = None) -> None:
        """``mkdir -p`` inside the root (missing directories get ``mode`` and ``owner``)."""
        parts = [p for p in unsafe.split("/") if p]
        for i in range(1, len(parts) + 1):
            with self.resolve("/".join(parts[:i]), follow=True) as loc:
                st = loc.lstat()
                if st is None:
                    os.mkdir(loc.name, mode, dir_fd=loc.fd)
                    if owner is not None:
                        os.chown(loc.name, *owner, dir_fd=loc.fd, follow_symlinks=False)
                    fd = os.open(loc.name, _O_READ_DIR, dir_fd=loc.fd)
                    try:
                        os.fchmod(fd, mode)
                    finally:
                        os.close(fd)
                elif not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory",
                                             "/" + "/".join(parts[:i]))


# --- path stat (docker's X-Docker-Container-Path-Stat) -----------------------------------------


@dataclass(frozen=True, slots=True)
class PathStat:
    name: str
    size: int
    mode: int           # st_mode
    mtime: float
    link_target: str    # where a symlink leads, as a path inside the root

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode,
                "mtime": self.mtime, "linkTarget": self.link_target}


def stat_in(root: Root, path: str, *, follow: bool = False) -> PathStat | None:
    """What ``path`` is inside ``root`` (None when it does not exist)."""
    try:
        loc = root.resolve(path, follow=follow)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with loc:
        st = loc.lstat()
        if st is None:
            return None
        target = ""
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(loc.name, dir_fd=loc.fd)
        name = posixpath.basename(path.rstrip("/")) or "/"
        return PathStat(name, st.st_size, st.st_mode, st.st_mtime, target)


# --- writing trees as tar -----------------------------------------------------------------------


class _Exact:
    """Exactly ``size`` bytes of a file that may change while it is read (zeros fill a file
    that shrank; the tar member keeps the size its header announced)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        data = os.read(self.fd, want)
        if not data:
            data = bytes(want)
        self.left -= len(data)
        return data


def _xattrs(target: int | str) -> dict[str, str]:
    try:
        names = os.listxattr(target, follow_symlinks=False) if isinstance(target, str) \
            else os.listxattr(target)
    except OSError:
        return {}
    out: dict[str, str] = {}
    for name in sorted(names):
        if name.startswith("trusted.overlay.") or name == "security.selinux":
            continue
        try:
            value = os.getxattr(target, name, follow_symlinks=False) \
                if isinstance(target, str) else os.getxattr(target, name)
        except OSError:
            continue
        out["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return out


def _header(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    info.size = 0
    return info


class TarWriter:
    """A tar stream of filesystem entries read through directory descriptors."""

    def __init__(self, out: BinaryIO) -> None:
        self.tar = tarfile.open(  # noqa: SIM115 - closed by close()
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
        self.tar.copybufsize = _CHUNK  # type: ignore[attr-defined]
        self.links: dict[tuple[int, int], str] = {}
        self.entries = 0
        self._closed = False

    @property
    def size(self) -> int:
        """Bytes of the archive as docker counts them (its writer ends with two zero blocks,
        without tarfile's padding to a 10 KiB record)."""
        return int(self.tar.offset) + (0 if self._closed else 1024)

    def close(self) -> None:
        self.tar.close()
        self._closed = True

    def add_file(self, info: tarfile.TarInfo, data: Any = None) -> None:
        self.tar.addfile(info, data)
        self.entries += 1

    def add(self, dir_fd: int, name: str, arcname: str, *, recurse: bool = True) -> None:
        """Add ``name`` (in the directory ``dir_fd``; "" for that directory itself) as
        ``arcname``, and what is below it when ``recurse``."""
        try:
            st = os.fstat(dir_fd) if not name else \
                os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return      # gone while we walked (a running container)
        mode = st.st_mode
        info = _header(arcname, st)
        if stat.S_ISDIR(mode):
            fd = os.open(name or ".", _O_READ_DIR, dir_fd=dir_fd)
            try:
                info.type = tarfile.DIRTYPE
                info.pax_headers = _xattrs(fd)
                self.add_file(info)
                if recurse:
                    for child in sorted(os.listdir(fd)):
                        self.add(fd, child, posixpath.join(arcname, child))
            finally:
                os.close(fd)
            return
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info.type = tarfile.LNKTYPE
            info.linkname = self.links[key]
            self.add_file(info)
            return
        if stat.S_ISREG(mode):
            fd = os.open(name, _O_READ_FILE, dir_fd=dir_fd)
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    raise FailedPrecondition(f"{arcname}: changed while being archived")
                info.type = tarfile.REGTYPE
                info.size = fst.st_size
                info.pax_headers = _xattrs(fd)
                self.add_file(info, _Exact(fd, fst.st_size))
            finally:
                os.close(fd)
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(name, dir_fd=dir_fd)
            self.add_file(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else \
                tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            info.pax_headers = _xattrs(f"/proc/self/fd/{dir_fd}/{name}")
            self.add_file(info)
        else:
            return      # sockets do not go into archives (docker skips them too)
        if st.st_nlink > 1:
            self.links[key] = arcname


def write_tar(root: Root, path: str, out: BinaryIO, *, follow: bool = False,
              arcroot: str | None = None) -> int:
    """A tar of ``path`` inside ``root``, its top entry named ``arcroot`` (the path's base name
    by default; "." puts a directory's contents at the top). Returns docker's byte count."""
    if arcroot is None:
        arcroot = archive_name(path)
    with root.resolve(path, follow=follow) as loc:
        if loc.lstat() is None:
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        tw = TarWriter(out)
        if loc.name:
            tw.add(loc.fd, loc.name, arcroot)
        else:
            fd = os.open(".", _O_READ_DIR, dir_fd=loc.fd)
            try:
                tw.add(fd, "", arcroot)
            finally:
                os.close(fd)
        tw.close()
        return tw.size


def archive_name(path: str) -> str:
    """The name of ``path``'s top entry in an archive of it (docker's rules: the base name;
    "." for ``dir/.`` and for ``/``, whose contents are archived)."""
    stripped = path.rstrip("/")
    if path.endswith("/.") or stripped in ("", "."):
        return "."
    base = posixpath.basename(stripped)
    return "." if base == "." else base


# --- extracting a tar inside a root -------------------------------------------------------------


def _clean(name: str) -> str:
    """A member name relative to the destination ("." for the destination itself); one that
    climbs above it keeps its leading ".." (and is refused by the caller, as docker does)."""
    cleaned = posixpath.normpath(name.lstrip("/") or ".")
    return cleaned.lstrip("/") or "."


def extract(tar_in: BinaryIO, root: Root, dest: str, *,
            owner: tuple[int, int] | None = None) -> int:
    """Unpack the tar read from ``tar_in`` (plain or compressed) into the directory ``dest``
    inside ``root``; every entry stays inside the root whatever its name or the symlinks it
    meets. ``owner`` (uid, gid) replaces the archive's ownership. A directory is never
    replaced by a non-directory or the other way round (docker's cp). Returns bytes read."""
    counted = _Counting(tar_in)
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    try:
        tar = tarfile.open(fileobj=cast(Any, counted), mode="r|*")  # noqa: SIM115 - closed below
    except tarfile.ReadError as e:
        raise InvalidArgument(f"invalid archive: {e}") from None
    try:
        for member in tar:
            name = _clean(member.name)
            if name.split("/")[0] == "..":
                raise InvalidArgument(f"invalid archive: {member.name!r} leads out of the "
                                      "destination")
            # "dest/." resolves to the directory itself, through a symlink if dest is one
            path = posixpath.join(dest, name)
            if name != ".":
                root.makedirs(posixpath.dirname(path))
            _extract_one(tar, member, root, path, dest=dest, owner=owner, dirs=dirs)
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid archive: {e}") from None
    finally:
        tar.close()
    for path, member in reversed(dirs):
        with root.resolve(path) as loc:
            fd = os.open(loc.name or ".", _O_READ_DIR, dir_fd=loc.fd)
            try:
                uid, gid = owner if owner is not None else (member.uid, member.gid)
                os.fchown(fd, uid, gid)
                os.fchmod(fd, member.mode & 0o7777)
                os.utime(fd, (member.mtime, member.mtime))
            finally:
                os.close(fd)
    return counted.count


class _Counting:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _extract_one(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Root, path: str, *,
                 dest: str, owner: tuple[int, int] | None,
                 dirs: list[tuple[str, tarfile.TarInfo]]) -> None:
    uid, gid = owner if owner is not None else (member.uid, member.gid)
    with root.resolve(path) as loc:
        old = loc.lstat()
        if old is not None and stat.S_ISDIR(old.st_mode) != member.isdir():
            if stat.S_ISDIR(old.st_mode):
                raise FailedPrecondition(f'cannot overwrite directory "{path}" with '
                                         f'non-directory "{member.name}"')
            raise FailedPrecondition(f'cannot overwrite non-directory "{path}" with '
                                     f'directory "{member.name}"')
        if member.isdir():
            if old is None:
                os.mkdir(loc.name, 0o700, dir_fd=loc.fd)
            dirs.append((path, member))
            return
        if not loc.name:
            raise InvalidArgument(f"invalid archive: {member.name!r} is not a directory")
        if old is not None:
            os.unlink(loc.name, dir_fd=loc.fd)
        fd, name = loc.fd, loc.name
        if member.isreg():
            out = os.open(name, _O_CREATE, 0o600, dir_fd=fd)
            try:
                src = tar.extractfile(member)
                assert src is not None
                while chunk := src.read(_CHUNK):
                    os.write(out, chunk)
                os.fchown(out, uid, gid)
                os.fchmod(out, member.mode & 0o7777)
                _set_xattrs(out, member)
                os.utime(out, (member.mtime, member.mtime))
            finally:
                os.close(out)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=fd)
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            os.utime(name, (member.mtime, member.mtime), dir_fd=fd, follow_symlinks=False)
        elif member.islnk():
            target = _clean(member.linkname)
            if target.split("/")[0] == ".." or target == ".":
                raise InvalidArgument(f"invalid archive: hardlink {member.name!r} -> "
                                      f"{member.linkname!r}")
            with root.resolve(posixpath.join(dest, target)) as tloc:
                if not tloc.name or tloc.lstat() is None:
                    raise InvalidArgument(f"invalid archive: hardlink {member.name!r} to a "
                                          f"missing {member.linkname!r}")
                os.link(tloc.name, name, src_dir_fd=tloc.fd, dst_dir_fd=fd,
                        follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            kind = stat.S_IFCHR if member.ischr() else \
                stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            os.mknod(name, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=fd)
            node = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            try:
                via = f"/proc/self/fd/{node}"     # the node itself, whatever its name is now
                os.chown(via, uid, gid)
                os.chmod(via, member.mode & 0o7777)
                os.utime(via, (member.mtime, member.mtime))
            finally:
                os.close(node)
        else:
            raise InvalidArgument(f"invalid archive: {member.name!r} has an unsupported type")


def _set_xattrs(fd: int, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attr = key[13:]
        if attr.startswith("trusted.overlay."):
            continue
        try:
            os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


# --- a container's filesystem -------------------------------------------------------------------


def _saved_mounts(svc: ContainerService, c: Container) -> list[Mount]:
    from dockyard.image.snapshot import Mount

    try:
        with open(os.path.join(svc.bundle(c.id), "mounts.json")) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"container {c.short_id} has no filesystem") from None
    return [Mount(m["type"], m["source"], tuple(m["options"]), m.get("chdir", ""))
            for m in raw]


@contextmanager
def _merged(svc: ContainerService, c: Container) -> Iterator[str]:
    """The container's merged rootfs as a directory, for the time of the block."""
    target = os.path.join(svc.bundle(c.id), "rootfs")
    if c.running and os.path.ismount(target):
        yield target
        return
    mounts = _saved_mounts(svc, c)
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield mounts[0].source          # the copy snapshotter's fs/, or a layerless upper
        return
    from dockyard.image.mounter import mount_all, unmount

    tmp = os.path.join(svc.root, "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    mnt = tempfile.mkdtemp(prefix=f"rootfs-{c.short_id}-", dir=tmp)
    try:
        mount_all(mounts, mnt)
        try:
            yield mnt
        finally:
            unmount(mnt)
    finally:
        os.rmdir(mnt)


@contextmanager
def open_root(svc: ContainerService, ref: str) -> Iterator[Root]:
    """The container ``ref``'s merged filesystem as a :class:`Root`."""
    c = svc.get(ref)
    with _merged(svc, c) as path, Root(path) as root:
        yield root


def _rw_snapshot(svc: ContainerService, c: Container) -> tuple[list[str], str, bool]:
    """(the image's layer directories top first, the container's own directory, whether that
    is an overlay upper (else a merged copy))."""
    mounts = _saved_mounts(svc, c)
    m = mounts[0]
    if m.type == "overlay":
        opts = dict(o.partition("=")[::2] for o in m.options)
        lowers = [os.path.join(m.chdir, p) for p in opts.get("lowerdir", "").split(":") if p]
        return lowers, os.path.join(m.chdir, opts["upperdir"]), True
    if os.path.basename(m.source) == "upper":
        return [], m.source, True
    record = svc.images.store.get(c.image_id)
    layers = [svc.images.snapshots.layer_path(la.chain_id) for la in reversed(record.layers)]
    return layers, m.source, False


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(target: int | str) -> bool:
    try:
        if isinstance(target, int):
            return os.getxattr(target, OPAQUE_XATTR) == b"y"
        return os.getxattr(target, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class _Lower:
    """The merged view of an image's layer directories (overlay format), read without
    mounting: which directories of which layers make up a path, and what a directory lists."""

    def __init__(self, layers_top_first: Sequence[str]) -> None:
        self._sources: dict[tuple[str, ...], list[str]] = {(): list(layers_top_first)}
        self._listings: dict[tuple[str, ...], dict[str, os.stat_result]] = {}

    def sources(self, parts: tuple[str, ...]) -> list[str]:
        found = self._sources.get(parts)
        if found is not None:
            return found
        out: list[str] = []
        for d in self.sources(parts[:-1]):
            p = os.path.join(d, parts[-1])
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break       # a whiteout or a file hides everything below it
            out.append(p)
            if _opaque(p):
                break
        self._sources[parts] = out
        return out

    def listing(self, parts: tuple[str, ...]) -> dict[str, os.stat_result]:
        found = self._listings.get(parts)
        if found is not None:
            return found
        out: dict[str, os.stat_result] = {}
        hidden: set[str] = set()
        for d in self.sources(parts):
            with os.scandir(d) as it:
                for e in it:
                    if e.name in out or e.name in hidden:
                        continue
                    st = e.stat(follow_symlinks=False)
                    if _is_whiteout(st):
                        hidden.add(e.name)
                    else:
                        out[e.name] = st
        self._listings[parts] = out
        return out

    def lookup(self, parts: tuple[str, ...]) -> os.stat_result | None:
        return self.listing(parts[:-1]).get(parts[-1]) if parts else None


@dataclass(frozen=True, slots=True)
class _Change:
    kind: str                # "A", "C" or "D"
    parts: tuple[str, ...]
    opaque: bool = False     # a directory that hides what the layers below have in it
    implied: bool = False    # a deletion that an opaque directory makes (no whiteout of its own)

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)


def _entries(fd: int) -> list[tuple[str, os.stat_result]]:
    out = []
    for name in sorted(os.listdir(fd)):
        try:
            out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return out


def _upper_changes(fd: int, parts: tuple[str, ...], lower: _Lower, opaque: bool,
                   out: list[_Change]) -> None:
    """Changes from an overlay upper directory, in docker's (lexical, depth-first) order."""
    items: dict[str, os.stat_result | None] = dict(_entries(fd))
    if opaque:
        for name in lower.listing(parts):
            items.setdefault(name, None)
    for name in sorted(items):
        st = items[name]
        p = (*parts, name)
        if st is None:
            out.append(_Change("D", p, implied=True))
            continue
        if _is_whiteout(st):
            out.append(_Change("D", p))
            continue
        kind = "C" if lower.lookup(p) is not None else "A"
        if not stat.S_ISDIR(st.st_mode):
            out.append(_Change(kind, p))
            continue
        try:
            child = os.open(name, _O_READ_DIR, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            continue
        try:
            is_opaque = _opaque(child)
            out.append(_Change(kind, p, opaque=is_opaque))
            _upper_changes(child, p, lower, is_opaque, out)
        finally:
            os.close(child)


def _differs(old: os.stat_result, new: os.stat_result) -> bool:
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != \
            (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False
    return (old.st_size, old.st_mtime_ns) != (new.st_size, new.st_mtime_ns)


def _copy_changes(fd: int, parts: tuple[str, ...], lower: _Lower) -> list[_Change]:
    """Changes of a merged copy against the layers (docker's naive diff): a directory is
    changed when its own metadata or anything below it is."""
    out: list[_Change] = []
    new = dict(_entries(fd))
    old = lower.listing(parts)
    for name in sorted(set(new) | set(old)):
        p = (*parts, name)
        st = new.get(name)
        if st is None:
            out.append(_Change("D", p))
            continue
        before = old.get(name)
        kind: str | None = "A" if before is None else "C" if _differs(before, st) else None
        below: list[_Change] = []
        if stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(name, _O_READ_DIR, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                below = _copy_changes(child, p, lower)
            finally:
                os.close(child)
        if kind is None and below:
            kind = "C"
        if kind is not None:
            out.append(_Change(kind, p))
            out.extend(below)
    return out


def _changes_of(svc: ContainerService, c: Container) -> tuple[list[_Change], str]:
    layers, own, is_upper = _rw_snapshot(svc, c)
    lower = _Lower(layers)
    fd = os.open(own, _O_READ_DIR)
    try:
        if is_upper:
            out: list[_Change] = []
            _upper_changes(fd, (), lower, False, out)
        else:
            out = _copy_changes(fd, (), lower)
    finally:
        os.close(fd)
    return _without_mount_stubs(out, own), own


# Files that exist only as mount points for what the engine mounts over them (docker keeps
# them in a container's "init" layer, which diff, commit and export never show).
_MOUNT_STUBS = frozenset({("etc", "hostname"), ("etc", "hosts"), ("etc", "resolv.conf")})


def _without_mount_stubs(found: list[_Change], own: str) -> list[_Change]:
    """The changes without the empty files made as mount points for /etc/hosts and friends
    (and their directory, when nothing else in it changed)."""
    stubs = set()
    for ch in found:
        if ch.kind == "A" and ch.parts in _MOUNT_STUBS:
            try:
                st = os.lstat(os.path.join(own, *ch.parts))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                stubs.add(ch.parts)
    if not stubs:
        return found
    kept = [ch for ch in found if ch.parts not in stubs]
    parents = {parts[:-1] for parts in stubs}
    return [ch for ch in kept if not (ch.kind == "C" and ch.parts in parents and not any(
        other.parts[:len(ch.parts)] == ch.parts and other is not ch for other in kept))]


def changes(svc: ContainerService, ref: str) -> list[tuple[str, str]]:
    """docker's ``diff``: (kind, path) with kind "A" (added), "C" (changed) or "D" (deleted),
    parents before children, names in lexical order."""
    c = svc.get(ref)
    found, _ = _changes_of(svc, c)
    return [(ch.kind, ch.path) for ch in found]


def size_rw(svc: ContainerService, c: Container) -> int:
    """docker's SizeRw: bytes of what the container added or changed (directories count
    nothing, a hard-linked file once). An overlay upper is summed as it is (whiteouts are empty
    devices), a copy snapshot through its diff against the image's layers; 0 for a container
    that has no filesystem (yet)."""
    try:
        layers, own, is_upper = _rw_snapshot(svc, c)
    except NotFound:
        return 0
    if is_upper:
        return _tree_size(own)
    try:
        fd = os.open(own, _O_READ_DIR)
    except FileNotFoundError:
        return 0
    try:
        found = _copy_changes(fd, (), _Lower(layers))
    finally:
        os.close(fd)
    return _sum_sizes(os.path.join(own, *ch.parts) for ch in found if ch.kind != "D")


def _tree_size(top: str) -> int:
    paths: list[str] = []
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    paths.append(entry.path)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue        # a running container removed it while we looked
    return _sum_sizes(paths)


def _sum_sizes(paths: Iterable[str]) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        total += st.st_size
    return total


# --- export -------------------------------------------------------------------------------------


def export(svc: ContainerService, ref: str, out: BinaryIO) -> int:
    """A tar of the container's merged filesystem (docker's ``export``: entries relative to
    the root, no entry for the root itself). Returns the archive's size."""
    with open_root(svc, ref) as root:
        fd = os.open(".", _O_READ_DIR, dir_fd=root.fd)
        try:
            tw = TarWriter(out)
            for name in sorted(os.listdir(fd)):
                tw.add(fd, name, name)
            tw.close()
            return tw.size
        finally:
            os.close(fd)


# --- cp -----------------------------------------------------------------------------------------


def copy_from(svc: ContainerService, ref: str, src_path: str, out: BinaryIO, *,
              follow_link: bool = False) -> PathStat:
    """docker's ``GET /containers/{id}/archive``: a tar of ``src_path`` (top entry named
    after it, see :func:`archive_name`) written to ``out``; what ``src_path`` is."""
    c = svc.get(ref)
    with open_root(svc, c.id) as root:
        st = stat_in(root, src_path, follow=follow_link)
        if st is None:
            raise NotFound(f"Could not find the file {src_path} in container {ref}")
        write_tar(root, src_path, out, follow=follow_link)
        return st


def copy_to(svc: ContainerService, ref: str, dst_path: str, tar_in: BinaryIO, *,
            owner: tuple[int, int] | None = (0, 0)) -> int:
    """docker's ``PUT /containers/{id}/archive``: unpack ``tar_in`` into the directory
    ``dst_path`` (which must exist). ``owner`` None keeps the archive's ownership."""
    c = svc.get(ref)
    check_writable(c)
    with open_root(svc, c.id) as root:
        st = stat_in(root, dst_path, follow=True)
        if st is None:
            raise NotFound(f"Could not find the file {dst_path} in container {ref}")
        if not st.is_dir:
            raise InvalidArgument(f"extraction point is not a directory: {dst_path}")
        return extract(tar_in, root, dst_path, owner=owner)


def check_writable(c: Container) -> None:
    if (c.config.get("HostConfig") or {}).get("ReadonlyRootfs"):
        raise FailedPrecondition("container rootfs is marked read-only")


def pipe(produce: Callable[[BinaryIO], object], consume: Callable[[BinaryIO], object]) -> None:
    """Run ``produce`` (writing a stream) in a thread and ``consume`` (reading it) here."""
    r, w = os.pipe()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                produce(f)
        except BaseException as e:   # handed over to the consuming side
            failed.append(e)

    t = threading.Thread(target=run, name="cp-archive", daemon=True)
    t.start()
    consumer_error: BaseException | None = None
    with os.fdopen(r, "rb") as f:
        try:
            consume(f)
            while f.read(_CHUNK):
                pass
        except BaseException as e:
            consumer_error = e
    t.join()
    producer = [e for e in failed if not isinstance(e, BrokenPipeError)]
    if producer:
        raise producer[0]
    if consumer_error is not None:
        raise consumer_error


# --- commit -------------------------------------------------------------------------------------


class _Hashing:
    def __init__(self, out: Any) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _LayerBlob:
    path: str
    digest: str         # of the gzip stream
    size: int
    diff_id: str        # of the tar
    empty: bool


def _write_layer(svc: ContainerService, c: Container, path: str) -> _LayerBlob:
    found, own = _changes_of(svc, c)
    with open(path, "wb") as raw, Root(own) as root:
        compressed = _Hashing(raw)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=cast(Any, compressed),
                           compresslevel=6, mtime=0)
        plain = _Hashing(gz)
        tw = TarWriter(cast(BinaryIO, plain))
        for ch in found:
            if ch.implied:
                continue
            arcname = "/".join(ch.parts)
            if ch.kind == "D":
                parent, base = posixpath.split(arcname)
                info = tarfile.TarInfo(posixpath.join(parent, WHITEOUT_PREFIX + base))
                info.mode = 0o600
                info.mtime = int(time.time())
                tw.add_file(info)
                continue
            with root.resolve(arcname) as loc:
                tw.add(loc.fd, loc.name, arcname, recurse=False)
                if ch.opaque:
                    st = loc.lstat()
                    info = tarfile.TarInfo(posixpath.join(arcname, WHITEOUT_OPAQUE))
                    if st is not None:
                        info.mode = stat.S_IMODE(st.st_mode) & 0o777
                        info.uid, info.gid = st.st_uid, st.st_gid
                        info.mtime = int(st.st_mtime)
                    tw.add_file(info)
        empty = tw.entries == 0
        tw.close()
        gz.close()
    return _LayerBlob(path, "sha256:" + compressed.hash.hexdigest(), compressed.size,
                      "sha256:" + plain.hash.hexdigest(), empty)


def commit(svc: ContainerService, ref: str, *, repository_tag: str | None = None,
           message: str = "", author: str = "", changes: Sequence[str] = (),
           pause: bool = True) -> ImageRecord:
    """docker's ``commit``: an image of the container's image plus one layer of its changes
    (none when it changed nothing), its config the container's, ``changes`` applied."""
    from dockyard.image.archive import (
        Archive,
        ArchiveImage,
        DirFiles,
        Span,
        apply_changes,
        load_images,
        rfc3339,
    )
    from dockyard.image.reference import parse_reference
    from dockyard.model.image import (
        DOCKER_CONFIG,
        DOCKER_LAYER_GZIP,
        DOCKER_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER_GZIP,
        OCI_MANIFEST,
        Manifest,
        parse_manifest_document,
    )

    c = svc.get(ref)
    apply_changes({}, changes)          # a bad --change fails before anything is done
    names: tuple[str, ...] = ()
    if repository_tag:
        r = parse_reference(repository_tag)
        if r.digest:
            raise InvalidArgument(f"refusing to create a tag with a digest reference: "
                                  f"{repository_tag}")
        names = (f"{r.repository}:{r.tag}",)
    try:
        base = svc.images.store.get(c.image_id)
    except NotFound:
        raise NotFound(f"the image of container {c.short_id} ({c.image_name}) is gone") \
            from None
    tmp = os.path.join(svc.root, "tmp")
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    spool = tempfile.mkdtemp(prefix="commit-", dir=tmp)
    try:
        paused_here = False
        if pause and c.running and not svc.paused(c):
            svc.pause(c.id)
            paused_here = True
        try:
            layer = _write_layer(svc, c, os.path.join(spool, "layer.tar.gz"))
        finally:
            if paused_here:
                svc.pause(c.id, resume=True)
        config = _commit_config(svc, c, base, layer, message=message, author=author,
                                changes=changes, created=rfc3339(time.time()),
                                apply=apply_changes)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        docker = base.manifest_media_type == DOCKER_MANIFEST
        layers = [{"mediaType": la.blob_media_type, "digest": la.blob_digest,
                   "size": la.blob_size} for la in base.layers]
        if not layer.empty:
            layers.append({"mediaType": DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP,
                           "digest": layer.digest, "size": layer.size})
        media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": media_type,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "digest": config_digest, "size": len(config)},
            "layers": layers}, separators=(",", ":")).encode()
        parsed = parse_manifest_document(manifest, media_type)
        assert isinstance(parsed, Manifest)
        from dockyard.model.image import Digest

        digest = Digest("sha256:" + hashlib.sha256(manifest).hexdigest())
        archive = Archive("commit", DirFiles(spool),
                          [ArchiveImage(manifest, digest, parsed, names=names)])
        archive.blobs[config_digest] = config
        if not layer.empty:
            archive.blobs[layer.digest] = Span(layer.path, 0, layer.size)
        content = svc.images.content
        for la in base.layers:
            if content.has(la.blob_digest):
                archive.blobs[la.blob_digest] = Span(content.path(la.blob_digest), 0,
                                                     la.blob_size)
        (record,) = load_images(archive, content, svc.images.snapshots, svc.images.store)
        return record
    finally:
        import shutil

        shutil.rmtree(spool, ignore_errors=True)


_FROM_CONTAINER = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels")


def _commit_config(svc: ContainerService, c: Container, base: ImageRecord, layer: _LayerBlob,
                   *, message: str, author: str, changes: Sequence[str], created: str,
                   apply: Callable[[dict[str, Any], Sequence[str]], dict[str, Any]]) -> bytes:
    raw = svc.images.raw_config(base)
    cfg = dict(raw.get("config") or {})
    container_cfg = c.config.get("Config") or {}
    for key in _FROM_CONTAINER:
        if key in container_cfg:
            cfg[key] = container_cfg[key]
    if not cfg.get("Labels"):
        cfg["Labels"] = None
    cfg = apply(cfg, changes)
    doc: dict[str, Any] = {k: raw[k] for k in ("architecture", "os", "os.version",
                                               "os.features", "variant") if k in raw}
    rootfs = dict(raw.get("rootfs") or {"type": "layers"})
    diff_ids = list(rootfs.get("diff_ids") or [])
    if not layer.empty:
        diff_ids.append(layer.diff_id)
    rootfs["diff_ids"] = diff_ids
    entry: dict[str, Any] = {"created": created,
                             "created_by": " ".join(container_cfg.get("Cmd") or [])}
    if author:
        entry["author"] = author
    if message:
        entry["comment"] = message
    if layer.empty:
        entry["empty_layer"] = True
    history = [*(raw.get("history") or []), entry]
    doc.update({"created": created, "config": cfg, "rootfs": rootfs, "history": history})
    if author:
        doc["author"] = author
    if message:
        doc["comment"] = message
    return json.dumps(doc, separators=(",", ":")).encode()


def translate(e: OSError, path: str) -> SyscallError:
    """An OSError met inside a container's filesystem, as one of ours."""
    return SyscallError("cp", e.errno or 0, path)


__all__ = ["Location", "PathStat", "Root", "TarWriter", "archive_name", "changes",
           "check_writable", "commit", "copy_from", "copy_to", "export", "extract",
           "open_root", "pipe", "stat_in", "translate", "write_tar"]

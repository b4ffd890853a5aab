"""Snapshotters: unpacked layers keyed by chain id, and container snapshots stacked on them.

A snapshotter only lays out directories and *describes* mounts (:class:`Mount`);
:mod:`dockyard.image.mounter` performs them. Layout under ``root`` (both snapshotters)::

    layers/<chain-id hex>/     one committed layer, overlayfs whiteout format (see unpack)
    l/<13 chars>               -> ../layers/<hex>: short names keep mount options small
    staging/<random>/          a layer being unpacked (prepare_layer), renamed into place
    containers/<key>/          upper/ + work/ (overlay) or fs/ (copy)

A layer becomes visible only by the rename in :meth:`commit_layer`, so a crash mid-unpack
leaves a staging directory (swept by :meth:`gc_staging`), never half a layer.
"""

from __future__ import annotations

import base64
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from typing import Protocol

from dockyard.errors import InvalidArgument, NotFound, SyscallError
from dockyard.image.whiteout import OPAQUE_XATTR
from dockyard.model.image import is_digest
from dockyard.values import value

# The kernel refuses more lower layers than this (OVL_MAX_STACK).
OVERLAY_MAX_LAYERS = 500


@value
class Mount:
    """A mount to perform: ``mount -t type -o options source <target>``.

    ``chdir``, when set, is the directory relative paths in ``options`` start from (overlay's
    short ``lowerdir`` names); the mounter resolves them there.
    """

    type: str
    source: str
    options: tuple[str, ...]
    chdir: str = ""


@value
class Usage:
    size: int      # bytes of the snapshot's own changes
    inodes: int


class Snapshotter(Protocol):
    root: str

    def has_layer(self, chain_id: str) -> bool: ...

    def layer_path(self, chain_id: str) -> str: ...

    def prepare_layer(self, chain_id: str) -> str: ...

    def commit_layer(self, chain_id: str, tmpdir: str) -> None: ...

    def abort_layer(self, tmpdir: str) -> None: ...

    def remove_layer(self, chain_id: str) -> None: ...

    def prepare(self, key: str, parents: Sequence[str], readonly: bool = False
                ) -> list[Mount]: ...

    def view(self, key: str, parents: Sequence[str]) -> list[Mount]: ...

    def remove(self, key: str) -> None: ...

    def usage(self, key: str) -> Usage: ...


def _hex(chain_id: str) -> str:
    if not is_digest(chain_id):
        raise InvalidArgument(f"invalid chain id {chain_id!r} (want sha256:<64 hex digits>)")
    return chain_id[7:]


def _check_key(key: str) -> str:
    if not key or len(key) > 128 or "/" in key or key in (".", "..") or "\0" in key:
        raise InvalidArgument(f"invalid snapshot key {key!r}")
    return key


def _rmtree(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass


class _LayerStore:
    """What both snapshotters share: the committed layers and the container directories."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        for sub in ("layers", "l", "staging", "containers"):
            os.makedirs(os.path.join(self.root, sub), mode=0o700, exist_ok=True)

    # --- layers -------------------------------------------------------------------------

    def layer_path(self, chain_id: str) -> str:
        return os.path.join(self.root, "layers", _hex(chain_id))

    def has_layer(self, chain_id: str) -> bool:
        return os.path.isdir(self.layer_path(chain_id))

    @staticmethod
    def short_name(chain_id: str) -> str:
        """13 base32 characters (65 bits) of the chain id: unique enough, short enough."""
        raw = bytes.fromhex(_hex(chain_id))[:9]
        return base64.b32encode(raw).decode().lower()[:13]

    def prepare_layer(self, chain_id: str) -> str:
        """An empty directory to unpack ``chain_id``'s layer into (then commit or abort)."""
        tmp = os.path.join(self.root, "staging", f"{_hex(chain_id)[:12]}-{os.urandom(16).hex()}")
        os.mkdir(tmp, 0o755)
        os.chmod(tmp, 0o755)  # noqa: S103 (the rootfs's "/" unless the layer says otherwise)
        return tmp

    def commit_layer(self, chain_id: str, tmpdir: str) -> None:
        """Publish an unpacked layer; one committed before (a concurrent pull) wins."""
        target = self.layer_path(chain_id)
        link = os.path.join(self.root, "l", self.short_name(chain_id))
        try:
            os.symlink(os.path.join("..", "layers", _hex(chain_id)), link)
        except FileExistsError:
            pass
        try:
            os.rename(tmpdir, target)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise SyscallError("rename", e.errno or 0, tmpdir) from None
            _rmtree(tmpdir)

    def abort_layer(self, tmpdir: str) -> None:
        if os.path.dirname(os.path.abspath(tmpdir)) != os.path.join(self.root, "staging"):
            raise InvalidArgument(f"{tmpdir} is not a staging directory of {self.root}")
        _rmtree(tmpdir)

    def remove_layer(self, chain_id: str) -> None:
        target = self.layer_path(chain_id)
        if not os.path.isdir(target):
            raise NotFound(f"layer {chain_id} not found")
        # Out of sight first (atomic), then deleted: a crash leaves garbage in staging.
        trash = os.path.join(self.root, "staging", f"rm-{os.urandom(16).hex()}")
        os.rename(target, trash)
        try:
            os.unlink(os.path.join(self.root, "l", self.short_name(chain_id)))
        except FileNotFoundError:
            pass
        _rmtree(trash)

    def gc_staging(self) -> None:
        """Remove what crashed unpacks and removals left (no unpack may be running)."""
        staging = os.path.join(self.root, "staging")
        for name in os.listdir(staging):
            _rmtree(os.path.join(staging, name))

    def _lowers(self, parents: Sequence[str]) -> list[str]:
        """``parents``: chain ids base first, as chain_ids() gives them; each committed."""
        for chain_id in parents:
            if not self.has_layer(chain_id):
                raise NotFound(f"layer {chain_id} is not unpacked")
        return list(parents)

    # --- containers ---------------------------------------------------------------------

    def _container(self, key: str) -> str:
        return os.path.join(self.root, "containers", _check_key(key))

    def _new_container(self, key: str) -> str:
        path = self._container(key)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            from dockyard.errors import AlreadyExists

            raise AlreadyExists(f"snapshot {key!r} exists already") from None
        return path

    def remove(self, key: str) -> None:
        """Delete a container snapshot (unmount it first)."""
        path = self._container(key)
        if not os.path.isdir(path):
            raise NotFound(f"snapshot {key!r} not found")
        trash = os.path.join(self.root, "staging", f"rm-{os.urandom(16).hex()}")
        os.rename(path, trash)
        _rmtree(trash)

    def _usage_of(self, path: str) -> Usage:
        size = inodes = 0
        seen: set[tuple[int, int]] = set()
        stack = [path]
        while stack:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    st = entry.stat(follow_symlinks=False)
                    if st.st_nlink > 1:
                        if (st.st_dev, st.st_ino) in seen:
                            continue
                        seen.add((st.st_dev, st.st_ino))
                    inodes += 1
                    size += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        return Usage(size, inodes)


class OverlaySnapshotter(_LayerStore):
    """Layers stacked with overlayfs; a container's changes go to its own upper directory."""

    def prepare(self, key: str, parents: Sequence[str], readonly: bool = False
                ) -> list[Mount]:
        lowers = self._lowers(parents)
        if len(lowers) > OVERLAY_MAX_LAYERS:
            raise InvalidArgument(
                f"an image of {len(lowers)} layers cannot be stacked with overlayfs (the kernel "
                f"takes at most {OVERLAY_MAX_LAYERS})", hint="squash the image")
        path = self._new_container(key)
        if readonly:
            return self._readonly(lowers, path)
        for sub in ("upper", "work"):
            os.mkdir(os.path.join(path, sub), 0o755)
        os.chmod(os.path.join(path, "upper"), 0o755)  # noqa: S103 (the container's "/")
        rel = os.path.join("containers", key)
        if not lowers:
            return [Mount("bind", os.path.join(path, "upper"), ("rbind", "rw"))]
        return [Mount("overlay", "overlay", (
            "lowerdir=" + ":".join(f"l/{self.short_name(c)}" for c in reversed(lowers)),
            f"upperdir={rel}/upper", f"workdir={rel}/work", "index=off"), chdir=self.root)]

    def _readonly(self, lowers: list[str], path: str) -> list[Mount]:
        if not lowers:
            os.mkdir(os.path.join(path, "empty"), 0o755)
            return [Mount("bind", os.path.join(path, "empty"), ("rbind", "ro"))]
        if len(lowers) == 1:  # overlay without an upper wants two lowers
            return [Mount("bind", self.layer_path(lowers[0]), ("rbind", "ro"))]
        return [Mount("overlay", "overlay", (
            "lowerdir=" + ":".join(f"l/{self.short_name(c)}" for c in reversed(lowers)),
            "index=off", "ro"), chdir=self.root)]

    def view(self, key: str, parents: Sequence[str]) -> list[Mount]:
        return self.prepare(key, parents, readonly=True)

    def usage(self, key: str) -> Usage:
        path = self._container(key)
        if not os.path.isdir(path):
            raise NotFound(f"snapshot {key!r} not found")
        upper = os.path.join(path, "upper")
        return self._usage_of(upper) if os.path.isdir(upper) else Usage(0, 0)


class CopySnapshotter(_LayerStore):
    """Where overlayfs is unavailable: each snapshot is a full copy of its layers, merged
    (whiteouts and opaque directories applied while copying), bind-mounted."""

    def prepare(self, key: str, parents: Sequence[str], readonly: bool = False
                ) -> list[Mount]:
        lowers = self._lowers(parents)
        path = self._new_container(key)
        fs = os.path.join(path, "fs")
        try:
            os.mkdir(fs, 0o755)
            os.chmod(fs, 0o755)  # noqa: S103 (the container's "/")
            for chain_id in lowers:
                _apply_layer(self.layer_path(chain_id), fs)
        except BaseException:
            _rmtree(path)
            raise
        return [Mount("bind", fs, ("rbind", "ro" if readonly else "rw"))]

    def view(self, key: str, parents: Sequence[str]) -> list[Mount]:
        return self.prepare(key, parents, readonly=True)

    def usage(self, key: str) -> Usage:
        fs = os.path.join(self._container(key), "fs")
        if not os.path.isdir(fs):
            raise NotFound(f"snapshot {key!r} not found")
        return self._usage_of(fs)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _remove(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _copy_xattrs(src: str | int, dst: str | int) -> None:
    follow = not isinstance(src, str)
    try:
        names = os.listxattr(src, follow_symlinks=follow)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        if name.startswith("trusted.overlay."):
            continue
        value = os.getxattr(src, name, follow_symlinks=follow)
        try:
            os.setxattr(dst, name, value, follow_symlinks=follow)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _apply_layer(layer: str, fs: str) -> None:
    """Merge one overlay-format layer directory onto ``fs`` as overlayfs would show it."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []
    root_st = os.lstat(layer)
    dirs.append((fs, root_st))
    stack = [("", layer)]
    while stack:
        rel_dir, src_dir = stack.pop()
        with os.scandir(src_dir) as it:
            entries = list(it)
        for entry in entries:
            rel = os.path.join(rel_dir, entry.name)
            src = entry.path
            dst = os.path.join(fs, rel)
            st = entry.stat(follow_symlinks=False)
            mode = st.st_mode
            if _is_whiteout(st):
                _remove(dst)
                continue
            if stat.S_ISDIR(mode):
                opaque = _get_opaque(src)
                try:
                    old = os.lstat(dst)
                except FileNotFoundError:
                    old = None
                if old is not None and (opaque or not stat.S_ISDIR(old.st_mode)):
                    _remove(dst)
                    old = None
                if old is None:
                    os.mkdir(dst, 0o700)
                _copy_xattrs(src, dst)
                os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
                dirs.append((dst, st))
                stack.append((rel, src))
                continue
            _remove(dst)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                os.link(links[key], dst, follow_symlinks=False)
                continue
            if stat.S_ISREG(mode):
                _copy_file(src, dst, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(src), dst)
                os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            else:  # fifo, device, socket
                os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
                os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
                os.chmod(dst, stat.S_IMODE(mode))
                _copy_xattrs(src, dst)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            if st.st_nlink > 1:
                links[key] = dst
    for path, st in dirs:
        os.chmod(path, stat.S_IMODE(st.st_mode))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _get_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_file(src: str, dst: str, st: os.stat_result) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                       0o600)
        try:
            left = st.st_size
            while left > 0:
                done = os.copy_file_range(fin, fout, left)
                if done == 0:
                    break
                left -= done
            os.fchown(fout, st.st_uid, st.st_gid)
            os.fchmod(fout, stat.S_IMODE(st.st_mode))
            _copy_xattrs(fin, fout)
            os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fout)
    finally:
        os.close(fin)

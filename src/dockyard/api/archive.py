"""A container's filesystem over the API: ``HEAD/GET/PUT /containers/{id}/archive`` (what
``docker cp`` uses), ``GET /containers/{id}/export`` and ``GET /containers/{id}/changes``.

Every path is resolved inside the container's rootfs by the engine (engine/rootfs_ops.py's
``Root``: symlinks lead to the container's own files, ``..`` stops at its root), so nothing a
client names, and nothing a container plants, reads or writes outside it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import errno
import io
import json
import os
import stat
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from dockyard.api.bodies import ChunkWriter
from dockyard.errors import DockyardError, InvalidArgument, NotFound, PermissionDenied

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.rootfs_ops import Root

STAT_HEADER = "X-Docker-Container-Path-Stat"
TAR = "application/x-tar"

# Go's os.FileMode type bits (docker's path stat carries a FileMode, not st_mode)
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20

# docker's change kinds
_KINDS = {"C": 0, "A": 1, "D": 2}


def go_file_mode(mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode``."""
    out = mode & 0o777
    if mode & stat.S_ISUID:
        out |= _GO_SETUID
    if mode & stat.S_ISGID:
        out |= _GO_SETGID
    if mode & stat.S_ISVTX:
        out |= _GO_STICKY
    if stat.S_ISDIR(mode):
        out |= _GO_DIR
    elif stat.S_ISLNK(mode):
        out |= _GO_SYMLINK
    elif stat.S_ISFIFO(mode):
        out |= _GO_PIPE
    elif stat.S_ISSOCK(mode):
        out |= _GO_SOCKET
    elif stat.S_ISCHR(mode):
        out |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISBLK(mode):
        out |= _GO_DEVICE
    return out


def _rfc3339(ts: float) -> str:
    t = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _resolved(root: Root, path: str) -> str:
    """Where the symlink ``path`` finally leads, as an absolute path inside ``root`` (docker's
    linkTarget: the link evaluated in the scope of the container's rootfs)."""
    with root.resolve(path, follow=True) as loc:
        top = os.readlink(f"/proc/self/fd/{root.fd}")
        here = os.readlink(f"/proc/self/fd/{loc.fd}")
    rel = here[len(top):] if here.startswith(top) else ""
    return "/" + "/".join(p for p in (*rel.split("/"), loc.name) if p)


def path_stat(root: Root, path: str, container: str) -> dict[str, Any]:
    """docker's ``ContainerPathStat`` of ``path`` (the last component not followed);
    NotFound with docker's words when it does not exist."""
    from dockyard.engine.rootfs_ops import stat_in

    try:
        st = stat_in(root, path)
    except NotADirectoryError:
        st = None
    if st is None:
        raise NotFound(f"Could not find the file {path} in container {container}")
    target = _resolved(root, path) if stat.S_ISLNK(st.mode) else ""
    return {"name": st.name, "size": st.size, "mode": go_file_mode(st.mode),
            "mtime": _rfc3339(st.mtime), "linkTarget": target}


def path_error(e: OSError, path: str, container: str, *,
               extracting: bool = False) -> DockyardError:
    """An OSError met at ``path`` in the container's rootfs, in docker's categories (a name
    too long or a symlink loop is the request's fault, not the daemon's). ``extracting``:
    met while unpacking an archive into ``path``, which exists (an entry's own path failed)."""
    from dockyard.engine.rootfs_ops import translate

    if extracting and e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EEXIST):
        where = f" ({e.filename})" if isinstance(e.filename, str) else ""
        return InvalidArgument(f"cannot extract the archive into {path}{where}: "
                               f"{os.strerror(e.errno or 0)}")
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"Could not find the file {path} in container {container}")
    if e.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.EISDIR):
        return InvalidArgument(f"{path}: {os.strerror(e.errno)}")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{path}: {os.strerror(e.errno)}")
    return translate(e, path)


def _stat_header(doc: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _path_arg(req: Request) -> str:
    path = req.arg("path")
    if not path:
        raise InvalidArgument("bad parameter: path cannot be empty")
    if "\x00" in path:
        raise InvalidArgument("bad parameter: path contains a NUL byte")
    return path


def container_archive(app: App, h: Handler, req: Request, id: str) -> None:
    """``HEAD`` (the path's stat only) and ``GET`` (its stat and a tar of it)."""
    from dockyard.api.http import Chunks
    from dockyard.engine.rootfs_ops import open_root, write_tar

    path = _path_arg(req)
    with app.services() as svc:
        c = svc.get(id)
        with open_root(svc, c.id) as root:
            try:
                header = _stat_header(path_stat(root, path, id))
            except OSError as e:
                raise path_error(e, path, id) from None
            if req.method == "HEAD":
                h.reply(200, b"", TAR, {STAT_HEADER: header})
                return
            h.head(200, {"Content-Type": TAR, "Transfer-Encoding": "chunked",
                         STAT_HEADER: header})
            out = ChunkWriter(Chunks(h))
            try:
                size = write_tar(root, path, cast(BinaryIO, out))
            except BrokenPipeError:
                raise
            except OSError as e:
                raise path_error(e, path, id) from None
            out.close(size)


def container_archive_put(app: App, h: Handler, req: Request, id: str) -> None:
    """Unpack the request's tar into the directory ``path``. A directory is never replaced by
    a non-directory or the other way round (``noOverwriteDirNonDir``, always on here);
    ``copyUIDGID`` keeps the archive's owners (else root's)."""
    from dockyard.engine.rootfs_ops import copy_to

    path = _path_arg(req)
    owner = None if req.flag("copyUIDGID") else (0, 0)
    with app.services() as svc:
        c = svc.get(id)
        try:
            copy_to(svc, c.id, path, io.BytesIO(req.body), owner=owner)
        except NotFound:
            raise NotFound(f"Could not find the file {path} in container {id}") from None
        except OSError as e:
            raise path_error(e, path, id, extracting=True) from None
    h.reply(200, b"", "text/plain")


def container_export(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine.rootfs_ops import export

    with app.services() as svc:
        c = svc.get(id)          # a missing container is a 404, before the stream
        out = ChunkWriter(h.stream(TAR))
        out.close(export(svc, c.id, cast(BinaryIO, out)))


def container_changes(app: App, h: Handler, req: Request, id: str) -> None:
    from dockyard.engine.rootfs_ops import changes

    with app.services() as svc:
        found = changes(svc, id)
    # docker's answer for "nothing changed" is null
    h.reply_json(200, [{"Path": path, "Kind": _KINDS[kind]} for kind, path in found] or None)

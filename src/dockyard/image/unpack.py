"""Streaming, confined unpacking of one image layer into a directory (overlayfs layout).

One pass over the compressed bytes: decompress, hash (the diff_id is the sha256 of the
uncompressed tar), parse tar headers (ustar, GNU long names, PAX) and write each entry with
plain syscalls; no entry is buffered beyond the read chunk. AUFS whiteouts become overlayfs
ones: ``.wh.<name>`` a 0:0 character device ``<name>``, ``.wh..wh..opq`` the
``trusted.overlay.opaque=y`` xattr on its directory; other ``.wh..wh.*`` entries (AUFS
metadata) are dropped.

Confinement (a layer is untrusted input):

* names are cleaned lexically; an absolute name is taken relative to ``dest`` (as docker does),
  a name whose ``..`` climbs above ``dest`` is refused;
* every parent directory is a real directory: found with ``lstat`` (once per directory, then
  remembered) or created; a parent that is a symlink is refused, so ``a -> /etc`` followed by
  ``a/passwd`` cannot write ``/etc/passwd``;
* the last component is never followed (``O_EXCL|O_NOFOLLOW`` creation, ``lchown``,
  ``lutimes``, ``link`` without ``AT_SYMLINK_FOLLOW``); an entry that meets an existing one
  removes it first (a directory only when the new entry is not a directory);
* hardlink targets are cleaned the same way and must exist in ``dest``; linking a symlink links
  the symlink itself, never what it points to;
* ``trusted.overlay.*`` xattrs from the tar are dropped: only the whiteout conversion sets them.

A refused or corrupt layer raises :class:`~dockyard.errors.InvalidArgument` and ``dest`` is
removed, as docker refuses such a layer as a whole.

Rootless (``geteuid() != 0``): ownership is not applied and device nodes are skipped (the
kernel refuses them), and whiteouts, being device nodes, fail with PermissionDenied; a user
namespace with ``userxattr`` overlay whiteouts is future work.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import queue
import shutil
import stat
import threading

from dockyard.errors import DockyardError, InvalidArgument, PermissionDenied, SyscallError
from dockyard.image.compression import NONE, Readable, open_decompressed
from dockyard.image.whiteout import (
    OPAQUE_XATTR,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
)
from dockyard.model.image import Digest
from dockyard.values import value

log = logging.getLogger(__name__)

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_CHUNK = 1 << 20
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_DROPPED_XATTR_PREFIX = "trusted.overlay."

# Type flags.
_REG = (b"0", b"\0", b"7")
_LNK = b"1"
_SYM = b"2"
_CHR = b"3"
_BLK = b"4"
_DIR = b"5"
_FIFO = b"6"
_PAX = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"


@value
class UnpackResult:
    diff_id: Digest   # sha256 of the uncompressed tar, all of it (padding after the end too)
    size: int         # uncompressed bytes
    files: int        # tar entries applied (whiteouts included)


def unpack_layer(reader: Readable, dest: str, *, compression: str = NONE,
                 chown: bool = True) -> UnpackResult:
    """Unpack the layer read from ``reader`` (compressed with ``compression``: "gzip",
    "zstd", "" or "auto") into ``dest`` (created if missing, usually empty).

    On any error ``dest`` is removed and InvalidArgument (a bad or hostile layer),
    PermissionDenied or SyscallError (the host failed us) is raised.
    """
    source: Readable = reader if compression == NONE else open_decompressed(reader, compression)
    try:
        os.mkdir(dest, 0o755)
    except FileExistsError:
        pass
    except OSError as e:
        raise SyscallError("mkdir", e.errno or 0, dest) from None
    feed = _Feed(source)
    unpacker = _Unpacker(feed, dest, chown=chown and os.geteuid() == 0)
    try:
        files = unpacker.run()
        feed.close()
        return UnpackResult(Digest("sha256:" + feed.hash.hexdigest()), feed.size, files)
    except BaseException as e:
        feed.close()
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, DockyardError):
            raise
        if isinstance(e, PermissionError):
            raise PermissionDenied(f"unpacking a layer into {dest}: {e}") from None
        if isinstance(e, OSError):
            name = e.filename
            path = os.fsdecode(name) if isinstance(name, (str, bytes)) and name else dest
            raise SyscallError("unpack", e.errno or 0, path) from None
        if isinstance(e, ValueError):  # an embedded NUL in a name, a bad number
            raise InvalidArgument(f"invalid layer: {e}") from None
        raise


def _num(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 when the high bit is set."""
    try:
        return int(field.rstrip(b"\0"), 8)  # the usual "0000644\0" (int() allows spaces)
    except ValueError:
        return _num_slow(field)


def _num_slow(field: bytes) -> int:
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:  # negative base-256: only mtimes before 1970 use it
            value -= 1 << (8 * (len(field) - 1))
        return value
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # NUL padding after the last record
            break
        space = data.find(b" ", pos)
        if space < 0:
            raise InvalidArgument("invalid layer: malformed PAX header")
        length = int(data[pos:space])
        end = pos + length
        if length <= 0 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidArgument("invalid layer: malformed PAX record")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq:
            raise InvalidArgument("invalid layer: malformed PAX record")
        out[key] = value
        pos = end
    return out


def _pax_time(value: bytes) -> int:
    """A PAX time ("1234.5678") in nanoseconds, without a float's rounding."""
    whole, _, frac = value.partition(b".")
    ns = int((frac + b"000000000")[:9]) if frac else 0
    secs = int(whole)
    return secs * 1_000_000_000 - ns if whole.startswith(b"-") else secs * 1_000_000_000 + ns


def _show(name: bytes) -> str:
    return repr(os.fsdecode(name))


class _Feed:
    """Reads, decompresses and hashes the layer on a thread of its own, a few chunks ahead.

    Decompression (ISA-L, zstd) and sha256 release the GIL, and so do the syscalls that write
    the entries: with a second core, the tar is written as fast as it is decoded.
    """

    _DEPTH = 4

    def __init__(self, source: Readable) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._source = source
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="layer-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._source.read(_CHUNK)
                if chunk:
                    self.hash.update(chunk)
                    self.size += len(chunk)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as e:  # handed over to the unpacking thread, raised there
            self._put(e)

    def _put(self, item: bytes | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1, /) -> bytes:
        """The next chunk (any size), b"" at the end."""
        if self._done:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Unpacker:
    def __init__(self, source: Readable, dest: str, *, chown: bool) -> None:
        self.read = source.read
        self.dest = dest
        self.destb = os.fsencode(dest) + b"/"
        self.chown = chown
        self.root = os.geteuid() == 0
        self.consumed = 0   # bytes of the stream before buf
        self.buf = b""
        self.view = memoryview(self.buf)
        self.pos = 0
        # Relative names of real directories met or made during this unpack: their whole
        # chain below dest is checked, so entries beneath them need no lstat.
        self.dirs: set[bytes] = {b""}
        # Directory metadata set last: mode (a 0555 dir must still take its entries) and
        # mtime (each entry written below bumps it).
        self.dir_meta: dict[bytes, tuple[int, int, int]] = {}
        self.globals: dict[bytes, bytes] = {}

    # --- the decompressed stream ------------------------------------------------------

    def _fill(self, want: int) -> None:
        """Make at least ``want`` bytes available at ``pos`` or fail as truncated."""
        while len(self.buf) - self.pos < want:
            chunk = self.read(_CHUNK)
            if not chunk:
                raise InvalidArgument("invalid layer: unexpected end of the tar stream")
            self.consumed += self.pos
            rest = len(self.buf) - self.pos
            self.buf = self.buf[self.pos:] + chunk if rest else chunk
            self.view = memoryview(self.buf)
            self.pos = 0

    def _take(self, n: int) -> bytes:
        if len(self.buf) - self.pos < n:
            self._fill(n)
        pos = self.pos
        self.pos = pos + n
        return self.buf[pos:pos + n]

    def _skip(self, n: int) -> None:
        while n:
            avail = len(self.buf) - self.pos
            if not avail:
                self._fill(1)
                avail = len(self.buf) - self.pos
            step = min(avail, n)
            self.pos += step
            n -= step

    def _copy(self, fd: int, n: int) -> None:
        """Write the next ``n`` bytes of the stream to ``fd``."""
        write = os.write
        while n:
            avail = len(self.buf) - self.pos
            if not avail:
                self._fill(1)
                avail = len(self.buf) - self.pos
            end = self.pos + min(avail, n)
            while self.pos < end:
                done = write(fd, self.view[self.pos:end])
                self.pos += done
                n -= done

    def _drain(self) -> None:
        """The bytes after the end-of-archive blocks count in the diff_id too."""
        while self.read(_CHUNK):
            pass

    # --- entries ------------------------------------------------------------------------

    def run(self) -> int:
        """Unpack every entry; returns how many."""
        files = 0
        pax: dict[bytes, bytes] = {}
        long_name = long_link = b""
        while True:
            if len(self.buf) - self.pos < _BLOCK:
                if self.pos == len(self.buf) and not self._more():
                    break  # no end-of-archive blocks at all: tolerated, like GNU tar
                self._fill(_BLOCK)
            hdr = self._take(_BLOCK)
            if hdr == _ZERO_BLOCK:
                break
            chksum = _num(hdr[148:156])
            if chksum != sum(hdr) - sum(hdr[148:156]) + 256:
                offset = self.consumed + self.pos - _BLOCK
                raise InvalidArgument(f"invalid layer: not a tar header at byte {offset} "
                                      "(bad checksum)")
            kind = hdr[156:157]
            size = _num(hdr[124:136])
            if size < 0:
                raise InvalidArgument("invalid layer: negative entry size")
            if kind in (_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK):
                data = self._take(size)
                self._skip(-size % _BLOCK)
                if kind == _PAX:
                    pax = _pax_records(data)
                elif kind == _PAX_GLOBAL:
                    self.globals.update(_pax_records(data))
                elif kind == _GNU_LONGNAME:
                    long_name = data.rstrip(b"\0")
                else:
                    long_link = data.rstrip(b"\0")
                continue
            if self.globals:
                pax = {**self.globals, **pax}
            if pax:
                if b"size" in pax:
                    size = int(pax[b"size"])
                    if size < 0:
                        raise InvalidArgument("invalid layer: negative entry size")
                if any(k.startswith(b"GNU.sparse.") for k in pax):
                    raise InvalidArgument("invalid layer: sparse files are not supported")
            if b"path" in pax:
                raw_name = pax[b"path"]
            elif long_name:
                raw_name = long_name
            else:
                raw_name = _cstr(hdr[0:100])
                if hdr[257:263] == b"ustar\0" and hdr[345] != 0:
                    raw_name = _cstr(hdr[345:500]) + b"/" + raw_name
            if b"linkpath" in pax:
                link = pax[b"linkpath"]
            elif long_link:
                link = long_link
            else:
                link = _cstr(hdr[157:257])
            self._entry(kind, raw_name, link, size=size, hdr=hdr, pax=pax)
            files += 1
            pax = {}
            long_name = long_link = b""
        self._finish_dirs()
        self._drain()
        return files

    def _more(self) -> bool:
        chunk = self.read(_CHUNK)
        if not chunk:
            return False
        self.consumed += len(self.buf)
        self.buf = chunk
        self.view = memoryview(chunk)
        self.pos = 0
        return True

    def _clean(self, raw: bytes) -> bytes:
        """``raw`` as a name relative to dest; refuses one that climbs out."""
        name = raw[2:] if raw.startswith(b"./") else raw
        if b"/." in b"/" + name or name.startswith(b"/") or b"//" in name or \
                name.endswith(b"/"):
            name = posixpath.normpath(name.lstrip(b"/")) if name.strip(b"/") else b"."
            if name == b".." or name.startswith(b"../"):
                raise InvalidArgument(
                    f"invalid layer: {_show(raw)} points outside the layer directory",
                    hint="the image is broken or hostile; it was not unpacked")
            if name == b".":
                return b""
        return name

    def _entry(self, kind: bytes, raw_name: bytes, link: bytes, *, size: int, hdr: bytes,
               pax: dict[bytes, bytes]) -> None:
        name = self._clean(raw_name)
        if not name and kind != _DIR:
            raise InvalidArgument(f"invalid layer: {_show(raw_name)} names the layer's root "
                                  f"but is not a directory (type {kind!r})")
        parent, _, base = name.rpartition(b"/")
        if base.startswith(WHITEOUT_PREFIX) or name.startswith(WHITEOUT_META_PREFIX):
            self._skip(size + (-size % _BLOCK) if kind in _REG else 0)
            self._whiteout(name, parent, base)
            return
        if parent not in self.dirs:
            self._parent_dirs(parent, name, create=True)
        path = self.destb + name
        mode = _num(hdr[100:108]) & 0o7777
        uid = int(pax[b"uid"]) if b"uid" in pax else _num(hdr[108:116])
        gid = int(pax[b"gid"]) if b"gid" in pax else _num(hdr[116:124])
        mtime = _pax_time(pax[b"mtime"]) if b"mtime" in pax else _num(hdr[136:148]) * 10**9
        atime = _pax_time(pax[b"atime"]) if b"atime" in pax else mtime
        if kind in _REG:
            try:
                fd = os.open(path, _WRITE_FLAGS, 0o600)
            except FileExistsError:
                self._clear(name, path)
                fd = os.open(path, _WRITE_FLAGS, 0o600)
            try:
                if size:
                    self._copy(fd, size)
                if self.chown:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                if pax:
                    self._xattrs(fd, pax, name)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)
            pad = -size % _BLOCK
            if pad:
                self._skip(pad)
        elif kind == _DIR:
            if not name:
                self.dir_meta[b""] = (mode, atime, mtime)
                if self.chown:
                    os.chown(self.destb, uid, gid)
                return
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    self._clear(name, path)
                    os.mkdir(path, 0o700)
            if self.chown:
                os.chown(path, uid, gid, follow_symlinks=False)
            if pax:
                self._xattrs(path, pax, name)
            self.dirs.add(name)
            self.dir_meta[name] = (mode, atime, mtime)
        elif kind == _SYM:
            try:
                os.symlink(link, path)
            except FileExistsError:
                self._clear(name, path)
                os.symlink(link, path)
            if self.chown:
                os.chown(path, uid, gid, follow_symlinks=False)
            if pax:
                self._xattrs(path, pax, name)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        elif kind == _LNK:
            self._hardlink(name, path, link, mode=mode, uid=uid, gid=gid, atime=atime,
                           mtime=mtime)
        elif kind in (_CHR, _BLK, _FIFO):
            if kind == _FIFO:
                fmt = stat.S_IFIFO
                dev = 0
            else:
                if not self.root:
                    log.debug("rootless unpack: skipping the device node %s", _show(name))
                    return
                fmt = stat.S_IFCHR if kind == _CHR else stat.S_IFBLK
                major = int(pax[b"SCHILY.devmajor"]) if b"SCHILY.devmajor" in pax \
                    else _num(hdr[329:337])
                minor = int(pax[b"SCHILY.devminor"]) if b"SCHILY.devminor" in pax \
                    else _num(hdr[337:345])
                dev = os.makedev(major, minor)
            try:
                os.mknod(path, fmt | 0o600, dev)
            except FileExistsError:
                self._clear(name, path)
                os.mknod(path, fmt | 0o600, dev)
            if self.chown:
                os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode)  # just made by us: not a symlink
            if pax:
                self._xattrs(path, pax, name)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        elif kind == b"S":
            raise InvalidArgument(f"invalid layer: {_show(name)} is a sparse file "
                                  "(GNU sparse tar entries are not supported)")
        else:
            raise InvalidArgument(f"invalid layer: {_show(name)} has the unknown tar entry "
                                  f"type {kind!r}")

    def _hardlink(self, name: bytes, path: bytes, link: bytes, *, mode: int, uid: int,
                  gid: int, atime: int, mtime: int) -> None:
        target = self._clean(link)
        if not target or target == name:
            raise InvalidArgument(f"invalid layer: hardlink {_show(name)} -> {_show(link)} "
                                  "links to itself or to the layer's root")
        tparent = target.rpartition(b"/")[0]
        if tparent not in self.dirs:
            self._parent_dirs(tparent, target, create=False)
        tpath = self.destb + target
        try:
            try:
                os.link(tpath, path, follow_symlinks=False)
            except FileExistsError:
                self._clear(name, path)
                os.link(tpath, path, follow_symlinks=False)
        except FileNotFoundError:
            raise self._no_target(name, link) from None
        except PermissionError:  # EPERM: the target is a directory
            raise InvalidArgument(f"invalid layer: hardlink {_show(name)} -> {_show(link)}: "
                                  "the target is not a file") from None
        # As docker and GNU tar do: the header's metadata goes to the (shared) inode, unless
        # that inode is a symlink, whose mode means nothing.
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            if self.chown:
                os.chown(path, uid, gid, follow_symlinks=False)
            os.chmod(path, mode)
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)

    @staticmethod
    def _no_target(name: bytes, link: bytes) -> InvalidArgument:
        return InvalidArgument(f"invalid layer: hardlink {_show(name)} -> {_show(link)}: "
                               "the target is not in this layer")

    def _whiteout(self, name: bytes, parent: bytes, base: bytes) -> None:
        if name.startswith(WHITEOUT_META_PREFIX):
            return  # AUFS metadata (.wh..wh.plnk/, .wh..wh.aufs): nothing for overlay
        if parent not in self.dirs:
            self._parent_dirs(parent, name, create=True)
        if base == WHITEOUT_OPAQUE:
            try:
                os.setxattr(self.destb + parent, OPAQUE_XATTR, b"y", follow_symlinks=False)
            except PermissionError:
                raise PermissionDenied(
                    f"cannot mark {_show(parent or b'/')} opaque: setting trusted.* xattrs "
                    "needs CAP_SYS_ADMIN") from None
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in (b"", b".", b".."):
            raise InvalidArgument(f"invalid layer: the whiteout {_show(name)} names nothing")
        rel = parent + b"/" + hidden if parent else hidden
        path = self.destb + rel
        try:
            os.mknod(path, stat.S_IFCHR, 0)
        except FileExistsError:
            self._clear(rel, path)
            os.mknod(path, stat.S_IFCHR, 0)
        except PermissionError:
            raise PermissionDenied(
                f"cannot create the whiteout for {_show(rel)}: overlay whiteouts are device "
                "nodes, which need CAP_MKNOD", hint="unpack layers as root") from None
        if self.root:
            os.chown(path, 0, 0, follow_symlinks=False)

    def _parent_dirs(self, parent: bytes, entry: bytes, *, create: bool) -> None:
        """Check (and with ``create``, make) every directory of ``parent``: real
        directories, no symlinks."""
        cur = b""
        for comp in parent.split(b"/"):
            cur = cur + b"/" + comp if cur else comp
            if cur in self.dirs:
                continue
            path = self.destb + cur
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                if not create:
                    raise InvalidArgument(
                        f"invalid layer: {_show(entry)}: {_show(cur)} is not in this layer"
                    ) from None
                # Parents a layer leaves out are made as docker makes them: root's, 0755.
                os.mkdir(path, 0o755)
                os.chmod(path, 0o755)  # noqa: S103 (whatever the umask is)
                self.dirs.add(cur)
                continue
            if stat.S_ISDIR(mode):
                self.dirs.add(cur)
            elif stat.S_ISLNK(mode):
                raise InvalidArgument(
                    f"invalid layer: {_show(entry)} goes through the symlink {_show(cur)}; "
                    "refusing to write through a symlink",
                    hint="the image is broken or hostile; it was not unpacked")
            else:
                raise InvalidArgument(
                    f"invalid layer: {_show(entry)}: {_show(cur)} is not a directory")

    def _clear(self, name: bytes, path: bytes) -> None:
        """Remove what is at ``path`` so that a new entry can take its place."""
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
            # What was checked below it is gone.
            prefix = name + b"/"
            self.dirs = {d for d in self.dirs if d != name and not d.startswith(prefix)}
            self.dir_meta = {d: m for d, m in self.dir_meta.items()
                             if d != name and not d.startswith(prefix)}
        else:
            os.unlink(path)

    def _xattrs(self, target: int | bytes, pax: dict[bytes, bytes], name: bytes) -> None:
        for key, raw in pax.items():
            value = raw
            if key.startswith(b"SCHILY.xattr."):
                attr = key[13:].decode("utf-8", "surrogateescape")
            elif key.startswith(b"LIBARCHIVE.xattr."):
                import base64
                import urllib.parse

                attr = urllib.parse.unquote_to_bytes(key[17:]).decode("utf-8",
                                                                      "surrogateescape")
                value = base64.b64decode(value + b"=" * (-len(value) % 4))
            else:
                continue
            if attr.startswith(_DROPPED_XATTR_PREFIX):
                log.warning("layer entry %s: dropping the xattr %s", _show(name), attr)
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, attr, value)
                else:
                    os.setxattr(target, attr, value, follow_symlinks=False)
            except OSError as e:
                # As docker: a filesystem without (these) xattrs is not a reason to fail.
                if e.errno not in (95, 1):  # EOPNOTSUPP, EPERM
                    raise
                log.debug("layer entry %s: xattr %s not set: %s", _show(name), attr, e)

    def _finish_dirs(self) -> None:
        for name, (mode, atime, mtime) in self.dir_meta.items():
            fd = os.open(self.destb + name, _DIR_FLAGS)
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)

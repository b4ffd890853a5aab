"""docker's ``local`` volume driver: a volume is a directory, ``<root>/volumes/<name>/_data``.

Rows (name, driver, labels, options, created) live in the engine database, in the ``volumes``
table this module owns, beside ``volume_refs`` (which container references which volume: the
engine fills it, :meth:`VolumeStore.remove` refuses a referenced volume in the same
transaction). The directory is made after the row and removed after it, all under the volume
lock (``<root>/volumes.lock``, taken before any database transaction), so a concurrent create
never sees a row without its directory or loses its directory to a concurrent remove.

Options, as docker's local driver (moby ``volume/local``): none (a plain directory), or
``type`` + ``device`` (+ ``o``): the device is mounted on ``_data`` while a container uses the
volume — ``type=tmpfs,device=tmpfs,o=size=64m`` or ``type=none,o=bind,device=/path``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from dockyard.db import ensure_schema, transaction
from dockyard.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SyscallError,
)
from dockyard.values import field, value

DRIVER = "local"
#: the label docker 23+ puts on anonymous volumes (``volume prune`` without ``-a`` takes them)
ANONYMOUS_LABEL = "com.docker.volume.anonymous"

_MIGRATIONS: list[list[str]] = [[
    """CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL)""",
    """CREATE TABLE volume_refs (
        volume TEXT NOT NULL REFERENCES volumes(name),
        container_id TEXT NOT NULL,
        PRIMARY KEY (volume, container_id))""",
    "CREATE INDEX volume_refs_by_container ON volume_refs(container_id)",
]]

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_VALID_OPTS = ("type", "o", "device", "size")
_MANDATORY_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}


@value
class Volume:
    name: str
    driver: str
    mountpoint: str
    created: float
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels


def check_name(name: str) -> None:
    """moby's local driver: ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, with its wording."""
    if not _NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path")


def check_options(name: str, opts: Mapping[str, str]) -> None:
    """moby's local driver's validateOpts (quota ``size`` needs xfs project quotas: refused)."""
    for key in opts:
        if key not in _VALID_OPTS:
            raise InvalidArgument(f'create {name}: invalid option: "{key}"')
    if "size" in opts:
        raise InvalidArgument(f"create {name}: quota size requested but no quota support")
    for key, needed in _MANDATORY_OPTS.items():
        if key in opts:
            for other in needed:
                if other not in opts:
                    raise InvalidArgument(f'create {name}: missing required option: "{other}"')


# mount(8) flag names -> (set, clear) bits (moby/sys/mount's flags table, the common ones)
def _flag_table() -> dict[str, tuple[int, int]]:
    from dockyard.linux import libc

    return {
        "ro": (libc.MS_RDONLY, 0), "rw": (0, libc.MS_RDONLY),
        "nosuid": (libc.MS_NOSUID, 0), "suid": (0, libc.MS_NOSUID),
        "nodev": (libc.MS_NODEV, 0), "dev": (0, libc.MS_NODEV),
        "noexec": (libc.MS_NOEXEC, 0), "exec": (0, libc.MS_NOEXEC),
        "sync": (libc.MS_SYNCHRONOUS, 0), "async": (0, libc.MS_SYNCHRONOUS),
        "noatime": (libc.MS_NOATIME, 0), "atime": (0, libc.MS_NOATIME),
        "nodiratime": (libc.MS_NODIRATIME, 0), "diratime": (0, libc.MS_NODIRATIME),
        "relatime": (libc.MS_RELATIME, 0), "strictatime": (libc.MS_STRICTATIME, 0),
        "bind": (libc.MS_BIND, 0), "rbind": (libc.MS_BIND | libc.MS_REC, 0),
        "defaults": (0, 0),
    }


def parse_mount_options(text: str) -> tuple[int, str]:
    """``o=`` of a volume: mount flags and the filesystem's data string (moby's parseOptions)."""
    table = _flag_table()
    flags = 0
    data = []
    for opt in (o for o in text.split(",") if o):
        if opt in table:
            set_bits, clear_bits = table[opt]
            flags = (flags | set_bits) & ~clear_bits
        else:
            data.append(opt)
    return flags, ",".join(data)


class VolumeStore:
    """Volume rows and directories of one engine root (the local driver)."""

    def __init__(self, root: str, db: sqlite3.Connection) -> None:
        self.root = root
        self.dir = os.path.join(root, "volumes")
        self.db = db
        ensure_schema(db, "volumes", _MIGRATIONS)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name, "_data")

    # --- rows --------------------------------------------------------------------------------

    def get(self, name: str) -> Volume:
        row = self.db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"get {name}: no such volume")
        return self._volume(row)

    def volumes(self) -> list[Volume]:
        return [self._volume(r) for r in
                self.db.execute("SELECT * FROM volumes ORDER BY name").fetchall()]

    def create(self, name: str, *, driver: str = DRIVER, labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None,
               ref: str = "") -> tuple[Volume, bool]:
        """The volume ``name`` (made if missing); (it, whether this call made it). An existing
        volume is returned as it is, as docker does, unless its driver differs. With ``ref``,
        the container ``ref`` is recorded as a user in the same transaction."""
        if driver != DRIVER:
            raise NotFound(f'create {name}: error looking up volume plugin {driver}: plugin '
                           f'"{driver}" not found')
        check_name(name)
        opts = dict(options or {})
        check_options(name, opts)
        with self.lock(), transaction(self.db) as db:
            row = db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
            made = row is None
            if row is not None and str(row["driver"]) != driver:
                raise AlreadyExists(f"create {name}: volume name must be unique")
            if made:
                db.execute("INSERT INTO volumes (name, driver, labels, options, created) "
                           "VALUES (?,?,?,?,?)", (name, driver, json.dumps(dict(labels or {})),
                                                  json.dumps(opts), time.time()))
            if ref:
                db.execute("INSERT OR IGNORE INTO volume_refs VALUES (?, ?)", (name, ref))
            os.makedirs(os.path.join(self.dir, name), mode=0o701, exist_ok=True)
            os.makedirs(self.path(name), mode=0o755, exist_ok=True)
        return self.get(name), made

    def add_ref(self, name: str, container_id: str) -> None:
        with transaction(self.db) as db:
            if db.execute("SELECT 1 FROM volumes WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"get {name}: no such volume")
            db.execute("INSERT OR IGNORE INTO volume_refs VALUES (?, ?)", (name, container_id))

    def drop_refs(self, container_id: str) -> list[str]:
        """Forget the container's references; the names it referenced."""
        with transaction(self.db) as db:
            names = [str(r[0]) for r in db.execute(
                "SELECT volume FROM volume_refs WHERE container_id = ?", (container_id,))]
            db.execute("DELETE FROM volume_refs WHERE container_id = ?", (container_id,))
        return names

    def refs(self, name: str) -> list[str]:
        return [str(r[0]) for r in self.db.execute(
            "SELECT container_id FROM volume_refs WHERE volume = ? ORDER BY container_id",
            (name,))]

    def refs_of(self, container_id: str) -> list[str]:
        return [str(r[0]) for r in self.db.execute(
            "SELECT volume FROM volume_refs WHERE container_id = ? ORDER BY volume",
            (container_id,))]

    def remove(self, name: str) -> Volume:
        """Remove an unreferenced volume: its row, its mount, its directory."""
        with self.lock():
            with transaction(self.db) as db:
                row = db.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise NotFound(f"get {name}: no such volume")
                refs = [str(r[0]) for r in db.execute(
                    "SELECT container_id FROM volume_refs WHERE volume = ? "
                    "ORDER BY container_id", (name,))]
                if refs:
                    raise FailedPrecondition(
                        f"remove {name}: volume is in use - [{', '.join(refs)}]")
                db.execute("DELETE FROM volumes WHERE name = ?", (name,))
            self._unmount(name)
            shutil.rmtree(os.path.join(self.dir, name), ignore_errors=True)
        return self._volume(row)

    # --- mounts of volumes with options -----------------------------------------------------

    def mounted(self, name: str) -> bool:
        want = os.fsencode(os.path.realpath(self.path(name)))
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                return any(line.split(b" ", 5)[4].replace(b"\\040", b" ") == want for line in f)
        except OSError:
            return False

    def mount(self, vol: Volume) -> None:
        """Mount the volume's device on ``_data`` (volumes with type/device options only;
        nothing when already mounted). Caller holds :meth:`lock`."""
        from dockyard.linux import libc

        fstype = vol.options.get("type", "")
        device = vol.options.get("device", "")
        if not device or self.mounted(vol.name):
            return
        flags, data = parse_mount_options(vol.options.get("o", ""))
        try:
            libc.mount(device, self.path(vol.name), fstype, flags, data or None)
        except SyscallError as e:
            raise FailedPrecondition(
                f"error while mounting volume '{self.path(vol.name)}': failed to mount local "
                f"volume: mount {device}:{self.path(vol.name)}, flags: {hex(flags)}, data: "
                f"{data}: {os.strerror(e.errno)}") from None

    def unmount(self, name: str) -> None:
        """Undo :meth:`mount`. Caller holds :meth:`lock`."""
        self._unmount(name)

    def _unmount(self, name: str) -> None:
        from dockyard.linux import libc

        while self.mounted(name):
            try:
                libc.umount2(self.path(name), libc.MNT_DETACH)
            except SyscallError as e:
                if e.errno == errno.EINVAL:
                    return
                raise

    def size(self, name: str) -> int:
        """Bytes used under the volume's directory (its own files, links not followed)."""
        total = 0
        for dirpath, dirnames, filenames in os.walk(self.path(name)):
            for n in filenames + dirnames:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_size
                except OSError:
                    pass
        return total

    @contextmanager
    def lock(self) -> Iterator[None]:
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        fd = os.open(os.path.join(self.root, "volumes.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _volume(self, r: sqlite3.Row) -> Volume:
        name = str(r["name"])
        return Volume(name=name, driver=str(r["driver"]), mountpoint=self.path(name),
                      created=float(r["created"]), labels=json.loads(r["labels"]),
                      options=json.loads(r["options"]))

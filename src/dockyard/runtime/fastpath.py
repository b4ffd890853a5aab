"""``start``, ``delete`` and ``state`` in their common case, on built-in modules only.

An engine runs ``create``, ``start``, ``delete`` as three processes (and ``state`` between
them), and ``start``, ``delete`` and ``state`` do almost nothing: release a waiting init,
remove a stopped container's state and empty cgroups, print a record. Their cost is the
interpreter's start (~8 ms here) plus what they import, and ``os`` (~1 ms, its ABCs), the CLI
(~1 ms) and the state model (~1 ms) are most of the rest. This module does those verbs on
``posix`` and ``_json`` alone, and only when the case is plain:

- ``start ID``: the container is ``created`` and has no ``poststart`` hook;
- ``delete [-f] ID``: the container is ``stopped`` and has no ``poststop`` hook;
- ``state ID``: a container whose record this module understands;
- global options ``--root``, ``--log``, ``--log-format``, ``--debug``, ``--systemd-cgroup``.

Anything else (another verb, a missing or running container, an odd command line, any error)
returns ``None`` from :func:`main` having changed nothing the full CLI would not redo, and
:func:`entry` hands the command line to :mod:`dockyard.runtime.cli`, which does every case and
reports every error. The pieces the full verbs share (:func:`live_status`,
:func:`process_start_time`, :func:`release_init`, :func:`remove_empty_cgroups`,
:func:`remove_dir`, :func:`oci_state`) live here, once.
"""

from __future__ import annotations

import posix
import sys

from dockyard import OCI_SPEC_VERSION, fastjson

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

FIFO_NAME = "exec.fifo"
STATE_NAME = "state.json"
#: runc's container id rule (^[\w+-.]+$, ASCII), checked without importing re
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")
_GLOBAL_VALUES = ("--root", "--log", "--log-format")
_GLOBAL_FLAGS = ("--debug", "--systemd-cgroup")
_POLL_MS = 100
_POLLIN, _POLLHUP = 0x001, 0x010  # poll.h, the same on every Linux architecture


def default_root() -> str:
    """runc's rule: /run/<name> for root, $XDG_RUNTIME_DIR/<name> for everyone else
    (``DOCKYARD_RUNC_ROOT`` overrides both)."""
    env = posix.environ  # bytes: os.environ's decoding would cost importing os
    if b"DOCKYARD_RUNC_ROOT" in env:
        return _decode(env[b"DOCKYARD_RUNC_ROOT"])
    euid = posix.geteuid()
    if euid != 0:
        runtime_dir = _decode(env.get(b"XDG_RUNTIME_DIR", b"")) or f"/tmp/dockyard-runc-{euid}"
        return join(runtime_dir, "dockyard-runc")
    return "/run/dockyard-runc"


def _decode(raw: bytes) -> str:
    return raw.decode(sys.getfilesystemencoding(), "surrogateescape")


def join(directory: str, name: str) -> str:
    """``os.path.join(directory, name)`` for a relative ``name`` (an id, a file name)."""
    if not directory or directory.endswith("/"):
        return directory + name
    return f"{directory}/{name}"


def valid_id(container_id: str) -> bool:
    return bool(container_id) and ID_CHARS.issuperset(container_id) \
        and container_id not in (".", "..")


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, or None when the process is gone or a zombie."""
    try:
        fd = posix.open(f"/proc/{pid}/stat", posix.O_RDONLY | posix.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        raw = posix.read(fd, 4096)
    except ProcessLookupError:  # the process died between open and read
        return None
    finally:
        posix.close(fd)
    fields = raw[raw.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def read_text(path: str) -> str:
    """A whole file as UTF-8 text (``open(path).read()`` without ``io``'s layers)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        chunks = []
        while chunk := posix.read(fd, 65536):
            chunks.append(chunk)
    finally:
        posix.close(fd)
    return b"".join(chunks).decode()


def is_frozen(cgroup_paths: Mapping[str, str]) -> bool:
    """Whether the container's freezer says frozen, read straight from its file (v1 freezer,
    else the v2 directory's cgroup.events): no cgroup manager."""
    try:
        if "freezer" in cgroup_paths:
            return read_text(join(cgroup_paths["freezer"], "freezer.state")).strip() == "FROZEN"
        if "" in cgroup_paths:
            return "frozen 1" in read_text(join(cgroup_paths[""], "cgroup.events")).splitlines()
    except OSError:
        return False
    return False


def live_status(d: str, pid: int, start_time: int, cgroup_paths: Mapping[str, str]) -> str:
    """The container's status from its record and the kernel, never from the file alone:
    ``stopped`` unless the recorded init is alive (the same process: its start time), then
    ``created`` while the exec fifo exists, else ``paused`` or ``running``."""
    if process_start_time(pid) != start_time:
        return "stopped"
    if posix.access(join(d, FIFO_NAME), posix.F_OK):
        return "created"
    if process_start_time(pid) is None:  # exited (a zombie) since the first look
        return "stopped"
    return "paused" if is_frozen(cgroup_paths) else "running"


def oci_state(doc: Mapping[str, object], status: str) -> dict[str, object]:
    """The state document as runc prints it (the OCI state plus rootfs, created, owner) from a
    record and its status."""
    out: dict[str, object] = {
        "ociVersion": OCI_SPEC_VERSION,
        "id": doc["id"],
        "pid": doc["pid"] if status != "stopped" else 0,
        "status": status,
        "bundle": doc["bundle"],
        "rootfs": doc["rootfs"],
        "created": doc["created"],
        "owner": doc.get("owner", ""),
    }
    annotations = doc.get("annotations")
    if isinstance(annotations, dict) and annotations:
        out["annotations"] = dict(sorted(annotations.items()))
    return out


def release_init(fifo: str, pid: int, start_time: int) -> bool:
    """Open the exec fifo for reading, which releases the init blocked in its open, and take
    its byte; the fifo is removed either way. False if the init died instead."""
    # Non-blocking open: a reader appears at once, which releases the init's blocked open.
    fd = posix.open(fifo, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    try:
        import select  # built in (no file to read)

        poller = select.poll()
        poller.register(fd, _POLLIN | _POLLHUP)
        while True:
            if poller.poll(_POLL_MS):
                data = posix.read(fd, 1)
                if data == b"0":
                    return True
                if not data and process_start_time(pid) != start_time:
                    return False
            elif process_start_time(pid) != start_time:
                return False
    finally:
        posix.close(fd)
        try:
            posix.unlink(fifo)
        except FileNotFoundError:
            pass


def remove_empty_cgroups(paths: Iterable[str]) -> bool:
    """rmdir each of a stopped container's cgroup directories: the common case, without the
    cgroup managers (their imports and a read of the mount table cost more than the work).
    False when one is not an empty leaf (a process is left, or a child cgroup): then the
    manager must kill what is left and remove the tree."""
    for path in set(paths):
        try:
            posix.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def remove_dir(d: str) -> bool:
    """Remove a container's state directory (flat: files and the fifo). False if something
    could not go (a directory inside, an error): the caller decides what to do about it."""
    try:
        names = posix.listdir(d)
    except FileNotFoundError:
        return True
    whole = True
    for name in names:
        try:
            posix.unlink(join(d, name))
        except FileNotFoundError:
            continue
        except OSError:
            whole = False
    try:
        posix.rmdir(d)
    except FileNotFoundError:
        pass
    except OSError:
        whole = False
    return whole


def _parse(argv: list[str]) -> tuple[str, str, str] | None:
    """(verb, root, id) for ``start ID``, ``delete [-f|--force] ID`` or ``state ID`` behind
    runc's global options, or None for anything else. ``--force`` changes nothing here: the
    fast path only deletes a stopped container, which needs no force."""
    root = None
    verb = None
    positional: list[str] = []
    i, n = 0, len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg.startswith("-") and arg != "-":
            name, eq, inline = arg.partition("=")
            if verb is None and name in _GLOBAL_VALUES:
                if not eq:
                    if i == n:
                        return None
                    inline = argv[i]
                    i += 1
                if name == "--root":
                    root = inline
                elif name == "--log-format" and inline not in ("text", "json"):
                    return None
            elif not ((verb is None and arg in _GLOBAL_FLAGS)
                      or (verb == "delete" and arg in ("-f", "--force"))):
                return None
        elif verb is None:
            if arg not in _VERBS:
                return None
            verb = arg
        else:
            positional.append(arg)
    if verb is None or len(positional) != 1 or not valid_id(positional[0]):
        return None
    return verb, default_root() if root is None else root, positional[0]


def _load(d: str) -> dict[str, object] | None:
    try:
        doc = fastjson.loads(read_text(join(d, STATE_NAME)))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _status(d: str, doc: dict[str, object]) -> str | None:
    """:func:`live_status` of a loaded record; None for a record this module does not
    understand (the full CLI then reads it with the state model, and says what is wrong)."""
    pid, start_time, cgroups = doc.get("pid"), doc.get("pid_start_time"), doc.get("cgroup_paths")
    if type(pid) is not int or type(start_time) is not int or not isinstance(cgroups, dict) \
            or not all(isinstance(p, str) for p in cgroups.values()):
        return None
    hooks = doc.get("hooks", [])
    if not isinstance(hooks, list) or not all(isinstance(h, str) for h in hooks):
        return None
    return live_status(d, pid, start_time, cgroups)


def _has_hook(doc: dict[str, object], kind: str) -> bool:
    hooks = doc.get("hooks", [])
    return not isinstance(hooks, list) or kind in hooks


def _start(d: str, doc: dict[str, object]) -> int | None:
    if _status(d, doc) != "created" or _has_hook(doc, "poststart"):
        return None
    pid, start_time = doc["pid"], doc["pid_start_time"]
    assert isinstance(pid, int) and isinstance(start_time, int)
    return 0 if release_init(join(d, FIFO_NAME), pid, start_time) else None


def _delete(d: str, doc: dict[str, object]) -> int | None:
    # created, running or paused: the full delete decides (and kills)
    if _status(d, doc) != "stopped" or _has_hook(doc, "poststop"):
        return None
    cgroups = doc["cgroup_paths"]
    assert isinstance(cgroups, dict)
    if not remove_empty_cgroups(cgroups.values()):
        return None  # something is left in a cgroup: the managers' job
    return 0 if remove_dir(d) else None


def _state(d: str, doc: dict[str, object]) -> int | None:
    status = _status(d, doc)
    if status is None or not all(isinstance(doc.get(key), str)
                                 for key in ("bundle", "rootfs", "created")) \
            or not isinstance(doc.get("owner", ""), str) \
            or not isinstance(doc.get("annotations", {}), dict):
        return None
    sys.stdout.write(fastjson.dumps_indented(oci_state(doc, status), indent=2) + "\n")
    return 0


_VERBS = {"start": _start, "delete": _delete, "state": _state}


def main(argv: list[str]) -> int | None:
    """Do ``argv`` if it is a plain start, delete or state; None, having changed nothing the
    full CLI would not redo, for everything else."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    verb, root, container_id = parsed
    d = join(root, container_id)
    doc = _load(d)
    if doc is None or doc.get("id") != container_id:
        return None
    try:
        return _VERBS[verb](d, doc)
    except OSError:
        return None


def entry() -> None:
    """The launcher's entry point: the fast path, else the full CLI (``cli.entry``)."""
    status = main(sys.argv[1:])
    if status is None:
        from dockyard.runtime.cli import entry as full

        full()  # leaves through os._exit
        return
    try:
        sys.stdout.flush()
    except OSError:
        status = 1
    posix._exit(status)

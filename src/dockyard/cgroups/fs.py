"""The kernel seam of the cgroup managers: every read, write, mkdir, rmdir and signal they do.

The managers never touch the filesystem themselves; they call a :class:`CgroupFs`. The real one
below does plain file I/O on cgroupfs (one ``write(2)`` per value, as the kernel wants: a knob
parses each write on its own). Unit tests pass a subclass whose "cgroup root" is a temp dir and
which records what was written where; integration tests prove the same code on the real kernel.

Every ``OSError`` leaves this module as a :class:`~dockyard.errors.SyscallError` carrying the
operation, the path and errno; the ``*_knob`` helpers turn the common "no such file" into the
error a user can act on (the controller is not available there, or the cgroup is gone).
"""

from __future__ import annotations

import errno
import os
import time

from dockyard.errors import NotFound, SyscallError, Unavailable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Callable


def _fail(op: str, exc: OSError, path: str, detail: str = "") -> SyscallError:
    return SyscallError(op, exc.errno or errno.EIO, path, detail=detail)


class CgroupFs:
    """Plain file operations on a cgroup filesystem."""

    def read(self, path: str) -> str:
        try:
            with open(path, "rb", buffering=0) as f:
                return f.read().decode()
        except OSError as exc:
            raise _fail("read", exc, path) from None

    def write(self, path: str, data: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _fail("open", exc, path) from None
        try:
            os.write(fd, data.encode())
        except OSError as exc:
            raise _fail("write", exc, path, detail=f"writing {data.strip()!r}") from None
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def mkdir(self, path: str) -> bool:
        """Create one directory; False if it was there already."""
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            return False
        except OSError as exc:
            raise _fail("mkdir", exc, path) from None
        return True

    def rmdir(self, path: str) -> None:
        """Remove one cgroup directory; a missing one is fine, a busy one raises EBUSY."""
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _fail("rmdir", exc, path) from None

    def subdirs(self, path: str) -> list[str]:
        try:
            with os.scandir(path) as it:
                return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _fail("scandir", exc, path) from None

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _fail("listdir", exc, path) from None

    def kill(self, pid: int, sig: int) -> bool:
        """Signal one process; False if it is already gone."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        except OSError as exc:
            raise _fail(f"kill({sig})", exc, f"pid {pid}") from None
        return True

    def attach_device_filter(self, path: str, program: bytes) -> None:
        """Load a BPF_PROG_TYPE_CGROUP_DEVICE program and make it the cgroup's only one."""
        from dockyard.linux import bpf

        bpf.replace_device_filter(path, program)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


KERNEL = CgroupFs()


# --- helpers shared by the controllers ---------------------------------------------------------

def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


def _missing(fs: CgroupFs, directory: str, name: str, controller: str) -> Exception:
    if not fs.isdir(directory):
        return NotFound(f"cgroup {directory} does not exist")
    return Unavailable(f"cgroup controller {controller!r} is not available in {directory} "
                       f"(no {name})",
                       hint="the controller is not mounted or not enabled for this cgroup")


def write_knob(fs: CgroupFs, directory: str, name: str, value: str, *, controller: str) -> None:
    try:
        fs.write(join(directory, name), value)
    except SyscallError as exc:
        if exc.errno == errno.ENOENT:
            raise _missing(fs, directory, name, controller) from None
        raise


def read_knob(fs: CgroupFs, directory: str, name: str, *, controller: str) -> str:
    try:
        return fs.read(join(directory, name))
    except SyscallError as exc:
        if exc.errno == errno.ENOENT:
            raise _missing(fs, directory, name, controller) from None
        raise


def read_optional(fs: CgroupFs, directory: str, name: str) -> str | None:
    """A stats file that may not exist here (controller off, older kernel): None then."""
    try:
        return fs.read(join(directory, name))
    except SyscallError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV, errno.EOPNOTSUPP):
            return None
        raise


def parse_uint(text: str, *, path: str = "") -> int:
    """A cgroup number; "max" (and v1's huge "unlimited" values) parse as 2**64-1."""
    value = text.strip()
    if value == "max":
        return 2**64 - 1
    try:
        n = int(value)
    except ValueError:
        raise SyscallError("parse", errno.EINVAL, path, detail=f"not a number: {value!r}") from None
    return max(n, 0)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, cgroup.events)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if key and value:
            try:
                out[key] = int(value)
            except ValueError:
                continue
    return out


def read_procs(fs: CgroupFs, directory: str) -> list[int]:
    """The pids in one cgroup (not its children); a threaded v2 cgroup lists its threads."""
    try:
        text = fs.read(join(directory, "cgroup.procs"))
    except SyscallError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            text = fs.read(join(directory, "cgroup.threads"))
        elif exc.errno == errno.ENOENT:
            return []
        else:
            raise
    return [int(p) for p in text.split()]


def read_procs_recursive(fs: CgroupFs, directory: str) -> list[int]:
    pids: list[int] = []
    stack = [directory]
    while stack:
        d = stack.pop()
        pids.extend(read_procs(fs, d))
        stack.extend(join(d, sub) for sub in reversed(fs.subdirs(d)))
    return sorted(set(pids))


def add_pid(fs: CgroupFs, directory: str, pid: int) -> None:
    """Move a process into a cgroup; EINVAL can mean the task is still TASK_NEW: retry a little
    (runc does the same)."""
    path = join(directory, "cgroup.procs")
    for attempt in range(5):
        try:
            fs.write(path, str(pid))
            return
        except SyscallError as exc:
            if exc.errno == errno.ENOENT and not fs.isdir(directory):
                raise NotFound(f"cgroup {directory} does not exist") from None
            if exc.errno != errno.EINVAL or attempt == 4:
                raise
            fs.sleep(0.03)


def remove_tree(fs: CgroupFs, directory: str, *, timeout: float = 2.0) -> None:
    """rmdir a cgroup and its children, deepest first; a cgroup whose last processes are still
    exiting is busy for a moment, so EBUSY is retried with backoff up to ``timeout``."""
    for sub in fs.subdirs(directory):
        remove_tree(fs, join(directory, sub), timeout=timeout)
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fs.rmdir(directory)
            return
        except SyscallError as exc:
            if exc.errno not in (errno.EBUSY, errno.EINTR) or time.monotonic() >= deadline:
                raise
        fs.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_empty(fs: CgroupFs, list_pids: Callable[[], list[int]], timeout: float) -> bool:
    """Poll until ``list_pids()`` is empty (killed processes are on their way out) or
    ``timeout`` passes; True if it emptied."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        if not list_pids():
            return True
        if time.monotonic() >= deadline:
            return False
        fs.sleep(delay)
        delay = min(delay * 2, 0.05)

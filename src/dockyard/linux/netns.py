"""Network namespaces kept alive by a bind mount of their nsfs file, and work done inside one.

A network namespace is per thread in Linux (``unshare``/``setns`` with ``CLONE_NEWNET`` change
only the calling thread), so both creating one and running code inside one happen in a short
thread of their own: the calling process never changes namespace and never forks, which keeps
these safe in a multi-threaded daemon too. A netlink or ioctl socket opened by that thread
belongs to the namespace for its whole life.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from dockyard.errors import SyscallError
from dockyard.linux import libc as k

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as e:  # re-raised in the caller's thread
            failure.append(e)

    t = threading.Thread(target=body, name="dockyard-netns")
    t.start()
    t.join()
    if failure:
        raise failure[0]
    return result[0]


def create(path: str) -> None:
    """A new network namespace, pinned at ``path`` (an empty file bind-mounted over by the
    namespace), with ``lo`` up."""
    from dockyard.linux import netdev

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)

    def body() -> None:
        k.unshare(k.CLONE_NEWNET)
        k.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, k.MS_BIND)
        netdev.set_up("lo")

    try:
        _in_thread(body)
    except BaseException:
        remove(path)
        raise


def pin(source: str, path: str) -> None:
    """Pin the namespace that ``source`` names (another pin, or ``/proc/<pid>/ns/net``) at
    ``path`` too: it lives while either holds it."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    os.close(fd)
    try:
        k.mount(source, path, None, k.MS_BIND)
    except BaseException:
        os.unlink(path)
        raise


def same_namespace(a: str, b: str) -> bool:
    """Whether the pins (or nsfs files) ``a`` and ``b`` hold one namespace."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def remove(path: str) -> None:
    """Unpin the namespace at ``path`` (it goes once no process is left in it) and remove the
    file; nothing to do if it is not there."""
    try:
        k.umount2(path, k.MNT_DETACH)
    except SyscallError as e:
        if e.errno not in (22, 2):     # EINVAL: not a mount point; ENOENT: no file
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_pinned(path: str) -> bool:
    """Whether a namespace is mounted at ``path``."""
    try:
        return os.stat(path).st_dev != os.stat(os.path.dirname(path)).st_dev
    except OSError:
        return False


def run_in(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` run in a thread that has joined the network namespace at ``path``."""
    def body() -> T:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            k.setns(fd, k.CLONE_NEWNET)
        finally:
            os.close(fd)
        return fn()

    return _in_thread(body)


def write_sysctl(name: str, value: str) -> None:
    """Set ``net.…`` style sysctl ``name`` (dots) in the caller's network namespace."""
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise SyscallError("write", e.errno or 0, path) from None


def read_sysctl(name: str) -> str:
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as e:
        raise SyscallError("read", e.errno or 0, path) from None


def host_routes() -> list[tuple[int, int]]:
    """The host's IPv4 routes as (network, mask) integers, from /proc/net/route (no netlink
    needed to choose a subnet that does not collide with them)."""
    out = []
    try:
        with open("/proc/net/route") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) < 8:
                    continue
                dest = int.from_bytes(bytes.fromhex(fields[1]), "little")
                mask = int.from_bytes(bytes.fromhex(fields[7]), "little")
                if mask:        # the default route collides with nothing
                    out.append((dest, mask))
    except OSError:
        pass
    return out

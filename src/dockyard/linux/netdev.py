"""Interface flags through ioctl: enough to bring up ``lo`` in a new network namespace without
loading netlink machinery on the container start path."""

from __future__ import annotations

import _socket  # not socket.py: ~4 ms of imports on the start path
import fcntl
import os
import sys

from dockyard.errors import SyscallError

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


# struct ifreq's head, as struct.pack("16sh") would make it (struct is not worth importing on
# the start path for this): the name, NUL-padded to IFNAMSIZ, then ifr_flags, a native short.
# The kernel reads a whole ifreq (40 bytes): fcntl.ioctl passes a copy in a 1 KiB buffer.
def _ifreq(ifname: str, flags: int = 0) -> bytes:
    return ifname.encode()[:16].ljust(16, b"\0") + flags.to_bytes(2, sys.byteorder, signed=True)


def _ifr_flags(ifreq: bytes) -> int:
    return int.from_bytes(ifreq[16:18], sys.byteorder, signed=True)


def set_up(ifname: str) -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        flags = _ifr_flags(fcntl.ioctl(s, _SIOCGIFFLAGS, _ifreq(ifname)))
        fcntl.ioctl(s, _SIOCSIFFLAGS, _ifreq(ifname, flags | _IFF_UP))
    except OSError as exc:
        raise SyscallError("ioctl(SIOCSIFFLAGS)", exc.errno or 0, ifname) from None
    finally:
        s.close()


_SIOCBRDELBR = 0x89A1
_ENODEV = 19
_ENXIO = 6


def exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


def is_up(ifname: str) -> bool:
    """Whether the link ``ifname`` exists and is administratively up (sysfs: no socket)."""
    try:
        with open(f"/sys/class/net/{ifname}/flags") as f:
            return bool(int(f.read().strip(), 16) & _IFF_UP)
    except (OSError, ValueError):
        return False


def set_down(ifname: str) -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        flags = _ifr_flags(fcntl.ioctl(s, _SIOCGIFFLAGS, _ifreq(ifname)))
        fcntl.ioctl(s, _SIOCSIFFLAGS, _ifreq(ifname, flags & ~_IFF_UP))
    except OSError as exc:
        raise SyscallError("ioctl(SIOCSIFFLAGS)", exc.errno or 0, ifname) from None
    finally:
        s.close()


def delete_bridge(ifname: str) -> None:
    """Remove the bridge ``ifname`` (down first, as the bridge ioctl wants); nothing to do if
    it is gone. Its ports are released, not deleted."""
    if not exists(ifname):
        return
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        set_down(ifname)
        fcntl.ioctl(s, _SIOCBRDELBR, ifname.encode() + b"\0")
    except SyscallError as exc:
        if exc.errno not in (_ENODEV, _ENXIO):
            raise
    except OSError as exc:
        if exc.errno not in (_ENODEV, _ENXIO):
            raise SyscallError("ioctl(SIOCBRDELBR)", exc.errno or 0, ifname) from None
    finally:
        s.close()

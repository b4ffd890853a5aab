"""Interface flags through ioctl: enough to bring up ``lo`` in a new network namespace without
loading netlink machinery on the container start path."""

from __future__ import annotations

import _socket  # not socket.py: ~4 ms of imports on the start path
import fcntl
import struct

from dockyard.errors import SyscallError

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def set_up(ifname: str) -> None:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        req = struct.pack("16sh", ifname.encode(), 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh", ifname.encode(), flags | _IFF_UP))
    except OSError as exc:
        raise SyscallError("ioctl(SIOCSIFFLAGS)", exc.errno or 0, ifname) from None
    finally:
        s.close()

"""Links, addresses and routes through rtnetlink (pyroute2): bridges and veth pairs.

pyroute2 costs ~150 ms to import, so this module is imported only by a start that connects a
container to a network; tearing down needs no netlink (see :mod:`dockyard.linux.netdev`).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from dockyard.errors import SyscallError
from dockyard.linux import netns

if TYPE_CHECKING:
    from pyroute2 import IPRoute


def _ipr() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def _fail(op: str, name: str, e: Exception) -> SyscallError:
    code = getattr(e, "code", 0) or getattr(e, "errno", 0) or errno.EIO
    return SyscallError(op, int(code), name, detail=str(e))


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_bridge(name: str, address: str, prefixlen: int, mac: str = "") -> None:
    """The bridge ``name`` exists, has ``address/prefixlen`` and is up (idempotent)."""
    try:
        with _ipr() as ipr:
            idx = _index(ipr, name)
            if idx is None:
                extra = {"address": mac} if mac else {}
                ipr.link("add", ifname=name, kind="bridge", **extra)
                idx = _index(ipr, name)
                assert idx is not None
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
            if address not in have:
                ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
    except SyscallError:
        raise
    except Exception as e:  # pyroute2's NetlinkError and friends: translated once, here
        raise _fail("rtnetlink bridge", name, e) from None


def add_veth(host_name: str, netns_path: str, bridge: str, *, inside_name: str = "eth0",
             mac: str = "", address: str = "", prefixlen: int = 0, gateway: str = "",
             mtu: int = 0) -> None:
    """A veth pair: ``host_name`` enslaved to ``bridge`` and up; its peer created directly in
    the namespace at ``netns_path`` as ``inside_name``, with ``mac``, ``address/prefixlen``,
    up, and a default route through ``gateway``.

    Two netlink conversations: on the host, one request makes the pair with the peer's name,
    namespace, MAC and MTU and the host end's master and state; inside, the address, the
    link's state and the route."""
    try:
        with _ipr() as ipr:
            br = _index(ipr, bridge)
            if br is None:
                raise SyscallError("rtnetlink veth", errno.ENODEV, bridge)
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                peer: dict[str, Any] = {"ifname": inside_name, "net_ns_fd": fd}
                extra: dict[str, Any] = {}
                if mac:
                    peer["address"] = mac
                if mtu:
                    peer["mtu"] = extra["mtu"] = mtu
                ipr.link("add", ifname=host_name, kind="veth", peer=peer, master=br,
                         state="up", **extra)
            finally:
                os.close(fd)
    except SyscallError:
        raise
    except Exception as e:
        raise _fail("rtnetlink veth", host_name, e) from None

    def inside() -> None:
        with _ipr() as ipr:
            idx = _index(ipr, inside_name)
            assert idx is not None
            if address:
                ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
            if gateway:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway)

    try:
        netns.run_in(netns_path, inside)
    except SyscallError:
        raise
    except Exception as e:
        raise _fail("rtnetlink netns", inside_name, e) from None


def delete_link(name: str) -> None:
    """Delete the link ``name`` of the caller's namespace (for a veth, its peer goes too);
    nothing to do if it is gone."""
    try:
        with _ipr() as ipr:
            idx = _index(ipr, name)
            if idx is not None:
                ipr.link("del", index=idx)
    except Exception as e:
        if getattr(e, "code", 0) == errno.ENODEV:
            return
        raise _fail("rtnetlink delete", name, e) from None

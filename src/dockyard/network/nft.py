"""Dockyard's nftables table: masquerading and published ports, rendered whole from the state
in the database and swapped in by one atomic ``nft -f`` transaction.

One table per engine root (``inet dockyard`` for the default root) holds every rule Dockyard
needs, so nothing else's tables or chains are ever touched, and a rule goes exactly when the
state that needed it goes: the table is rendered again after each change, and deleted once it
would be empty. Chains:

``prerouting``/``output`` (nat)  DNAT of published ports, for traffic that arrives and traffic
                                 from the host itself (including to 127.0.0.1: the bridge has
                                 ``route_localnet`` set, and ``postrouting`` masquerades such
                                 packets to the bridge's address so replies come back)
``postrouting`` (nat)            masquerade of a non-internal network's traffic leaving it, and
                                 of hairpin traffic (a container reaching a published port)
``forward`` (filter)             an internal network's traffic never leaves its bridge; no
                                 traffic goes from one network's bridge to another's
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from dockyard.errors import Unavailable
from dockyard.values import value


@value
class BridgeRules:
    bridge: str
    subnet: str
    internal: bool = False


@value
class PortRule:
    host_ip: str            # "" = any local address
    host_port: int
    proto: str
    container_ip: str
    container_port: int


def render(table: str, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> str:
    """The ``nft -f`` script that makes ``inet <table>`` hold exactly these rules (or removes
    it when there are none)."""
    lines = [f"table inet {table} {{}}", f"delete table inet {table}"]
    if not bridges and not ports:
        return "\n".join(lines) + "\n"
    dnat = []
    for p in ports:
        match = f"ip daddr {p.host_ip}" if p.host_ip else "meta nfproto ipv4 fib daddr type local"
        dnat.append(f"    {match} {p.proto} dport {p.host_port} "
                    f"dnat ip to {p.container_ip}:{p.container_port}")
    post = []
    forward = []
    for b in bridges:
        br = _quote(b.bridge)
        if not b.internal:
            post.append(f"    ip saddr {b.subnet} oifname != {br} masquerade")
        post.append(f"    oifname {br} ip saddr 127.0.0.0/8 masquerade")
        post.append(f"    oifname {br} ct status dnat ip saddr {b.subnet} masquerade")
        if b.internal:
            forward.append(f"    iifname {br} oifname != {br} drop")
            forward.append(f"    oifname {br} iifname != {br} drop")
    # networks are isolated from each other (docker's DOCKER-ISOLATION chains): a container
    # reaches another network only through an endpoint of its own on it
    names = [_quote(b.bridge) for b in bridges]
    for i, br in enumerate(names):
        others = names[:i] + names[i + 1:]
        if others:
            forward.append(f"    iifname {br} oifname {{ {', '.join(others)} }} drop")
    lines += [
        f"table inet {table} {{",
        "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
        *dnat, "  }",
        "  chain output {", "    type nat hook output priority -100; policy accept;",
        *dnat, "  }",
        "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
        *post, "  }",
        "  chain forward {", "    type filter hook forward priority filter; policy accept;",
        *forward, "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _quote(name: str) -> str:
    return f'"{name}"'


def apply(script: str, nft: str = "nft") -> None:
    """Run ``script`` as one nftables transaction (all of it or nothing)."""
    try:
        done = subprocess.run([nft, "-f", "-"], input=script, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise Unavailable("nftables: the nft command is not installed",
                          hint="Install the nftables package.") from None
    if done.returncode != 0:
        raise Unavailable(f"nftables: {done.stderr.strip() or 'nft failed'}")

"""Dockyard's nftables table: masquerading and published ports, computed from the state in the
database and put in place by one atomic transaction per change.

One table per engine root (``inet dockyard`` for the default root) holds every rule Dockyard
needs, so nothing else's tables or chains are ever touched, and a rule goes exactly when the
state that needed it goes. The table and its base chains are made once and kept, as docker
keeps its chains (registering a netfilter hook is the expensive part of a transaction); after
each change only the chains whose rules differ are flushed and filled again, and a change that
alters no rule (a container without published ports starting or leaving) costs no transaction
at all. The table goes with the engine's network teardown
(:meth:`dockyard.engine.networks.NetworkService.teardown`). Chains:

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

from collections.abc import Mapping, Sequence

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


CHAINS: tuple[tuple[str, str], ...] = (
    ("prerouting", "type nat hook prerouting priority dstnat; policy accept;"),
    ("output", "type nat hook output priority -100; policy accept;"),
    ("postrouting", "type nat hook postrouting priority srcnat; policy accept;"),
    ("forward", "type filter hook forward priority filter; policy accept;"),
)


def chain_rules(bridges: Sequence[BridgeRules],
                ports: Sequence[PortRule]) -> dict[str, list[str]]:
    """The rules each base chain holds for these bridges and published ports."""
    dnat = []
    for p in ports:
        match = f"ip daddr {p.host_ip}" if p.host_ip else "meta nfproto ipv4 fib daddr type local"
        dnat.append(f"{match} {p.proto} dport {p.host_port} "
                    f"dnat ip to {p.container_ip}:{p.container_port}")
    post = []
    forward = []
    for b in bridges:
        br = _quote(b.bridge)
        if not b.internal:
            post.append(f"ip saddr {b.subnet} oifname != {br} masquerade")
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade")
        post.append(f"oifname {br} ct status dnat ip saddr {b.subnet} masquerade")
        if b.internal:
            forward.append(f"iifname {br} oifname != {br} drop")
            forward.append(f"oifname {br} iifname != {br} drop")
    # networks are isolated from each other (docker's DOCKER-ISOLATION chains): a container
    # reaches another network only through an endpoint of its own on it
    names = [_quote(b.bridge) for b in bridges]
    for i, br in enumerate(names):
        others = names[:i] + names[i + 1:]
        if others:
            forward.append(f"iifname {br} oifname {{ {', '.join(others)} }} drop")
    return {"prerouting": dnat, "output": list(dnat), "postrouting": post, "forward": forward}


def delete_script(table: str) -> str:
    """The script that removes ``inet <table>`` (nothing to do if it is not there)."""
    return f"table inet {table} {{}}\ndelete table inet {table}\n"


def render(table: str, bridges: Sequence[BridgeRules], ports: Sequence[PortRule]) -> str:
    """The ``nft -f`` script that makes ``inet <table>`` hold exactly these rules, from
    scratch (or removes it when there are none)."""
    lines = [delete_script(table).rstrip("\n")]
    if not bridges and not ports:
        return "\n".join(lines) + "\n"
    rules = chain_rules(bridges, ports)
    lines.append(f"table inet {table} {{")
    for chain, hook in CHAINS:
        lines += [f"  chain {chain} {{", f"    {hook}",
                  *(f"    {r}" for r in rules[chain]), "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def update_script(table: str, wanted: Mapping[str, Sequence[str]],
                  applied: Mapping[str, Sequence[str]] | None) -> str:
    """The script that takes ``inet <table>`` from ``applied`` (the rules last put in each
    chain; None: unknown, or the table is not there) to ``wanted``, touching only the chains
    that change: the table and its base chains are made once and kept (registering a hook
    costs the kernel far more than a rule), a changed chain is flushed and filled again. ""
    when nothing changes."""
    lines = []
    if applied is None:
        lines.append(f"add table inet {table}")
        lines += [f"add chain inet {table} {chain} {{ {hook} }}" for chain, hook in CHAINS]
    for chain, _hook in CHAINS:
        want = list(wanted.get(chain, ()))
        if applied is not None and list(applied.get(chain, ())) == want:
            continue
        lines.append(f"flush chain inet {table} {chain}")
        lines += [f"add rule inet {table} {chain} {rule}" for rule in want]
    return "\n".join(lines) + "\n" if lines else ""


def _quote(name: str) -> str:
    return f'"{name}"'


def apply(script: str, nft: str = "nft") -> None:
    """Run ``script`` as one nftables transaction (all of it or nothing)."""
    from dockyard.linux import nftables

    nftables.run(script, nft)

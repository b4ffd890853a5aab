"""The files a networked container gets at /etc/hosts, /etc/resolv.conf and /etc/hostname
(docker's content), written in the container's bundle and bind-mounted by its spec."""

from __future__ import annotations

import os
from collections.abc import Sequence

from dockyard.values import value

DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")     # docker's, when the host has only loopback ones
EMBEDDED_DNS = "127.0.0.11"

_HOSTS_HEAD = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts(hostname: str, ip: str = "", extra: Sequence[tuple[str, str]] = ()) -> str:
    """docker's /etc/hosts: the defaults, ``--add-host`` entries (name, ip), the container."""
    added = "".join(f"{addr}\t{name}\n" for name, addr in extra)
    return _HOSTS_HEAD + added + (f"{ip}\t{hostname}\n" if ip else "")


@value
class DnsSettings:
    """A container's ``--dns``, ``--dns-search`` and ``--dns-option`` (docker's HostConfig.Dns,
    DnsSearch, DnsOptions)."""

    servers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def _lines_of(host_resolv: str, key: str) -> list[str]:
    out: list[str] = []
    for line in host_resolv.splitlines():
        fields = line.split()
        if fields[:1] == [key]:
            out = fields[1:]        # the last line of a kind wins, as in the resolver
    return out


def resolv_conf_embedded(host_resolv: str, dns: DnsSettings) -> str:
    """The resolv.conf of a container on a user network: the embedded server (docker's
    127.0.0.11, ``ndots:0``), the host's (or ``--dns-search``) search domains and options."""
    search = list(dns.search) or _lines_of(host_resolv, "search")
    options = ["ndots:0", *(o for o in _lines_of(host_resolv, "options")
                            if not o.startswith("ndots:")), *dns.options]
    out = [f"search {' '.join(search)}"] if search and search != ["."] else []
    out += [f"nameserver {EMBEDDED_DNS}", f"options {' '.join(options)}"]
    return "\n".join(out) + "\n"


def resolv_conf_with(host_resolv: str, dns: DnsSettings) -> str:
    """The default bridge's resolv.conf with ``--dns``/``--dns-search``/``--dns-option``
    written in (each replaces what the host's says, as docker's does)."""
    base = resolv_conf(host_resolv)
    if not (dns.servers or dns.search or dns.options):
        return base
    keep = [line for line in base.splitlines()
            if not (dns.servers and line.split()[:1] == ["nameserver"])
            and not (dns.search and line.split()[:1] in (["search"], ["domain"]))
            and not (dns.options and line.split()[:1] == ["options"])]
    if dns.search:
        keep.append("search " + " ".join(s for s in dns.search if s != "."))
    keep += [f"nameserver {s}" for s in dns.servers]
    if dns.options:
        keep.append("options " + " ".join(dns.options))
    return "\n".join(line for line in keep if line.strip() != "search") + "\n"


def resolv_conf(host_resolv: str) -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container's
    namespace); docker's public defaults if none is left."""
    out = []
    servers = 0
    for line in host_resolv.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1:
            addr = fields[1]
            if addr.startswith("127.") or addr == "::1" or ":" in addr:
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += [f"nameserver {s}" for s in DEFAULT_NAMESERVERS]
    return "\n".join(out).strip("\n") + "\n"


def write(path: str, content: str) -> None:
    """In place (never renamed over): the file may already be bind-mounted in a container."""
    with open(path, "w") as f:
        f.write(content)
    os.chmod(path, 0o644)


def host_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            return f.read()
    except OSError:
        return ""


def nameservers(host_resolv: str) -> list[str]:
    """The IPv4 nameservers of a resolv.conf (loopback ones included)."""
    out = []
    for line in host_resolv.splitlines():
        fields = line.split()
        if fields[:1] == ["nameserver"] and len(fields) > 1 and ":" not in fields[1]:
            out.append(fields[1])
    return out

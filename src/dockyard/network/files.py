"""The files a networked container gets at /etc/hosts, /etc/resolv.conf and /etc/hostname
(docker's content), written in the container's bundle and bind-mounted by its spec."""

from __future__ import annotations

import os

DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")     # docker's, when the host has only loopback ones

_HOSTS_HEAD = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""


def hosts(hostname: str, ip: str = "") -> str:
    return _HOSTS_HEAD + (f"{ip}\t{hostname}\n" if ip else "")


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

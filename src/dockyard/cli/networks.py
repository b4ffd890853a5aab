"""``dockyard network create|ls|inspect|rm|prune`` with docker's flags, output and exit codes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.networks import Network, NetworkService


def service(g: Globals) -> NetworkService:
    from dockyard.cli.containers import service as containers

    return containers(g).networks()


def cmd_create(g: Globals, argv: list[str], command: str = "network create") -> int:
    from dockyard.engine.runopts import parse_label

    p = CommandParser(command, "[OPTIONS] NETWORK", "Create a network")
    p.add_argument("-d", "--driver", default="bridge", help="Driver to manage the Network")
    p.add_argument("--subnet", action="append", default=[],
                   help="Subnet in CIDR format that represents a network segment")
    p.add_argument("--gateway", action="append", default=[],
                   help="IPv4 Gateway for the master subnet")
    p.add_argument("--internal", action="store_true",
                   help="Restrict external access to the network")
    p.add_argument("--label", action="append", default=[],
                   help="Set metadata on a network")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options")
    p.add_argument("--attachable", action="store_true", help="Enable manual container attachment")
    p.add_argument("name")
    a = p.parse_args(argv)
    if len(a.subnet) > 1 or len(a.gateway) > 1:
        raise InvalidArgument("only one IPv4 subnet per network is supported")
    if a.gateway and not a.subnet:
        raise InvalidArgument("every ip-range or gateway must have a corresponding subnet")
    options = {}
    for o in a.opt:
        key, _, val = o.partition("=")
        options[key] = val
    net = service(g).create(a.name, driver=a.driver, subnet=a.subnet[0] if a.subnet else "",
                            gateway=a.gateway[0] if a.gateway else "", internal=a.internal,
                            labels=dict(parse_label(x) for x in a.label), options=options)
    sys.stdout.write(net.id + "\n")
    return 0


_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
            "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}


def _matches(net: Network, filters: dict[str, list[str]]) -> bool:
    def one(key: str, v: str) -> bool:
        if key == "name":
            return v in net.name
        if key == "id":
            return net.id.startswith(v)
        if key == "driver":
            return net.driver == v
        if key == "type":
            return (v == "builtin") == net.builtin
        name, eq, want = v.partition("=")      # label=key or label=key=value
        return name in net.labels and (not eq or net.labels[name] == want)

    return all(any(one(k, v) for v in vals) for k, vals in filters.items())


def cmd_ls(g: Globals, argv: list[str], command: str = "network ls") -> int:
    from dockyard.cli.formatter import render_rows

    p = CommandParser(command, "[OPTIONS]", "List networks")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'driver=bridge')")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    a = p.parse_args(argv)
    filters: dict[str, list[str]] = {}
    for item in a.filter:
        key, eq, val = item.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value): {item}", command)
        if key not in ("name", "id", "driver", "type", "label"):
            raise InvalidArgument(f"invalid filter '{key}'")
        filters.setdefault(key, []).append(val)
    nets = sorted((n for n in service(g).networks() if _matches(n, filters)),
                  key=lambda n: n.name)
    rows = [_row(n, a.no_trunc) for n in nets]
    fmt = "{{.ID}}" if a.quiet and not a.format else a.format
    sys.stdout.write(render_rows(fmt, rows, headers=_HEADERS,
                                 default_table="table {{.ID}}\t{{.Name}}\t{{.Driver}}\t"
                                 "{{.Scope}}"))
    return 0


def _row(n: Network, no_trunc: bool) -> dict[str, Any]:
    import datetime

    created = datetime.datetime.fromtimestamp(n.created, datetime.UTC)
    return {"ID": n.id if no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver,
            "Scope": "local", "IPv6": "false", "Internal": str(n.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
            "CreatedAt": created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")}


def cmd_inspect(g: Globals, argv: list[str], command: str = "network inspect") -> int:
    from dockyard.cli.formatter import inspect_each

    p = CommandParser(command, "[OPTIONS] NETWORK [NETWORK...]",
                      "Display detailed information on one or more networks")
    p.add_argument("-f", "--format", default=None, help="Format output using a custom template")
    p.add_argument("networks", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    return inspect_each(a.networks, lambda ref: svc.inspect(svc.get(ref)), a.format)


def cmd_rm(g: Globals, argv: list[str], command: str = "network rm") -> int:
    p = CommandParser(command, "NETWORK [NETWORK...]", "Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true",
                   help="Do not error if the network does not exist")
    p.add_argument("networks", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    code = 0
    for ref in a.networks:
        try:
            svc.remove(ref)
            sys.stdout.write(ref + "\n")
        except DockyardError as e:
            from dockyard.errors import NotFound

            if a.force and isinstance(e, NotFound):
                continue
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def cmd_prune(g: Globals, argv: list[str], command: str = "network prune") -> int:
    p = CommandParser(command, "[OPTIONS]", "Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    a = p.parse_args(argv)
    if not a.force:
        sys.stdout.write("WARNING! This will remove all custom networks not used by at least "
                         "one container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed = service(g).prune()
    if removed:
        sys.stdout.write("Deleted Networks:\n" + "".join(f"{n.name}\n" for n in removed))
    return 0


def cmd_connect(g: Globals, argv: list[str], command: str = "network connect") -> int:
    from dockyard.cli.containers import service as containers
    from dockyard.engine import netconnect

    p = CommandParser(command, "[OPTIONS] NETWORK CONTAINER",
                      "Connect a container to a network")
    p.add_argument("--alias", action="append", default=[],
                   help="Add network-scoped alias for the container")
    p.add_argument("--ip", default="", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    netconnect.connect(containers(g), a.network, a.container, aliases=a.alias, ip=a.ip)
    return 0


def cmd_disconnect(g: Globals, argv: list[str], command: str = "network disconnect") -> int:
    from dockyard.cli.containers import service as containers
    from dockyard.engine import netconnect

    p = CommandParser(command, "[OPTIONS] NETWORK CONTAINER",
                      "Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the container to disconnect from a network")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    netconnect.disconnect(containers(g), a.network, a.container, force=a.force)
    return 0


_SUBCOMMANDS = {"connect": cmd_connect, "disconnect": cmd_disconnect,
                "create": cmd_create, "ls": cmd_ls, "list": cmd_ls, "inspect": cmd_inspect,
                "rm": cmd_rm, "remove": cmd_rm, "prune": cmd_prune}


def cmd_network(g: Globals, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("Usage:  dockyard network COMMAND\n\nManage networks\n\nCommands:\n"
                         "  connect     Connect a container to a network\n"
                         "  create      Create a network\n"
                         "  disconnect  Disconnect a container from a network\n"
                         "  inspect     Display detailed information on one or more networks\n"
                         "  ls          List networks\n"
                         "  prune       Remove all unused networks\n"
                         "  rm          Remove one or more networks\n")
        return 0
    fn = _SUBCOMMANDS.get(argv[0])
    if fn is None:
        raise UsageError(f"unknown command: dockyard network {argv[0]}", "network")
    return int(fn(g, argv[1:], f"network {argv[0]}"))


def cmd_teardown(g: Globals, argv: list[str], command: str = "system teardown") -> int:
    """``system teardown``: the host side of networks no container uses goes (bridges, the
    default one too, and the nftables table once nothing needs it); prints each bridge
    removed. What a later start needs is made again then."""
    CommandParser(command, "", "Remove the bridges and nftables table that no running "
                  "container uses").parse_args(argv)
    for bridge in service(g).teardown():
        sys.stdout.write(bridge + "\n")
    return 0

"""``dockyard volume create|ls|inspect|rm|prune`` with docker's flags, output and exit codes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.volumes import VolumeService
    from dockyard.volumes.local import Volume


def service(g: Globals) -> VolumeService:
    from dockyard.cli.containers import service as containers

    return containers(g).volumes()


def _options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, _, val = item.partition("=")
        out[key] = val
    return out


def cmd_create(g: Globals, argv: list[str], command: str = "volume create") -> int:
    from dockyard.engine.runopts import parse_label

    p = CommandParser(command, "[OPTIONS] [VOLUME]", "Create a volume")
    p.add_argument("-d", "--driver", default="local", help="Specify volume driver name")
    p.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    p.add_argument("-o", "--opt", action="append", default=[],
                   help="Set driver specific options")
    p.add_argument("--name", default="", help="Specify volume name")
    p.add_argument("volume", nargs="?", default="")
    a = p.parse_args(argv)
    if a.name and a.volume and a.name != a.volume:
        raise UsageError("conflicting options: either specify --name or provide positional "
                         "arg, not both", command)
    vol = service(g).create(a.volume or a.name, driver=a.driver,
                            labels=dict(parse_label(x) for x in a.label),
                            options=_options(a.opt))
    sys.stdout.write(vol.name + "\n")
    return 0


_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
            "Mountpoint": "MOUNTPOINT", "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE",
            "CreatedAt": "CREATED"}


def _filters(items: list[str], command: str) -> dict[str, list[str]]:
    filters: dict[str, list[str]] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value): {item}", command)
        filters.setdefault(key, []).append(val)
    return filters


def _row(svc: VolumeService, v: Volume) -> dict[str, Any]:
    from dockyard.engine.volumes import _created_at

    return {"Name": v.name, "Driver": v.driver, "Scope": "local", "Mountpoint": v.mountpoint,
            "Labels": ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())),
            "Links": str(len(svc.users(v.name))), "Size": "N/A",
            "CreatedAt": _created_at(v.created)}


def cmd_ls(g: Globals, argv: list[str], command: str = "volume ls") -> int:
    from dockyard.cli.formatter import render_rows

    p = CommandParser(command, "[OPTIONS]", "List volumes")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'dangling=true')")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    p.add_argument("--cluster", action="store_true", help="Display only cluster volumes")
    a = p.parse_args(argv)
    svc = service(g)
    rows = [_row(svc, v) for v in svc.volumes(_filters(a.filter, command))]
    sys.stdout.write(render_rows(a.format, rows, headers=_HEADERS,
                                 quiet_field="Name" if a.quiet else None,
                                 default_table="table {{.Driver}}\t{{.Name}}"))
    return 0


def cmd_inspect(g: Globals, argv: list[str], command: str = "volume inspect") -> int:
    from dockyard.cli.formatter import inspect_each

    p = CommandParser(command, "[OPTIONS] VOLUME [VOLUME...]",
                      "Display detailed information on one or more volumes")
    p.add_argument("-f", "--format", default=None, help="Format output using a custom template")
    p.add_argument("volumes", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    return inspect_each(a.volumes, lambda ref: svc.inspect(svc.get(ref)), a.format)


def cmd_rm(g: Globals, argv: list[str], command: str = "volume rm") -> int:
    p = CommandParser(command, "[OPTIONS] VOLUME [VOLUME...]",
                      "Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true",
                   help="Force the removal of one or more volumes")
    p.add_argument("volumes", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    code = 0
    for name in a.volumes:
        try:
            if svc.remove(name, force=a.force) is not None or a.force:
                sys.stdout.write(name + "\n")
        except DockyardError as e:
            sys.stderr.write(f"Error response from daemon: {e.message}\n")
            code = 1
    return code


def cmd_prune(g: Globals, argv: list[str], command: str = "volume prune") -> int:
    from dockyard.cli.units import human_size

    p = CommandParser(command, "[OPTIONS]", "Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused volumes, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[],
                   help="Provide filter values (e.g. 'label=<label>')")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    a = p.parse_args(argv)
    filters = _filters(a.filter, command)
    if a.all and "all" in filters:
        raise InvalidArgument("conflicting options: cannot specify both --all and "
                              "--filter all=1")
    if not a.force:
        what = "all local volumes" if a.all else "anonymous local volumes"
        sys.stdout.write(f"WARNING! This will remove {what} not used by at least one "
                         "container.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    removed, freed = service(g).prune(all_volumes=a.all, filters=filters)
    if removed:
        sys.stdout.write("Deleted Volumes:\n" + "".join(f"{n}\n" for n in removed) + "\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(freed)}\n")
    return 0


_SUBCOMMANDS = {"create": cmd_create, "ls": cmd_ls, "list": cmd_ls, "inspect": cmd_inspect,
                "rm": cmd_rm, "remove": cmd_rm, "prune": cmd_prune}


def cmd_volume(g: Globals, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("Usage:  dockyard volume COMMAND\n\nManage volumes\n\nCommands:\n"
                         "  create      Create a volume\n"
                         "  inspect     Display detailed information on one or more volumes\n"
                         "  ls          List volumes\n"
                         "  prune       Remove unused local volumes\n"
                         "  rm          Remove one or more volumes\n")
        return 0
    fn = _SUBCOMMANDS.get(argv[0])
    if fn is None:
        raise UsageError(f"unknown command: dockyard volume {argv[0]}", "volume")
    return int(fn(g, argv[1:], f"volume {argv[0]}"))

"""``dockyard inspect``: containers first, then images, as docker looks them up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser
from dockyard.errors import NotFound

if TYPE_CHECKING:
    from dockyard.cli.main import Globals


def cmd_inspect(g: Globals, argv: list[str], command: str = "inspect") -> int:
    p = CommandParser(command, "[OPTIONS] NAME|ID [NAME|ID...]",
                      "Return low-level information on Docker objects")
    p.add_argument("-f", "--format", default=None, help="Format output using a custom template")
    p.add_argument("--type", default="", choices=("", "container", "image"),
                   help="Only inspect objects of the given type")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("names", nargs="+")
    a = p.parse_args(argv)
    from dockyard.cli.containers import service
    from dockyard.engine.inspect import inspect_container

    svc = service(g)
    docs: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in a.names:
        if a.type in ("", "container"):
            try:
                docs.append(inspect_container(svc, svc.get(name)))
                continue
            except NotFound:
                pass
        if a.type in ("", "image"):
            try:
                docs.append(svc.images.inspect(name))
                continue
            except NotFound:
                pass
        errors.append(f"No such object: {name}")
    from dockyard.cli.formatter import write_inspect

    return write_inspect(docs, errors, a.format)

"""Archive commands: ``save``, ``load`` and ``import`` (docker's flags, words and exit codes)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from dockyard.cli.images import service
from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.main import Globals


def cmd_save(g: Globals, argv: list[str], command: str = "save") -> int:
    p = CommandParser(command, "[OPTIONS] IMAGE [IMAGE...]",
                      "Save one or more images to a tar archive (streamed to STDOUT by default)")
    p.add_argument("-o", "--output", default="", help="Write to a file, instead of STDOUT")
    p.add_argument("--platform", default="",
                   help="Save only the given platform variant (os[/arch[/variant]])")
    p.add_argument("images", nargs="*")
    a = p.parse_args(argv)
    if not a.images:
        raise UsageError(f'"{p.prog}" requires at least 1 argument.', command)
    from dockyard.engine.archive import save, save_to_file
    from dockyard.image.platform import parse_platform

    platform = parse_platform(a.platform) if a.platform else None
    svc = service(g)
    if a.output and a.output != "-":
        save_to_file(svc, a.images, a.output, platform=platform)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. "
                              "Use the -o flag or redirect")
    sys.stdout.flush()
    out = sys.stdout.buffer
    save(svc, a.images, out, platform=platform)
    out.flush()
    return 0


def cmd_load(g: Globals, argv: list[str], command: str = "load") -> int:
    p = CommandParser(command, "[OPTIONS]", "Load an image from a tar archive or STDIN")
    p.add_argument("-i", "--input", default="",
                   help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.add_argument("--platform", default="",
                   help="Load only the given platform variant (os[/arch[/variant]])")
    a = p.parse_args(argv)
    from dockyard.engine.archive import load
    from dockyard.image.platform import parse_platform
    from dockyard.image.reference import parse_reference

    platform = parse_platform(a.platform) if a.platform else None
    svc = service(g)
    if a.input and a.input != "-":
        loaded = load(svc, path=a.input, platform=platform)
    else:
        if sys.stdin.isatty():
            raise InvalidArgument("requested load from stdin, but stdin is empty")
        loaded = load(svc, stream=sys.stdin.buffer, platform=platform)
    out = sys.stdout
    for item in loaded:
        for name, old in item.renamed:
            out.write(f"The image {parse_reference(name).familiar} already exists, renaming "
                      f"the old one with ID {old} to empty string\n")
        if item.names:
            for name in item.names:
                out.write(f"Loaded image: {parse_reference(name).familiar}\n")
        else:
            out.write(f"Loaded image ID: {item.record.id}\n")
    return 0


def cmd_import(g: Globals, argv: list[str], command: str = "import") -> int:
    p = CommandParser(command, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                      "Import the contents from a tarball to create a filesystem image")
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Set commit message for imported image")
    p.add_argument("--platform", default="", help="Set platform if server is multi-platform "
                   "capable")
    p.add_argument("source", nargs="?")
    p.add_argument("reference", nargs="?")
    a = p.parse_args(argv)
    if a.source is None:
        raise UsageError(f'"{p.prog}" requires at least 1 argument.', command)
    from dockyard.engine.archive import import_image
    from dockyard.image.platform import parse_platform

    platform = parse_platform(a.platform) if a.platform else None
    svc = service(g)
    if a.source == "-":
        record = import_image(svc, stream=sys.stdin.buffer, reference=a.reference,
                              changes=a.change, message=a.message, platform=platform)
    else:
        record = import_image(svc, path=a.source, reference=a.reference, changes=a.change,
                              message=a.message, platform=platform)
    sys.stdout.write(f"{record.id}\n")
    return 0


__all__ = ["cmd_import", "cmd_load", "cmd_save"]

"""argparse shaped like docker's command line: its usage errors, its help, its exit codes.

docker answers a bad flag with ``unknown flag: --foo`` and ``See 'docker pull --help'.`` and
exits 125; :class:`CommandParser` does the same instead of argparse's exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from dockyard.errors import DockyardError, InvalidArgument

PROG = "dockyard"
EXIT_USAGE = 125


class UsageError(InvalidArgument):
    """A command line that does not parse; printed with a "See --help" line, exit 125."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message, hint=f"See '{PROG} {command} --help'.")
        self.command = command


class EngineFailure(DockyardError):
    """An engine error in run/create/start: docker exits 125 for these (the container's own
    status otherwise, 126/127 when its command cannot be run)."""


class CommandParser(argparse.ArgumentParser):
    def __init__(self, command: str, usage: str, description: str, *,
                 short_help: bool = True) -> None:
        # ``short_help=False``: -h means something else (run's --hostname), as in docker.
        super().__init__(prog=f"{PROG} {command}", usage=f"{PROG} {command} {usage}",
                         description=description, add_help=short_help, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self.command = command
        if not short_help:
            self.add_argument("--help", action="help", help="Print usage")

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            flag = message.split(": ", 1)[1].split(maxsplit=1)[0]
            message = (f"unknown flag: {flag}" if flag.startswith("-")
                       else f'"{self.prog}" accepts no more arguments than it takes: {flag}')
        elif message.startswith("the following arguments are required"):
            message = f'"{self.prog}" requires more arguments'
        raise UsageError(message, self.command)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def parse(parser: CommandParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; flags may follow positionals, as with docker (and ``--`` ends them)."""
    return parser.parse_args(argv)

"""Commands on a container's filesystem: ``diff``, ``export``, ``commit`` and ``cp``
(docker's flags, words and exit codes)."""

from __future__ import annotations

import os
import posixpath
import sys
from typing import TYPE_CHECKING, BinaryIO

from dockyard.cli.containers import service
from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.containers import ContainerService
    from dockyard.engine.rootfs_ops import PathStat, Root


def _exactly(p: CommandParser, args: list[str], n: int) -> None:
    if len(args) != n:
        word = "argument" if n == 1 else "arguments"
        raise UsageError(f'"{p.prog}" requires exactly {n} {word}.', p.command)


def cmd_diff(g: Globals, argv: list[str], command: str = "diff") -> int:
    p = CommandParser(command, "CONTAINER",
                      "Inspect changes to files or directories on a container's filesystem")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    _exactly(p, a.containers, 1)
    from dockyard.engine.rootfs_ops import changes

    out = sys.stdout
    for kind, path in changes(service(g), a.containers[0]):
        out.write(f"{kind} {path}\n")
    return 0


def cmd_export(g: Globals, argv: list[str], command: str = "export") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER",
                      "Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", default="", help="Write to a file, instead of STDOUT")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    _exactly(p, a.containers, 1)
    from dockyard.engine.rootfs_ops import export

    svc = service(g)
    ref = a.containers[0]
    svc.get(ref)                    # a missing container fails before a file is made
    if a.output and a.output != "-":
        try:
            with open(a.output, "wb") as f:
                export(svc, ref, f)
        except BaseException:
            try:
                os.unlink(a.output)
            except FileNotFoundError:
                pass
            raise
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. "
                              "Use the -o flag or redirect")
    sys.stdout.flush()
    export(svc, ref, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def cmd_commit(g: Globals, argv: list[str], command: str = "commit") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
                      "Create a new image from a container's changes")
    p.add_argument("-a", "--author", default="",
                   help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[],
                   help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", default="", help="Commit message")
    p.add_argument("-p", "--pause", action="store_true", default=True,
                   help="Pause container during commit (default true)")
    p.add_argument("--no-pause", dest="pause", action="store_false", help=argparse_hidden())
    p.add_argument("args", nargs="*")
    a = p.parse_args(_bool_flags(argv, {"-p": "--no-pause", "--pause": "--no-pause"}))
    if not 1 <= len(a.args) <= 2:
        raise UsageError(f'"{p.prog}" requires at least 1 and at most 2 arguments.', command)
    from dockyard.engine.rootfs_ops import commit

    record = commit(service(g), a.args[0], repository_tag=a.args[1] if len(a.args) > 1
                    else None, message=a.message, author=a.author, changes=a.change,
                    pause=a.pause)
    sys.stdout.write(f"{record.id}\n")
    return 0


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def _bool_flags(argv: list[str], negations: dict[str, str]) -> list[str]:
    """Go's boolean flags take a value only as ``--flag=false``: rewrite those."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name in negations:
            if value.lower() in ("false", "0", "f"):
                out.append(negations[name])
                continue
            if value.lower() in ("true", "1", "t"):
                out.append(name)
                continue
            raise UsageError(f'invalid argument "{value}" for "{name}" flag: parse error',
                             "commit")
        out.append(arg)
    return out


# --- cp -----------------------------------------------------------------------------------------


def _split(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: an absolute path, or one starting with ".", is local; otherwise
    ``container:path`` names a container."""
    if arg.startswith(("/", ".")) or arg == "-":
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep:
        return "", arg
    return container, path


def cmd_cp(g: Globals, argv: list[str], command: str = "cp") -> int:
    p = CommandParser(command, "[OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
                      f"\tdockyard {command} [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
                      "Copy files/folders between a container and the local filesystem\n\n"
                      "Use '-' as the source to read a tar archive from stdin and extract it "
                      "to a directory destination in a container.\nUse '-' as the "
                      "destination to stream a tar archive of a container source to stdout.")
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="Suppress progress output during copy. Progress output is "
                   "automatically suppressed if no terminal is attached")
    p.add_argument("paths", nargs="*")
    a = p.parse_args(argv)
    _exactly(p, a.paths, 2)
    src_container, src = _split(a.paths[0])
    dst_container, dst = _split(a.paths[1])
    if src_container and dst_container:
        raise InvalidArgument("copying between containers is not supported")
    if not src_container and not dst_container:
        raise InvalidArgument("must specify at least one container source")
    if (src_container and not src) or (dst_container and not dst):
        raise InvalidArgument("copy path cannot be empty")
    svc = service(g)
    try:
        if src_container:
            return _copy_from(svc, src_container, src, dst, archive=a.archive,
                              follow=a.follow_link, quiet=a.quiet)
        return _copy_to(svc, src, dst_container, dst, archive=a.archive,
                        follow=a.follow_link, quiet=a.quiet)
    except OSError as e:
        from dockyard.engine.rootfs_ops import translate

        raise translate(e, e.filename if isinstance(e.filename, str) else "") from None


def _asserts_dir(path: str) -> bool:
    return path.endswith(("/", "/."))


def _destination(root: Root, dst: str, src: PathStat, contents: bool,
                 missing: str) -> tuple[str, str]:
    """Where to unpack and what to call the source's top entry (docker's cp rules)."""
    from dockyard.engine.rootfs_ops import stat_in

    there = stat_in(root, dst, follow=True)
    if there is not None and there.is_dir:
        return dst, "." if contents else src.name
    if there is not None:
        if src.is_dir:
            raise InvalidArgument("cannot copy directory")
        if _asserts_dir(dst):
            raise InvalidArgument("not a directory")
        return posixpath.dirname(dst.rstrip("/")) or "/", posixpath.basename(dst)
    if _asserts_dir(dst) and not src.is_dir:
        raise NotFound("no such directory")
    stripped = dst.rstrip("/") or "/"
    parent = posixpath.dirname(stripped) or "/"
    up = stat_in(root, parent, follow=True)
    if up is None or not up.is_dir:
        raise NotFound(missing.format(path=parent))
    return parent, posixpath.basename(stripped)


def _copied(quiet: bool, size: int, where: str) -> None:
    if quiet:
        return
    from dockyard.cli.units import human_size_with_precision

    sys.stderr.write(f"Successfully copied {human_size_with_precision(size, 3)} to {where}\n")


def _copy_from(svc: ContainerService, container: str, src: str, dst: str, *, archive: bool,
               follow: bool, quiet: bool) -> int:
    from dockyard.engine.rootfs_ops import (
        Root,
        archive_name,
        extract,
        open_root,
        pipe,
        stat_in,
        write_tar,
    )

    with open_root(svc, container) as root:
        st = stat_in(root, src, follow=follow)
        if st is None:
            raise NotFound(f"Could not find the file {src} in container {container}")
        if _asserts_dir(src) and not st.is_dir:
            raise InvalidArgument(f"{src}: not a directory")
        if dst == "-":
            sys.stdout.flush()
            out: BinaryIO = sys.stdout.buffer
            write_tar(root, src, out, follow=follow)
            out.flush()
            return 0
        contents = archive_name(src) == "."
        host_dst = os.path.join(os.getcwd(), dst)
        with Root("/") as host:
            where, arcroot = _destination(host, host_dst, st, contents,
                                          "{path}: no such directory")
            owner = None if archive else (os.geteuid(), os.getegid())
            size: list[int] = []
            pipe(lambda f: size.append(write_tar(root, src, f, follow=follow,
                                                 arcroot=arcroot)),
                 lambda f: extract(f, host, where, owner=owner))
    _copied(quiet, size[0] if size else 0, dst)
    return 0


def _copy_to(svc: ContainerService, src: str, container: str, dst: str, *, archive: bool,
             follow: bool, quiet: bool) -> int:
    from dockyard.engine.rootfs_ops import (
        Root,
        archive_name,
        check_writable,
        extract,
        open_root,
        pipe,
        stat_in,
        write_tar,
    )

    check_writable(svc.get(container))
    owner = None if archive else (0, 0)
    missing = "Could not find the file {path} in container " + container
    if src == "-":
        with open_root(svc, container) as root:
            there = stat_in(root, dst, follow=True)
            if there is None:
                raise NotFound(missing.format(path=dst))
            if not there.is_dir:
                raise InvalidArgument(f'destination "{container}:{dst}" must be a directory')
            extract(sys.stdin.buffer, root, dst, owner=owner)
        return 0
    host_src = os.path.join(os.getcwd(), src)
    with Root("/") as host:
        st = stat_in(host, host_src, follow=follow)
        if st is None:
            raise NotFound(f"lstat {os.path.abspath(src)}: no such file or directory")
        if _asserts_dir(src) and not st.is_dir:
            raise InvalidArgument(f"{src}: not a directory")
        contents = archive_name(src) == "."
        with open_root(svc, container) as root:
            where, arcroot = _destination(root, dst, st, contents, missing)
            size: list[int] = []
            pipe(lambda f: size.append(write_tar(host, host_src, f, follow=follow,
                                                 arcroot=arcroot)),
                 lambda f: extract(f, root, where, owner=owner))
    _copied(quiet, size[0] if size else 0, f"{container}:{dst}")
    return 0


__all__ = ["cmd_commit", "cmd_cp", "cmd_diff", "cmd_export"]

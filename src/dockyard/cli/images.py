"""Image commands: pull, push, images, tag, rmi, history, and ``image <sub>``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.cli.parser import CommandParser, UsageError
from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.main import Globals
    from dockyard.engine.images import ImageService
    from dockyard.image.store import ImageRecord


def service(g: Globals) -> ImageService:
    from dockyard.engine.config import load_config
    from dockyard.engine.containers import ContainerService
    from dockyard.engine.images import ImageService

    config = load_config(g.root, g.config)
    images = ImageService(config)
    ContainerService(config, images)    # tells the images which containers use them
    return images


# --- pull / push ------------------------------------------------------------------------------


def cmd_pull(g: Globals, argv: list[str], command: str = "pull") -> int:
    p = CommandParser(command, "[OPTIONS] NAME[:TAG|@DIGEST]",
                      "Download an image from a registry")
    p.add_argument("-a", "--all-tags", action="store_true",
                   help="Download all tagged images in the repository")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--platform", default="", help="Set platform if server is multi-platform "
                   "capable")
    p.add_argument("name")
    a = p.parse_args(argv)
    from dockyard.cli.progress import PlainProgress, progress_for
    from dockyard.image.platform import parse_platform
    from dockyard.image.reference import parse_reference

    platform = parse_platform(a.platform) if a.platform else None
    ref = parse_reference(a.name)
    if a.all_tags and (ref.digest or ":" in a.name.rpartition("/")[2]):
        raise UsageError("tag can't be used with --all-tags/-a", command)
    svc = service(g)
    out = sys.stdout
    if a.all_tags:
        names = [f"{ref.repository}:{t}" for t in svc.list_tags(ref.repository)]
        if not a.quiet:
            out.write(f"Pulling all tags of {ref.familiar_name}\n")
    else:
        if ref.tag == "latest" and ":" not in a.name.rpartition("/")[2] and not a.quiet:
            out.write("Using default tag: latest\n")
        names = [str(ref)]
    for name in names:
        one = parse_reference(name)
        before = _image_id_or_none(svc, name)
        if not a.quiet:
            out.write(f"{one.digest or one.tag}: Pulling from {_remote_name(one)}\n")
            out.flush()
        reporter = PlainProgress(out) if a.quiet is False and not out.isatty() else None
        if a.quiet:
            rec = svc.pull(name, platform=platform)
        elif reporter is not None:
            rec = svc.pull(name, platform=platform, progress=reporter)
        else:
            with progress_for(out) as prog:
                rec = svc.pull(name, platform=platform, progress=prog)
        if not a.quiet:
            what = "Image is up to date for" if before == rec.id else \
                "Downloaded newer image for"
            out.write(f"Status: {what} {one.familiar}\n")
        out.write(f"{one}\n" if not a.all_tags or not a.quiet else "")
    if a.all_tags:
        out.write(f"{ref.repository}\n")
    return 0


def _remote_name(ref: Any) -> str:
    return str(ref.path)


def _image_id_or_none(svc: ImageService, name: str) -> str | None:
    try:
        return svc.resolve(name).id
    except (NotFound, InvalidArgument):
        return None


def cmd_push(g: Globals, argv: list[str], command: str = "push") -> int:
    p = CommandParser(command, "[OPTIONS] NAME[:TAG]", "Upload an image to a registry")
    p.add_argument("-a", "--all-tags", action="store_true", help="Push all tags of an image")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("name")
    a = p.parse_args(argv)
    from dockyard.cli.progress import PlainProgress
    from dockyard.image.reference import parse_reference

    ref = parse_reference(a.name)
    svc = service(g)
    out = sys.stdout
    names = [str(ref)]
    if a.all_tags or (ref.tag == "latest" and ":" not in a.name.rpartition("/")[2]
                      and not ref.digest and a.all_tags):
        names = [r for rec in svc.images() for r in rec.references
                 if r.rpartition(":")[0] == ref.repository]
    if not a.quiet:
        out.write(f"The push refers to repository [{ref.repository}]\n")
    for name in names:
        reporter = None if a.quiet else PlainProgress(out)
        digest, size = svc.push(name, progress=reporter)
        one = parse_reference(name)
        if a.quiet:
            out.write(f"{one.familiar}\n")
        else:
            out.write(f"{one.tag}: digest: {digest} size: {size}\n")
    return 0


# --- images ------------------------------------------------------------------------------------

_IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID",
                   "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                   "Digest": "DIGEST", "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
                   "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE"}


def cmd_images(g: Globals, argv: list[str], command: str = "images") -> int:
    p = CommandParser(command, "[OPTIONS] [REPOSITORY[:TAG]]", "List images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all images (default hides intermediate images)")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--tree", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("repository", nargs="?")
    a = p.parse_args(argv)
    from dockyard.cli.formatter import render_rows

    svc = service(g)
    filters = _parse_filters(a.filter, command, {"dangling", "reference", "label", "before",
                                                 "since"})
    if a.repository:
        filters.setdefault("reference", []).append(a.repository)
    from dockyard.engine.imagefilter import filter_images

    records = filter_images(svc, svc.images(), filters)
    rows = _image_rows(records, no_trunc=a.no_trunc, digests=a.digests)
    if a.quiet:
        seen: list[str] = []
        for r in rows:
            if r["ID"] not in seen:
                seen.append(r["ID"])
        sys.stdout.write("".join(f"{i}\n" for i in seen))
        return 0
    default = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    if a.digests:
        default = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}"
                   "\t{{.Size}}")
    sys.stdout.write(render_rows(a.format, rows, default_table=default,
                                 headers=_IMAGES_HEADERS))
    return 0


def _parse_filters(items: list[str], command: str, allowed: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq:
            raise UsageError(f"bad format of filter (expected name=value): {item}", command)
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(val)
    return out


def _image_rows(records: list[ImageRecord], *, no_trunc: bool,
                digests: bool) -> list[dict[str, Any]]:
    from dockyard.cli.units import human_duration, human_size
    from dockyard.engine.images import familiar

    rows: list[dict[str, Any]] = []
    now = time.time()
    for rec in records:
        image_id = rec.id if no_trunc else rec.short_id
        created = _created_epoch(rec)
        base = {
            "Containers": "N/A",
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
            "CreatedSince": human_duration(now - created) + " ago" if created else "N/A",
            "ID": image_id,
            "SharedSize": "N/A",
            "Size": human_size(rec.size),
            "UniqueSize": "N/A",
            "VirtualSize": human_size(rec.size),
        }
        digest_of: dict[str, str] = {}
        for rd in rec.repo_digests:
            repo, _, d = rd.partition("@")
            digest_of[familiar(repo + ":x").rpartition(":")[0]] = d
        names = [familiar(r) for r in rec.references]
        if not names:
            rows.append({**base, "Digest": "<none>", "Repository": "<none>", "Tag": "<none>"})
            continue
        for n in names:
            repo, _, tag = n.rpartition(":")
            rows.append({**base, "Digest": digest_of.get(repo, "<none>"), "Repository": repo,
                         "Tag": tag})
    return rows


def _created_epoch(rec: ImageRecord) -> float:
    from dockyard.engine.images import _epoch

    return _epoch(rec.created) or rec.added


# --- tag / rmi / history / inspect / prune / fsck --------------------------------------------


def cmd_tag(g: Globals, argv: list[str], command: str = "tag") -> int:
    p = CommandParser(command, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
                      "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source")
    p.add_argument("target")
    a = p.parse_args(argv)
    service(g).tag(a.source, a.target)
    return 0


def cmd_rmi(g: Globals, argv: list[str], command: str = "rmi") -> int:
    p = CommandParser(command, "[OPTIONS] IMAGE [IMAGE...]", "Remove one or more images")
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true",
                   help="Do not delete untagged parents")
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    code = 0
    for name in a.images:
        try:
            rep = svc.remove(name, force=a.force, prune=not a.no_prune)
        except DockyardError as e:
            sys.stderr.write(f"Error: {e.message}\n")
            code = 1
            continue
        for u in rep.untagged:
            sys.stdout.write(f"Untagged: {u}\n")
        for d in rep.deleted:
            sys.stdout.write(f"Deleted: {d}\n")
    return code


def cmd_history(g: Globals, argv: list[str], command: str = "history") -> int:
    p = CommandParser(command, "[OPTIONS] IMAGE", "Show the history of an image")
    p.add_argument("-H", "--human", default="true", nargs="?", const="true",
                   help="Print sizes and dates in human readable format")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", default=None, help="Format output using a custom template")
    p.add_argument("--platform", default="", help=argparse.SUPPRESS)
    p.add_argument("image")
    a = p.parse_args(argv)
    from dockyard.cli.formatter import render_rows
    from dockyard.cli.units import human_duration, human_size

    svc = service(g)
    human = a.human.lower() not in ("false", "0")
    now = time.time()
    rows = []
    for h in svc.history(a.image):
        hid = h["Id"]
        if hid != "<missing>" and not a.no_trunc:
            hid = hid.partition(":")[2][:12]
        created_by = h["CreatedBy"]
        if not a.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append({
            "ID": hid,
            "CreatedSince": (human_duration(now - h["Created"]) + " ago") if human and
            h["Created"] else (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h["Created"]))
                               if h["Created"] else "N/A"),
            "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h["Created"])),
            "CreatedBy": created_by,
            "Size": human_size(h["Size"]) if human else str(h["Size"]),
            "Comment": h["Comment"],
        })
    if a.quiet:
        sys.stdout.write("".join(f"{r['ID']}\n" for r in rows))
        return 0
    sys.stdout.write(render_rows(
        a.format, rows,
        default_table="table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t"
                      "{{.Comment}}",
        headers={"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                 "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}))
    return 0


def cmd_inspect(g: Globals, argv: list[str], command: str = "image inspect") -> int:
    p = CommandParser(command, "[OPTIONS] IMAGE [IMAGE...]",
                      "Display detailed information on one or more images")
    p.add_argument("-f", "--format", default=None, help="Format output using a custom template")
    p.add_argument("--platform", default="", help=argparse.SUPPRESS)
    p.add_argument("images", nargs="+")
    a = p.parse_args(argv)
    svc = service(g)
    docs: list[dict[str, Any]] = []
    errors: list[str] = []
    for name in a.images:
        try:
            docs.append(svc.inspect(name))
        except NotFound as e:
            errors.append(e.message)
    from dockyard.cli.formatter import write_inspect

    return write_inspect(docs, errors, a.format)


def cmd_prune(g: Globals, argv: list[str], command: str = "image prune") -> int:
    p = CommandParser(command, "[OPTIONS]", "Remove unused images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values")
    a = p.parse_args(argv)
    from dockyard.cli.units import human_size

    if not a.force:
        what = ("all images without at least one container associated to them" if a.all
                else "all dangling images")
        sys.stdout.write(f"WARNING! This will remove {what}.\nAre you sure you want to "
                         "continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    rep = service(g).prune(all_images=a.all)
    if rep.untagged or rep.deleted:
        sys.stdout.write("Deleted Images:\n")
        for u in rep.untagged:
            sys.stdout.write(f"untagged: {u}\n")
        for d in rep.deleted:
            sys.stdout.write(f"deleted: {d}\n")
        sys.stdout.write("\n")
    sys.stdout.write(f"Total reclaimed space: {human_size(rep.reclaimed)}\n")
    return 0


def cmd_fsck(g: Globals, argv: list[str], command: str = "image fsck") -> int:
    p = CommandParser(command, "", "Re-verify every blob's digest and every image's parts")
    p.parse_args(argv)
    problems = service(g).fsck()
    for line in problems:
        sys.stdout.write(f"{line}\n")
    if problems:
        sys.stderr.write(f"Error: {len(problems)} problem(s) found\n")
        return 1
    sys.stdout.write("content store OK\n")
    return 0


_IMAGE_SUBCOMMANDS = {
    "ls": cmd_images, "list": cmd_images, "pull": cmd_pull, "push": cmd_push, "tag": cmd_tag,
    "rm": cmd_rmi, "remove": cmd_rmi, "history": cmd_history, "inspect": cmd_inspect,
    "prune": cmd_prune, "fsck": cmd_fsck,
}
_IMAGE_ARCHIVE = {"save": "cmd_save", "load": "cmd_load", "import": "cmd_import"}


def cmd_image(g: Globals, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write("Usage:  dockyard image COMMAND\n\nManage images\n\nCommands:\n" +
                         "".join(f"  {n}\n" for n in sorted({*_IMAGE_SUBCOMMANDS,
                                                            *_IMAGE_ARCHIVE})))
        return 0
    sub, rest = argv[0], argv[1:]
    if sub in _IMAGE_ARCHIVE:
        from dockyard.cli import archive

        func = getattr(archive, _IMAGE_ARCHIVE[sub])
        return int(func(g, rest, f"image {sub}"))
    fn = _IMAGE_SUBCOMMANDS.get(sub)
    if fn is None:
        raise UsageError(f"unknown command: dockyard image {sub}", "image")
    return int(fn(g, rest, f"image {sub}"))

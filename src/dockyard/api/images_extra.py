"""Image endpoints beyond list/pull/inspect/tag/delete: ``history``, ``get`` (save), ``load``,
``push``, ``commit`` and ``search`` (which has no index to ask)."""

from __future__ import annotations

import json
import shlex
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from dockyard.api.bodies import ChunkWriter, spooled
from dockyard.api.errors import NotImplementedByUs
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.api.handlers import App
    from dockyard.api.http import Handler, Request
    from dockyard.engine.images import ImageService
    from dockyard.image.pull import Progress


def image_history(app: App, h: Handler, req: Request, name: str) -> None:
    with app.services() as svc:
        h.reply_json(200, svc.images.history(name))


def _save(app: App, h: Handler, names: list[str]) -> None:
    from dockyard.engine.archive import images_to_save, save

    if not names:
        raise InvalidArgument("no images to save: give at least one name")
    with app.services() as svc:
        images_to_save(svc.images, names)       # an unknown name is a 404, before the stream
        out = ChunkWriter(h.stream("application/x-tar"))
        save(svc.images, names, cast(BinaryIO, out))
        out.close()


def image_get(app: App, h: Handler, req: Request, name: str) -> None:
    """``GET /images/{name}/get``: a docker-archive tar of one image (or repository)."""
    _save(app, h, [name])


def images_get(app: App, h: Handler, req: Request) -> None:
    """``GET /images/get?names=a&names=b``: one tar of them all."""
    _save(app, h, [n for n in req.query.get("names", []) if n])


def images_load(app: App, h: Handler, req: Request) -> None:
    """``POST /images/load``: the request's tar loaded, then docker's JSON stream of what it
    brought (the same lines with ``quiet``; there is no progress to leave out)."""
    from dockyard.engine.archive import load
    from dockyard.image.reference import parse_reference

    if not req.body:
        raise InvalidArgument("unexpected EOF: the archive is empty")
    with app.services() as svc, spooled(req.body, svc.root, "api-load-") as path:
        loaded = load(svc.images, path=path)
    lines = []
    for item in loaded:
        for name, old in item.renamed:
            lines.append(f"The image {parse_reference(name).familiar} already exists, "
                         f"renaming the old one with ID {old} to empty string\n")
        if item.names:
            lines += [f"Loaded image: {parse_reference(n).familiar}\n" for n in item.names]
        else:
            lines.append(f"Loaded image ID: {item.record.id}\n")
    out = h.stream()
    for line in lines:
        out.json({"stream": line})
    out.end()


def _push_names(images: ImageService, name: str, tag: str) -> list[str]:
    """What ``POST /images/{name}/push?tag=`` pushes: the tag, or every tag of the
    repository when none is given (docker's ``push --all-tags``)."""
    from dockyard.errors import NotFound
    from dockyard.image.reference import parse_reference

    ref = parse_reference(name if not tag else f"{name}:{tag}")
    if tag or ref.digest or ":" in name.rpartition("/")[2]:
        images.resolve(str(ref))
        return [str(ref)]
    names = sorted(r for rec in images.images() for r in rec.references
                   if r.rpartition(":")[0] == ref.repository)
    if not names:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return names


def image_push(app: App, h: Handler, req: Request, name: str) -> None:
    """``POST /images/{name}/push``: docker's JSON progress stream; the client's credentials
    come in ``X-Registry-Auth``."""
    from dockyard.api.registryauth import client_for
    from dockyard.image.reference import parse_reference

    ref = parse_reference(name)
    with app.services() as svc:
        names = _push_names(svc.images, name, req.arg("tag"))
        client = client_for(app.config, req, ref.domain)
        out = h.stream()
        lock = threading.Lock()

        def progress(p: Progress) -> None:
            doc: dict[str, Any] = {"status": p.status, "progressDetail": {}}
            if p.total:
                doc["progressDetail"] = {"current": p.current, "total": p.total}
            if p.id:
                doc["id"] = p.id
            with lock:
                out.json(doc)

        try:
            out.json({"status": f"The push refers to repository [{ref.repository}]"})
            for one in names:
                tag = parse_reference(one).tag or "latest"
                try:
                    digest, size = svc.images.push(one, progress=progress, registry=client)
                except DockyardError as e:
                    out.json({"errorDetail": {"message": e.message}, "error": e.message})
                    break
                out.json({"status": f"{tag}: digest: {digest} size: {size}"})
                out.json({"progressDetail": {},
                          "aux": {"Tag": tag, "Digest": str(digest), "Size": size}})
        finally:
            if client is not None:
                client.close()
    out.end()


_STRINGS = ("WorkingDir", "User", "StopSignal")
_LISTS = ("Cmd", "Entrypoint", "Env")
_MAPS = ("Labels", "ExposedPorts", "Volumes")


def _checked(conf: dict[str, Any]) -> dict[str, Any]:
    """The body's fields that are set, each of the type docker's ContainerConfig has; a field
    the engine cannot take from a commit is refused, not ignored."""
    out: dict[str, Any] = {}
    for key, given in conf.items():
        if given in (None, "", [], {}, False, 0):
            continue
        value = given
        if key not in (*_STRINGS, *_LISTS, *_MAPS):
            raise InvalidArgument(f"commit: the config field {key} is not supported by "
                                  "Dockyard (use changes)")
        if key in _STRINGS and not isinstance(value, str):
            raise InvalidArgument(f"commit: {key}: expected a string")
        if key in _LISTS:
            if isinstance(value, str) and key != "Env":
                value = ["/bin/sh", "-c", value]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise InvalidArgument(f"commit: {key}: expected a list of strings")
        if key in _MAPS and not isinstance(value, dict):
            raise InvalidArgument(f"commit: {key}: expected an object")
        out[key] = value
    return out


def _config_changes(body: dict[str, Any]) -> list[str]:
    """docker's commit body (a container config whose set fields override the container's)
    as ``--change`` instructions, which the engine applies."""
    conf = _checked(body)
    changes: list[str] = []
    for key, word in (("Cmd", "CMD"), ("Entrypoint", "ENTRYPOINT")):
        if key in conf:
            changes.append(f"{word} {json.dumps(conf[key])}")
    if "Env" in conf:
        changes.append("ENV " + " ".join(shlex.quote(e) for e in conf["Env"]))
    if "Labels" in conf:
        changes.append("LABEL " + " ".join(shlex.quote(f"{k}={v}")
                                           for k, v in conf["Labels"].items()))
    for key, word in (("WorkingDir", "WORKDIR"), ("User", "USER"),
                      ("StopSignal", "STOPSIGNAL")):
        if key in conf:
            changes.append(f"{word} {conf[key]}")
    if "ExposedPorts" in conf:
        changes.append("EXPOSE " + " ".join(str(p) for p in conf["ExposedPorts"]))
    if "Volumes" in conf:
        changes.append(f"VOLUME {json.dumps([str(v) for v in conf['Volumes']])}")
    return changes


def commit(app: App, h: Handler, req: Request) -> None:
    """``POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=``."""
    from dockyard.engine.rootfs_ops import commit as engine_commit

    container = req.arg("container")
    if not container:
        raise InvalidArgument("bad parameter: container cannot be empty")
    repo, tag = req.arg("repo"), req.arg("tag")
    body = req.json(required=False) if req.body.strip() not in (b"", b"null") else {}
    changes = [c for c in req.query.get("changes", []) if c.strip()]
    changes = _config_changes(body) + changes
    with app.services() as svc:
        record = engine_commit(svc, container,
                               repository_tag=(f"{repo}:{tag}" if tag else repo) or None,
                               message=req.arg("comment"), author=req.arg("author"),
                               changes=changes, pause=req.flag("pause", True))
    h.reply_json(201, {"Id": record.id})


def images_search(app: App, h: Handler, req: Request) -> None:
    raise NotImplementedByUs("search is not supported: Dockyard has no index to search "
                             "(registries' /v2/ API has none); list a registry's tags with "
                             "its /v2/<name>/tags/list")

"""OCI image-spec and Docker image formats as frozen dataclasses.

Descriptors, platforms, image indexes / manifest lists, image manifests (OCI and Docker
schema2) and image configs. JSON is parsed into these at the edge (:func:`parse_manifest_document`,
:func:`parse_image_config`); a wrong shape raises :class:`~dockyard.errors.InvalidArgument`
naming the JSON path. The raw bytes stay the source of truth for digests: these models are never
re-serialised to compute one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NewType

from dockyard.errors import InvalidArgument
from dockyard.values import field, value

Digest = NewType("Digest", str)  # "sha256:<64 hex>"

# Media types (OCI image-spec v1.1 and Docker's distribution schema2).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
# What a registry client sends in Accept when it fetches a manifest by tag.
ACCEPT_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# Layer media type -> compression ("gzip", "zstd" or "" for none).
LAYER_COMPRESSION: Mapping[str, str] = {
    OCI_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST: "",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN_GZIP: "gzip",
}

_HEX = frozenset("0123456789abcdef")


def is_digest(text: str) -> bool:
    """A sha256 digest in canonical form (the only algorithm we store)."""
    algo, sep, hexpart = text.partition(":")
    return sep == ":" and algo == "sha256" and len(hexpart) == 64 and set(hexpart) <= _HEX


def check_digest(text: object, where: str = "digest") -> Digest:
    if not isinstance(text, str) or not is_digest(text):
        raise InvalidArgument(f"{where}: invalid digest {text!r} (want sha256:<64 hex digits>)")
    return Digest(text)


@value
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        return out


@value
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@value
class Index:
    """An OCI image index or a Docker manifest list."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@value
class Manifest:
    """An OCI image manifest or a Docker schema2 manifest."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@value
class Healthcheck:
    test: tuple[str, ...] = ()
    interval: int = 0        # nanoseconds, as docker stores them
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@value
class ContainerConfig:
    """The ``config`` object of an image config (what ``run`` starts from)."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()     # "80/tcp"
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Healthcheck | None = None
    shell: tuple[str, ...] = ()
    on_build: tuple[str, ...] = ()


@value
class HistoryEntry:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False


@value
class ImageConfig:
    architecture: str
    os: str
    diff_ids: tuple[Digest, ...]
    config: ContainerConfig = field(default_factory=ContainerConfig)
    created: str = ""
    author: str = ""
    variant: str = ""
    os_version: str = ""
    history: tuple[HistoryEntry, ...] = ()

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant, self.os_version)


# --- parsing -------------------------------------------------------------------------------


def _obj(v: object, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise InvalidArgument(f"{where}: expected an object, got {type(v).__name__}")
    return v


def _str(v: object, where: str, default: str = "") -> str:
    if v is None:
        return default
    if not isinstance(v, str):
        raise InvalidArgument(f"{where}: expected a string, got {type(v).__name__}")
    return v


def _int(v: object, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"{where}: expected an integer, got {type(v).__name__}")
    return v


def _strs(v: object, where: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise InvalidArgument(f"{where}: expected a list, got {type(v).__name__}")
    return tuple(_str(x, f"{where}[{i}]") for i, x in enumerate(v))


def _str_map(v: object, where: str) -> dict[str, str]:
    if v is None:
        return {}
    m = _obj(v, where)
    return {str(k): _str(x, f"{where}.{k}") for k, x in m.items()}


def _keys(v: object, where: str) -> tuple[str, ...]:
    """Docker's "set" objects ({"80/tcp": {}}) as their sorted keys."""
    if v is None:
        return ()
    return tuple(sorted(_obj(v, where)))


def parse_platform(v: object, where: str = "platform") -> Platform:
    m = _obj(v, where)
    return Platform(
        os=_str(m.get("os"), f"{where}.os"),
        architecture=_str(m.get("architecture"), f"{where}.architecture"),
        variant=_str(m.get("variant"), f"{where}.variant"),
        os_version=_str(m.get("os.version"), f"{where}.os.version"),
        os_features=_strs(m.get("os.features"), f"{where}.os.features"),
    )


def parse_descriptor(v: object, where: str = "descriptor") -> Descriptor:
    m = _obj(v, where)
    size = _int(m.get("size"), f"{where}.size")
    if size < 0:
        raise InvalidArgument(f"{where}.size: negative size {size}")
    plat = m.get("platform")
    return Descriptor(
        media_type=_str(m.get("mediaType"), f"{where}.mediaType"),
        digest=check_digest(m.get("digest"), f"{where}.digest"),
        size=size,
        urls=_strs(m.get("urls"), f"{where}.urls"),
        annotations=_str_map(m.get("annotations"), f"{where}.annotations"),
        platform=None if plat is None else parse_platform(plat, f"{where}.platform"),
        artifact_type=_str(m.get("artifactType"), f"{where}.artifactType"),
    )


def _load_json(raw: bytes, what: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"{what} is not valid JSON: {e}") from None
    return _obj(doc, what)


def parse_manifest_document(raw: bytes, media_type: str = "") -> Index | Manifest:
    """Parse a manifest or index fetched from a registry or an OCI layout.

    ``media_type`` is what the transport said (Content-Type); the document's own ``mediaType``
    wins when present. Schema1 is refused with a clear error.
    """
    doc = _load_json(raw, "manifest")
    mt = _str(doc.get("mediaType"), "mediaType") or media_type
    if mt in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise InvalidArgument(
            "unsupported manifest format: Docker image manifest schema 1 is too old",
            hint="push the image again with a current docker, podman or skopeo")
    if not mt:
        # OCI allows omitting mediaType; tell index from manifest by shape.
        mt = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if mt in INDEX_TYPES:
        items = doc.get("manifests")
        if not isinstance(items, list):
            raise InvalidArgument("manifests: expected a list")
        return Index(
            media_type=mt,
            manifests=tuple(parse_descriptor(d, f"manifests[{i}]") for i, d in enumerate(items)),
            annotations=_str_map(doc.get("annotations"), "annotations"),
        )
    if mt in MANIFEST_TYPES:
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise InvalidArgument("layers: expected a list")
        return Manifest(
            media_type=mt,
            config=parse_descriptor(doc.get("config"), "config"),
            layers=tuple(parse_descriptor(d, f"layers[{i}]") for i, d in enumerate(layers)),
            annotations=_str_map(doc.get("annotations"), "annotations"),
        )
    raise InvalidArgument(f"unsupported manifest media type {mt!r}")


def _nanos(v: object, where: str) -> int:
    return 0 if v is None else _int(v, where)


def _parse_healthcheck(v: object, where: str) -> Healthcheck | None:
    if v is None:
        return None
    m = _obj(v, where)
    return Healthcheck(
        test=_strs(m.get("Test"), f"{where}.Test"),
        interval=_nanos(m.get("Interval"), f"{where}.Interval"),
        timeout=_nanos(m.get("Timeout"), f"{where}.Timeout"),
        start_period=_nanos(m.get("StartPeriod"), f"{where}.StartPeriod"),
        start_interval=_nanos(m.get("StartInterval"), f"{where}.StartInterval"),
        retries=_nanos(m.get("Retries"), f"{where}.Retries"),
    )


def _parse_container_config(v: object, where: str) -> ContainerConfig:
    if v is None:
        return ContainerConfig()
    m = _obj(v, where)
    ep = m.get("Entrypoint")
    cmd = m.get("Cmd")
    return ContainerConfig(
        user=_str(m.get("User"), f"{where}.User"),
        exposed_ports=_keys(m.get("ExposedPorts"), f"{where}.ExposedPorts"),
        env=_strs(m.get("Env"), f"{where}.Env"),
        entrypoint=None if ep is None else _strs(ep, f"{where}.Entrypoint"),
        cmd=None if cmd is None else _strs(cmd, f"{where}.Cmd"),
        volumes=_keys(m.get("Volumes"), f"{where}.Volumes"),
        working_dir=_str(m.get("WorkingDir"), f"{where}.WorkingDir"),
        labels=_str_map(m.get("Labels"), f"{where}.Labels"),
        stop_signal=_str(m.get("StopSignal"), f"{where}.StopSignal"),
        healthcheck=_parse_healthcheck(m.get("Healthcheck"), f"{where}.Healthcheck"),
        shell=_strs(m.get("Shell"), f"{where}.Shell"),
        on_build=_strs(m.get("OnBuild"), f"{where}.OnBuild"),
    )


def parse_image_config(raw: bytes) -> ImageConfig:
    doc = _load_json(raw, "image config")
    rootfs = _obj(doc.get("rootfs"), "rootfs")
    if rootfs.get("type") != "layers":
        raise InvalidArgument(f"rootfs.type: expected 'layers', got {rootfs.get('type')!r}")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise InvalidArgument("rootfs.diff_ids: expected a list")
    history = doc.get("history") or []
    if not isinstance(history, list):
        raise InvalidArgument("history: expected a list")
    return ImageConfig(
        architecture=_str(doc.get("architecture"), "architecture"),
        os=_str(doc.get("os"), "os"),
        variant=_str(doc.get("variant"), "variant"),
        os_version=_str(doc.get("os.version"), "os.version"),
        diff_ids=tuple(check_digest(d, f"rootfs.diff_ids[{i}]") for i, d in enumerate(diff_ids)),
        config=_parse_container_config(doc.get("config"), "config"),
        created=_str(doc.get("created"), "created"),
        author=_str(doc.get("author"), "author"),
        history=tuple(
            HistoryEntry(
                created=_str(_obj(h, f"history[{i}]").get("created"), f"history[{i}].created"),
                created_by=_str(h.get("created_by"), f"history[{i}].created_by"),
                author=_str(h.get("author"), f"history[{i}].author"),
                comment=_str(h.get("comment"), f"history[{i}].comment"),
                empty_layer=bool(h.get("empty_layer", False)),
            )
            for i, h in enumerate(history)
        ),
    )


def chain_ids(diff_ids: tuple[Digest, ...] | list[Digest]) -> list[Digest]:
    """The OCI ChainIDs of a layer stack: identifies a snapshot by everything beneath it."""
    import hashlib

    out: list[Digest] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            h = hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest()
            out.append(Digest(f"sha256:{h}"))
    return out

"""The mount flags of ``run``/``create`` — ``-v``, ``--mount``, ``--volumes-from`` — parsed into
:class:`MountRequest` values, with docker's rules and messages (docker/cli ``opts/mount.go``,
moby ``volume/mounts/linux_parser.go``). Pure functions: nothing here touches the host."""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Mapping, Sequence

from dockyard.errors import InvalidArgument
from dockyard.values import field, value

BIND, VOLUME, TMPFS = "bind", "volume", "tmpfs"
_PROPAGATION = ("shared", "rshared", "slave", "rslave", "private", "rprivate")
_LABEL_MODES = ("z", "Z")
_RW_MODES = ("rw", "ro")


@value
class MountRequest:
    """One mount a container asked for. ``source``: a host path (bind), a volume name ("" for
    an anonymous volume) or "" (tmpfs). ``mode``: the ``-v`` mode text as docker keeps it."""

    type: str
    target: str
    source: str = ""
    readonly: bool = False
    mode: str = ""
    propagation: str = ""
    nocopy: bool = False
    create_source: bool = False             # -v: a missing host directory is made
    volume_labels: Mapping[str, str] = field(default_factory=dict)
    volume_options: Mapping[str, str] = field(default_factory=dict)
    tmpfs_size: int = 0
    tmpfs_mode: int = 0
    from_flag: str = "-v"                   # "-v" (HostConfig.Binds) or "--mount"
    spec: str = ""                          # the flag's text

    def tmpfs_data(self) -> str:
        """The tmpfs options of a ``--mount type=tmpfs`` (moby's ConvertTmpfsOptions)."""
        out = []
        if self.tmpfs_size:
            size, suffix = self.tmpfs_size, ""
            for unit in ("k", "m", "g"):
                if size % 1024:
                    break
                size, suffix = size // 1024, unit
            out.append(f"size={size}{suffix}")
        if self.tmpfs_mode:
            out.append(f"mode={self.tmpfs_mode:o}")
        if self.readonly:
            out.append("ro")
        return ",".join(out)


def _mount_error(kind: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {why}')


def _check_target(kind: str, target: str) -> str:
    if not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    clean = posixpath.normpath(target)
    if clean == "/":
        raise InvalidArgument("invalid specification: destination can't be '/'")
    return clean


def _valid_mode(mode: str) -> bool:
    """moby's ValidMountMode: at most one of rw/ro, one label, one propagation, nocopy."""
    counts = {"rw": 0, "label": 0, "prop": 0, "copy": 0}
    for part in mode.split(","):
        if part in _RW_MODES:
            counts["rw"] += 1
        elif part in _LABEL_MODES:
            counts["label"] += 1
        elif part in _PROPAGATION:
            counts["prop"] += 1
        elif part == "nocopy":
            counts["copy"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


def parse_volume(spec: str) -> MountRequest:
    """``-v [source:]target[:mode]``: a bind (an absolute source), a named volume, or an
    anonymous volume (no source)."""
    parts = spec.split(":")
    if len(parts) == 1:
        source, target, mode = "", parts[0], ""
    elif len(parts) == 2:
        if _valid_mode(parts[1]):   # "/foo:rw": a volume cannot take a mode without a source
            raise InvalidArgument(f"invalid spec: {spec}")
        source, target, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgument(f"invalid spec: {spec}")
    if not target:
        raise InvalidArgument(f"invalid spec: {spec}")
    if source.startswith("."):      # docker's CLI: ./dir and ../dir are host directories
        source = os.path.abspath(source)
    if mode and not _valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    modes = mode.split(",") if mode else []
    kind = BIND if source.startswith("/") else VOLUME
    target = _check_target(kind, target)
    propagation = next((m for m in modes if m in _PROPAGATION), "")
    if kind == VOLUME:
        if source:
            from dockyard.volumes.local import check_name

            check_name(source)
        if propagation:
            raise InvalidArgument(f"invalid mode: {mode}")
    elif "nocopy" in modes:
        raise InvalidArgument(f"invalid mode: {mode}")
    return MountRequest(
        type=kind, target=target, source=posixpath.normpath(source) if kind == BIND else source,
        # docker's setBindModeIfNull: a named local volume's empty mode reads "z"
        readonly="ro" in modes, mode=mode or ("z" if kind == VOLUME and source else ""),
        propagation=propagation or ("rprivate" if kind == BIND else ""),
        nocopy="nocopy" in modes, create_source=kind == BIND, from_flag="-v", spec=spec)


def _flag_error(spec: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid argument {json.dumps(spec)} for \"--mount\" flag: {why}")


def _parse_bool(key: str, val: str, spec: str) -> bool:
    low = val.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise _flag_error(spec, f"invalid value for {key}: {val}")


def parse_mount(spec: str) -> MountRequest:
    """``--mount type=bind|volume|tmpfs,source=,target=,readonly,...`` (docker's keys)."""
    from dockyard.cli.units import ram_in_bytes

    kind = source = target = propagation = ""
    readonly = nocopy = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    size = mode = 0
    families: set[str] = set()
    for item in (spec.split(",") if spec else []):
        key, eq, val = item.partition("=")
        key = key.lower()
        if not eq:
            if key in ("readonly", "ro"):
                readonly = True
                continue
            if key == "volume-nocopy":
                nocopy = True
                families.add("volume")
                continue
            raise _flag_error(spec, f"invalid field '{item}' must be a key=value pair")
        if key == "type":
            kind = val.lower()
        elif key in ("source", "src"):
            source = os.path.abspath(val) if val == "." or val.startswith("./") else val
        elif key in ("target", "dst", "destination"):
            target = val
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, val, spec)
        elif key == "bind-propagation":
            propagation = val.lower()
            families.add("bind")
        elif key == "volume-nocopy":
            nocopy = _parse_bool(key, val, spec)
            families.add("volume")
        elif key in ("volume-label", "volume-opt"):
            k, _, v = val.partition("=")
            (labels if key == "volume-label" else options)[k] = v
            families.add("volume")
        elif key == "volume-driver":
            if val != "local":
                raise InvalidArgument(f"error looking up volume plugin {val}: plugin "
                                      f'"{val}" not found')
            families.add("volume")
        elif key == "tmpfs-size":
            try:
                size = ram_in_bytes(val)
            except InvalidArgument:
                raise _flag_error(spec, f"invalid value for {key}: {val}") from None
            families.add("tmpfs")
        elif key == "tmpfs-mode":
            try:
                mode = int(val, 8)
            except ValueError:
                raise _flag_error(spec, f"invalid value for {key}: {val}") from None
            families.add("tmpfs")
        elif key == "consistency":
            continue
        else:
            raise _flag_error(spec, f"unexpected key '{key}' in '{item}'")
    if not kind:
        raise _flag_error(spec, "type is required")
    if not target:
        raise _flag_error(spec, "target is required")
    for family in sorted(families):
        if family != kind:
            raise _flag_error(spec, f"cannot mix '{family}-*' options with mount type '{kind}'")
    if kind not in (BIND, VOLUME, TMPFS):
        raise _mount_error(kind, "mount type unknown")
    target = _check_target(kind, target)
    if kind == BIND:
        if not source:
            raise _mount_error(kind, "field Source must not be empty")
        if not source.startswith("/"):
            raise _mount_error(kind, f"invalid mount path: '{source}' mount path must be "
                                     "absolute")
        if propagation and propagation not in _PROPAGATION:
            raise _mount_error(kind, f"invalid propagation mode: {propagation}")
    elif kind == VOLUME and source:
        from dockyard.volumes.local import check_name

        check_name(source)
    elif kind == TMPFS and source:
        raise _mount_error(kind, "field Source must not be specified")
    return MountRequest(
        type=kind, target=target, source=posixpath.normpath(source) if kind == BIND else source,
        readonly=readonly, mode="z" if kind == VOLUME else "", propagation=propagation or (
            "rprivate" if kind == BIND else ""),
        nocopy=nocopy, volume_labels=labels, volume_options=options, tmpfs_size=size,
        tmpfs_mode=mode, from_flag="--mount", spec=spec)


def parse_volumes_from(spec: str) -> tuple[str, str]:
    """``--volumes-from container[:ro|rw]`` -> (container, mode)."""
    name, sep, mode = spec.partition(":")
    if sep and mode not in _RW_MODES:
        raise InvalidArgument(f"invalid mode: {mode}")
    if not name:
        raise InvalidArgument(f"invalid volumes-from spec: {spec}")
    return name, mode


def check_duplicates(requests: Sequence[MountRequest]) -> None:
    """docker refuses two of the user's mounts at one place."""
    seen: set[str] = set()
    for r in requests:
        if r.target in seen:
            raise InvalidArgument(f"Duplicate mount point: {r.target}")
        seen.add(r.target)

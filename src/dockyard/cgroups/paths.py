"""Where a container's cgroup lives: ``linux.cgroupsPath`` resolved the way runc's cgroupfs
driver resolves it (libcontainer/specconv + opencontainers/cgroups ``internal/path``, ``fs/paths``,
``fs2/defaultpath``):

* the path is cleaned lexically first, so ``..`` can never climb out of a hierarchy;
* an absolute path (``/machine/abc``) is taken from the root of every hierarchy;
* a relative path (``abc/def``) is taken from the runtime's own cgroup: on v1 from its cgroup in
  each hierarchy (``/proc/self/cgroup``), on a pure v2 host from the *parent* of its cgroup,
  because its own cgroup holds processes and so cannot hand controllers to a child;
* no path at all means the relative path ``<container id>`` (runc: ``Name = id``, ``Parent = ""``);
  a runtime that runs in the root cgroup therefore puts a container at ``/<id>``.

A systemd-style path (``slice:prefix:name``) needs the systemd driver, which this host cannot
have (no systemd); it is refused with a clear error instead of becoming a directory with colons.
"""

from __future__ import annotations

import posixpath

from dockyard.cgroups.layout import CgroupMount
from dockyard.charset import is_systemd_cgroup_path
from dockyard.errors import InvalidArgument, Unavailable

SYSTEMD_UNAVAILABLE = "systemd cgroup driver not available: no systemd on this host"


def clean_path(path: str) -> str:
    """runc's CleanPath: absolute stays absolute, relative is cleaned as if rooted at "/"."""
    if not path:
        return ""
    if path.startswith("/"):
        return posixpath.normpath("/" + path.lstrip("/"))
    cleaned = posixpath.normpath("/" + path)
    return posixpath.relpath(cleaned, "/") if cleaned != "/" else ""


def inner_path(cgroups_path: str | None, container_id: str, *, systemd: bool = False) -> str:
    """The cgroup path inside each hierarchy: "/abs/path" or "rel/path"."""
    if systemd:
        raise Unavailable(SYSTEMD_UNAVAILABLE,
                          hint="use the cgroupfs driver: drop --systemd-cgroup")
    if cgroups_path:
        if is_systemd_cgroup_path(cgroups_path):
            raise Unavailable(f"{SYSTEMD_UNAVAILABLE} (cgroupsPath {cgroups_path!r} is in the "
                              f"systemd form slice:prefix:name)",
                              hint="give linux.cgroupsPath as a path, e.g. /machine/<id>")
        cleaned = clean_path(cgroups_path)
        if cleaned not in ("", "/"):
            return cleaned
        raise InvalidArgument(f"linux.cgroupsPath {cgroups_path!r} names the root cgroup; a "
                              f"container needs a cgroup of its own")
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise InvalidArgument(f"container id {container_id!r} cannot name a cgroup")
    return container_id


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup``: controller (or ``name=...``) -> path; the v2 entry is keyed "".
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        for c in controllers.split(","):
            out[c] = path
    return out


def own_cgroups(text: str | None = None) -> dict[str, str]:
    if text is None:
        with open("/proc/self/cgroup") as f:
            text = f.read()
    return parse_proc_cgroup(text)


def _below(mount: CgroupMount, own: str) -> str:
    """``own`` (a path in the whole hierarchy) as seen below this mount's root."""
    root = mount.root or "/"
    if root == "/":
        return own
    rel = posixpath.relpath(own, root)
    return "/" if rel.startswith("..") or rel == "." else "/" + rel


def _join(mountpoint: str, *parts: str) -> str:
    out = mountpoint.rstrip("/") or "/"
    for part in parts:
        p = part.strip("/")
        if p:
            out = f"{out}/{p}"
    return out


def v1_dir(mount: CgroupMount, controller: str, inner: str, own: dict[str, str]) -> str:
    if inner.startswith("/"):
        return _join(mount.mountpoint, inner)
    return _join(mount.mountpoint, _below(mount, own.get(controller, "/")), inner)


def v2_dir(mount: CgroupMount, inner: str, own: dict[str, str], *, pure: bool) -> str:
    if inner.startswith("/"):
        return _join(mount.mountpoint, inner)
    base = _below(mount, own.get("", "/"))
    if pure:
        base = posixpath.dirname(base.rstrip("/")) or "/"
    return _join(mount.mountpoint, base, inner)

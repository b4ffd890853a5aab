"""What cgroup hierarchies this host has mounted (v1 controllers, the v2 unified tree)."""

from __future__ import annotations

from dockyard.values import value


@value
class Hierarchy:
    mountpoint: str
    fstype: str          # "cgroup" (v1) or "cgroup2"
    options: str         # v1: the controllers (and name=) the hierarchy carries
    root: str = "/"      # the mount's root inside its hierarchy (a subtree in a container)


def host_hierarchies(mountinfo: str | None = None) -> tuple[Hierarchy, ...]:
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    text = mountinfo
    out: list[Hierarchy] = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        fstype, _source, superopts = [*post.split(), "", "", ""][:3]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        opts = [o for o in superopts.split(",") if o not in ("rw", "ro")]
        if fstype == "cgroup":
            known = {"relatime", "noatime", "nosuid", "nodev", "noexec", "xattr", "clone_children",
                     "noprefix", "cpuset_v2_mode", "favordynmods"}
            opts = [o for o in opts if o not in known and not o.startswith("release_agent")]
        out.append(Hierarchy(mountpoint=fields[4], fstype=fstype, options=",".join(opts),
                             root=fields[3]))
    return tuple(out)


def own_cgroup_dir(h: Hierarchy, proc_self_cgroup: str) -> str:
    """The directory of the calling process's cgroup in hierarchy ``h`` (from the text of
    /proc/self/cgroup); the mount point itself when the cgroup is not inside the mount."""
    want = set(h.options.split(",")) - {""} if h.fstype == "cgroup" else set()
    for line in proc_self_cgroup.splitlines():
        _num, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        have = set(controllers.split(",")) - {""}
        if h.fstype == "cgroup2" and have:
            continue
        if h.fstype == "cgroup" and not (want & have):
            continue
        root = h.root.rstrip("/")
        if path != root and not path.startswith(root + "/"):
            return h.mountpoint
        rel = path[len(root):].strip("/")
        return f"{h.mountpoint.rstrip('/')}/{rel}" if rel else h.mountpoint
    return h.mountpoint


def is_pure_v2(hierarchies: tuple[Hierarchy, ...]) -> bool:
    return bool(hierarchies) and all(h.fstype == "cgroup2" for h in hierarchies)

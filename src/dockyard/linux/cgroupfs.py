"""What cgroup hierarchies this host has mounted (v1 controllers, the v2 unified tree)."""

from __future__ import annotations

from dockyard.values import value


@value
class Hierarchy:
    mountpoint: str
    fstype: str          # "cgroup" (v1) or "cgroup2"
    options: str         # v1: the controllers (and name=) the hierarchy carries


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
        out.append(Hierarchy(mountpoint=fields[4], fstype=fstype, options=",".join(opts)))
    return tuple(out)


def is_pure_v2(hierarchies: tuple[Hierarchy, ...]) -> bool:
    return bool(hierarchies) and all(h.fstype == "cgroup2" for h in hierarchies)

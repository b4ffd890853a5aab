"""User namespace id maps, written by the parent for the middle child (the spec's rule: the
runtime, not the container, writes them). Root writes /proc/<pid>/{uid,gid}_map directly;
an unprivileged caller goes through newuidmap/newgidmap (shadow's setuid helpers), which
check /etc/subuid and /etc/subgid."""

from __future__ import annotations

import os

from dockyard.errors import DockyardError, PermissionDenied
from dockyard.model.oci import IdMapping, Linux


def _lines(maps: tuple[IdMapping, ...]) -> str:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in maps)


def _only_self(maps: tuple[IdMapping, ...], own: int) -> bool:
    return len(maps) == 1 and maps[0].host_id == own and maps[0].size == 1


def write_maps(pid: int, linux: Linux) -> None:
    own_uid, own_gid = os.geteuid(), os.getegid()
    if own_uid != 0 and _only_self(linux.uid_mappings, own_uid) \
            and _only_self(linux.gid_mappings, own_gid):
        # mapping only ourselves needs no helper; the kernel then wants setgroups denied
        try:
            with open(f"/proc/{pid}/setgroups", "w") as f:
                f.write("deny")
            for name, maps in (("uid_map", linux.uid_mappings),
                               ("gid_map", linux.gid_mappings)):
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(_lines(maps))
        except OSError as exc:
            raise PermissionDenied(f"writing the id maps of pid {pid}: {exc.strerror}") from None
        return
    if own_uid == 0:
        for name, maps in (("uid_map", linux.uid_mappings), ("gid_map", linux.gid_mappings)):
            try:
                with open(f"/proc/{pid}/{name}", "w") as f:
                    f.write(_lines(maps))
            except OSError as exc:
                raise DockyardError(f"writing {name} for pid {pid}: {exc.strerror}") from None
        return
    import shutil
    import subprocess

    for tool, maps in (("newuidmap", linux.uid_mappings), ("newgidmap", linux.gid_mappings)):
        binary = shutil.which(tool)
        if binary is None:
            raise PermissionDenied(f"{tool} not found: unprivileged user namespaces need it "
                                   "(Debian package uidmap)")
        args = [str(v) for m in maps for v in (m.container_id, m.host_id, m.size)]
        res = subprocess.run([binary, str(pid), *args], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise PermissionDenied(f"{tool}: {res.stderr.strip() or 'failed'}")

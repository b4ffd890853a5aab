"""``ps``: the processes of a container (its cgroup), as JSON pids or as ps(1) lines."""

from __future__ import annotations

import json
import subprocess

from dockyard.errors import DockyardError, FailedPrecondition
from dockyard.runtime import state

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from _typeshed import StrPath


def container_pids(root: StrPath, container_id: str) -> list[int]:
    rec = state.load(root, container_id)
    status = state.status_of(root, rec)
    if status is state.Status.STOPPED:
        raise FailedPrecondition("container is not running")
    cgroup = state.cgroup_of(rec)
    return sorted(cgroup.pids()) if cgroup is not None else [rec.pid]


def ps(root: StrPath, container_id: str, fmt: str, ps_args: list[str]) -> str:
    pids = container_pids(root, container_id)
    if fmt == "json":
        return json.dumps(pids) + "\n"
    res = subprocess.run(["ps", *(ps_args or ["-ef"])], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        raise DockyardError(f"ps: {res.stderr.strip()}")
    lines = res.stdout.splitlines()
    if not lines:
        return ""
    header = lines[0].split()
    if "PID" not in header:
        raise DockyardError("couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = set(pids)
    kept = [line for line in lines[1:]
            if len(line.split()) > col and line.split()[col].isdigit()
            and int(line.split()[col]) in wanted]
    return "\n".join([lines[0], *kept]) + "\n"

"""Container state under the runtime root: what ``create`` records and every verb re-reads.

Layout: ``<root>/<id>/state.json`` (written to a temporary file, then renamed) and
``<root>/<id>/exec.fifo``, which exists from ``create`` until ``start`` has released the init
process. A container's live status is derived from that record and the kernel (is the init
alive, is it the same process), never trusted from the file alone.
"""

from __future__ import annotations

import os

from dockyard import OCI_SPEC_VERSION, fastjson
from dockyard.choices import Choice
from dockyard.errors import AlreadyExists, InvalidArgument, NotFound
from dockyard.runtime import fastpath
from dockyard.values import asdict, value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    import signal
    from typing import ClassVar

    from _typeshed import StrPath

    from dockyard.cgroups import CgroupManager
    from dockyard.model.oci import Spec


class Status(Choice):
    CREATING: ClassVar[Status]
    CREATED: ClassVar[Status]
    RUNNING: ClassVar[Status]
    PAUSED: ClassVar[Status]
    STOPPED: ClassVar[Status]

    @property
    def can_start(self) -> bool:
        return self is Status.CREATED

    @property
    def can_kill(self) -> bool:
        return self in (Status.CREATED, Status.RUNNING, Status.PAUSED)

    @property
    def can_exec(self) -> bool:
        # runc joins a created container too: its init is waiting for start, namespaces made
        return self in (Status.CREATED, Status.RUNNING)

    @property
    def can_delete(self) -> bool:
        return self in (Status.STOPPED, Status.CREATING)


Status.CREATING = Status("CREATING", "creating")
Status.CREATED = Status("CREATED", "created")
Status.RUNNING = Status("RUNNING", "running")
Status.PAUSED = Status("PAUSED", "paused")
Status.STOPPED = Status("STOPPED", "stopped")
_BY_VALUE = {s.value: s for s in Status.members()}


@value
class Record:
    """What create writes down; fixed for the container's life."""

    id: str
    pid: int
    pid_start_time: int
    bundle: str
    rootfs: str
    created: str
    owner: str = ""
    annotations: tuple[tuple[str, str], ...] = ()
    #: the hook kinds config.json had at create time (so start/delete parse it only if needed)
    hooks: tuple[str, ...] = ()
    #: the container's cgroup directories: controller -> dir ("" = the unified hierarchy)
    cgroup_paths: tuple[tuple[str, str], ...] = ()


def validate_id(container_id: str) -> str:
    if not fastpath.valid_id(container_id):
        raise InvalidArgument(f"invalid container id format: {container_id!r}")
    return container_id


def container_dir(root: StrPath, container_id: str) -> str:
    return os.path.join(root, validate_id(container_id))


def reserve(root: StrPath, container_id: str) -> str:
    """Make the container's state directory; fail if the id is taken."""
    os.makedirs(root, mode=0o711, exist_ok=True)
    d = container_dir(root, container_id)
    try:
        os.mkdir(d, mode=0o711)
    except FileExistsError:
        raise AlreadyExists(f"container with id exists: {container_id}") from None
    return d


def remove_dir(d: StrPath) -> None:
    """Remove a container's state directory; what cannot be removed is left, as
    rmtree(ignore_errors)."""
    if not fastpath.remove_dir(os.fspath(d)):
        import shutil

        shutil.rmtree(d, ignore_errors=True)


def save(root: StrPath, rec: Record) -> None:
    d = container_dir(root, rec.id)
    tmp = os.path.join(d, fastpath.STATE_NAME + ".tmp")
    data = asdict(rec)
    data["annotations"] = dict(rec.annotations)
    data["cgroup_paths"] = dict(rec.cgroup_paths)
    # No fsync, as runc: the rename keeps readers from a half-written file, and the state
    # describes processes, which a crash that could lose the write kills anyway.
    with open(tmp, "w") as f:
        f.write(fastjson.dumps(data))
    os.replace(tmp, os.path.join(d, fastpath.STATE_NAME))


def load(root: StrPath, container_id: str) -> Record:
    d = container_dir(root, container_id)
    try:
        data = fastjson.loads(fastpath.read_text(os.path.join(d, fastpath.STATE_NAME)))
    except FileNotFoundError:
        raise NotFound(f"container does not exist: {container_id}") from None
    data["annotations"] = tuple(sorted(data.get("annotations", {}).items()))
    data["hooks"] = tuple(data.get("hooks", ()))
    data["cgroup_paths"] = tuple(sorted(data.get("cgroup_paths", {}).items()))
    return Record(**data)


CONFIG_NAME = "config.json"


def save_config(state_dir: StrPath, raw: str) -> None:
    """The config.json create used: later verbs (exec, hooks, update) read this copy, not the
    bundle's, which may have changed since."""
    with open(os.path.join(state_dir, CONFIG_NAME), "w") as f:
        f.write(raw)


def load_config(root: StrPath, container_id: str) -> Spec:
    from dockyard.model.oci import parse_spec

    try:
        raw = fastpath.read_text(os.path.join(container_dir(root, container_id), CONFIG_NAME))
    except FileNotFoundError:
        raise NotFound(f"container does not exist: {container_id}") from None
    return parse_spec(fastjson.loads(raw))


def list_ids(root: StrPath) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(name for name in os.listdir(root)
                  if os.path.exists(os.path.join(root, name, fastpath.STATE_NAME)))


def status_of(root: StrPath, rec: Record) -> Status:
    """The live status (:func:`fastpath.live_status`: the record and the kernel)."""
    return _BY_VALUE[fastpath.live_status(container_dir(root, rec.id), rec.pid,
                                          rec.pid_start_time, dict(rec.cgroup_paths))]


def cgroup_of(rec: Record) -> CgroupManager | None:
    """The container's cgroup manager, rebuilt from the directories create recorded."""
    if not rec.cgroup_paths:
        return None
    from dockyard.cgroups import manager_from_paths

    return manager_from_paths(dict(rec.cgroup_paths))


def hook_state(rec: Record, status: Status) -> dict[str, object]:
    """The state a hook reads on stdin (the OCI state document)."""
    doc: dict[str, object] = {"ociVersion": OCI_SPEC_VERSION, "id": rec.id,
                              "status": status.value, "pid": rec.pid, "bundle": rec.bundle}
    if rec.annotations:
        doc["annotations"] = dict(rec.annotations)
    return doc


def to_oci_state(root: StrPath, rec: Record) -> dict[str, object]:
    """The state document as runc prints it (the OCI state plus rootfs, created, owner)."""
    doc = {"id": rec.id, "pid": rec.pid, "bundle": rec.bundle, "rootfs": rec.rootfs,
           "created": rec.created, "owner": rec.owner, "annotations": dict(rec.annotations)}
    return fastpath.oci_state(doc, status_of(root, rec).value)


def parse_signal(name: str) -> signal.Signals:
    import signal

    """Accept ``9``, ``KILL`` or ``SIGKILL`` (any case), as runc does."""
    text = name.strip()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        text = text.upper()
        if not text.startswith("SIG"):
            text = "SIG" + text
        return signal.Signals[text]
    except (ValueError, KeyError):
        raise InvalidArgument(f"unknown signal {name!r}") from None

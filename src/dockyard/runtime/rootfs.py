"""The container's root filesystem: from the spec to a list of steps, then the steps applied.

:func:`plan` is pure (unit-tested without root); :func:`apply` runs the steps in the container's
new mount namespace before ``pivot_root``, through ``linux/``. Every target is resolved with
:func:`~dockyard.linux.paths.secure_join` at the moment it is used, because an earlier mount may
have changed what a path points at.
"""

from __future__ import annotations

import os
import stat

from dockyard.errors import InvalidArgument
from dockyard.linux import libc as k
from dockyard.linux.cgroupfs import Hierarchy, host_hierarchies, is_pure_v2, own_cgroup_dir
from dockyard.linux.paths import secure_join
from dockyard.model.oci import Mount, Spec
from dockyard.runtime.mountopts import parse_options
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from collections.abc import Callable


@value
class MountStep:
    destination: str              # inside the container
    source: str | None
    fstype: str | None
    flags: int
    data: str
    propagation: tuple[int, ...] = ()
    bind: bool = False
    #: bind the container's own cgroup in this hierarchy (found in the child, which is in it
    #: by then), not the hierarchy's root: the source is a linux.cgroupfs.Hierarchy's fields
    own_cgroup: Hierarchy | None = None


@value
class DeviceStep:
    path: str
    major: int
    minor: int
    mode: int = 0o666
    kind: int = stat.S_IFCHR
    uid: int | None = None
    gid: int | None = None


_DEVICE_KINDS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


@value
class SymlinkStep:
    path: str
    target: str


Step = MountStep | DeviceStep | SymlinkStep

# The devices every container gets (OCI runtime spec, "Default Devices").
DEFAULT_DEVICES = (
    DeviceStep("/dev/null", 1, 3), DeviceStep("/dev/zero", 1, 5), DeviceStep("/dev/full", 1, 7),
    DeviceStep("/dev/random", 1, 8), DeviceStep("/dev/urandom", 1, 9),
    DeviceStep("/dev/tty", 5, 0),
)
DEFAULT_LINKS = (
    SymlinkStep("/dev/fd", "/proc/self/fd"), SymlinkStep("/dev/stdin", "/proc/self/fd/0"),
    SymlinkStep("/dev/stdout", "/proc/self/fd/1"), SymlinkStep("/dev/stderr", "/proc/self/fd/2"),
)


def _mount_steps(m: Mount, hierarchies: tuple[Hierarchy, ...], userns: bool, cgroupns: bool
                 ) -> list[MountStep]:
    opts = parse_options(m.options)
    fstype = m.type
    if fstype in ("bind", "rbind", None, "none") and not opts.is_bind:
        if fstype in ("bind", "rbind"):
            opts = parse_options((*m.options, fstype))
        else:
            raise InvalidArgument(f"mount {m.destination}: no type and no bind option")
    if opts.is_bind:
        if not m.source:
            raise InvalidArgument(f"mount {m.destination}: a bind mount needs a source")
        return [MountStep(m.destination, m.source, None, opts.flags, "", opts.propagation,
                          bind=True)]
    if fstype in {"cgroup", "cgroup2"}:
        return _cgroup_steps(m.destination, opts.flags | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC,
                             hierarchies, userns, cgroupns)
    return [MountStep(m.destination, m.source or fstype, fstype, opts.flags, opts.data,
                      opts.propagation)]


def _cgroup_steps(dest: str, flags: int, hierarchies: tuple[Hierarchy, ...], userns: bool,
                  cgroupns: bool) -> list[MountStep]:
    """A read-only view of the container's cgroups: cgroup2 alone on a pure v2 host; a tmpfs
    with one mount per v1 hierarchy (and the unified one) on a v1 or hybrid host.

    On v1 without a cgroup namespace, a fresh mount would show the whole hierarchy, the
    host's cgroups included: as runc does, each hierarchy's directory of the container's own
    cgroup is bound instead (so memory.limit_in_bytes is the container's). In a cgroup
    namespace a fresh mount is rooted at the container's cgroup already; in a user namespace
    without one, v1 hierarchies cannot be mounted afresh and are bound too."""
    if is_pure_v2(hierarchies):
        return [MountStep(dest, "cgroup2", "cgroup2", flags, "")]
    steps = [MountStep(dest, "tmpfs", "tmpfs", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC,
                       "mode=755")]
    for h in hierarchies:
        base = h.mountpoint.rstrip("/").rsplit("/", 1)[-1]
        target = f"{dest.rstrip('/')}/{base}"
        if not cgroupns or (userns and h.fstype == "cgroup"):
            steps.append(MountStep(target, h.mountpoint, None, k.MS_BIND | flags, "",
                                   bind=True, own_cgroup=h))
        else:
            steps.append(MountStep(target, "cgroup", h.fstype, flags,
                                   h.options if h.fstype == "cgroup" else ""))
    # The tmpfs itself becomes read-only once its mount points exist.
    if flags & k.MS_RDONLY:
        steps.append(MountStep(dest, None, None, k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID
                               | k.MS_NODEV | k.MS_NOEXEC, "mode=755"))
    return steps


def plan(spec: Spec, hierarchies: tuple[Hierarchy, ...] | None = None, *,
         mountinfo: str | None = None) -> tuple[Step, ...]:
    """Everything done to the rootfs before pivot_root, in order. ``hierarchies``: the host's
    cgroup mounts (default: read from ``mountinfo``, or this process's mount table)."""
    if hierarchies is None and any(m.type in ("cgroup", "cgroup2") for m in spec.mounts):
        hierarchies = host_hierarchies(mountinfo)
    userns = spec.linux.namespace("user") is not None
    cgroupns = spec.linux.namespace("cgroup") is not None
    steps: list[Step] = []
    for m in spec.mounts:
        steps.extend(_mount_steps(m, hierarchies or (), userns, cgroupns))
    dev_is_bound = any(isinstance(s, MountStep) and s.destination == "/dev" and s.bind
                       for s in steps)
    devices: list[DeviceStep] = []
    if not dev_is_bound:
        asked = {d.path for d in spec.linux.devices}
        devices.extend(d for d in DEFAULT_DEVICES if d.path not in asked)
    for d in spec.linux.devices:
        devices.append(DeviceStep(d.path, d.major, d.minor,
                                  0o666 if d.file_mode is None else d.file_mode & 0o7777,
                                  _DEVICE_KINDS[d.type], d.uid, d.gid))
    if userns:
        # mknod is not allowed in a user namespace: bind the host's node instead (runc's way)
        steps.extend(MountStep(d.path, d.path, None, k.MS_BIND, "", bind=True)
                     for d in devices)
    else:
        steps.extend(devices)
    if not dev_is_bound:
        steps.extend(DEFAULT_LINKS)
    if not dev_is_bound and any(m.destination == "/dev/pts" for m in spec.mounts):
        steps.append(SymlinkStep("/dev/ptmx", "pts/ptmx"))
    return tuple(steps)


# --- applying, in the child ------------------------------------------------------------------

def _make_mountpoint(target: str, source_is_file: bool) -> None:
    if os.path.lexists(target):
        return
    if source_is_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass
    else:
        os.makedirs(target, exist_ok=True)


def _apply_mount(rootfs: str, s: MountStep, proc_cgroup: str | None = None) -> None:
    # strict: a destination that climbs out of the rootfs (by "..", or through a symlink the
    # image planted) is refused, not silently clamped
    target = secure_join(rootfs, s.destination, strict=True)
    if s.bind:
        assert s.source is not None
        source = s.source
        if s.own_cgroup is not None:
            assert proc_cgroup is not None
            source = own_cgroup_dir(s.own_cgroup, proc_cgroup)
        src_is_file = not os.path.isdir(source)
        _make_mountpoint(target, src_is_file)
        k.mount(source, target, None, s.flags & (k.MS_BIND | k.MS_REC))
        extra = s.flags & ~(k.MS_BIND | k.MS_REC)
        if extra:
            remount(target, extra)
    elif s.flags & k.MS_REMOUNT:
        k.mount(s.source, target, s.fstype, s.flags, s.data or None)
    else:
        _make_mountpoint(target, False)
        k.mount(s.source, target, s.fstype, s.flags, s.data or None)
    for p in s.propagation:
        k.mount(None, target, None, p)


def remount(target: str, flags: int) -> None:
    """A bind remount that keeps the flags a user namespace may not clear (nosuid, nodev,
    noexec, ro, atime) from the mount being remounted."""
    k.mount(None, target, None,
            k.MS_REMOUNT | k.MS_BIND | flags | k.locked_mount_flags(target))


def _apply_device(rootfs: str, d: DeviceStep) -> None:
    target = secure_join(rootfs, d.path)
    if os.path.lexists(target):
        os.unlink(target)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.mknod(target, d.kind | d.mode, os.makedev(d.major, d.minor))
    os.chmod(target, d.mode)  # mknod is subject to the umask
    if d.uid is not None or d.gid is not None:
        os.chown(target, -1 if d.uid is None else d.uid, -1 if d.gid is None else d.gid)


def _apply_symlink(rootfs: str, s: SymlinkStep) -> None:
    target = secure_join(rootfs, s.path)
    if not os.path.lexists(target):
        os.symlink(s.target, target)


def apply(rootfs: str, steps: tuple[Step, ...],
          before_cgroup: Callable[[], None] | None = None) -> None:
    """Run ``steps``. ``before_cgroup`` (the init that must join its cgroups and make its
    cgroup namespace first) is called once, right before the first step that mounts or binds
    a cgroup hierarchy, or after the last step when there is none."""
    proc_cgroup: str | None = None      # /proc/self/cgroup, read once for every own_cgroup step
    for s in steps:
        if isinstance(s, MountStep):
            if before_cgroup is not None and (s.own_cgroup is not None
                                              or s.fstype in ("cgroup", "cgroup2")):
                before_cgroup()
                before_cgroup = None
            if s.own_cgroup is not None and proc_cgroup is None:
                with open("/proc/self/cgroup") as f:
                    proc_cgroup = f.read()
            _apply_mount(rootfs, s, proc_cgroup)
        elif isinstance(s, DeviceStep):
            _apply_device(rootfs, s)
        else:
            _apply_symlink(rootfs, s)
    if before_cgroup is not None:
        before_cgroup()


def prepare_root(rootfs: str, propagation: int) -> None:
    """Stop mount events leaking to the host, then make the rootfs a mount point of its own."""
    k.mount(None, "/", None, propagation)
    k.mount(rootfs, rootfs, None, k.MS_BIND | k.MS_REC)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") then detach the old root stacked beneath (runc's trick: no put_old
    directory needed, works on a read-only rootfs)."""
    os.chdir(rootfs)
    k.pivot_root(".", ".")
    k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
    k.umount2(".", k.MNT_DETACH)
    os.chdir("/")


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs over / and chroot into it (for ramfs roots)."""
    os.chdir(rootfs)
    k.mount(rootfs, "/", None, k.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def mask_paths(paths: tuple[str, ...]) -> None:
    for p in paths:
        if not os.path.lexists(p):
            continue
        if os.path.isdir(p) and not os.path.islink(p):
            k.mount("tmpfs", p, "tmpfs", k.MS_RDONLY, None)
        else:
            k.mount("/dev/null", p, None, k.MS_BIND)


def readonly_paths(paths: tuple[str, ...]) -> None:
    for p in paths:
        if not os.path.lexists(p):
            continue
        k.mount(p, p, None, k.MS_BIND | k.MS_REC)
        remount(p, k.MS_RDONLY | k.MS_REC)


def readonly_root() -> None:
    remount("/", k.MS_RDONLY)

"""What a container process is, resolved before fork, and the last steps before its execve.

Shared by the init (``create``) and by ``exec``: rlimits, umask, capabilities, user and groups,
no_new_privs, the console, the fd sweep, the executable lookup. Everything here runs in a
child that is already inside the container's namespaces and root.
"""

from __future__ import annotations

import os

from dockyard.errors import InvalidArgument, NotFound
from dockyard.linux import libc as k
from dockyard.model.oci import IO_CLASSES, SCHED_FLAGS, SCHED_POLICIES, Process
from dockyard.runtime import capabilities
from dockyard.values import value

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from _typeshed import StrPath

    from dockyard.model.seccomp import Seccomp
    from dockyard.runtime.seccomp import CompiledFilter

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@value
class Prepared:
    """A Process plus what was validated and computed from it before fork."""

    process: Process
    caps: capabilities.CapSets | None
    rlimits: tuple[tuple[int, int, int], ...]
    preserve_fds: int
    #: compiled before fork; loaded by the child as late as it can still report an error
    seccomp: CompiledFilter | None = None


def prepare(proc: Process, preserve_fds: int = 0, seccomp: Seccomp | None = None,
            seccomp_cache: StrPath | None = None) -> Prepared:
    rlimits = []
    for rl in proc.rlimits:
        name = rl.type.upper()
        if name not in k.RLIMITS:
            raise InvalidArgument(f"config.json: unknown rlimit type {rl.type!r}")
        rlimits.append((k.RLIMITS[name], rl.soft, rl.hard))
    if preserve_fds < 0:
        raise InvalidArgument("--preserve-fds must not be negative")
    compiled = None
    if seccomp is not None:
        from pathlib import Path  # only with a seccomp profile: the cache code works in Paths

        from dockyard.runtime import seccomp as seccomp_mod

        compiled = seccomp_mod.prepare(seccomp, None if seccomp_cache is None
                                       else Path(seccomp_cache))
    return Prepared(process=proc, caps=capabilities.resolve(proc.capabilities),
                    rlimits=tuple(rlimits), preserve_fds=preserve_fds, seccomp=compiled)


def find_executable(name: str, env: tuple[str, ...]) -> str:
    """execvp's lookup, done before the fifo wait so that a typo fails ``create``."""
    if "/" in name:
        # runc's words: docker's CLI makes 127 of "no such file or directory", 126 of the rest
        if not os.path.lexists(name):
            raise NotFound(f'exec: "{name}": stat {name}: no such file or directory')
        if os.path.isdir(name):
            raise NotFound(f'exec: "{name}": is a directory')
        if not os.access(name, os.X_OK):
            raise NotFound(f'exec: "{name}": permission denied')
        return name
    path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), DEFAULT_PATH)
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise NotFound(f'exec: "{name}": executable file not found in $PATH')


def env_dict(env: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def apply_scheduling(proc: Process) -> None:
    """I/O priority and scheduler, while the process still has its privileges."""
    if proc.io_priority is not None:
        k.ioprio_set(IO_CLASSES[proc.io_priority.io_class], proc.io_priority.priority)
    s = proc.scheduler
    if s is not None:
        flags = 0
        for name in s.flags:
            flags |= SCHED_FLAGS[name]
        k.sched_setattr(SCHED_POLICIES[s.policy], flags, s.nice, s.priority, runtime=s.runtime,
                        deadline=s.deadline, period=s.period)


def apply_identity(p: Prepared) -> None:
    """rlimits, umask, then capabilities around the uid switch, then no_new_privs."""
    proc = p.process
    apply_scheduling(proc)
    if p.seccomp is not None and not proc.no_new_privileges:
        # without no_new_privs the kernel wants CAP_SYS_ADMIN: load before dropping it
        _load_seccomp(p.seccomp)
    for res, soft, hard in p.rlimits:
        k.setrlimit(res, soft, hard)
    if proc.user.umask is not None:
        os.umask(proc.user.umask)
    if p.caps is not None:
        capabilities.drop_bounding(p.caps)
    k.prctl(k.PR_SET_KEEPCAPS, 1)
    if proc.user.additional_gids or not _setgroups_denied():
        os.setgroups(list(proc.user.additional_gids))
    os.setgid(proc.user.gid)
    os.setuid(proc.user.uid)
    if p.caps is not None:
        capabilities.apply_sets(p.caps)
    if proc.no_new_privileges:
        k.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        if p.seccomp is not None:
            _load_seccomp(p.seccomp)


def _setgroups_denied() -> bool:
    """A user namespace whose maps an unprivileged runtime wrote itself forbids setgroups."""
    try:
        with open("/proc/self/setgroups") as f:
            return f.read().strip() == "deny"
    except OSError:
        return False


def _load_seccomp(f: CompiledFilter) -> None:
    from dockyard.runtime.seccomp import load_filter

    load_filter(f.bpf, f.flags)


def reset_signals() -> None:
    """Default dispositions and an empty mask, as a new process expects (runc's too): whatever
    ran us (Python ignores SIGPIPE and SIGXFSZ; the engine's monitor SIGINT and SIGHUP) must
    not leave a container's command deaf to ctrl-c or to a closed pipe. Ignored dispositions
    survive execve, handlers do not; the mask survives too."""
    if TYPE_CHECKING:
        import signal
    else:
        import _signal as signal  # not signal.py: it imports enum, ~5 ms in the init

    for signum in range(1, signal.NSIG):
        if signum in (signal.SIGKILL, signal.SIGSTOP) or 32 <= signum < signal.SIGRTMIN:
            continue
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def sweep_fds(preserve_fds: int, keep: tuple[int, ...] = ()) -> None:
    """Close-on-exec for every fd above stdio and the preserved ones, so nothing the caller
    (or we) had open crosses into the container (the CVE-2024-21626 class)."""
    first_kept = 3 + preserve_fds
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd < 3 or fd in keep:
            continue
        try:
            os.set_inheritable(fd, fd < first_kept)
        except OSError:
            pass

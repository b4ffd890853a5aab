"""Translation of OCI/fstab mount option strings into mount(2) flags and data."""

from __future__ import annotations

from dockyard.linux import libc as k
from dockyard.values import value

# option -> (clear?, flag): "clear" options switch a flag off (rw, suid, dev, exec, ...).
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, k.MS_RDONLY), "rw": (True, k.MS_RDONLY),
    "nosuid": (False, k.MS_NOSUID), "suid": (True, k.MS_NOSUID),
    "nodev": (False, k.MS_NODEV), "dev": (True, k.MS_NODEV),
    "noexec": (False, k.MS_NOEXEC), "exec": (True, k.MS_NOEXEC),
    "sync": (False, k.MS_SYNCHRONOUS), "async": (True, k.MS_SYNCHRONOUS),
    "dirsync": (False, k.MS_DIRSYNC),
    "remount": (False, k.MS_REMOUNT),
    "mand": (False, k.MS_MANDLOCK), "nomand": (True, k.MS_MANDLOCK),
    "noatime": (False, k.MS_NOATIME), "atime": (True, k.MS_NOATIME),
    "nodiratime": (False, k.MS_NODIRATIME), "diratime": (True, k.MS_NODIRATIME),
    "relatime": (False, k.MS_RELATIME), "norelatime": (True, k.MS_RELATIME),
    "strictatime": (False, k.MS_STRICTATIME), "nostrictatime": (True, k.MS_STRICTATIME),
    "lazytime": (False, k.MS_LAZYTIME), "nolazytime": (True, k.MS_LAZYTIME),
    "nosymfollow": (False, k.MS_NOSYMFOLLOW), "symfollow": (True, k.MS_NOSYMFOLLOW),
    "bind": (False, k.MS_BIND), "rbind": (False, k.MS_BIND | k.MS_REC),
}

_PROPAGATION: dict[str, int] = {
    "private": k.MS_PRIVATE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED, "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE, "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE, "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}


@value
class MountOptions:
    flags: int
    propagation: tuple[int, ...]
    data: str

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & k.MS_BIND)


def parse_options(options: tuple[str, ...]) -> MountOptions:
    flags = 0
    propagation: list[int] = []
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation.append(_PROPAGATION[opt])
        elif opt:
            data.append(opt)
    return MountOptions(flags=flags, propagation=tuple(propagation), data=",".join(data))


def propagation_flags(name: str) -> int:
    try:
        return _PROPAGATION[name]
    except KeyError:
        from dockyard.errors import InvalidArgument

        raise InvalidArgument(f"rootfsPropagation: unknown propagation {name!r}") from None


def option_names() -> set[str]:
    """Every option string this runtime understands (for ``features``)."""
    return set(_FLAGS) | set(_PROPAGATION)

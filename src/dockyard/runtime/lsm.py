"""AppArmor and SELinux: applied when the host has the LSM; a clear error only when a profile
or label was actually asked for on a host without it (never a silent no-op)."""

from __future__ import annotations

import os

from dockyard.errors import Unavailable
from dockyard.model.oci import Spec


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")


def check(spec: Spec) -> None:
    """Before fork: refuse what this host cannot honour."""
    proc = spec.process
    if proc is not None and proc.apparmor_profile and not apparmor_enabled():
        raise Unavailable(f"apparmor profile {proc.apparmor_profile!r} requested, but "
                          "AppArmor is not enabled on this host")
    if proc is not None and proc.selinux_label and not selinux_enabled():
        raise Unavailable(f"SELinux label {proc.selinux_label!r} requested, but SELinux is "
                          "not enabled on this host")
    if spec.linux.mount_label and not selinux_enabled():
        raise Unavailable(f"mountLabel {spec.linux.mount_label!r} requested, but SELinux is "
                          "not enabled on this host")


def _write_attr(paths: tuple[str, ...], value: str) -> None:
    for path in paths:
        if os.path.exists(path):
            with open(path, "w") as f:
                f.write(value)
            return
    raise Unavailable(f"cannot set the LSM attribute: none of {', '.join(paths)} exists")


def apply_on_exec(apparmor_profile: str | None, selinux_label: str | None) -> None:
    """In the child, right before execve: the labels take effect at the exec."""
    if apparmor_profile:
        _write_attr(("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"),
                    f"exec {apparmor_profile}")
    if selinux_label:
        _write_attr(("/proc/self/attr/exec",), selinux_label)

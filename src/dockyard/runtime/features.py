"""``features``: what this runtime implements, as the OCI features document describes it.

Every value is derived from the code that implements it (the mount option tables, the
capability list, the namespaces create can make), so the document cannot claim more than the
runtime does.
"""

from __future__ import annotations

import os

from dockyard import OCI_SPEC_VERSION
from dockyard.model.oci import HOOK_KINDS
from dockyard.runtime import capabilities, mountopts

_NAMESPACES = ("cgroup", "ipc", "mount", "network", "pid", "user", "uts")


def features() -> dict[str, object]:
    namespaces = list(_NAMESPACES)
    if os.path.exists("/proc/self/ns/time"):
        namespaces.append("time")
    linux: dict[str, object] = {
        "namespaces": sorted(namespaces),
        "capabilities": list(capabilities.CAPS[: capabilities.last_cap() + 1]),
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                   "rdma": False},
        "apparmor": {"enabled": False},
        "selinux": {"enabled": False},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": False}},
        "netDevices": {"enabled": False},
    }
    seccomp = _seccomp()
    if seccomp is not None:
        linux["seccomp"] = seccomp
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(mountopts.option_names()),
        "linux": linux,
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "dockyard-runc"},
    }


def _seccomp() -> dict[str, object] | None:
    from dockyard.errors import Unavailable
    from dockyard.runtime import seccomp

    try:
        return seccomp.features()
    except Unavailable:  # no libseccomp on this host
        return {"enabled": False}

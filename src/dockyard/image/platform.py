"""Platforms: the host's, parsing ``--platform os/arch[/variant]``, and choosing from an index."""

from __future__ import annotations

import platform as _platform

from dockyard.errors import InvalidArgument, NotFound
from dockyard.model.image import Descriptor, Index, Platform

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}


def normalize(p: Platform) -> Platform:
    arch = _ARCH.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant.lower()
    if arch == "arm64" and variant in ("", "8"):
        variant = "v8"
    return Platform(p.os.lower(), arch, variant, p.os_version, p.os_features)


def host_platform() -> Platform:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = ""
    if machine.startswith("armv"):
        variant = "v" + machine[4]
    return normalize(Platform("linux", arch, variant or _DEFAULT_VARIANT.get(arch, "")))


def parse_platform(text: str) -> Platform:
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgument(f'"{text}": unknown operating system or architecture: '
                              "invalid argument", hint="use os/arch[/variant], e.g. linux/amd64")
    variant = parts[2] if len(parts) == 3 else ""
    return normalize(Platform(parts[0], parts[1], variant))


def matches(want: Platform, have: Platform) -> bool:
    w, h = normalize(want), normalize(have)
    if (w.os, w.architecture) != (h.os, h.architecture):
        return False
    # A wanted variant must match; no wanted variant accepts the arch's default (or none).
    if w.variant and h.variant and w.variant != h.variant:
        return False
    return not (w.variant and not h.variant and w.variant != _DEFAULT_VARIANT.get(w.architecture))


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The index entry for ``want``; docker's error when there is none."""
    candidates = [d for d in index.manifests
                  if d.platform is not None and matches(want, d.platform)]
    if not candidates:
        # Attestation manifests (unknown/unknown) and platformless entries are never chosen.
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    exact = [d for d in candidates if d.platform is not None
             and normalize(d.platform).variant == normalize(want).variant]
    return (exact or candidates)[0]

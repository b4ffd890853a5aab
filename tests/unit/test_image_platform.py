"""Platform parsing and selection from an index."""

from __future__ import annotations

import hashlib

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image.platform import host_platform, matches, parse_platform, select_manifest
from dockyard.model.image import OCI_INDEX, OCI_MANIFEST, Descriptor, Digest, Index, Platform


def _desc(p: Platform | None, n: int) -> Descriptor:
    d = Digest("sha256:" + hashlib.sha256(str(n).encode()).hexdigest())
    return Descriptor(OCI_MANIFEST, d, 1, platform=p)


def test_parse() -> None:
    assert parse_platform("linux/amd64") == Platform("linux", "amd64")
    assert parse_platform("linux/arm64") == Platform("linux", "arm64", "v8")
    assert parse_platform("Linux/aarch64/v8") == Platform("linux", "arm64", "v8")
    for bad in ("linux", "", "linux//", "a/b/c/d"):
        with pytest.raises(InvalidArgument):
            parse_platform(bad)
    assert host_platform().os == "linux"


def test_select() -> None:
    idx = Index(OCI_INDEX, (
        _desc(Platform("unknown", "unknown"), 0),
        _desc(Platform("linux", "arm", "v6"), 1),
        _desc(Platform("linux", "arm", "v7"), 2),
        _desc(Platform("linux", "amd64"), 3),
        _desc(Platform("linux", "arm64", "v8"), 4),
        _desc(None, 5),
    ))
    assert select_manifest(idx, Platform("linux", "amd64")) is idx.manifests[3]
    assert select_manifest(idx, parse_platform("linux/arm/v7")) is idx.manifests[2]
    assert select_manifest(idx, parse_platform("linux/arm64")) is idx.manifests[4]
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        select_manifest(idx, parse_platform("linux/s390x"))
    assert matches(Platform("linux", "arm64"), Platform("linux", "arm64"))
    assert not matches(Platform("linux", "arm", "v7"), Platform("linux", "arm", "v6"))

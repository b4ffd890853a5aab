"""The pull benchmark's image (issue 4): its shape, and that skopeo reads it.

Slow: a cold build takes 10-20 s on top of the debian rootfs cache (and debootstrap, once per
UTC day, when that cache is missing). The bench needs the same image, so it is built once.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from testbed import images
from testbed.images import BuiltImage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return images.pullbench(images.default_cache_dir())


def _layer_stats(blob: Path) -> tuple[int, int, set[str]]:
    """(tar bytes, entries, names) of one gzip layer."""
    with gzip.open(blob) as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            names = {member.name for member in tar}
        return gz.tell(), len(names), names


def test_pullbench_is_five_gzip_layers_of_about_the_issue_4_size(image: BuiltImage) -> None:
    blobs = image.oci_layout / "blobs" / "sha256"
    assert len(image.layer_digests) == 5 == len(image.diff_ids)
    compressed = sum(
        (blobs / d.removeprefix("sha256:")).stat().st_size for d in image.layer_digests
    )
    stats = [_layer_stats(blobs / d.removeprefix("sha256:")) for d in image.layer_digests]
    tar_bytes = sum(s[0] for s in stats)
    entries = sum(s[1] for s in stats)
    # The issue's image: 129 MB compressed, 229 MB of tar, 8,626 files. The rootfs layer
    # changes a little from day to day (debootstrap), hence ranges.
    assert 110e6 < compressed < 150e6, compressed
    assert 200e6 < tar_bytes < 260e6, tar_bytes
    assert 7_500 < entries < 10_000, entries
    # Every layer is real work for an unpacker, and no two are alike.
    assert all(s[0] > 15e6 for s in stats)
    assert len(set(image.layer_digests)) == 5
    # Layer 1 is the debian rootfs; the generated layers add below their own directories.
    assert {"usr/bin/bash", "etc/os-release"} <= stats[0][2]
    assert any(n.startswith("opt/pullbench/lib/") for n in stats[1][2])
    assert any(n.startswith("var/lib/pullbench/") for n in stats[4][2])


def test_skopeo_inspects_the_pullbench_layout(image: BuiltImage) -> None:
    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is not installed"
    result = subprocess.run(
        [skopeo, "inspect", f"oci:{image.oci_layout}:{image.tag}"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    info = json.loads(result.stdout)
    assert info["Digest"] == image.manifest_digest
    assert tuple(info["Layers"]) == image.layer_digests
    assert info["Architecture"] == images.host_architecture()[0]


def test_pullbench_is_cached_and_deterministic(image: BuiltImage) -> None:
    assert images.pullbench(images.default_cache_dir()) == image
    # The generated content comes from SHAKE-256, not from Python's random: fixed bytes.
    assert images._shake("pullbench/probe", 8).hex() == "47edc6d5c83d64ff"
    vocabulary = images._vocabulary()
    assert images._text("t", 1000, vocabulary) == images._text("t", 1000, vocabulary)
    assert len(images._text("t", 1000, vocabulary)) == 1000
    sizes = images._split_sizes("s", 100, 1_000_000)
    assert sum(sizes) == 1_000_000 and len(sizes) == 100 and min(sizes) > 0

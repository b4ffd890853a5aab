"""The test-bed images as other people's tools see them: skopeo reads them, umoci unpacks them."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import images
from testbed.images import BuiltImage

pytestmark = pytest.mark.integration


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (apt-get install {name})"
    return path


def _run_json(*argv: str) -> Any:
    result = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=300)
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def cache() -> Path:
    return images.default_cache_dir()


@pytest.fixture(scope="session")
def busybox_image(cache: Path) -> BuiltImage:
    return images.busybox(cache)


@pytest.fixture(scope="session")
def torture_image(cache: Path) -> BuiltImage:
    return images.torture(cache)


@pytest.fixture(params=["busybox", "torture"])
def image(request: pytest.FixtureRequest) -> BuiltImage:
    value: BuiltImage = request.getfixturevalue(f"{request.param}_image")
    return value


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "bundle"
    yield path
    # umoci leaves files owned by many uids and a read-only tree; it mounts nothing.
    shutil.rmtree(path, ignore_errors=True)


def _umoci_unpack(image: BuiltImage, bundle: Path) -> Path:
    subprocess.run(
        [_tool("umoci"), "unpack", "--image", f"{image.oci_layout}:{image.tag}", str(bundle)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return bundle / "rootfs"


def test_skopeo_reads_the_oci_layout(image: BuiltImage) -> None:
    info = _run_json(_tool("skopeo"), "inspect", f"oci:{image.oci_layout}:{image.tag}")
    assert info["Digest"] == image.manifest_digest
    assert tuple(info["Layers"]) == image.layer_digests
    assert info["Os"] == "linux"
    assert info["Architecture"] == images.host_architecture()[0]
    assert info["Env"] == [images.PATH_ENV]


def test_skopeo_reads_the_docker_archive(image: BuiltImage) -> None:
    assert image.docker_archive is not None
    ref = f"docker-archive:{image.docker_archive}:{image.name}:{image.tag}"
    info = _run_json(_tool("skopeo"), "inspect", ref)
    # skopeo names docker-archive layers by their uncompressed digests.
    assert tuple(info["Layers"]) == image.diff_ids
    raw = _run_json(_tool("skopeo"), "inspect", "--raw", ref)
    assert raw["config"]["digest"] == image.config_digest
    config = _run_json(_tool("skopeo"), "inspect", "--config", ref)
    assert tuple(config["rootfs"]["diff_ids"]) == image.diff_ids


def test_skopeo_copy_verifies_every_blob(image: BuiltImage, tmp_path: Path) -> None:
    # A copy checks each blob against its descriptor's digest and size.
    target = tmp_path / "copy"
    subprocess.run(
        [
            _tool("skopeo"),
            "copy",
            "--quiet",
            f"oci:{image.oci_layout}:{image.tag}",
            f"oci:{target}:{image.tag}",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    info = _run_json(_tool("skopeo"), "inspect", f"oci:{target}:{image.tag}")
    assert info["Digest"] == image.manifest_digest


def test_umoci_unpacks_torture_into_the_expected_rootfs(
    torture_image: BuiltImage, bundle: Path
) -> None:
    rootfs = _umoci_unpack(torture_image, bundle)
    assert images.check_rootfs(rootfs) == []


def test_umoci_unpacks_a_working_busybox(busybox_image: BuiltImage, bundle: Path) -> None:
    rootfs = _umoci_unpack(busybox_image, bundle)
    sh = rootfs / "bin" / "sh"
    assert sh.stat().st_ino == (rootfs / "bin" / "busybox").stat().st_ino
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    # Straight-line proof that the applet links and passwd work, without a container.
    result = subprocess.run(
        ["chroot", str(rootfs), "/bin/sh", "-c", "id -un; echo $PATH; ls /usr/bin/env"],
        env={"PATH": images.PATH_ENV.removeprefix("PATH=")},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.splitlines() == [
        "root",
        images.PATH_ENV.removeprefix("PATH="),
        "/usr/bin/env",
    ]


@pytest.mark.slow
def test_debian_has_a_rootfs_layer_and_an_additions_layer(cache: Path) -> None:
    image = images.debian(cache)
    assert len(image.layer_digests) >= 2
    assert image.docker_archive is not None
    info = _run_json(_tool("skopeo"), "inspect", f"oci:{image.oci_layout}:{image.tag}")
    assert info["Digest"] == image.manifest_digest
    config = _run_json(_tool("skopeo"), "inspect", "--config", f"oci:{image.oci_layout}:latest")
    assert config["config"]["Cmd"] == ["bash"]

    blobs = image.oci_layout / "blobs" / "sha256"
    with tarfile.open(fileobj=gzip.open(blobs / image.layer_digests[-1][7:])) as top:
        hello = top.getmember("usr/local/bin/hello")
        assert hello.isreg() and hello.mode == 0o755 and (hello.uid, hello.gid) == (0, 0)
        data = top.extractfile(hello)
        assert data is not None and b"hello from debian" in data.read()
        assert top.getmember("etc/dockyard-release").isreg()
    with tarfile.open(fileobj=gzip.open(blobs / image.layer_digests[0][7:])) as bottom:
        names = set(bottom.getnames())
    assert {"usr/bin/bash", "usr/bin/apt-get", "etc/os-release", "proc", "dev", "tmp"} <= names
    assert not any(n.startswith(("proc/", "sys/", "dev/")) for n in names)
    assert not any(n.startswith("var/lib/apt/lists/") for n in names)
    assert "etc/resolv.conf" not in names and "etc/hostname" not in names
    # Built once: a second call finds the same image in the cache.
    assert images.debian(cache) == image


def test_cache_removal_unmounts_instead_of_deleting_through_a_mount(tmp_path: Path) -> None:
    # debootstrap mounts /proc and /sys into its target; a failed build must never rm -rf them.
    doomed = tmp_path / "doomed"
    mountpoint = doomed / "rootfs" / "proc"
    mountpoint.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "testbed-tmpfs", str(mountpoint)], check=True)
    try:
        (mountpoint / "precious").write_text("keep")
        images._remove_tree(doomed)
        assert not doomed.exists()
        assert images._mount_points_below(tmp_path) == []
    finally:
        if images._mount_points_below(mountpoint):
            subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)

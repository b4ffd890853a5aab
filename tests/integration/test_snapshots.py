"""One suite, every snapshotter (overlay and copy): layers, container snapshots, views, long
chains, and no mount left behind."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.errors import AlreadyExists, InvalidArgument, NotFound, SyscallError
from dockyard.image import mounter
from dockyard.image.snapshot import (
    OVERLAY_MAX_LAYERS,
    CopySnapshotter,
    OverlaySnapshotter,
    Snapshotter,
)
from dockyard.image.unpack import unpack_layer
from dockyard.linux import fsmount
from dockyard.model.image import Digest, chain_ids
from testbed import images

pytestmark = pytest.mark.integration

SNAPSHOTTERS: dict[str, Callable[[str], Snapshotter]] = {
    "overlay": OverlaySnapshotter, "copy": CopySnapshotter,
}


@pytest.fixture(params=sorted(SNAPSHOTTERS))
def snap(request: pytest.FixtureRequest, tmp_path: Path) -> Snapshotter:
    return SNAPSHOTTERS[request.param](str(tmp_path / "snapshots"))


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "rootfs"
    path.mkdir()
    yield path
    mounter.unmount(str(path))
    assert not os.path.ismount(path)


def _tar(files: dict[str, bytes], whiteouts: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in [*files.items(), *((w, b"") for w in whiteouts)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _add_layers(snap: Snapshotter, tars: list[bytes]) -> list[Digest]:
    diff_ids = [Digest("sha256:" + hashlib.sha256(t).hexdigest()) for t in tars]
    chain = chain_ids(diff_ids)
    for tar, chain_id, diff_id in zip(tars, chain, diff_ids, strict=True):
        tmp = snap.prepare_layer(chain_id)
        assert unpack_layer(io.BytesIO(tar), tmp).diff_id == diff_id
        snap.commit_layer(chain_id, tmp)
    return chain


def _torture(snap: Snapshotter) -> list[Digest]:
    image = images.torture()
    chain = chain_ids(list(image.diff_ids))  # type: ignore[arg-type]
    for digest, chain_id in zip(image.layer_digests, chain, strict=True):
        tmp = snap.prepare_layer(chain_id)
        blob = image.oci_layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
        with open(blob, "rb") as f:
            unpack_layer(f, tmp, compression="gzip")
        snap.commit_layer(chain_id, tmp)
    return chain


# --- layers ----------------------------------------------------------------------------------


def test_layer_lifecycle(snap: Snapshotter) -> None:
    tar = _tar({"hello": b"world"})
    chain_id = Digest("sha256:" + hashlib.sha256(tar).hexdigest())
    assert not snap.has_layer(chain_id)
    tmp = snap.prepare_layer(chain_id)
    unpack_layer(io.BytesIO(tar), tmp)
    assert not snap.has_layer(chain_id), "a layer is invisible until committed"
    snap.commit_layer(chain_id, tmp)
    assert snap.has_layer(chain_id)
    assert Path(snap.layer_path(chain_id), "hello").read_bytes() == b"world"
    assert not os.path.exists(tmp)

    # A second unpack of the same layer (a concurrent pull) loses quietly.
    tmp2 = snap.prepare_layer(chain_id)
    unpack_layer(io.BytesIO(tar), tmp2)
    snap.commit_layer(chain_id, tmp2)
    assert not os.path.exists(tmp2)
    assert Path(snap.layer_path(chain_id), "hello").read_bytes() == b"world"

    tmp3 = snap.prepare_layer(chain_id)
    snap.abort_layer(tmp3)
    assert not os.path.exists(tmp3)
    assert os.listdir(os.path.join(snap.root, "staging")) == []

    snap.remove_layer(chain_id)
    assert not snap.has_layer(chain_id)
    with pytest.raises(NotFound):
        snap.remove_layer(chain_id)


def test_bad_names(snap: Snapshotter) -> None:
    with pytest.raises(InvalidArgument):
        snap.has_layer("sha256:nothex")
    for key in ("", "a/b", "..", "x" * 200):
        with pytest.raises(InvalidArgument):
            snap.prepare(key, [])
    with pytest.raises(NotFound):
        snap.prepare("c", [Digest("sha256:" + "0" * 64)])


# --- container snapshots ---------------------------------------------------------------------


def test_torture_rootfs(snap: Snapshotter, target: Path) -> None:
    chain = _torture(snap)
    mounter.mount_all(snap.prepare("c1", chain), str(target))
    assert images.check_rootfs(target) == []
    # Writes land in the snapshot, never in a layer.
    (target / "data" / "regular.txt").write_bytes(b"changed\n")
    (target / "new-file").write_bytes(b"x" * 10000)
    os.unlink(target / "links" / "relative")
    mounter.unmount(str(target))
    for chain_id in chain:
        layer = Path(snap.layer_path(chain_id))
        assert not (layer / "new-file").exists()
    assert (Path(snap.layer_path(chain[0])) / "data/regular.txt").read_bytes() == \
        b"regular file\n"
    assert snap.usage("c1").inodes >= 1
    # A second snapshot of the same layers starts clean.
    mounter.mount_all(snap.prepare("c2", chain), str(target))
    assert images.check_rootfs(target) == []
    mounter.unmount(str(target))
    snap.remove("c1")
    snap.remove("c2")
    with pytest.raises(NotFound):
        snap.remove("c1")
    assert os.listdir(os.path.join(snap.root, "containers")) == []


def test_duplicate_key(snap: Snapshotter) -> None:
    snap.prepare("dup", [])
    with pytest.raises(AlreadyExists):
        snap.prepare("dup", [])
    snap.remove("dup")


def test_view_is_read_only(snap: Snapshotter, target: Path) -> None:
    chain = _torture(snap)
    mounter.mount_all(snap.view("v", chain), str(target))
    assert images.check_rootfs(target) == []
    with pytest.raises(OSError) as exc:
        (target / "nope").write_bytes(b"x")
    assert exc.value.errno == errno.EROFS
    mounter.unmount(str(target))
    snap.remove("v")


def test_single_layer_view_and_scratch(snap: Snapshotter, target: Path) -> None:
    chain = _add_layers(snap, [_tar({"only": b"1"})])
    mounter.mount_all(snap.view("v", chain), str(target))
    assert (target / "only").read_bytes() == b"1"
    with pytest.raises(OSError):
        (target / "nope").write_bytes(b"x")
    mounter.unmount(str(target))
    mounter.mount_all(snap.prepare("scratch", []), str(target))
    assert list(target.iterdir()) == []
    (target / "file").write_bytes(b"ok")
    mounter.unmount(str(target))
    assert snap.usage("scratch").inodes == 1


LONG_CHAIN = 130


def _long_chain(snap: Snapshotter, n: int) -> list[Digest]:
    # Layer i adds f<i> and deletes f<i-1>; every 10th layer keeps its file.
    tars = []
    for i in range(n):
        whiteouts = (f".wh.f{i - 1}",) if i and (i - 1) % 10 else ()
        tars.append(_tar({f"f{i}": str(i).encode(), "top": str(i).encode()}, whiteouts))
    return _add_layers(snap, tars)


def _check_long_chain(target: Path, n: int) -> None:
    want = {f"f{i}" for i in range(n) if i % 10 == 0} | {f"f{n - 1}", "top"}
    assert {p.name for p in target.iterdir()} == want
    assert (target / "top").read_bytes() == str(n - 1).encode()


def test_chain_of_130_layers(snap: Snapshotter, target: Path) -> None:
    chain = _long_chain(snap, LONG_CHAIN)
    mounts = snap.prepare("long", chain)
    mounter.mount_all(mounts, str(target))
    _check_long_chain(target, LONG_CHAIN)
    mounter.unmount(str(target))


def test_chain_of_130_layers_through_mount2(tmp_path: Path, target: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the kernel lacks lowerdir+, the short relative names fit one page."""
    snap = OverlaySnapshotter(str(tmp_path / "snapshots"))
    chain = _long_chain(snap, LONG_CHAIN)
    mounts = snap.prepare("long", chain)
    assert sum(len(o) + 1 for o in mounts[0].options) < 4096

    def no_new_api(*args: object, **kwargs: object) -> None:
        raise SyscallError("fsopen", errno.ENOSYS, "overlay")

    monkeypatch.setattr(fsmount, "mount_fs", no_new_api)
    cwd = os.getcwd()
    mounter.mount_all(mounts, str(target))
    assert os.getcwd() == cwd
    _check_long_chain(target, LONG_CHAIN)


def test_overlay_refuses_more_layers_than_the_kernel_stacks(tmp_path: Path) -> None:
    snap = OverlaySnapshotter(str(tmp_path / "snapshots"))
    chain = [Digest("sha256:" + hashlib.sha256(str(i).encode()).hexdigest())
             for i in range(OVERLAY_MAX_LAYERS + 1)]
    for chain_id in chain:
        snap.commit_layer(chain_id, snap.prepare_layer(chain_id))
    with pytest.raises(InvalidArgument, match="at most 500"):
        snap.prepare("too-many", chain)
    assert not os.path.exists(os.path.join(snap.root, "containers", "too-many"))


def test_failed_mount_leaves_nothing(snap: Snapshotter, tmp_path: Path) -> None:
    chain = _add_layers(snap, [_tar({"a": b"1"}), _tar({"b": b"2"})])
    mounts = snap.prepare("c", chain)
    with pytest.raises(SyscallError):
        mounter.mount_all(mounts, str(tmp_path / "missing-target"))
    snap.remove("c")

"""`dockyard pull` against a registry that lies, breaks off, or gets killed under: it fails
cleanly or recovers, and never leaves a broken image behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import DOCKYARD, Engine
from testbed.fake_registry import FakeRegistry
from testbed.registry import Registry, push_oci_layout

pytestmark = pytest.mark.integration

REPO = "faults/busybox"


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture
def fake(busybox: tb_images.BuiltImage) -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    blobs = busybox.oci_layout / "blobs" / "sha256"
    for d in (busybox.config_digest, *busybox.layer_digests):
        reg.add_blob((blobs / d[7:]).read_bytes())
    raw = (blobs / busybox.manifest_digest[7:]).read_bytes()
    media_type = json.loads(raw).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    reg.add_manifest(REPO, "latest", raw, media_type)
    try:
        yield reg
    finally:
        reg.stop()


def _clean(engine: Engine) -> None:
    """No image, no layer, nothing half-made: what a failed pull must leave."""
    assert engine.run("images", "-q").stdout == ""
    overlay = engine.root / "overlay"
    assert os.listdir(overlay / "layers") == []
    assert os.listdir(overlay / "staging") == []


def test_corrupt_layer_is_rejected_and_nothing_kept(engine: Engine, fake: FakeRegistry,
                                                    busybox: tb_images.BuiltImage) -> None:
    layer = busybox.layer_digests[0]
    fake.fault(layer[7:], "corrupt", times=100)
    p = engine.run("pull", f"{fake.host}/{REPO}", check=False)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    assert layer in p.stderr or "digest" in p.stderr
    _clean(engine)
    assert layer[7:] not in engine.blobs()
    assert not any(n.endswith(".data") for n in os.listdir(engine.root / "content" / "ingest"))


def test_server_errors_are_retried(engine: Engine, fake: FakeRegistry,
                                   busybox: tb_images.BuiltImage) -> None:
    fake.fault(busybox.layer_digests[0][7:], "status", times=2, status=500)
    fake.fault("/manifests/", "status", times=1, status=503)
    engine.run("pull", f"{fake.host}/{REPO}")
    assert engine.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]
    assert engine.run("image", "fsck").returncode == 0


def test_broken_download_resumes_where_it_stopped(engine: Engine, fake: FakeRegistry,
                                                  busybox: tb_images.BuiltImage) -> None:
    layer = busybox.layer_digests[0]
    fake.fault(layer[7:], "truncate", times=3, keep=300_000, method="GET")
    engine.run("pull", f"{fake.host}/{REPO}")
    ranges = [r.headers.get("range") for r in fake.requests_to(layer[7:]) if r.method == "GET"]
    assert len(ranges) == 4
    assert ranges[0] is None
    assert all(r and r.startswith("bytes=") and r != "bytes=0-" for r in ranges[1:]), ranges
    assert engine.run("image", "fsck").returncode == 0
    assert engine.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]


def test_download_that_keeps_breaking_fails_then_resumes(engine: Engine, fake: FakeRegistry,
                                                         busybox: tb_images.BuiltImage) -> None:
    layer = busybox.layer_digests[0]
    fake.fault(layer[7:], "truncate", times=6, keep=100_000, method="GET")
    first = engine.run("pull", f"{fake.host}/{REPO}", check=False)
    assert first.returncode == 1
    assert "broke off" in first.stderr and "Traceback" not in first.stderr
    _clean(engine)
    engine.run("pull", f"{fake.host}/{REPO}")      # the next pull continues from ingest
    last = [r for r in fake.requests_to(layer[7:]) if r.method == "GET"][-1]
    assert last.headers.get("range", "").startswith("bytes=")
    assert engine.run("image", "fsck").returncode == 0


def test_sigkill_mid_pull_then_pull_again(engine: Engine, fake: FakeRegistry,
                                          busybox: tb_images.BuiltImage) -> None:
    layer = busybox.layer_digests[0]
    fake.fault(layer[7:], "delay", times=1, seconds=30.0, method="GET")
    proc = subprocess.Popen([*DOCKYARD, "--root", str(engine.root), "pull", "-q",
                             f"{fake.host}/{REPO}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not [r for r in fake.requests_to(layer[7:]) if r.method == "GET"]:
            assert time.monotonic() < deadline, "the pull never asked for the layer"
            assert proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert engine.run("images", "-q").stdout == ""
    engine.run("pull", f"{fake.host}/{REPO}")
    assert engine.run("image", "fsck").returncode == 0
    assert engine.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]


def test_wrong_diff_id_in_config_is_rejected(engine: Engine, busybox: tb_images.BuiltImage
                                             ) -> None:
    """A config whose diff_ids do not match the layers: the layer is never committed."""
    blobs = busybox.oci_layout / "blobs" / "sha256"
    config = json.loads((blobs / busybox.config_digest[7:]).read_bytes())
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64 for _ in config["rootfs"]["diff_ids"]]
    manifest = json.loads((blobs / busybox.manifest_digest[7:]).read_bytes())
    with FakeRegistry() as reg:
        raw_cfg = json.dumps(config).encode()
        manifest["config"]["digest"] = reg.add_blob(raw_cfg)
        manifest["config"]["size"] = len(raw_cfg)
        for d in busybox.layer_digests:
            reg.add_blob((blobs / d[7:]).read_bytes())
        raw = json.dumps(manifest).encode()
        reg.add_manifest(REPO, "latest", raw, manifest.get(
            "mediaType", "application/vnd.oci.image.manifest.v1+json"))
        p = engine.run("pull", f"{reg.host}/{REPO}", check=False)
    assert p.returncode == 1
    assert "diff_id" in p.stderr and "Traceback" not in p.stderr
    _clean(engine)


def _sizes(ingest: Path) -> list[int]:
    """Sizes of the partial blobs in ingest; one may be committed (renamed away) meanwhile."""
    out = []
    for p in ingest.glob("*.data") if ingest.exists() else []:
        try:
            out.append(p.stat().st_size)
        except FileNotFoundError:
            continue
    return out


def test_sigkill_mid_download_resumes(engine: Engine, registry: Registry) -> None:
    """Killed while layers stream in: the partial blobs stay in ingest, and the next pull
    finishes the job (HTTP Range) with a clean store."""
    img = tb_images.pullbench()
    push_oci_layout(registry, img.oci_layout, img.tag, "faults/big", "latest")
    name = f"{registry.host}/faults/big:latest"
    proc = subprocess.Popen([*DOCKYARD, "--root", str(engine.root), "pull", "-q", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ingest = engine.root / "content" / "ingest"
    partial = 0
    try:
        deadline = time.monotonic() + 120
        while partial < (4 << 20):
            assert time.monotonic() < deadline, "no layer data arrived"
            assert proc.poll() is None, "the pull ended before it could be killed"
            partial = max(_sizes(ingest), default=0)
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert engine.run("images", "-q").stdout == ""
    engine.run("pull", name)
    # The registry's access log: the second pull asked for the rest of a blob (206).
    assert re.search(r'"GET /v2/faults/big/blobs/sha256:[0-9a-f]{64} HTTP/1\.1" 206 ',
                     registry.log_path.read_text())
    assert engine.run("image", "fsck").returncode == 0
    assert engine.run("images", "-q").stdout.split() == [img.config_digest[7:19]]
    assert [p for p in ingest.iterdir() if p.name.endswith(".data")] == []

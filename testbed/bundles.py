"""OCI bundles made from the test bed's images: a rootfs unpacked from an OCI layout plus the
config.json that ``dockyard-runc spec`` (or runc's) writes, adjusted per test."""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.images import BuiltImage


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    return layout / "blobs" / algo / hexdigest


def unpack_layout(layout: Path, tag: str, rootfs: Path) -> None:
    """Apply an OCI layout's layers in order. Only for the test bed's own, whiteout-free
    images; the real unpacker lives in dockyard.image."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(_blob(layout, desc["digest"]).read_text())
    for layer in manifest["layers"]:
        with tarfile.open(_blob(layout, layer["digest"]), "r:*") as tar:
            tar.extractall(rootfs, filter="tar")


def make_bundle(image: BuiltImage, bundle: Path, runtime: str, args: list[str],
                edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """A bundle whose config.json is ``<runtime> spec``'s, running ``args`` without a tty."""
    bundle.mkdir(parents=True, exist_ok=True)
    rootfs = bundle / "rootfs"
    if not rootfs.exists():
        rootfs.mkdir()
        unpack_layout(image.oci_layout, image.tag, rootfs)
    config_path = bundle / "config.json"
    config_path.unlink(missing_ok=True)
    subprocess.run([runtime, "spec", "--bundle", str(bundle)], check=True)
    config = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    if edit is not None:
        edit(config)
    config_path.write_text(json.dumps(config, indent=2))
    return bundle

"""`dockyard pull/images/inspect/tag/rmi/push/history/image prune/fsck` as a user runs them,
against a real registry on loopback and a throwaway engine root."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import DOCKYARD, Engine
from testbed.registry import Registry, push_oci_layout

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture(scope="module")
def torture() -> tb_images.BuiltImage:
    return tb_images.torture()


def _push(reg: Registry, img: tb_images.BuiltImage, repo: str, tag: str = "latest") -> str:
    push_oci_layout(reg, img.oci_layout, img.tag, repo, tag)
    return f"{reg.host}/{repo}:{tag}"


def test_pull_list_inspect_rmi(engine: Engine, registry: Registry,
                               busybox: tb_images.BuiltImage) -> None:
    name = _push(registry, busybox, "cli/busybox")
    short = f"{registry.host}/cli/busybox"
    out = engine.run("pull", short).stdout
    assert "Using default tag: latest" in out
    assert "latest: Pulling from cli/busybox" in out
    assert "Pull complete" in out
    assert f"Status: Downloaded newer image for {name}" in out
    assert out.rstrip().endswith(name)

    again = engine.run("pull", name).stdout
    assert f"Status: Image is up to date for {name}" in again
    assert "Already exists" in again

    table = engine.run("images").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == [short, "latest", busybox.config_digest[7:19]]
    assert engine.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]
    fmt = engine.run("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout
    assert fmt.strip() == f"{name} {busybox.config_digest[7:19]}"

    doc = json.loads(engine.run("image", "inspect", name).stdout)
    assert len(doc) == 1
    assert doc[0]["Id"] == busybox.config_digest
    assert doc[0]["RepoTags"] == [name]
    assert doc[0]["RootFS"]["Layers"] == list(busybox.diff_ids)
    assert doc[0]["Os"] == "linux"
    assert doc[0]["RepoDigests"] == [f"{short}@{busybox.manifest_digest}"]
    assert engine.run("image", "inspect", "-f", "{{.Id}}", name).stdout.strip() == \
        busybox.config_digest
    upper = Path(doc[0]["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / "bin" / "busybox").is_file()

    # every blob verified in the store; tag, untag, delete
    assert engine.blobs() >= {d[7:] for d in (busybox.config_digest, busybox.manifest_digest,
                                              *busybox.layer_digests)}
    assert engine.run("image", "fsck").returncode == 0
    engine.run("tag", name, "mine:v1")
    assert "mine:v1" in engine.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    rm = engine.run("rmi", "mine:v1").stdout
    assert rm.strip() == "Untagged: mine:v1"
    engine.run("tag", name, "mine:v1")
    conflict = engine.run("rmi", busybox.config_digest[7:19], check=False)
    assert conflict.returncode == 1
    assert "referenced in multiple repositories" in conflict.stderr
    gone = engine.run("rmi", "-f", busybox.config_digest[7:19]).stdout
    assert f"Untagged: {name}" in gone and "Untagged: mine:v1" in gone
    assert f"Deleted: {busybox.config_digest}" in gone
    assert engine.run("images", "-q").stdout == ""
    assert engine.blobs() == set()
    assert not upper.exists()


def test_pull_missing_and_bad_names(engine: Engine, registry: Registry) -> None:
    p = engine.run("pull", f"{registry.host}/no/such:thing", check=False)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: ")
    assert "not found" in p.stderr or "manifest unknown" in p.stderr
    assert "Traceback" not in p.stderr
    bad = engine.run("pull", "someone/UPPER", check=False)
    assert bad.returncode == 1 and "invalid reference format" in bad.stderr
    flag = engine.run("pull", "--bogus", "x", check=False)
    assert flag.returncode == 125 and "unknown flag: --bogus" in flag.stderr
    nosuch = engine.run("rmi", "nosuch", check=False)
    assert nosuch.returncode == 1 and "No such image: nosuch" in nosuch.stderr
    assert engine.run("images", "-q").stdout == ""
    assert engine.blobs() == set()


def test_push_then_pull_back_by_digest(engine: Engine, registry: Registry,
                                       busybox: tb_images.BuiltImage, tmp_path: Path) -> None:
    name = _push(registry, busybox, "cli/src")
    engine.run("pull", name)
    target = f"{registry.host}/cli/pushed:v2"
    engine.run("tag", name, target)
    out = engine.run("push", target).stdout
    assert f"The push refers to repository [{registry.host}/cli/pushed]" in out
    assert f"v2: digest: {busybox.manifest_digest}" in out
    insp = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{target}"],
                          capture_output=True, text=True, check=True)
    assert json.loads(insp.stdout)["Digest"] == busybox.manifest_digest
    other = Engine(tmp_path / "other")
    by_digest = f"{registry.host}/cli/pushed@{busybox.manifest_digest}"
    other.run("pull", by_digest)
    assert other.run("image", "inspect", "-f", "{{.Id}}", by_digest).stdout.strip() == \
        busybox.config_digest


@pytest.mark.parametrize("driver", ["overlay2", "vfs"])
def test_torture_layers_unpack_exactly(tmp_path: Path, registry: Registry,
                                       torture: tb_images.BuiltImage, driver: str) -> None:
    from dockyard.engine.config import load_config
    from dockyard.engine.images import ImageService
    from dockyard.image.mounter import mount_all, unmount

    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"storage-driver": driver}))
    engine = Engine(tmp_path / "root", config)
    name = _push(registry, torture, "cli/torture")
    engine.run("pull", name)
    doc = json.loads(engine.run("image", "inspect", name).stdout)[0]
    assert doc["GraphDriver"]["Name"] == driver
    svc = ImageService(load_config(root=str(engine.root), config_file=str(config)))
    rec = svc.resolve(name)
    target = tmp_path / "merged"
    target.mkdir()
    mounts = svc.snapshots.view("torture-check", [la.chain_id for la in rec.layers])
    mount_all(mounts, str(target))
    try:
        problems = tb_images.check_rootfs(target)
    finally:
        unmount(str(target))
        svc.snapshots.remove("torture-check")
    assert problems == []


def test_history_and_prune(engine: Engine, registry: Registry,
                           busybox: tb_images.BuiltImage) -> None:
    name = _push(registry, busybox, "cli/hist")
    engine.run("pull", name)
    hist = engine.run("history", name).stdout.splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"]
    assert hist[1].split()[0] == busybox.config_digest[7:19]
    engine.run("rmi", name)
    engine.run("pull", name)
    engine.run("tag", name, "keep:me")
    engine.run("rmi", name)
    out = engine.run("image", "prune", "-f").stdout
    assert "Total reclaimed space:" in out
    assert engine.run("images", "-q").stdout.strip() == busybox.config_digest[7:19]
    out = engine.run("image", "prune", "-a", "-f").stdout
    assert f"deleted: {busybox.config_digest}" in out
    assert engine.blobs() == set()


def test_concurrent_pulls_store_each_blob_once(engine: Engine, registry: Registry,
                                               busybox: tb_images.BuiltImage) -> None:
    name = _push(registry, busybox, "cli/concurrent")
    cmd = [*DOCKYARD, "--root", str(engine.root), "pull", "-q", name]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == name
    assert engine.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]
    assert engine.run("image", "fsck").returncode == 0
    assert os.listdir(engine.root / "content" / "ingest") == []


def test_login_pull_logout_with_tls_and_auth(tmp_path: Path, tls_registry: Registry,
                                            busybox: tb_images.BuiltImage) -> None:
    assert tls_registry.ca_cert is not None and tls_registry.password is not None
    certs = tmp_path / "certs.d" / tls_registry.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(tls_registry.ca_cert.read_bytes())
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"certs-dirs": [str(tmp_path / "certs.d")]}))
    docker_config = tmp_path / "docker-config"
    eng = Engine(tmp_path / "root", config, env={"DOCKER_CONFIG": str(docker_config)})
    name = _push(tls_registry, busybox, "cli/secret")

    denied = eng.run("pull", name, check=False)
    assert denied.returncode == 1 and "Traceback" not in denied.stderr

    bad = eng.run("login", "-u", tls_registry.username or "", "--password-stdin",
                  tls_registry.host, stdin="wrong-password\n", check=False)
    assert bad.returncode == 1
    assert "incorrect username or password" in bad.stderr
    assert "wrong-password" not in bad.stderr + bad.stdout
    assert not (docker_config / "config.json").exists()

    ok = eng.run("login", "-u", tls_registry.username or "", "--password-stdin",
                 tls_registry.host, stdin=tls_registry.password + "\n")
    assert "Login Succeeded" in ok.stdout
    auths = json.loads((docker_config / "config.json").read_text())["auths"]
    assert tls_registry.host in auths
    assert (docker_config / "config.json").stat().st_mode & 0o777 == 0o600

    eng.run("pull", name)
    assert eng.run("images", "-q").stdout.split() == [busybox.config_digest[7:19]]
    out = eng.run("logout", tls_registry.host).stdout
    assert f"Removing login credentials for {tls_registry.host}" in out
    assert tls_registry.host not in json.loads(
        (docker_config / "config.json").read_text()).get("auths", {})

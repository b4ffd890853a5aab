"""`dockyard version`, `info`, `system df`, `ps -s` and `rm -v` as a user runs them, with real
containers from the busybox image on a throwaway engine root."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.cli.units import from_human_size, human_size, human_size_with_precision
from testbed import images as tb_images
from testbed.engine import Engine, loaded_engine
from tests.integration.test_container_cli import busybox, eng  # noqa: F401

pytestmark = pytest.mark.integration

GOARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _block(text: str, title: str) -> dict[str, str]:
    """The ``key: value`` lines of the block that starts with ``title`` (up to a blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out: dict[str, str] = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        key, _, val = line.strip().partition(":")
        out.setdefault(key, val.strip())
    return out


def _table(text: str) -> list[list[str]]:
    """A docker table's rows split on its column gaps (three or more spaces)."""
    import re

    return [re.split(r" {3,}", line.rstrip()) for line in text.splitlines() if line.strip()]


def _bad_usage(e: Engine, *args: str) -> str:
    p = e.run(*args, check=False)
    assert p.returncode == 125, (args, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p.stderr


def _image_bytes(e: Engine) -> int:
    return int(e.run("image", "inspect", "-f", "{{.Size}}", "busybox").stdout)


def _wait_running(e: Engine, name: str) -> None:
    deadline = time.monotonic() + 10
    while e.run("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
        assert time.monotonic() < deadline
        time.sleep(0.05)


# --- version ------------------------------------------------------------------------------------


def test_version(engine: Engine) -> None:
    out = engine.run("version").stdout
    client, server = _block(out, "Client:"), _block(out, "Server:")
    want = importlib.metadata.version("dockyard")
    assert client["Version"] == want and client["API version"] == "1.44"
    assert client["Go version"] == f"Python {platform.python_version()}"
    assert client["OS/Arch"] == f"linux/{GOARCH}"
    assert client["Built"] and client["Git commit"]
    assert server["Engine"] == "" and server["Version"] == want
    assert server["API version"].startswith("1.44 (minimum version ")
    assert out.startswith("Client:\n Version:           ")    # docker's column of 20
    assert "\n\nServer: Dockyard Engine\n Engine:\n" in out

    assert engine.run("version", "--format", "{{.Server.Version}}").stdout == want + "\n"
    doc = json.loads(engine.run("version", "--format", "json").stdout)
    assert set(doc) == {"Client", "Server"}
    assert doc["Client"]["ApiVersion"] == doc["Server"]["ApiVersion"] == "1.44"
    assert doc["Server"]["Components"][0]["Name"] == "Engine"
    assert doc["Server"]["KernelVersion"] == os.uname().release
    assert json.loads(engine.run("version", "-f", "{{json .}}").stdout) == doc

    p = engine.run("version", "--format", "{{.Client.Version", check=False)
    assert p.returncode == 64 and p.stderr.startswith("template parsing error:")
    assert "Traceback" not in p.stderr
    err = _bad_usage(engine, "version", "--bogus")
    assert err == "unknown flag: --bogus\nSee 'dockyard version --help'.\n"


# --- info ---------------------------------------------------------------------------------------


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return "Linux"


def test_info(eng: Engine) -> None:  # noqa: F811
    eng.run("run", "-d", "--name", "up", "busybox", "sleep", "60")
    eng.run("run", "--name", "done", "busybox", "true")
    out = eng.run("info").stdout
    assert out.startswith("Client:\n Version:    ")
    server = _block(out, "Server:")
    counts = {k: server[k] for k in ("Containers", "Running", "Paused", "Stopped", "Images")}
    assert counts == {"Containers": "2", "Running": "1", "Paused": "0", "Stopped": "1",
                      "Images": "1"}
    assert server["Storage Driver"] in ("overlay2", "vfs")
    assert server["Storage Driver"] == eng.run("inspect", "-f", "{{.Driver}}", "up").stdout.strip()
    assert server["Logging Driver"] == "json-file" and server["Cgroup Driver"] == "cgroupfs"
    fstype = subprocess.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert server["Cgroup Version"] == ("2" if fstype == "cgroup2fs" else "1")
    runtimes = server["Runtimes"].split()
    assert runtimes[0] == "dockyard" and server["Default Runtime"] == "dockyard"
    for other in ("runc", "crun"):
        assert (other in runtimes) == (shutil.which(other) is not None)
    assert server["Kernel Version"] == os.uname().release
    assert server["Operating System"] == _os_name()
    assert server["OSType"] == "linux" and server["Architecture"] == platform.machine()
    assert server["CPUs"] == str(len(os.sched_getaffinity(0)))
    assert server["Total Memory"].endswith("iB")
    assert server["Name"] == socket.gethostname()
    assert server["Docker Root Dir"] == str(eng.root)
    assert server["Debug Mode"] == "false"
    assert "\n Insecure Registries:\n  127.0.0.0/8\n" in out

    # `system info` is the same command; the engine's ID stays put
    assert eng.run("system", "info").stdout == out
    doc = json.loads(eng.run("info", "--format", "json").stdout)
    assert doc["ID"] == server["ID"] and doc["DockerRootDir"] == str(eng.root)
    assert (doc["Containers"], doc["ContainersRunning"], doc["ContainersStopped"]) == (2, 1, 1)
    assert doc["Images"] == 1 and doc["NCPU"] == int(server["CPUs"])
    assert doc["Driver"] == server["Storage Driver"]
    assert doc["ServerVersion"] == importlib.metadata.version("dockyard")
    assert set(doc["Runtimes"]) == set(runtimes) and doc["DefaultRuntime"] == "dockyard"
    assert doc["MemTotal"] > 0 and doc["OSType"] == "linux"
    assert doc["ClientInfo"]["Version"] == doc["ServerVersion"]
    assert json.loads(eng.run("info", "-f", "{{json .}}").stdout)["ID"] == doc["ID"]

    eng.run("pause", "up")
    line = eng.run("system", "info", "--format",
                   "{{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} "
                   "{{.CgroupVersion}} {{.LoggingDriver}}").stdout
    assert line == f"0 1 1 {server['Cgroup Version']} json-file\n"
    eng.run("unpause", "up")
    eng.run("rm", "-f", "up", "done")

    assert "unknown flag: --bogus" in _bad_usage(eng, "info", "--bogus")
    assert "See 'dockyard system info --help'." in _bad_usage(eng, "system", "info", "--bogus")


# --- ps -s and system df ------------------------------------------------------------------------


def _two_containers(e: Engine) -> None:
    """``writer`` runs with 12 bytes written; ``filler`` exited after writing 1000."""
    e.run("run", "-d", "--name", "writer", "busybox", "sh", "-c",
          "echo hello-world > /note; exec sleep 60")
    e.run("run", "--name", "filler", "busybox", "sh", "-c", "head -c 1000 /dev/zero > /blob")
    _wait_running(e, "writer")
    deadline = time.monotonic() + 10
    while e.run("exec", "writer", "cat", "/note", check=False).stdout != "hello-world\n":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_ps_size(eng: Engine) -> None:  # noqa: F811
    _two_containers(eng)
    image = _image_bytes(eng)
    rows = _table(eng.run("ps", "-a", "-s").stdout)
    assert rows[0][-2:] == ["NAMES", "SIZE"]
    sizes = {r[-2]: r[-1] for r in rows[1:]}
    for name, own in (("writer", "12B"), ("filler", "1kB")):
        rw, _, virtual = sizes[name].partition(" (virtual ")
        assert rw == own
        assert virtual.endswith(")")
        assert abs(from_human_size(virtual[:-1]) - image) <= image * 0.005 + 1000
    assert _table(eng.run("ps", "--size").stdout)[1][-1] == sizes["writer"]
    # without -s: no SIZE column, nothing computed; a template that reads .Size computes it
    plain = eng.run("ps", "-a").stdout
    assert "SIZE" not in plain and "virtual" not in plain
    assert eng.run("ps", "--format", "{{.Names}}: {{.Size}}").stdout == \
        f"writer: {sizes['writer']}\n"
    assert json.loads(eng.run("ps", "--format", "{{json .}}").stdout)["Size"] == sizes["writer"]
    assert json.loads(eng.run("ps", "--format", "json").stdout)["Size"] == "0B"   # as docker
    eng.run("rm", "-f", "writer", "filler")


def test_system_df(eng: Engine) -> None:  # noqa: F811
    _two_containers(eng)
    image = human_size(_image_bytes(eng))
    rows = _table(eng.run("system", "df").stdout)
    assert rows[0] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert rows[1:] == [
        ["Images", "1", "1", image, "0B (0%)"],
        ["Containers", "2", "1", "1.012kB", "1kB (98%)"],
        ["Local Volumes", "0", "0", "0B", "0B"],
        ["Build Cache", "0", "0", "0B", "0B"],
    ]
    as_json = [json.loads(line) for line in
               eng.run("system", "df", "--format", "json").stdout.splitlines()]
    assert as_json[1] == {"Type": "Containers", "TotalCount": "2", "Active": "1",
                          "Size": "1.012kB", "Reclaimable": "1kB (98%)"}
    assert eng.run("system", "df", "--format", "{{.Type}}={{.TotalCount}}").stdout == \
        "Images=1\nContainers=2\nLocal Volumes=0\nBuild Cache=0\n"

    verbose = eng.run("system", "df", "-v").stdout
    sections = verbose.split("\n\n")
    assert sections[0] == "Images space usage:"
    images = _table(sections[1])
    assert images[0] == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE",
                         "UNIQUE SIZE", "CONTAINERS"]
    assert images[1][:2] == ["busybox", "latest"] and images[1][-1] == "2"
    assert sections[2] == "Containers space usage:"
    containers = {r[-1]: r for r in _table(sections[3])[1:]}
    assert containers["writer"][4] == "12B" and containers["filler"][4] == "1kB"
    assert containers["writer"][6].startswith("Up ")
    assert sections[4] == "Local Volumes space usage:"
    assert _table(sections[5]) == [["VOLUME NAME", "LINKS", "SIZE"]]
    assert sections[6] == "Build cache usage: 0B"
    assert _table(sections[7])[0][0] == "CACHE ID"
    doc = json.loads(eng.run("system", "df", "-v", "--format", "{{json .}}").stdout)
    assert sorted(c["Names"] for c in doc["Containers"]) == ["filler", "writer"]
    assert doc["Volumes"] == [] and doc["BuildCache"] == []

    # what goes when the stopped container goes, then the image once nothing uses it
    eng.run("rm", "filler")
    rows = _table(eng.run("system", "df").stdout)
    assert rows[2] == ["Containers", "1", "1", "12B", "0B (0%)"]
    eng.run("rm", "-f", "writer")
    rows = _table(eng.run("system", "df").stdout)
    assert rows[1] == ["Images", "1", "0", image, f"{image} (100%)"]
    assert rows[2] == ["Containers", "0", "0", "0B", "0B"]
    assert "unknown flag: -x" in _bad_usage(eng, "system", "df", "-x")


@pytest.fixture
def vfs(tmp_path: Path, busybox: tb_images.BuiltImage) -> Iterator[Engine]:  # noqa: F811
    """An engine whose container snapshots are full copies (the vfs storage driver)."""
    with loaded_engine(tmp_path, {"storage-driver": "vfs"}, name="vfs-root") as e:
        yield e


def test_sizes_with_copied_snapshots(vfs: Engine) -> None:
    out = vfs.run("run", "--name", "edit", "busybox", "sh", "-c",
                  "echo hello-world > /note; rm /bin/ls; echo more >> /etc/passwd; "
                  "wc -c < /etc/passwd").stdout
    changed = 12 + int(out)       # /note, and /etc/passwd as a whole; a removal is free
    assert vfs.run("info", "--format", "{{.Driver}}").stdout == "vfs\n"
    size = vfs.run("ps", "-a", "--format", "{{.Size}}").stdout
    assert size.startswith(human_size_with_precision(changed, 3) + " (virtual ")
    rows = _table(vfs.run("system", "df").stdout)
    assert rows[2][:4] == ["Containers", "1", "0", human_size(changed)]
    vfs.run("rm", "edit")


# --- rm -v ---------------------------------------------------------------------------------------


def test_rm_volumes_flag(eng: Engine) -> None:  # noqa: F811
    for name in ("one", "two", "three"):
        eng.run("create", "--name", name, "busybox", "true")
    eng.run("run", "-d", "--name", "running", "busybox", "sleep", "60")
    assert eng.run("rm", "-v", "one").stdout == "one\n"
    assert eng.run("rm", "--volumes", "two").stdout == "two\n"
    assert eng.run("container", "rm", "-v", "three").stdout == "three\n"
    refused = eng.run("rm", "-v", "running", check=False)
    assert refused.returncode == 1 and "cannot remove a running container" in refused.stderr
    assert eng.run("container", "rm", "-fv", "running").stdout == "running\n"
    assert eng.run("ps", "-aq").stdout == ""
    missing = eng.run("rm", "-v", "nosuch", check=False)
    assert missing.returncode == 1 and "No such container: nosuch" in missing.stderr
    assert _bad_usage(eng, "container", "rm", "--bogus", "x") == \
        "unknown flag: --bogus\nSee 'dockyard container rm --help'.\n"

"""Log files that dockerd itself wrote (Debian's docker.io), read by ``dockyard logs``' reader:
the local driver's protobuf records, long lines in pieces and a line left unfinished."""

from __future__ import annotations

import json

import pytest

from dockyard.engine.logread import read_logs
from dockyard.monitor.locallog import LocalLogWriter, decode_entry, split_records
from tests.compat.conftest import DockerEnv, unique

pytestmark = [pytest.mark.integration, pytest.mark.compat]


def test_docker_local_driver_file_reads_back(docker: DockerEnv) -> None:
    name = unique("local")
    script = "echo one; echo two >&2; head -c 40000 /dev/zero | tr '\\0' x; echo; printf end"
    proc = docker.dockerd.run("run", "--network", "none", "--name", name, "--log-driver",
                              "local", "--log-opt", "compress=false", docker.image,
                              "sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    cid = json.loads(docker.dockerd.run("inspect", name, check=True).stdout)[0]["Id"]
    path = docker.dockerd.data_root / "containers" / cid / "local-logs" / "container.log"
    data = path.read_bytes()
    bodies, used = split_records(data)
    assert used == len(data)
    records = [decode_entry(b) for b in bodies]
    pieces = [r for r in records if r.partial is not None]
    # the 40000-byte line: three pieces of one id, ordinals 1-3, the last one marked so
    assert [(p.partial.ordinal, p.partial.last) for p in pieces[:3] if p.partial] == [
        (1, False), (2, False), (3, True)]
    ours = list(read_logs(str(path), driver="local"))
    long_line = "x" * 40000
    assert b"".join(e.data for e in ours if e.stream == "stdout").decode() == (
        f"one\n{long_line}\nend")
    assert b"".join(e.data for e in ours if e.stream == "stderr").decode() == "two\n"
    theirs = docker.dockerd.run("logs", name, check=True)
    # docker 20.10's reader drops the newline after the last piece of a long line; moby fixed
    # it later (v28's local/read.go adds it when PLogMetaData.Last), as ours does
    assert theirs.stdout in (f"one\n{long_line}\nend", f"one\n{long_line}end")
    assert theirs.stderr == "two\n"


def test_docker_reads_a_file_dockyard_wrote(docker: DockerEnv) -> None:
    name = unique("local")
    proc = docker.dockerd.run("run", "--network", "none", "--name", name, "--log-driver",
                              "local", "--log-opt", "compress=false", docker.image, "true")
    assert proc.returncode == 0, proc.stderr
    cid = json.loads(docker.dockerd.run("inspect", name, check=True).stdout)[0]["Id"]
    path = docker.dockerd.data_root / "containers" / cid / "local-logs" / "container.log"
    with LocalLogWriter(str(path), max_size=None) as w:   # appends to docker's (empty) file
        w.write("stdout", b"one\nt\xc3\xa9l\xc3\xa9\n", ts_ns=1_700_000_000_000_000_000)
        w.write("stderr", b"two\n", ts_ns=1_700_000_001_000_000_000)
        w.write("stdout", b"unfinished", ts_ns=1_700_000_002_000_000_000)
        w.flush("stdout", ts_ns=1_700_000_002_000_000_000)    # the end of the stream
    theirs = docker.dockerd.run("logs", "-t", name, check=True)
    assert theirs.stdout == ("2023-11-14T22:13:20.000000000Z one\n"
                             "2023-11-14T22:13:20.000000000Z t\u00e9l\u00e9\n"
                             "2023-11-14T22:13:22.000000000Z unfinished")
    assert theirs.stderr == "2023-11-14T22:13:21.000000000Z two\n"
    assert docker.dockerd.run("logs", "--tail", "2", name, check=True).stdout == "unfinished"

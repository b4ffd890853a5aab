"""dockerd (Debian's docker.io 20.10, its own containerd and containerd-shim-runc-v2) driving an
OCI runtime registered with ``--add-runtime dockyard=<dockyard-runc>`` and chosen per container
with ``docker run --runtime``. Every test runs against runc too (dockerd's default runtime),
which checks the test and the harness; a dockyard-runc case that cannot pass yet is a strict
xfail naming the missing feature."""

from __future__ import annotations

import json

import pytest

from tests.compat.conftest import (
    DockerEnv,
    RuntimeUnderTest,
    cgroup_path,
    cgroup_value,
    run_in_pty,
    runtime_params,
    unique,
)

pytestmark = [pytest.mark.integration, pytest.mark.compat]

# A PID 1 that leaves on SIGTERM (a bare `sleep` as PID 1 ignores it), so `stop` is graceful.
STOPPABLE = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]


def _state(env: DockerEnv, name: str) -> dict[str, object]:
    proc = env.dockerd.run("inspect", "--type", "container", name, check=True)
    state = json.loads(proc.stdout)[0]["State"]
    assert isinstance(state, dict)
    return state


def _run_detached(env: DockerEnv, rt: RuntimeUnderTest, name: str, *args: str) -> int:
    proc = env.dockerd.run("run", "-d", "--network", "none", "--runtime", rt.docker_name,
                           "--name", name, *args)
    assert proc.returncode == 0, proc.stderr
    pid = _state(env, name)["Pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_run_rm_echo(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("echo")
    proc = docker.dockerd.run("run", "--rm", "--network", "none", "--runtime",
                              runtime.docker_name, "--name", name, docker.image, "echo", "hi")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    assert docker.dockerd.run("inspect", "--type", "container", name).returncode != 0


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_detached_exec_stop(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("detached")
    _run_detached(docker, runtime, name, docker.image, *STOPPABLE)
    assert _state(docker, name)["Status"] == "running"

    exec_ = docker.dockerd.run("exec", name, "sh", "-c", "echo inside as $$")
    assert exec_.returncode == 0, exec_.stderr
    assert exec_.stdout.startswith("inside as ")

    stop = docker.dockerd.run("stop", "--time", "10", name)
    assert stop.returncode == 0, stop.stderr
    state = _state(docker, name)
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0  # SIGTERM reached the trap; SIGKILL would give 137


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_pause_unpause(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("pause")
    pid = _run_detached(docker, runtime, name, docker.image, "sleep", "300")

    paused = docker.dockerd.run("pause", name)
    assert paused.returncode == 0, paused.stderr
    assert _state(docker, name)["Status"] == "paused"
    assert cgroup_value(pid, "freezer", "freezer.state") == "FROZEN"

    resumed = docker.dockerd.run("unpause", name)
    assert resumed.returncode == 0, resumed.stderr
    assert _state(docker, name)["Status"] == "running"
    assert cgroup_value(pid, "freezer", "freezer.state") == "THAWED"


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_memory_limit(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("memory")
    pid = _run_detached(docker, runtime, name, "--memory", "64m", docker.image, "sleep", "300")
    limit = cgroup_value(pid, "memory", "memory.limit_in_bytes")
    assert int(limit) == 64 * 1024 * 1024, f"memory cgroup {cgroup_path(pid, 'memory')}"


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_pids_limit(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("pids")
    pid = _run_detached(docker, runtime, name, "--pids-limit", "32", docker.image,
                        "sleep", "300")
    assert cgroup_value(pid, "pids", "pids.max") == "32", f"pids cgroup {cgroup_path(pid, 'pids')}"


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_top(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("top")
    _run_detached(docker, runtime, name, docker.image, "sleep", "300")
    top = docker.dockerd.run("top", name)
    assert top.returncode == 0, top.stderr
    header, *rows = top.stdout.splitlines()
    assert header.split()[:3] == ["UID", "PID", "PPID"]
    assert any(row.split()[-2:] == ["sleep", "300"] for row in rows), top.stdout


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_interactive_tty(docker: DockerEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("tty")
    argv = docker.dockerd.argv("run", "-it", "--rm", "--network", "none", "--runtime",
                               runtime.docker_name, "--name", name, docker.image, "sh")
    result = run_in_pty(
        argv, docker.dockerd.env,
        [("# ", "tty; echo $((6*7))-ok\r"), ("42-ok", "exit 3\r")],
        timeout=60,
    )
    assert "42-ok" in result.output, result.output
    assert "/dev/pts/0" in result.output, result.output
    assert result.returncode == 3, result.output

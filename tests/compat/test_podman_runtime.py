"""podman (4.3, conmon, cgroupfs) driving an OCI runtime through ``--runtime <path>``: the
acceptance of dockyard-runc as a runtime for podman. Every test runs against runc too, which
checks the test and the harness; a dockyard-runc case that cannot pass yet is marked a strict xfail
naming the missing feature (none today)."""

from __future__ import annotations

import json

import pytest

from tests.compat.conftest import (
    PodmanEnv,
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


def _inspect(env: PodmanEnv, name: str) -> dict[str, object]:
    proc = env.podman.run("inspect", "--type", "container", name, check=True)
    result: dict[str, object] = json.loads(proc.stdout)[0]
    return result


def _state(env: PodmanEnv, name: str) -> dict[str, object]:
    state = _inspect(env, name)["State"]
    assert isinstance(state, dict)
    return state


def _run_detached(env: PodmanEnv, rt: RuntimeUnderTest, name: str, *args: str) -> int:
    proc = env.podman.run("run", "-d", "--name", name, *args, runtime=rt.path)
    assert proc.returncode == 0, proc.stderr
    pid = _state(env, name)["Pid"]
    assert isinstance(pid, int) and pid > 0
    return pid


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_run_rm_echo(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("echo")
    proc = podman.podman.run("run", "--rm", "--name", name, podman.image, "echo", "hi",
                             runtime=runtime.path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi\n"
    assert podman.podman.run("container", "exists", name).returncode == 1  # --rm removed it


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_detached_exec_stop(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("detached")
    _run_detached(podman, runtime, name, podman.image, *STOPPABLE)
    assert _state(podman, name)["Status"] == "running"

    exec_ = podman.podman.run("exec", name, "sh", "-c", "echo inside as $$")
    assert exec_.returncode == 0, exec_.stderr
    assert exec_.stdout.startswith("inside as ")

    stop = podman.podman.run("stop", "--time", "10", name)
    assert stop.returncode == 0, stop.stderr
    state = _state(podman, name)
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 0  # SIGTERM reached the trap; SIGKILL would give 137


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_pause_unpause(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("pause")
    pid = _run_detached(podman, runtime, name, podman.image, "sleep", "300")

    paused = podman.podman.run("pause", name)
    assert paused.returncode == 0, paused.stderr
    assert _state(podman, name)["Status"] == "paused"
    assert cgroup_value(pid, "freezer", "freezer.state") == "FROZEN"

    resumed = podman.podman.run("unpause", name)
    assert resumed.returncode == 0, resumed.stderr
    assert _state(podman, name)["Status"] == "running"
    assert cgroup_value(pid, "freezer", "freezer.state") == "THAWED"


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_memory_limit(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("memory")
    pid = _run_detached(podman, runtime, name, "--memory", "64m", podman.image, "sleep", "300")
    limit = cgroup_value(pid, "memory", "memory.limit_in_bytes")
    assert int(limit) == 64 * 1024 * 1024, f"memory cgroup {cgroup_path(pid, 'memory')}"


@pytest.mark.parametrize(
    "runtime",
    runtime_params(None),
    indirect=True,
)
def test_pids_limit(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("pids")
    pid = _run_detached(podman, runtime, name, "--pids-limit", "32", podman.image,
                        "sleep", "300")
    assert cgroup_value(pid, "pids", "pids.max") == "32", f"pids cgroup {cgroup_path(pid, 'pids')}"


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_top(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("top")
    _run_detached(podman, runtime, name, podman.image, "sleep", "300")
    top = podman.podman.run("top", name)
    assert top.returncode == 0, top.stderr
    header, *rows = top.stdout.splitlines()
    assert header.split()[:3] == ["USER", "PID", "PPID"]
    assert any(row.split()[-2:] == ["sleep", "300"] for row in rows), top.stdout


@pytest.mark.parametrize("runtime", runtime_params(None), indirect=True)
def test_interactive_tty(podman: PodmanEnv, runtime: RuntimeUnderTest) -> None:
    name = unique("tty")
    argv = podman.podman.argv("run", "-it", "--rm", "--name", name, podman.image, "sh",
                              runtime=runtime.path)
    result = run_in_pty(
        argv, podman.podman.env,
        [("# ", "tty; echo $((6*7))-ok\r"), ("42-ok", "exit 3\r")],
        timeout=60,
    )
    assert "42-ok" in result.output, result.output
    assert "/dev/pts/0" in result.output, result.output
    assert result.returncode == 3, result.output

"""`dockyard run/create/start/ps/logs/stop/kill/wait/rm/inspect` as a user runs them, with
real containers from the busybox image on a throwaway engine root."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed import images as tb_images
from testbed.engine import DOCKYARD, Engine, loaded_engine, remove_container_cgroups

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def busybox() -> tb_images.BuiltImage:
    return tb_images.busybox()


@pytest.fixture
def eng(tmp_path: Path, busybox: tb_images.BuiltImage) -> Iterator[Engine]:
    with loaded_engine(tmp_path) as e:
        yield e


def test_run_prints_and_returns_the_exit_code(eng: Engine) -> None:
    p = eng.run("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3",
                check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"
    assert eng.run("ps", "-aq").stdout == ""


def test_run_defaults_inside(eng: Engine) -> None:
    out = eng.run("run", "--name", "probe", "--hostname", "boat", "-e", "FOO=bar", "-w", "/tmp",
                  "busybox", "sh", "-c", "hostname; echo $FOO; pwd; id -u; echo $$").stdout
    assert out.split() == ["boat", "bar", "/tmp", "0", "1"]
    ps = eng.run("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.strip()
    assert ps.startswith("probe Exited (0)")
    doc = json.loads(eng.run("inspect", "probe").stdout)[0]
    assert doc["Name"] == "/probe"
    assert doc["State"]["Status"] == "exited" and doc["State"]["ExitCode"] == 0
    assert eng.run("logs", "probe").stdout.split() == ["boat", "bar", "/tmp", "0", "1"]
    eng.run("rm", "probe")
    assert eng.run("ps", "-aq").stdout == ""


def test_detached_lifecycle(eng: Engine) -> None:
    cid = eng.run("run", "-d", "--name", "sleeper", "busybox", "sh", "-c",
                  "trap 'echo bye; exit 0' TERM; echo hello; while :; do sleep 0.1; done"
                  ).stdout.strip()
    assert len(cid) == 64
    deadline = time.monotonic() + 10
    while "hello" not in eng.run("logs", "sleeper").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert eng.run("ps", "-q").stdout.strip() == cid[:12]
    assert "Up " in eng.run("ps", "--format", "{{.Status}}").stdout
    refused = eng.run("rm", "sleeper", check=False)
    assert refused.returncode == 1 and "cannot remove a running container" in refused.stderr
    assert eng.run("stop", "sleeper").stdout.strip() == "sleeper"
    assert eng.run("wait", "sleeper").stdout.strip() == "0"
    assert eng.run("logs", "sleeper").stdout.split() == ["hello", "bye"]
    assert eng.run("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                   "sleeper").stdout.strip() == "exited 0"
    # start again: the same container runs once more
    eng.run("start", "sleeper")
    assert eng.run("ps", "-q").stdout.strip() == cid[:12]
    eng.run("kill", "-s", "KILL", "sleeper")
    assert eng.run("wait", "sleeper").stdout.strip() == "137"
    eng.run("rm", "sleeper")
    assert not (eng.root / "containers" / cid).exists()


def test_rm_force_and_run_rm_leave_nothing(eng: Engine) -> None:
    cid = eng.run("run", "-d", "busybox", "sleep", "60").stdout.strip()
    eng.run("rm", "-f", cid)
    assert eng.run("ps", "-aq").stdout == ""
    assert not (eng.root / "containers" / cid).exists()
    assert not any(cid in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    eng.run("run", "--rm", "busybox", "true")
    assert eng.run("ps", "-aq").stdout == ""
    assert os.listdir(eng.root / "overlay" / "containers") == []


def test_bad_input_exits_125_and_creates_nothing(eng: Engine) -> None:
    for args, message in (
            (["run", "--bogus", "busybox"], "unknown flag: --bogus"),
            (["run", "--memory", "12zz", "busybox", "true"], "invalid"),
            (["run", "--pull", "never", "nosuch/image", "true"], "No such image"),
    ):
        p = eng.run(*args, check=False)
        assert p.returncode == 125, (args, p.stderr)
        assert message in p.stderr and "Traceback" not in p.stderr
    eng.run("create", "--name", "taken", "busybox", "true")
    clash = eng.run("run", "--name", "taken", "busybox", "true", check=False)
    assert clash.returncode == 125 and "is already in use" in clash.stderr
    assert eng.run("ps", "-aq").stdout.split().__len__() == 1
    missing = eng.run("stop", "nosuchcontainer", check=False)
    assert missing.returncode == 1 and "No such container: nosuchcontainer" in missing.stderr
    not_found_cmd = eng.run("run", "busybox", "no-such-binary", check=False)
    assert not_found_cmd.returncode in (125, 127)


def test_the_container_outlives_the_command(eng: Engine) -> None:
    """The starting command exits; the container keeps running under its supervisor."""
    assert eng.config is not None
    proc = subprocess.run([*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config),
                           "run", "-d", "--name", "bg",
                           "busybox", "sleep", "30"], capture_output=True, text=True,
                          env=eng.env, check=True)
    assert proc.returncode == 0
    time.sleep(0.3)
    assert eng.run("ps", "--format", "{{.Names}}").stdout.strip() == "bg"
    eng.run("rm", "-f", "bg")


def test_exec_pause_top_rename_prune(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "60")
    out = eng.run("exec", "-e", "X=y", "-w", "/etc", "box", "sh", "-c",
                  "echo $X $FROM_RUN; pwd; id -u").stdout.split()
    assert out == ["y", "1", "/etc", "0"]
    assert eng.run("exec", "-u", "nobody", "box", "id", "-u").stdout.strip() == "65534"
    code = eng.run("exec", "box", "sh", "-c", "exit 5", check=False).returncode
    assert code == 5
    top = eng.run("top", "box").stdout.splitlines()
    assert "PID" in top[0] and any("sleep 60" in line for line in top[1:])
    eng.run("pause", "box")
    assert eng.run("exec", "box", "true", check=False).returncode != 0
    state = json.loads(eng.run("inspect", "box").stdout)[0]["State"]
    assert (state["Status"], state["Paused"], state["Running"]) == ("paused", True, True)
    row = eng.run("ps", "--format", "{{.State}}|{{.Status}}").stdout.strip()
    assert row.startswith("paused|Up ") and row.endswith("(Paused)"), row
    eng.run("unpause", "box")
    state = json.loads(eng.run("inspect", "box").stdout)[0]["State"]
    assert (state["Status"], state["Paused"]) == ("running", False)
    eng.run("exec", "box", "true")
    eng.run("rename", "box", "crate")
    assert eng.run("ps", "--format", "{{.Names}}").stdout.strip() == "crate"
    eng.run("create", "--name", "idle", "busybox", "true")
    eng.run("run", "--name", "done", "busybox", "true")
    out = eng.run("container", "prune", "-f").stdout
    assert "Deleted Containers:" in out and "Total reclaimed space:" in out
    assert eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["crate"]
    eng.run("rm", "-f", "crate")


def test_kill_of_a_paused_container_and_prune_filters(eng: Engine) -> None:
    eng.run("run", "-d", "--network", "none", "--name", "frozen", "busybox", "sleep", "60")
    eng.run("pause", "frozen")
    eng.run("kill", "frozen")           # SIGKILL: docker thaws it so that it dies
    assert eng.run("wait", "frozen", timeout=15).stdout.strip() == "137"
    for name, label in (("a", "tier=web"), ("b", "tier=db"), ("c", "other=1")):
        eng.run("run", "--network", "none", "--name", name, "--label", label, "busybox", "true")
    out = eng.run("container", "prune", "-f", "--filter", "label=tier").stdout
    names = eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == ["c", "frozen"], out
    eng.run("container", "prune", "-f", "--filter", "label!=other")
    assert sorted(eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["c"]
    eng.run("container", "prune", "-f", "--filter", "until=1h")     # created just now: kept
    assert eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["c"]
    bad = eng.run("container", "prune", "-f", "--filter", "colour=red", check=False)
    assert bad.returncode != 0 and "invalid filter 'colour'" in bad.stderr
    assert eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split() == ["c"]
    eng.run("container", "prune", "-f")
    assert eng.run("ps", "-aq").stdout == ""


def test_twenty_concurrent_runs(eng: Engine) -> None:
    """20 `run -d` at once from separate processes: all succeed, distinct names, one list."""
    assert eng.config is not None
    procs = [subprocess.Popen([*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config),
                               "run", "-d", "--name", f"c{i}", "busybox", "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=eng.env) for i in range(20)]
    seen = eng.run("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert len(seen) == len(set(seen))
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 20
    names = sorted(eng.run("ps", "--format", "{{.Names}}").stdout.split())
    assert names == sorted(f"c{i}" for i in range(20))
    eng.run("rm", "-f", *ids)
    assert eng.run("ps", "-aq").stdout == ""


def test_restart_policies(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
            "echo try; exit 3")
    assert eng.run("wait", "flaky").stdout.strip() == "3"
    assert eng.run("inspect", "-f", "{{.RestartCount}} {{.HostConfig.RestartPolicy.Name}}",
                   "flaky").stdout.strip() == "2 on-failure"
    assert eng.run("logs", "flaky").stdout.split() == ["try", "try", "try"]
    eng.run("run", "-d", "--name", "forever", "--restart", "always", "busybox", "sh", "-c",
            "sleep 0.2; exit 0")
    deadline = time.monotonic() + 20
    while int(eng.run("inspect", "-f", "{{.RestartCount}}", "forever").stdout) < 2:
        assert time.monotonic() < deadline, "an always container was not restarted"
        time.sleep(0.1)
    eng.run("stop", "-t", "1", "forever")     # a stop by the user is final
    assert eng.run("wait", "forever").stdout.strip() in ("0", "137", "143")
    time.sleep(0.5)
    assert eng.run("ps", "-q").stdout == ""
    bad = eng.run("run", "--restart", "sometimes", "busybox", "true", check=False)
    assert bad.returncode == 125 and "restart policy" in bad.stderr
    clash = eng.run("run", "--rm", "--restart", "always", "busybox", "true", check=False)
    assert clash.returncode == 125 and "Conflicting options" in clash.stderr


def _wait_gone(*pids: int) -> None:
    """Until the killed processes are gone; zombies count as gone (the leak guard makes the
    test session a subreaper, so orphans may wait for it to reap them: reap them here)."""
    deadline = time.monotonic() + 10
    for pid in pids:
        while True:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except OSError:
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"pid {pid} still there"
            time.sleep(0.05)


def test_after_a_reboot(eng: Engine, tmp_path: Path) -> None:
    """Simulated reboot: supervisor and container killed, mounts and /run gone. `ps -a` shows
    the container exited, and `start` brings it back."""
    import shutil
    import signal

    eng.run("run", "-d", "--name", "survivor", "busybox", "sleep", "60")
    doc = json.loads(eng.run("inspect", "survivor").stdout)[0]
    init_pid = doc["State"]["Pid"]
    run_root = Path(eng.env["DOCKYARD_RUN_ROOT"])
    sup_pid = int((run_root / "containers" / "monitor.pid").read_text())
    os.kill(sup_pid, signal.SIGKILL)
    os.kill(init_pid, signal.SIGKILL)
    _wait_gone(init_pid, sup_pid)
    subprocess.run(["umount", doc["GraphDriver"]["Data"]["MergedDir"]], check=True)
    remove_container_cgroups(doc["Id"])
    shutil.rmtree(run_root)
    status = eng.run("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.strip()
    assert status.startswith("survivor Exited (255)")
    eng.run("start", "survivor")
    assert eng.run("ps", "--format", "{{.Names}}").stdout.strip() == "survivor"
    eng.run("rm", "-f", "survivor")


def test_system_restore_after_a_reboot(eng: Engine) -> None:
    """`system restore` (run at boot) brings back `--restart always` containers, and
    unless-stopped ones the user had not stopped."""
    import shutil
    import signal

    eng.run("run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "60")
    eng.run("run", "-d", "--name", "stopped", "--restart", "unless-stopped", "busybox",
            "sleep", "60")
    eng.run("stop", "-t", "0", "stopped")
    eng.run("run", "-d", "--name", "plain", "busybox", "sleep", "60")
    run_root = Path(eng.env["DOCKYARD_RUN_ROOT"])
    sup = int((run_root / "containers" / "monitor.pid").read_text())
    docs = [json.loads(eng.run("inspect", name).stdout)[0] for name in ("always", "plain")]
    os.kill(sup, signal.SIGKILL)
    for doc in docs:
        assert doc["State"]["Pid"] > 0
        os.kill(doc["State"]["Pid"], signal.SIGKILL)
        _wait_gone(doc["State"]["Pid"], sup)
        subprocess.run(["umount", doc["GraphDriver"]["Data"]["MergedDir"]], check=True)
        remove_container_cgroups(doc["Id"])
    shutil.rmtree(run_root)
    assert eng.run("system", "restore").stdout.split() == ["always"]
    assert eng.run("ps", "--format", "{{.Names}}").stdout.split() == ["always"]
    eng.run("rm", "-f", "always", "stopped", "plain")


def test_stdin_and_logs_follow(eng: Engine) -> None:
    out = eng.run("run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done",
                  stdin="hello stdin\n").stdout
    assert out == "HELLO STDIN\ndone\n"
    assert eng.run("run", "--rm", "busybox", "cat", stdin="ignored\n").stdout == ""
    eng.run("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
            "for i in 1 2 3; do echo tick $i; sleep 0.2; done")
    follow = eng.run("logs", "-f", "ticker", timeout=30).stdout
    assert follow.splitlines() == ["tick 1", "tick 2", "tick 3"]
    stamped = eng.run("logs", "-t", "--tail", "1", "ticker").stdout
    assert stamped.endswith(" tick 3\n") and stamped[:4].isdigit()
    eng.run("rm", "ticker")


def _pty_run(eng: Engine, args: list[str], keys: list[bytes], until: bytes,
             timeout: float = 30) -> tuple[int, bytes]:
    """Run dockyard in a pseudo-terminal, type ``keys`` (one step each once ``until`` or the
    previous output was seen), return its exit code and everything it printed."""
    import pty
    import select

    assert eng.config is not None
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(eng.env)
        os.execv(DOCKYARD[0], [*DOCKYARD, "--root", str(eng.root), "--config", str(eng.config),
                               *args])
    out = b""
    deadline = time.monotonic() + timeout
    pending = list(keys)
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if pending and until in out:
                os.write(fd, pending.pop(0))
                until = b"\x00never"   # later keys go out as soon as the previous ones did
                time.sleep(0.3)
            elif pending and until == b"\x00never":
                os.write(fd, pending.pop(0))
                time.sleep(0.3)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_interactive_terminal(eng: Engine) -> None:
    code, out = _pty_run(eng, ["run", "-it", "--rm", "busybox", "sh"],
                         [b"echo hi-$((1+2)); tty\r", b"exit 3\r"], until=b"#")
    assert code == 3, out
    assert b"hi-3" in out and b"/dev/pts/0" in out
    code, out = _pty_run(eng, ["run", "-it", "--name", "detachable", "busybox", "sh"],
                         [b"\x10\x11"], until=b"#")
    assert code == 0, out
    assert eng.run("ps", "--format", "{{.Names}}").stdout.strip() == "detachable"
    eng.run("rm", "-f", "detachable")


def test_stats_restart_port(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "busy", "--memory", "64m", "--pids-limit", "20", "busybox",
            "sh", "-c", "while :; do :; done")
    row = eng.run("stats", "--no-stream", "--format",
                  "{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}").stdout.split()
    assert row[0] == "busy" and float(row[1].rstrip("%")) > 20
    assert row[4] == "64MiB" and row[5] == "1"
    first = eng.run("inspect", "-f", "{{.State.Pid}}", "busy").stdout.strip()
    eng.run("restart", "-t", "1", "busy")
    assert eng.run("inspect", "-f", "{{.State.Running}}", "busy").stdout.strip() == "true"
    assert eng.run("inspect", "-f", "{{.State.Pid}}", "busy").stdout.strip() != first
    assert eng.run("port", "busy").stdout == ""
    p = eng.run("port", "busy", "80", check=False)
    assert p.returncode == 1 and "No public port '80/tcp'" in p.stderr
    eng.run("rm", "-f", "busy")


def test_images_used_by_containers(eng: Engine) -> None:
    eng.run("create", "--name", "user", "busybox", "true")
    refused = eng.run("rmi", "busybox", check=False)
    assert refused.returncode == 1
    assert 'unable to remove repository reference "busybox" (must force)' in refused.stderr
    image_id = eng.run("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    assert eng.run("rmi", "-f", "busybox").stdout.strip() == "Untagged: busybox:latest"
    assert "deleted:" not in eng.run("image", "prune", "-a", "-f").stdout
    assert eng.run("images", "-q").stdout.strip() == image_id[7:19]
    # the container still starts from its (now untagged) image
    assert eng.run("start", "-a", "user").returncode == 0
    eng.run("rm", "user")
    assert image_id in eng.run("image", "prune", "-a", "-f").stdout
    assert eng.run("images", "-q").stdout == ""


def test_healthchecks(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok && echo fine",
            "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "60")
    assert "(health: starting)" in eng.run("ps", "--format", "{{.Status}}").stdout

    def health() -> dict[str, object]:
        doc = json.loads(eng.run("inspect", "doc").stdout)[0]
        return doc["State"]["Health"]

    deadline = time.monotonic() + 30
    while health()["Status"] != "unhealthy":
        assert time.monotonic() < deadline, health()
        time.sleep(0.1)
    assert "(unhealthy)" in eng.run("ps", "--format", "{{.Status}}").stdout
    eng.run("exec", "doc", "touch", "/tmp/ok")
    while health()["Status"] != "healthy":
        assert time.monotonic() < deadline, health()
        time.sleep(0.1)
    last = health()["Log"][-1]  # type: ignore[index]
    assert last["ExitCode"] == 0 and "fine" in last["Output"]
    assert health()["FailingStreak"] == 0
    eng.run("rm", "-f", "doc")
    none = eng.run("run", "--rm", "--no-healthcheck", "busybox", "true")
    assert none.returncode == 0


def test_exec_with_a_terminal(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "host", "busybox", "sleep", "60")
    code, out = _pty_run(eng, ["exec", "-it", "host", "sh"],
                         [b"echo in-$((2+2)); tty\r", b"exit 4\r"], until=b"#")
    assert code == 4, out
    assert b"in-4" in out and b"/dev/pts/" in out
    eng.run("rm", "-f", "host")


def test_update_limits(eng: Engine) -> None:
    eng.run("run", "-d", "--name", "tune", "--memory", "64m", "busybox", "sleep", "60")
    assert eng.run("update", "--memory", "128m", "--pids-limit", "30", "tune").stdout.strip() \
        == "tune"
    row = eng.run("stats", "--no-stream", "--format", "{{.MemUsage}}").stdout.split()
    assert row[-1] == "128MiB"
    assert eng.run("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
                   "tune").stdout.strip() == f"{128 << 20} 30"
    bad = eng.run("update", "--memory", "12zz", "tune", check=False)
    assert bad.returncode == 125 and "invalid" in bad.stderr
    eng.run("rm", "-f", "tune")


def _crun_here(tmp_path: Path) -> str:
    """crun refuses a hybrid host whose v2 side has controllers (here: hugetlb; see
    shared/ANCHORS.md): on such a host it runs in a mount namespace without that side."""
    controllers = Path("/sys/fs/cgroup/unified/cgroup.controllers")
    if not controllers.exists() or not controllers.read_text().split():
        return "crun"
    wrapper = tmp_path / "crun-legacy"
    wrapper.write_text("#!/bin/sh\nexec unshare -m sh -c 'umount -l /sys/fs/cgroup/unified; "
                       "exec crun \"$@\"' crun \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.parametrize("runtime", ["runc", "crun", "/usr/sbin/runc"])
def test_other_oci_runtimes(eng: Engine, runtime: str, tmp_path: Path) -> None:
    """`--runtime` runs the container through another runc-compatible binary: output, exit
    code, a detached life with exec and stop, and nothing left after rm."""
    import shutil

    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    if runtime == "crun":
        runtime = _crun_here(tmp_path)
    p = eng.run("run", "--rm", "--runtime", runtime, "busybox", "sh", "-c",
                "echo via; cat /proc/1/cmdline | tr '\\0' ' '; exit 4", check=False)
    assert p.returncode == 4, p.stderr
    assert p.stdout.splitlines() == ["via", "sh -c echo via; cat /proc/1/cmdline | tr '\\0' ' '; "
                                     "exit 4 "]
    eng.run("run", "-d", "--name", "other", "--runtime", runtime, "busybox", "sleep", "60")
    assert eng.run("inspect", "-f", "{{.HostConfig.Runtime}}", "other").stdout.strip() \
        == runtime
    assert eng.run("exec", "other", "echo", "inside").stdout == "inside\n"
    eng.run("stop", "-t", "1", "other")
    assert eng.run("inspect", "-f", "{{.State.Status}}", "other").stdout.strip() == "exited"
    eng.run("rm", "other")
    bad = eng.run("run", "--rm", "--runtime", "no-such-runtime", "busybox", "true", check=False)
    assert bad.returncode == 125 and "unknown or invalid runtime name" in bad.stderr
    assert eng.run("ps", "-aq").stdout == ""


def test_a_dead_monitor_neither_kills_nor_silences_its_containers(eng: Engine) -> None:
    """SIGKILL the monitor: a container that keeps writing lives on (the keeper holds its
    pipes and logs what it writes), shows as running, and `rm -f` still kills and removes it
    all; a new monitor serves new containers."""
    import signal

    eng.run("run", "-d", "--name", "talker", "busybox", "sh", "-c",
            "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.05; done")
    run_root = Path(eng.env["DOCKYARD_RUN_ROOT"])
    monitor = int((run_root / "containers" / "monitor.pid").read_text())
    keeper = int((run_root / "containers" / "monitor.keeper.pid").read_text())
    init_pid = int(eng.run("inspect", "-f", "{{.State.Pid}}", "talker").stdout)
    assert monitor > 0 and keeper > 0 and init_pid > 0
    os.kill(monitor, signal.SIGKILL)
    _wait_gone(monitor)
    before = len(eng.run("logs", "talker").stdout.splitlines())
    time.sleep(0.5)
    assert len(eng.run("logs", "talker").stdout.splitlines()) > before + 3
    assert eng.run("inspect", "-f", "{{.State.Status}}", "talker").stdout.strip() == "running"
    with open(f"/proc/{init_pid}/stat") as f:
        assert f.read().rpartition(")")[2].split()[0] != "Z"
    eng.run("run", "-d", "--name", "next", "busybox", "sleep", "30")
    assert int((run_root / "containers" / "monitor.pid").read_text()) != monitor
    eng.run("rm", "-f", "talker", "next")
    _wait_gone(keeper)
    assert eng.run("ps", "-aq").stdout == ""
    assert not list((run_root / "runtime").iterdir())


def test_platform_of_a_local_image(eng: Engine) -> None:
    """`--platform` is checked against a local image: the host's runs; another one is not
    run from the wrong image (with --pull never, docker's error and 125; nothing created)."""
    assert eng.run("run", "--rm", "--platform", "linux/amd64", "--network", "none", "busybox",
                   "echo", "ok").stdout == "ok\n"
    bad = eng.run("run", "--rm", "--pull", "never", "--platform", "linux/s390x", "busybox",
                  "true", check=False)
    assert bad.returncode == 125
    assert bad.stderr.strip() == ("Error: image with reference busybox was found but does not "
                                  "match the specified platform: wanted linux/s390x, actual: "
                                  "linux/amd64")
    assert eng.run("ps", "-aq").stdout == ""

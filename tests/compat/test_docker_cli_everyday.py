"""The everyday docker CLI (/usr/local/bin/docker 28.x) against ``dockyard serve``: the commands
people type all day, checked for what a user sees — output columns and layouts, exit codes,
and terminals driven through a real pseudo-terminal (``run -it``, ``exec -it``, ``attach`` with
the detach keys, window resizes).

version, info, pull (from the test registry), images, run (--rm, -d, -it), ps, logs -f,
exec -it, attach, stop, kill, rm, inspect, port, top, tag, events (--since/--until,
filters), system df, system prune -f. Networks, volumes, cp, stats, save/load and push are
covered elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from testbed import images as tb_images
from testbed.apidaemon import DOCKER, Daemon, running_daemon
from testbed.ptysession import PtySession
from testbed.registry import Registry, push_oci_layout

pytestmark = [pytest.mark.integration, pytest.mark.compat,
              pytest.mark.skipif(not os.access(DOCKER, os.X_OK), reason="no docker CLI")]

ID12 = re.compile(r"^[0-9a-f]{12}$")
ID64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    """A daemon of its own, with a default bridge on a private subnet (for -p and port)."""
    n = os.getpid() % 200
    with running_daemon("dy-cli-", {
            "cgroup-parent": "", "bip": f"10.214.{n}.1/24", "ip-forward": False,
            "default-address-pools": [{"base": f"10.215.{n}.0/24", "size": 26}]}) as daemon:
        yield daemon


def cli_env(d: Daemon) -> dict[str, str]:
    return {**os.environ, "DOCKER_CONFIG": str(d.workdir / "cli"), "DOCKER_HOST": d.url}


def pty(d: Daemon, *args: str, rows: int = 24, cols: int = 80) -> PtySession:
    return PtySession([DOCKER, *args], cli_env(d), rows=rows, cols=cols)


def header(out: str) -> list[str]:
    """A table's column titles (separated by two or more spaces, as docker's tabwriter)."""
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def wait_for(check: object, timeout: float = 15) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def size_follows(t: PtySession, want: str) -> None:
    """After a window change: ask the shell for its terminal's size until it is ``want``."""
    for _ in range(20):
        t.send("stty size\r")
        t.expect("stty size")
        if want in t.expect("# "):
            return
        time.sleep(0.2)
    raise AssertionError(f"the terminal never became {want}: {t.text()!r}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def running(d: Daemon, name: str) -> bool:
    return d.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


# --- system ------------------------------------------------------------------------------------


def test_version(d: Daemon) -> None:
    out = d.docker("version").stdout
    client, _, server = out.partition("\nServer:")
    assert client.startswith("Client:") and server
    assert re.search(r"^ Engine:\n  Version: +\S+\n  API version: +1\.44 \(minimum version "
                     r"1\.24\)$", server, re.M), server
    assert re.search(r"^  OS/Arch: +linux/\w+$", server, re.M)
    assert re.search(r"^  Experimental: +false$", server, re.M)
    assert d.docker("version", "--format", "{{.Server.Os}}/{{.Server.APIVersion}}"
                    ).stdout.strip() == "linux/1.44"


def test_info(d: Daemon) -> None:
    out = d.docker("info").stdout
    assert "\nServer:\n" in out
    for pattern in (r"^ Containers: \d+$", r"^  Running: \d+$", r"^  Paused: \d+$",
                    r"^  Stopped: \d+$", r"^ Images: [1-9]\d*$", r"^ Server Version: \S+$",
                    r"^ Storage Driver: \S+$", r"^ Logging Driver: json-file$",
                    r"^ Cgroup Driver: cgroupfs$", r"^ Kernel Version: \S+$",
                    r"^ Operating System: .+$", r"^ OSType: linux$", r"^ Architecture: \S+$",
                    r"^ CPUs: \d+$", r"^ Total Memory: [\d.]+[KMGT]iB$",
                    r"^ Docker Root Dir: /\S+$", r"^ Live Restore Enabled: true$"):
        assert re.search(pattern, out, re.M), (pattern, out)
    doc = json.loads(d.docker("info", "--format", "{{json .}}").stdout)
    assert doc["OSType"] == "linux" and doc["NCPU"] >= 1 and doc["MemTotal"] > 0


# --- images ------------------------------------------------------------------------------------


def test_pull_images_tag(d: Daemon, registry: Registry) -> None:
    image = tb_images.busybox()
    push_oci_layout(registry, image.oci_layout, image.tag, "everyday/busybox", "v1")
    name = f"{registry.host}/everyday/busybox:v1"
    pulled = d.docker("pull", name)
    lines = pulled.stdout.splitlines()
    assert lines[0] == "v1: Pulling from everyday/busybox"
    assert any(re.fullmatch(r"[0-9a-f]{12}: Pull complete", x) for x in lines), lines
    assert re.fullmatch(r"Digest: sha256:[0-9a-f]{64}", lines[-3])
    assert lines[-2] == f"Status: Downloaded newer image for {name}"
    assert lines[-1] == name
    again = d.docker("pull", name).stdout.splitlines()
    assert again[-2] == f"Status: Image is up to date for {name}"
    missing = d.docker("pull", f"{registry.host}/everyday/nothing:here", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error response from daemon: ")   # an HTTP error
    assert "Pulling from" not in missing.stdout

    listing = d.docker("images").stdout
    assert header(listing) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    rows = [re.split(r"\s{2,}", x.strip()) for x in listing.splitlines()[1:]]
    mine = [r for r in rows if r[0] == f"{registry.host}/everyday/busybox"]
    assert len(mine) == 1 and mine[0][1] == "v1" and ID12.match(mine[0][2])
    assert re.fullmatch(r"[\d.]+[kMG]?B", mine[0][4])
    assert d.docker("images", "-q", name).stdout.strip() == mine[0][2]
    digests = d.docker("images", "--digests", name.rpartition(":")[0]).stdout   # by repository
    assert header(digests) == ["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    assert "sha256:" in digests.splitlines()[1]

    assert d.docker("tag", name, "everyday:retagged").stdout == ""
    assert d.docker("images", "--format", "{{.ID}}", "everyday:retagged").stdout.strip() == \
        mine[0][2]
    bad = d.docker("tag", "no-such-image:x", "everyday:nope", check=False)
    assert bad.returncode == 1 and "No such image" in bad.stderr
    assert d.docker("rmi", "everyday:retagged").stdout.strip() == "Untagged: everyday:retagged"
    d.docker("rmi", name)


# --- run ---------------------------------------------------------------------------------------


def test_run_rm_exit_codes(d: Daemon) -> None:
    ok = d.docker("run", "--rm", "--network", "none", "busybox", "sh", "-c",
                  "echo out; echo err >&2; exit 3", check=False)
    assert (ok.returncode, ok.stdout, ok.stderr) == (3, "out\n", "err\n")
    # docker's exit codes when the command cannot run: 127 not found, 126 not executable,
    # 125 the daemon's own failure
    for argv, code in ((["/no/such/thing"], 127), (["no-such-command"], 127),
                       (["/etc/passwd"], 126), (["/etc"], 126)):
        got = d.docker("run", "--rm", "--network", "none", "busybox", *argv, check=False)
        assert got.returncode == code, (argv, got.returncode, got.stderr)
        assert got.stderr.startswith("docker: Error response from daemon:")
    bad = d.docker("run", "--rm", "--network", "none", "--memory", "lots", "busybox", "true",
                   check=False)
    assert bad.returncode == 125
    # a create that fails for another reason than a missing image is no 404: no pull attempt
    nobody = d.docker("run", "--rm", "--network", "none", "-u", "no-such-user", "busybox",
                      "true", check=False)
    assert nobody.returncode == 125 and "no-such-user" in nobody.stderr
    assert "Unable to find image" not in nobody.stderr
    assert d.docker("ps", "-aq", "--filter", "ancestor=busybox", "--filter",
                    "status=exited").stdout.strip() == ""    # --rm: nothing left


def test_run_d_ps_and_logs_follow(d: Daemon) -> None:
    cid = d.docker("run", "-d", "--name", "ev-tick", "--network", "none", "busybox", "sh",
                   "-c", "trap 'exit 0' TERM; i=0; while [ $i -lt 30 ]; do echo line$i; "
                   "i=$((i+1)); sleep 0.1; done; exit 4").stdout.strip()
    assert ID64.match(cid)
    ps = d.docker("ps").stdout
    assert header(ps) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                          "NAMES"]
    row = next(x for x in ps.splitlines() if x.endswith("ev-tick"))
    assert row.startswith(cid[:12] + "   busybox   ")
    assert '   "sh -c trap \'exit 0\'…"   ' in row, row     # docker's 20 characters
    assert re.search(r"   Up (Less than a second|\d+ seconds?)   ", row), row
    assert d.docker("ps", "-q").stdout.split().count(cid[:12]) == 1
    assert d.docker("ps", "-q", "--no-trunc", "--filter", "name=ev-tick").stdout.strip() == cid

    follow = subprocess.run([DOCKER, "logs", "-f", "ev-tick"], capture_output=True, text=True,
                            timeout=60, env=cli_env(d), check=False)
    assert follow.returncode == 0
    assert follow.stdout.split() == [f"line{i}" for i in range(30)]   # ends with the container
    exited = d.docker("ps", "-a", "--filter", "name=ev-tick", "--format", "{{.Status}}").stdout
    assert re.fullmatch(r"Exited \(4\) (Less than a second|\d+ seconds?) ago\n", exited)
    assert d.docker("ps", "--filter", "name=ev-tick").stdout.count("\n") == 1  # the header
    tail = d.docker("logs", "--tail", "2", "-t", "ev-tick").stdout.splitlines()
    assert [x.split(" ", 1)[1] for x in tail] == ["line28", "line29"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", tail[0].split()[0])
    assert d.docker("rm", "ev-tick").stdout.strip() == "ev-tick"


def test_run_it_through_a_terminal(d: Daemon) -> None:
    with pty(d, "run", "-it", "--name", "ev-it", "--network", "none", "busybox", "sh",
             rows=31, cols=97) as t:
        t.expect("# ")
        t.send("stty size; tty; echo typed-$((6*7))\r")
        out = t.expect("typed-42")
        assert "31 97" in out and "/dev/pts/0" in out
        t.resize(40, 120)        # the window changes: the CLI follows with a resize
        size_follows(t, "40 120")
        t.send("exit 5\r")
        assert t.wait() == 5
    assert d.docker("inspect", "-f", "{{.State.ExitCode}} {{.Config.Tty}}",
                    "ev-it").stdout.split() == ["5", "true"]
    d.docker("rm", "ev-it")

    # ctrl-p ctrl-q: the CLI lets go, exit 0, the container runs on
    with pty(d, "run", "-it", "--name", "ev-it2", "--network", "none", "busybox", "sh") as t:
        t.expect("# ")
        t.send("\x10\x11")
        assert t.wait() == 0
    assert running(d, "ev-it2")
    d.docker("rm", "-f", "ev-it2")


def test_exec_it_through_a_terminal(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "ev-exec", "--network", "none", "busybox", "sleep", "300")
    try:
        with pty(d, "exec", "-it", "ev-exec", "sh", rows=33, cols=99) as t:
            t.expect("# ")
            t.send("stty size; tty; echo in-$((2+3))\r")
            out = t.expect("in-5")
            assert "33 99" in out and "/dev/pts/" in out
            t.resize(44, 111)
            size_follows(t, "44 111")
            t.send("exit 6\r")
            assert t.wait() == 6
        with pty(d, "exec", "-it", "-w", "/etc", "-e", "WHO=there", "ev-exec", "sh") as t:
            t.expect("# ")
            t.send("echo $PWD-$WHO\r")
            t.expect("/etc-there")
            t.send("\x04")      # ctrl-d: the shell's end of input
            assert t.wait() == 0
        assert running(d, "ev-exec")
        missing = d.docker("exec", "ev-exec", "/no/such", check=False)
        assert missing.returncode in (126, 127)
        stopped = d.docker("exec", "no-such-container", "true", check=False)
        assert stopped.returncode == 1 and "No such container" in stopped.stderr
    finally:
        d.docker("rm", "-f", "ev-exec")


def test_attach_and_detach_keys(d: Daemon) -> None:
    d.docker("run", "-dit", "--name", "ev-att", "--network", "none", "busybox", "sh")
    try:
        with pty(d, "attach", "ev-att") as t:
            t.send("echo att-$((1+1))\r")
            t.expect("att-2")
            t.send("\x10\x11")
            code = t.wait()
        assert code in (0, 1) and "read escape sequence" in t.text()
        assert running(d, "ev-att")
        with pty(d, "attach", "--detach-keys", "ctrl-x,x", "ev-att") as t:
            t.send("echo again-$((2+2))\r")
            t.expect("again-4")
            t.send("\x18x")
            t.wait()
        assert running(d, "ev-att")
        # the last attach: exit ends the session with the container's status
        with pty(d, "attach", "ev-att") as t:
            t.send("exit 9\r")
            assert t.wait() == 9
        assert not running(d, "ev-att")
    finally:
        d.docker("rm", "-f", "ev-att")

    # -i without a terminal: the container's stdin stays open for whoever attaches later
    d.docker("run", "-di", "--name", "ev-cat", "--network", "none", "busybox", "cat")
    try:
        time.sleep(0.3)
        assert running(d, "ev-cat")
        att = subprocess.Popen([DOCKER, "attach", "ev-cat"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=cli_env(d))
        try:
            assert att.stdin is not None and att.stdout is not None
            att.stdin.write(b"through attach\n")
            att.stdin.flush()
            assert att.stdout.readline() == b"through attach\n"
        finally:
            if att.pid > 0:
                att.kill()      # (a SIGTERM would be proxied to the container's init)
            att.wait()
        assert running(d, "ev-cat")
        assert d.docker("logs", "ev-cat").stdout == "through attach\n"
    finally:
        d.docker("rm", "-f", "ev-cat")

    # without a terminal: the output streams until the container ends, then its status
    d.docker("run", "-d", "--name", "ev-att2", "--network", "none", "busybox", "sh", "-c",
             "sleep 2; echo late; exit 2")
    got = d.docker("attach", "ev-att2", check=False)
    assert (got.returncode, got.stdout) == (2, "late\n")
    d.docker("rm", "ev-att2")


# --- lifecycle ---------------------------------------------------------------------------------


def test_stop_kill_rm(d: Daemon) -> None:
    d.docker("run", "-d", "--name", "ev-life", "--network", "none", "busybox", "sh", "-c",
             "trap 'echo got-usr1' USR1; trap 'exit 0' TERM; while true; do sleep 0.1; done")
    refused = d.docker("rm", "ev-life", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("Error response from daemon:")
    assert running(d, "ev-life")
    assert d.docker("stop", "ev-life").stdout == "ev-life\n"
    assert d.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}",
                    "ev-life").stdout.split() == ["exited", "0"]
    d.docker("start", "ev-life")
    assert d.docker("kill", "-s", "USR1", "ev-life").stdout == "ev-life\n"
    wait_for(lambda: "got-usr1" in d.docker("logs", "ev-life").stdout)
    assert running(d, "ev-life")
    assert d.docker("kill", "ev-life").stdout == "ev-life\n"
    assert d.docker("wait", "ev-life").stdout.strip() == "137"
    not_running = d.docker("kill", "ev-life", check=False)
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    assert d.docker("rm", "ev-life").stdout == "ev-life\n"
    for verb in ("stop", "kill", "rm", "inspect", "logs", "port", "top"):
        gone = d.docker(verb, "ev-life", check=False)
        assert gone.returncode == 1, verb
        assert "No such container: ev-life" in gone.stderr or \
            "No such object: ev-life" in gone.stderr, (verb, gone.stderr)
    # rm -f of a running one, several at once
    for name in ("ev-f1", "ev-f2"):
        d.docker("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    assert d.docker("rm", "-f", "ev-f1", "ev-f2").stdout.split() == ["ev-f1", "ev-f2"]


def test_inspect_port_top(d: Daemon) -> None:
    port = free_port()
    d.docker("run", "-d", "--name", "ev-web", "-p", f"127.0.0.1:{port}:80", "-p", "81/udp",
             "busybox", "httpd", "-f", "-p", "80")
    try:
        doc = json.loads(d.docker("inspect", "ev-web").stdout)
        assert isinstance(doc, list) and len(doc) == 1
        c = doc[0]
        for key in ("Id", "Created", "Path", "Args", "State", "Image", "Name", "HostConfig",
                    "Config", "NetworkSettings", "Mounts", "GraphDriver", "LogPath"):
            assert key in c, key
        assert c["Name"] == "/ev-web" and c["Path"] == "httpd"
        assert c["State"]["Running"] is True and c["State"]["Pid"] > 0
        assert d.docker("inspect", "-f", "{{.Config.Image}} {{.State.Status}}",
                        "ev-web").stdout == "busybox running\n"
        both = json.loads(d.docker("inspect", "ev-web", "busybox").stdout)
        assert [x["Id"][:7] for x in both][1] == "sha256:"      # a container, then an image

        ports = d.docker("port", "ev-web").stdout.splitlines()
        assert f"80/tcp -> 127.0.0.1:{port}" in ports
        assert any(re.fullmatch(r"81/udp -> 0\.0\.0\.0:\d+", x) for x in ports), ports
        assert d.docker("port", "ev-web", "80").stdout == f"127.0.0.1:{port}\n"
        assert d.docker("port", "ev-web", "80/tcp").stdout == f"127.0.0.1:{port}\n"
        unmapped = d.docker("port", "ev-web", "8080", check=False)
        assert unmapped.returncode == 1 and "No public port '8080' published for ev-web" in \
            unmapped.stderr
        listed = d.docker("ps", "--filter", "name=ev-web", "--format", "{{.Ports}}").stdout
        assert f"127.0.0.1:{port}->80/tcp" in listed and "->81/udp" in listed

        top = d.docker("top", "ev-web").stdout
        assert header(top) == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        assert "httpd -f -p 80" in top
        custom = d.docker("top", "ev-web", "-o", "pid,comm").stdout
        assert header(custom) == ["PID", "COMMAND"]
        assert custom.splitlines()[1].split()[1] == "httpd"
    finally:
        d.docker("rm", "-f", "ev-web")


# --- events, disk usage, prune -----------------------------------------------------------------


def test_events_since_until_and_filters(d: Daemon) -> None:
    since = str(int(time.time()) - 1)
    d.docker("run", "--name", "ev-events", "--network", "none", "busybox", "true")
    d.docker("tag", "busybox", "ev-events:tagged")
    d.docker("rmi", "ev-events:tagged")
    d.docker("rm", "ev-events")
    until = str(int(time.time()) + 1)
    window = ("--since", since, "--until", until)
    # (container=NAME alone would also match image events whose name starts so: docker's
    # filters match names by prefix)
    plain = d.docker("events", *window, "--filter", "container=ev-events", "--filter",
                     "type=container").stdout.splitlines()
    assert plain, "no events"
    for line in plain:      # docker's line: time, type, action, id, (attributes)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z container \S+ [0-9a-f]{64} "
                        r"\(.*name=ev-events.*\)$", line), line
    actions = [x.split()[2] for x in plain]
    for action in ("create", "start", "die", "destroy"):
        assert action in actions, actions
    assert actions.index("create") < actions.index("start") < actions.index("die") < \
        actions.index("destroy")
    only_die = d.docker("events", *window, "--filter", "container=ev-events", "--filter",
                        "event=die", "--format", "{{.Action}} {{.Actor.Attributes.exitCode}}"
                        ).stdout
    assert only_die == "die 0\n"
    images = d.docker("events", *window, "--filter", "type=image", "--format",
                      "{{.Type}} {{.Action}}").stdout.splitlines()
    assert "image tag" in images and "image untag" in images
    as_json = [json.loads(x) for x in d.docker("events", *window, "--filter",
                                               "container=ev-events", "--filter",
                                               "type=container", "--format",
                                               "{{json .}}").stdout.splitlines()]
    assert {x["Type"] for x in as_json} == {"container"}
    assert all(x["Actor"]["Attributes"]["name"] == "ev-events" for x in as_json)
    later = d.docker("events", "--since", until, "--until", str(int(until) + 1), "--filter",
                     "container=ev-events").stdout
    assert later == ""
    bad = d.docker("events", "--filter", "nonsense=1", "--until", until, check=False)
    assert bad.returncode != 0 and "nonsense" in bad.stderr


def test_system_df_and_prune(d: Daemon) -> None:
    d.docker("run", "--name", "ev-stale", "--network", "none", "busybox", "true")
    df = d.docker("system", "df").stdout
    assert header(df) == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    kinds = [re.split(r"\s{2,}", x.strip())[0] for x in df.splitlines()[1:]]
    assert kinds == ["Images", "Containers", "Local Volumes", "Build Cache"]
    for row in df.splitlines()[1:]:
        cols = re.split(r"\s{2,}", row.strip())
        assert cols[1].isdigit() and cols[2].isdigit(), row
    verbose = d.docker("system", "df", "-v").stdout
    for section in ("Images space usage:", "Containers space usage:",
                    "Local Volumes space usage:", "Build cache usage:"):
        assert section in verbose

    status, _ = d.request("POST", "/networks/prune")
    if status == 501:
        pytest.skip("POST /networks/prune is not served yet (system prune needs it)")
    pruned = d.docker("system", "prune", "-f")
    assert "Deleted Containers:" in pruned.stdout
    assert re.search(r"^Total reclaimed space: [\d.]+[kMG]?B$", pruned.stdout, re.M)
    assert d.docker("ps", "-aq", "--filter", "name=ev-stale").stdout == ""
    assert "busybox" in d.docker("images", "--format", "{{.Repository}}").stdout   # tagged

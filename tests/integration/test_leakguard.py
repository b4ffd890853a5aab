"""The leak guard itself: a suite that leaks must fail, naming what it left; a clean one passes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockyard.linux import libc

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _inner_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "testbed.leakguard",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_inner.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def _cgroup_base() -> Path:
    """A hierarchy that accepts processes: v1's pids controller, or the v2 root."""
    v1 = Path("/sys/fs/cgroup/pids")
    return v1 if v1.is_dir() else Path("/sys/fs/cgroup")


def test_clean_suite_passes(tmp_path: Path) -> None:
    res = _inner_pytest(
        tmp_path,
        """
        def test_nothing():
            assert True
    """,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "LEAK GUARD" not in res.stdout


def test_leaked_mount_fails_the_run(tmp_path: Path) -> None:
    target = tmp_path / "leaky"
    target.mkdir()
    try:
        res = _inner_pytest(
            tmp_path,
            f"""
            import subprocess

            def test_leaks_a_mount():
                subprocess.run(["mount", "-t", "tmpfs", "leaktest", "{target}"], check=True)
        """,
        )
        assert res.returncode != 0, res.stdout
        assert "1 passed" in res.stdout
        assert "LEAK GUARD" in res.stdout
        assert f"{target} (tmpfs leaktest)" in res.stdout
    finally:
        libc.umount2(str(target), libc.MNT_DETACH)


def test_leaked_process_fails_the_run(tmp_path: Path) -> None:
    res = _inner_pytest(
        tmp_path,
        """
        import subprocess

        def test_leaks_a_daemon():
            # double fork: the sleeper's parent exits at once, as a daemon's would
            subprocess.run(["sh", "-c", "sleep 300 & echo started"], check=True)
    """,
    )
    found = re.findall(r"pid (\d+): sleep 300", res.stdout)
    for pid in found:  # it was re-parented to us (we are a subreaper too): stop it by PID
        os.kill(int(pid), signal.SIGKILL)
        os.waitpid(int(pid), 0)
    assert res.returncode != 0, res.stdout
    assert found, res.stdout


def test_leaked_link_fails_the_run(tmp_path: Path) -> None:
    name = f"dyleak{os.getpid() % 10000}"
    try:
        res = _inner_pytest(
            tmp_path,
            f"""
            import subprocess

            def test_leaks_a_link():
                subprocess.run(["ip", "link", "add", "{name}", "type", "dummy"], check=True)
        """,
        )
        assert res.returncode != 0, res.stdout
        assert name in res.stdout
    finally:
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


def test_leaked_cgroup_fails_the_run(tmp_path: Path) -> None:
    path = _cgroup_base() / f"dockyard-leaktest-{os.getpid()}"
    try:
        res = _inner_pytest(tmp_path, f"""
            import os

            def test_leaks_a_cgroup():
                os.mkdir("{path}")
        """)
        assert res.returncode != 0, res.stdout
        assert str(path) in res.stdout
    finally:
        if path.exists():
            path.rmdir()


def test_cgroup_of_a_foreign_process_is_not_ours(tmp_path: Path) -> None:
    """A cgroup made meanwhile by something else for its own live process is not a leak."""
    path = _cgroup_base() / f"dockyard-foreign-{os.getpid()}"
    outsider = subprocess.Popen(["sleep", "60"])
    try:
        res = _inner_pytest(tmp_path, f"""
            import os
            from pathlib import Path

            def test_someone_else_makes_a_cgroup():
                os.mkdir("{path}")
                Path("{path}/cgroup.procs").write_text("{outsider.pid}")
        """)
        assert res.returncode == 0, res.stdout
    finally:
        outsider.kill()
        outsider.wait()
        if path.exists():
            path.rmdir()

"""docker's run-flag parsers: values and error messages as docker CLI 28 / moby v28 give them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from dockyard.engine import runopts as ro
from dockyard.errors import InvalidArgument


def test_memory_sizes_and_pflag_wording() -> None:
    assert ro.parse_memory("512m") == 512 * 1024 * 1024
    assert ro.parse_memory("1.5g") == 1610612736
    assert ro.parse_memory("100") == 100
    with pytest.raises(InvalidArgument) as e:
        ro.parse_memory("12zz")
    assert str(e.value) == 'invalid argument "12zz" for "-m, --memory" flag: invalid suffix: \'zz\''
    with pytest.raises(InvalidArgument, match=r'for "--shm-size" flag: invalid size'):
        ro.parse_shm_size("zz")


def test_memory_swap_minus_one_is_unlimited() -> None:
    assert ro.parse_memory_swap("-1") == -1
    assert ro.parse_memory_swap("1g") == 1 << 30


@pytest.mark.parametrize(("text", "nano"), [("1.5", 1_500_000_000), ("0.01", 10_000_000),
                                            ("3/2", 1_500_000_000), ("2", 2_000_000_000)])
def test_cpus(text: str, nano: int) -> None:
    assert ro.parse_cpus(text) == nano


def test_cpus_errors() -> None:
    with pytest.raises(InvalidArgument) as e:
        ro.parse_cpus("abc")
    assert str(e.value) == ('invalid argument "abc" for "--cpus" flag: '
                            "failed to parse abc as a rational number")
    with pytest.raises(InvalidArgument, match="value is too precise"):
        ro.parse_cpus("0.0000000001")


def test_ulimit() -> None:
    assert ro.parse_ulimit("nofile=1024:2048") == ro.Ulimit("nofile", 1024, 2048)
    assert ro.parse_ulimit("nproc=10") == ro.Ulimit("nproc", 10, 10)
    assert ro.parse_ulimit("core=-1") == ro.Ulimit("core", -1, -1)
    assert ro.parse_ulimit("nofile=1024:2048").rlimit_type == "RLIMIT_NOFILE"


@pytest.mark.parametrize(("text", "msg"), [
    ("nofile", "invalid ulimit argument: nofile"),
    ("bogus=1", "invalid ulimit type: bogus"),
    ("nofile=2:1", "ulimit soft limit must be less than or equal to hard limit: 2 > 1"),
    ("nofile=-1:5", "ulimit soft limit must be less than or equal to hard limit: soft: -1 "
                    "(unlimited), hard: 5"),
    ("nofile=1:2:3", "too many limit value arguments - 1:2:3, can only have up to two, "
                     "`soft[:hard]`"),
    ("nofile=x", 'strconv.ParseInt: parsing "x": invalid syntax'),
])
def test_ulimit_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ro.parse_ulimit(text)
    assert str(e.value) == f'invalid argument "{text}" for "--ulimit" flag: {msg}'


@pytest.mark.parametrize(("text", "want"), [
    ("/dev/fuse", ro.DeviceMapping("/dev/fuse", "/dev/fuse", "rwm")),
    ("/dev/fuse:/dev/f2", ro.DeviceMapping("/dev/fuse", "/dev/f2", "rwm")),
    ("/dev/fuse:r", ro.DeviceMapping("/dev/fuse", "/dev/fuse", "r")),
    ("/dev/fuse:/dev/fuse:rw", ro.DeviceMapping("/dev/fuse", "/dev/fuse", "rw")),
    ("/dev/sda:/dev/xvdc//", ro.DeviceMapping("/dev/sda", "/dev/xvdc", "rwm")),
])
def test_device(text: str, want: ro.DeviceMapping) -> None:
    assert ro.parse_device(text) == want


@pytest.mark.parametrize(("text", "msg"), [
    ("a:b:c:d", "bad format for path: a:b:c:d"),
    (":/x", "bad format for path: :/x"),
    ("/dev/a:/dev/b:rwx", "bad mode specified: rwx"),
    ("/dev/a:rel", "rel is not an absolute path"),
    ("rel", "rel is not an absolute path"),
])
def test_device_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ro.parse_device(text)
    assert str(e.value) == msg


def test_tmpfs() -> None:
    assert ro.parse_tmpfs("/run:rw,size=64m") == ("/run", "rw,size=64m")
    assert ro.parse_tmpfs("/run") == ("/run", "")


def test_env_takes_host_value_or_stays_bare() -> None:
    host = {"HOSTVAR": "hv"}
    assert ro.parse_env("K=V", host.get) == "K=V"
    assert ro.parse_env("K=", host.get) == "K="
    assert ro.parse_env("HOSTVAR", host.get) == "HOSTVAR=hv"
    assert ro.parse_env("MISSING", host.get) == "MISSING"
    with pytest.raises(InvalidArgument) as e:
        ro.parse_env("=x", host.get)
    assert str(e.value) == ('invalid argument "=x" for "-e, --env" flag: '
                            "invalid environment variable: =x")



def test_env_file_values(tmp_path: Path) -> None:
    f = tmp_path / "env"
    f.write_bytes(b"\xef\xbb\xbfA=1\n# comment\n\n   B=x y \nHOSTVAR\nMISSING\nC=a=b\r\n")
    assert ro.parse_env_file(str(f), {"HOSTVAR": "hv"}.get) == [
        "A=1", "B=x y ", "HOSTVAR=hv", "C=a=b"]


@pytest.mark.parametrize(("content", "msg"), [
    (b"=x\n", "no variable name on line '=x'"),
    (b"A B=1\n", "variable 'A B' contains whitespaces"),
])
def test_env_file_errors(tmp_path: Path, content: bytes, msg: str) -> None:
    f = tmp_path / "env"
    f.write_bytes(content)
    with pytest.raises(InvalidArgument) as e:
        ro.parse_env_file(str(f))
    assert str(e.value) == f"invalid env file ({f}): {msg}"


def test_env_file_missing(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no such file or directory"):
        ro.parse_env_file(str(tmp_path / "nope"))


def test_label() -> None:
    assert ro.parse_label("a=b=c") == ("a", "b=c")
    assert ro.parse_label("flag") == ("flag", "")
    with pytest.raises(InvalidArgument, match="invalid label '=x': empty name"):
        ro.parse_label("=x")
    with pytest.raises(InvalidArgument, match="label 'a b' contains whitespaces"):
        ro.parse_label("a b=1")


def test_user() -> None:
    assert ro.parse_user("1000") == ro.UserSpec("1000", "")
    assert ro.parse_user("app:staff") == ro.UserSpec("app", "staff")
    assert str(ro.parse_user("1:2")) == "1:2"


def test_security_opts(tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    profile.write_text('{\n  "defaultAction": "SCMP_ACT_ALLOW"\n}\n')
    s = ro.parse_security_opts(["no-new-privileges", f"seccomp={profile}", "apparmor=foo",
                                "label=disable"])
    assert s.no_new_privileges
    assert s.seccomp_profile == '{"defaultAction":"SCMP_ACT_ALLOW"}'
    assert s.apparmor_profile == "foo"
    assert s.label_opts == ("disable",)
    assert not ro.parse_security_opts(["no-new-privileges", "no-new-privileges=false"]
                                      ).no_new_privileges
    assert ro.parse_security_opts(["no-new-privileges:true"]).no_new_privileges
    assert ro.parse_security_opts(["seccomp=unconfined"]).seccomp_profile == "unconfined"


@pytest.mark.parametrize(("text", "msg"), [
    ("bogus", 'Invalid --security-opt: "bogus"'),
    ("seccomp=", 'Invalid --security-opt: "seccomp="'),
    ("foo=bar", 'invalid --security-opt 2: "foo=bar"'),
    ("no-new-privileges=maybe", 'invalid --security-opt 2: "no-new-privileges=maybe"'),
    ("seccomp=/nonexistent.json", "opening seccomp profile (/nonexistent.json) failed: "
                                  "open /nonexistent.json: no such file or directory"),
])
def test_security_opt_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ro.parse_security_opt(text)
    assert str(e.value) == msg


def test_restart() -> None:
    assert ro.parse_restart("") == ro.RestartPolicy("no", 0)
    assert ro.parse_restart("always") == ro.RestartPolicy("always", 0)
    assert ro.parse_restart("on-failure:3") == ro.RestartPolicy("on-failure", 3)
    assert ro.parse_restart("unless-stopped") == ro.RestartPolicy("unless-stopped", 0)


@pytest.mark.parametrize(("text", "msg"), [
    (":3", "invalid restart policy format: no policy provided before colon"),
    ("on-failure:x", "invalid restart policy format: maximum retry count must be an integer"),
    ("sometimes", "invalid restart policy: unknown policy 'sometimes'; use one of 'no', "
                  "'always', 'on-failure', or 'unless-stopped'"),
    ("always:2", "invalid restart policy: maximum retry count can only be used with "
                 "'on-failure'"),
    ("on-failure:-1", "invalid restart policy: maximum retry count cannot be negative"),
])
def test_restart_errors(text: str, msg: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        ro.parse_restart(text)
    assert str(e.value) == msg


@pytest.mark.parametrize(("text", "num"), [
    ("SIGTERM", signal.SIGTERM), ("term", signal.SIGTERM), ("KILL", signal.SIGKILL),
    ("9", 9), ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("sigusr1", signal.SIGUSR1)])
def test_stop_signal(text: str, num: int) -> None:
    assert ro.parse_stop_signal(text) == num


@pytest.mark.parametrize("text", ["0", "SIGBOGUS", ""])
def test_stop_signal_errors(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^Invalid signal: {text}$"):
        ro.parse_stop_signal(text)


def test_int_flag() -> None:
    assert ro.parse_int_flag("-1", "--pids-limit") == -1
    with pytest.raises(InvalidArgument) as e:
        ro.parse_int_flag("x", "--pids-limit")
    assert str(e.value) == ('invalid argument "x" for "--pids-limit" flag: '
                            'parsing "x": invalid syntax')

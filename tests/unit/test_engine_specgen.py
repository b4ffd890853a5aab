"""specgen: config.json for ``docker run`` as moby v28 builds it (daemon/oci_linux.go,
daemon/pkg/oci/defaults.go, daemon/commit.go merge, moby/profiles/seccomp). Every generated spec
is checked against the runtime-spec JSON schema and against our own parser."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from dockyard.engine import specgen as sg
from dockyard.engine.runopts import (
    DeviceMapping,
    SecurityOptions,
    Ulimit,
    parse_security_opts,
)
from dockyard.errors import InvalidArgument, NotFound
from dockyard.model.image import ContainerConfig
from dockyard.model.oci import parse_spec
from testbed.specs import runtime_schema_dir

CID = "0123456789ab" + "c" * 52
ALL_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
            "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
            "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
            "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
            "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")
BUSYBOX = ContainerConfig(env=(f"PATH={sg.DEFAULT_PATH_ENV}",), cmd=("sh",))
PASSWD = b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1::/usr/sbin:/bin/false\n" \
         b"app:x:1000:1000:App:/home/app:/bin/sh\n"
GROUP = b"root:x:0:\nwheel:x:10:root\nstaff:x:50:app,other\n# comment\napp:x:1000:\n"


def lookup(spec: str) -> sg.ExecUser:
    return sg.exec_user(spec, PASSWD, GROUP)


def fake_stat(path: str) -> sg.DeviceInfo | None:
    if path == "/dev/fuse":
        return sg.DeviceInfo("c", 10, 229, 0o666, 0, 0)
    if path == "/dev/sda":
        return sg.DeviceInfo("b", 8, 0, 0o660, 0, 6)
    if path == "/etc/passwd":
        return None
    raise FileNotFoundError(2, "No such file or directory", path)


def gen(opts: sg.RunOptions | None = None, image: ContainerConfig | None = BUSYBOX,
        **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "container_id": CID, "rootfs": "/var/lib/dockyard/c/rootfs",
        "cgroups_path": f"/docker/{CID}", "user_lookup": lookup, "all_caps": ALL_CAPS,
        "masked_paths": sg.DEFAULT_MASKED_PATHS, "has_sysctl": lambda _n: True,
        "stat_dev": fake_stat, "list_host_devices": lambda: [], "host_cpus": 4,
        "host_hostname": lambda: "thehost", "seccomp_arch": "amd64", "kernel": (6, 1)}
    args.update(kw)
    spec = sg.generate_spec(image, opts or sg.RunOptions(), **args)
    check_valid(spec)
    return spec


@cache
def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    referencing = pytest.importorskip("referencing")
    schema_dir = runtime_schema_dir()
    if not schema_dir.is_dir():
        return None
    resources = [(f.name, referencing.Resource.from_contents(
        json.loads(f.read_text()), default_specification=referencing.jsonschema.DRAFT4))
        for f in schema_dir.glob("*.json")]
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((schema_dir / "config-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def check_valid(spec: dict[str, Any]) -> None:
    parse_spec(json.loads(json.dumps(spec)))
    validator = _validator()
    if validator is not None:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(spec)]
        assert errors == []


# --- defaults -----------------------------------------------------------------------------


def test_default_spec_is_dockers() -> None:
    spec = gen()
    p = spec["process"]
    assert p["args"] == ["sh"]
    assert p["cwd"] == "/"
    assert p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0, 10]}
    assert p["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "HOSTNAME=0123456789ab"]
    caps = list(sg.DEFAULT_CAPABILITIES)
    assert p["capabilities"] == {"bounding": caps, "effective": caps, "permitted": caps}
    assert "rlimits" not in p and "noNewPrivileges" not in p
    assert p["oomScoreAdj"] == 0
    assert spec["hostname"] == "0123456789ab"
    assert spec["root"] == {"path": "/var/lib/dockyard/c/rootfs"}
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert spec["mounts"][-1]["options"] == ["nosuid", "noexec", "nodev", "mode=1777",
                                             "size=67108864"]
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == ["mount", "network", "uts", "pid", "ipc"]
    assert linux["cgroupsPath"] == f"/docker/{CID}"
    assert linux["maskedPaths"] == list(sg.DEFAULT_MASKED_PATHS)
    assert "/proc/kcore" in linux["maskedPaths"]
    assert linux["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                      "/proc/sysrq-trigger"]
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    allowed = [(d["major"], d["minor"]) for d in linux["resources"]["devices"][1:-1]]
    assert allowed == [(1, 5), (1, 3), (1, 9), (1, 8), (5, 0), (5, 1)]
    assert linux["resources"]["devices"][-1]["allow"] is False   # /dev/fuse denied
    assert linux["resources"]["memory"] == {"disableOOMKiller": False}
    assert linux["resources"]["blockIO"] == {}
    assert "cpu" not in linux["resources"] and "pids" not in linux["resources"]
    assert linux["sysctl"] == {"net.ipv4.ping_group_range": "0 2147483647",
                               "net.ipv4.ip_unprivileged_port_start": "0"}
    assert "seccomp" not in linux and "devices" not in linux


def test_cgroupns_private_adds_the_namespace() -> None:
    spec = gen(cgroupns="private")
    assert spec["linux"]["namespaces"][-1] == {"type": "cgroup"}


def test_network_host_and_none() -> None:
    host = gen(sg.RunOptions(network="host"))
    assert "network" not in [n["type"] for n in host["linux"]["namespaces"]]
    assert host["hostname"] == "thehost"
    assert "sysctl" not in host["linux"]
    none = gen(sg.RunOptions(network="none"))
    assert {"type": "network"} in none["linux"]["namespaces"]


def test_sysctls_only_where_the_kernel_has_them() -> None:
    spec = gen(has_sysctl=lambda n: n == "net.ipv4.ip_unprivileged_port_start")
    assert spec["linux"]["sysctl"] == {"net.ipv4.ip_unprivileged_port_start": "0"}


# --- command, env, workdir ----------------------------------------------------------------


IMG = ContainerConfig(entrypoint=("/entry", "-x"), cmd=("serve", "--port", "80"),
                      env=("PATH=/opt/bin:/bin", "LANG=C", "FOO=img"), working_dir="/srv",
                      user="app", stop_signal="SIGQUIT", labels={"a": "img", "b": "img"})


@pytest.mark.parametrize(("opts", "args"), [
    (sg.RunOptions(), ["/entry", "-x", "serve", "--port", "80"]),
    (sg.RunOptions(command=("other",)), ["/entry", "-x", "other"]),
    (sg.RunOptions(entrypoint=("/bin/sh",)), ["/bin/sh"]),          # image CMD dropped too
    (sg.RunOptions(entrypoint=("/bin/sh",), command=("-c", "id")), ["/bin/sh", "-c", "id"]),
    (sg.RunOptions(entrypoint=("",), command=("id",)), ["id"]),
])
def test_entrypoint_and_cmd(opts: sg.RunOptions, args: list[str]) -> None:
    assert gen(opts, IMG)["process"]["args"] == args


def test_cleared_entrypoint_without_command_fails() -> None:
    with pytest.raises(InvalidArgument, match=r"^no command specified$"):
        gen(sg.RunOptions(entrypoint=("",)), IMG)
    with pytest.raises(InvalidArgument, match=r"^no command specified$"):
        gen(sg.RunOptions(), ContainerConfig())


def test_env_order_and_overrides() -> None:
    spec = gen(sg.RunOptions(env=("FOO=1", "NEW=2", "LANG"), tty=True, hostname="web"), IMG)
    # user env first, then the image's keys the user did not set; PATH/HOSTNAME/TERM first.
    assert spec["process"]["env"] == ["PATH=/opt/bin:/bin", "HOSTNAME=web", "TERM=xterm",
                                      "FOO=1", "NEW=2"]
    assert spec["hostname"] == "web"
    assert spec["process"]["terminal"] is True


def test_env_bare_key_unsets_a_default() -> None:
    env = sg.daemon_environment(["HOSTNAME", "A=1"], "h", tty=False)
    assert env == [f"PATH={sg.DEFAULT_PATH_ENV}", "A=1"]


def test_merge_config_reports_what_inspect_shows() -> None:
    m = sg.merge_config(IMG, sg.RunOptions(labels={"b": "run"}), container_id=CID)
    assert m.path == "/entry" and m.args == ("-x", "serve", "--port", "80")
    assert m.labels == {"a": "img", "b": "run"}
    assert m.stop_signal == "SIGQUIT"
    assert m.user == "app"


def test_workdir() -> None:
    assert gen(sg.RunOptions(), IMG)["process"]["cwd"] == "/srv"
    assert gen(sg.RunOptions(workdir="/a/b/../c/"), IMG)["process"]["cwd"] == "/a/c"
    with pytest.raises(InvalidArgument, match="the working directory 'rel' is invalid, it needs "
                                              "to be an absolute path"):
        gen(sg.RunOptions(workdir="rel"))


def test_bad_stop_signal() -> None:
    with pytest.raises(InvalidArgument, match="Invalid signal: SIGNOPE"):
        gen(sg.RunOptions(stop_signal="SIGNOPE"))


# --- users --------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "want"), [
    ("", (0, 0, [0, 10])),
    ("root", (0, 0, [0, 10])),
    ("app", (1000, 1000, [1000, 50])),
    ("1000", (1000, 1000, [1000, 50])),
    ("4242", (4242, 0, [0])),                 # a uid without passwd entry: gid 0
    ("4242:77", (4242, 77, [77])),
    ("app:staff", (1000, 50, [50])),          # an explicit group: no supplementary groups
    ("daemon:0", (1, 0, [0])),
])
def test_users(spec: str, want: tuple[int, int, list[int]]) -> None:
    user = gen(sg.RunOptions(user=spec))["process"]["user"]
    assert (user["uid"], user["gid"], user["additionalGids"]) == want


def test_unknown_user_and_group() -> None:
    with pytest.raises(NotFound, match=r"^unable to find user xyz: no matching entries in "
                                       r"passwd file$"):
        gen(sg.RunOptions(user="xyz"))
    with pytest.raises(NotFound, match=r"^unable to find group nope: no matching entries in "
                                       r"group file$"):
        gen(sg.RunOptions(user="app:nope"))


def test_rootfs_user_lookup_stays_inside(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").symlink_to("../../outside")   # climbs out: clamped to rootfs
    (rootfs / "outside").write_bytes(b"inner:x:7:8::/:/bin/sh\n")
    (rootfs / "etc" / "group").symlink_to("/etc/../group-file")  # absolute: inside the rootfs
    (rootfs / "group-file").write_bytes(b"g:x:9:inner\n")
    lookup = sg.rootfs_user_lookup(str(rootfs))
    assert lookup("inner") == sg.ExecUser(7, 8, (9,), "/")
    with pytest.raises(NotFound):
        lookup("evil")


def test_rootfs_without_passwd_accepts_numbers_only(tmp_path: Path) -> None:
    lookup = sg.rootfs_user_lookup(str(tmp_path))
    assert lookup("") == sg.ExecUser(0, 0)
    assert lookup("5:6") == sg.ExecUser(5, 6)
    with pytest.raises(NotFound):
        lookup("app")


# --- capabilities, privileges -------------------------------------------------------------


def test_cap_add_drop() -> None:
    caps = gen(sg.RunOptions(cap_add=("net_admin", "CAP_SYS_TIME"), cap_drop=("MKNOD", "cap_kill"))
               )["process"]["capabilities"]["bounding"]
    assert "CAP_MKNOD" not in caps and "CAP_KILL" not in caps
    assert caps[-2:] == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert gen(sg.RunOptions(cap_drop=("ALL",), cap_add=("chown",))
               )["process"]["capabilities"]["bounding"] == ["CAP_CHOWN"]
    every = gen(sg.RunOptions(cap_add=("ALL",), cap_drop=("SYS_ADMIN",))
                )["process"]["capabilities"]["bounding"]
    assert len(every) == len(ALL_CAPS) - 1 and "CAP_SYS_ADMIN" not in every


def test_unknown_capability() -> None:
    with pytest.raises(InvalidArgument, match=r'^unknown capability: "CAP_BOGUS"$'):
        gen(sg.RunOptions(cap_add=("bogus",)))
    with pytest.raises(InvalidArgument, match="not supported by your kernel"):
        gen(sg.RunOptions(cap_add=("BPF",)), all_caps=ALL_CAPS[:38])


def test_privileged() -> None:
    spec = gen(sg.RunOptions(privileged=True, devices=(DeviceMapping("/dev/fuse", "/dev/f2"),)),
               list_host_devices=lambda: [{"path": "/dev/null", "type": "c", "major": 1,
                                           "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0}],
               seccomp_profile=PROFILE)
    assert spec["process"]["capabilities"]["bounding"] == list(ALL_CAPS)
    linux = spec["linux"]
    assert "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [d["path"] for d in linux["devices"]] == ["/dev/null", "/dev/f2"]
    assert "seccomp" not in linux
    mounts = {m["destination"]: m["options"] for m in spec["mounts"]}
    assert "ro" not in mounts["/sys"] and "ro" not in mounts["/sys/fs/cgroup"]


def test_no_new_privileges_and_apparmor() -> None:
    sec = parse_security_opts(["no-new-privileges", "apparmor=myprof"])
    spec = gen(sg.RunOptions(security=sec), apparmor=True)
    assert spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["apparmorProfile"] == "myprof"
    assert gen(apparmor=True)["process"]["apparmorProfile"] == "docker-default"
    assert gen(sg.RunOptions(privileged=True), apparmor=True
               )["process"]["apparmorProfile"] == "unconfined"


def test_writable_cgroups_option() -> None:
    spec = gen(sg.RunOptions(security=SecurityOptions(writable_cgroups=True)))
    cg = next(m for m in spec["mounts"] if m["type"] == "cgroup")
    assert cg["options"] == ["nosuid", "noexec", "nodev"]


# --- mounts -------------------------------------------------------------------------------


def test_tmpfs_read_only_shm_and_order() -> None:
    opts = sg.RunOptions(read_only=True, shm_size=1 << 20,
                         tmpfs=(("/run/a/b", "size=1m"), ("/run", "rw,size=64m,exec"),
                                ("/tmp", "")))
    spec = gen(opts)
    assert spec["root"] == {"path": "/var/lib/dockyard/c/rootfs", "readonly": True}
    mounts = spec["mounts"]
    assert [m["destination"] for m in mounts][7:] == ["/run", "/tmp", "/run/a/b"]
    by = {m["destination"]: m for m in mounts}
    assert by["/run"] == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                          "options": ["nosuid", "nodev", "rprivate", "rw", "size=64m", "exec"]}
    assert by["/tmp"]["options"] == ["noexec", "nosuid", "nodev", "rprivate"]
    assert by["/dev/shm"]["options"][-1] == "size=1048576"
    assert "ro" in by["/sys/fs/cgroup"]["options"] and "ro" not in by["/proc"]["options"]
    assert by["/sys"]["options"].count("ro") == 1


def test_tmpfs_replaces_a_default_mount() -> None:
    spec = gen(sg.RunOptions(tmpfs=(("/dev/shm", "size=8m"),)))
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [{"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                    "options": ["noexec", "nosuid", "nodev", "rprivate", "size=8m"]}]


@pytest.mark.parametrize(("tmpfs", "msg"), [
    (("run", ""), "mount path must be absolute"),
    (("/", ""), "destination can't be '/'"),
    (("/x", "bogus"), 'invalid tmpfs option \\["bogus"\\]'),
    (("/x", "bogus=1"), 'invalid tmpfs option \\["bogus" "1"\\]'),
])
def test_tmpfs_errors(tmpfs: tuple[str, str], msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        gen(sg.RunOptions(tmpfs=(tmpfs,)))


def test_binds_from_the_engine() -> None:
    spec = gen(sg.RunOptions(read_only=True),
               binds=(sg.BindMount("/var/lib/x/hosts", "/etc/hosts", writable=False),))
    assert spec["mounts"][-1] == {"destination": "/etc/hosts", "type": "bind",
                                  "source": "/var/lib/x/hosts",
                                  "options": ["rbind", "ro", "rprivate"]}


def test_init() -> None:
    spec = gen(sg.RunOptions(init=True, tmpfs=(("/tmp", ""),)), init_path="/usr/libexec/tini")
    assert spec["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert spec["mounts"][7] == {"destination": "/sbin/docker-init", "type": "bind",
                                 "source": "/usr/libexec/tini", "options": ["bind", "ro"]}
    assert spec["mounts"][8]["destination"] == "/tmp"


# --- resources, devices, rlimits ----------------------------------------------------------


def test_resources() -> None:
    opts = sg.RunOptions(memory=256 << 20, nano_cpus=1_500_000_000, cpu_shares=512,
                         cpuset_cpus="0-1", pids_limit=100)
    res = gen(opts)["linux"]["resources"]
    assert res["memory"] == {"limit": 256 << 20, "swap": 512 << 20, "disableOOMKiller": False}
    assert res["cpu"] == {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1"}
    assert res["pids"] == {"limit": 100}
    unlimited = gen(sg.RunOptions(memory=256 << 20, memory_swap=-1, pids_limit=-1)
                    )["linux"]["resources"]
    assert unlimited["memory"] == {"limit": 256 << 20, "disableOOMKiller": False}
    assert "pids" not in unlimited
    v2 = gen(sg.RunOptions(oom_kill_disable=None))["linux"]["resources"]
    assert "memory" not in v2


@pytest.mark.parametrize(("opts", "msg"), [
    (sg.RunOptions(memory=1 << 20), "Minimum memory limit allowed is 6MB"),
    (sg.RunOptions(memory=64 << 20, memory_swap=32 << 20), "Minimum memoryswap limit"),
    (sg.RunOptions(memory_swap=64 << 20), "You should always set the Memory limit"),
    (sg.RunOptions(nano_cpus=8_000_000_000), "range of CPUs is from 0.01 to 4.00, as there are "
                                             "only 4 CPUs available"),
    (sg.RunOptions(cpu_shares=-1), "invalid CPU shares"),
    (sg.RunOptions(cpuset_cpus="0-x"), "Invalid value 0-x for cpuset cpus"),
])
def test_resource_errors(opts: sg.RunOptions, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        gen(opts)


def test_devices() -> None:
    spec = gen(sg.RunOptions(devices=(DeviceMapping("/dev/fuse", "/dev/fuse", "rwm"),
                                      DeviceMapping("/dev/sda", "/dev/xvdc", "r"))))
    assert spec["linux"]["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/xvdc", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 6}]
    assert spec["linux"]["resources"]["devices"][-2:] == [
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]


def test_missing_device() -> None:
    with pytest.raises(InvalidArgument, match=r'^error gathering device information while adding '
                                              r'custom device "/dev/nope": no such file'):
        gen(sg.RunOptions(devices=(DeviceMapping("/dev/nope", "/dev/nope"),)))


def test_real_stat_device() -> None:
    info = sg.stat_device("/dev/null")
    assert info is not None and (info.type, info.major, info.minor) == ("c", 1, 3)
    assert sg.stat_device("/etc/hostname") is None


def test_rlimits_sorted_by_name_and_unlimited() -> None:
    spec = gen(sg.RunOptions(ulimits=(Ulimit("nproc", 10, 20), Ulimit("nofile", 1024, 2048),
                                      Ulimit("core", -1, -1))))
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_CORE", "hard": 2**64 - 1, "soft": 2**64 - 1},
        {"type": "RLIMIT_NOFILE", "hard": 2048, "soft": 1024},
        {"type": "RLIMIT_NPROC", "hard": 20, "soft": 10}]


# --- seccomp ------------------------------------------------------------------------------

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"name": "personality", "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
         "includes": {"minKernel": "4.8"}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["ppc64le"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}, "comment": "ENOSYS"},
    ],
}


def test_default_seccomp_profile_converted_for_the_host() -> None:
    seccomp = gen(seccomp_profile=PROFILE)["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO" and seccomp["defaultErrnoRet"] == 1
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [r["names"] for r in seccomp["syscalls"]]
    assert names == [["read", "write"], ["personality"], ["ptrace"], ["clone"], ["arch_prctl"],
                     ["clone3"]]
    assert seccomp["syscalls"][1]["args"] == [{"index": 0, "value": 8, "valueTwo": 0,
                                               "op": "SCMP_CMP_EQ"}]
    assert seccomp["syscalls"][-1]["errnoRet"] == 38


def test_seccomp_follows_the_final_capabilities_and_kernel() -> None:
    seccomp = gen(sg.RunOptions(cap_add=("SYS_ADMIN",)), seccomp_profile=PROFILE,
                  kernel=(4, 4), seccomp_arch="arm64")["linux"]["seccomp"]
    names = [r["names"][0] for r in seccomp["syscalls"]]
    assert names == ["read", "personality", "mount"]
    assert seccomp["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_seccomp_unconfined_and_custom() -> None:
    unconfined = SecurityOptions(seccomp_profile="unconfined")
    assert "seccomp" not in gen(sg.RunOptions(security=unconfined), seccomp_profile=PROFILE
                                )["linux"]
    custom = SecurityOptions(seccomp_profile=json.dumps(
        {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
         "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}))
    seccomp = gen(sg.RunOptions(security=custom), seccomp_profile=PROFILE)["linux"]["seccomp"]
    assert seccomp == {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                       "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}
    # a named profile applies even to a privileged container
    assert "seccomp" in gen(sg.RunOptions(privileged=True, security=custom))["linux"]


def test_seccomp_profile_errors() -> None:
    with pytest.raises(InvalidArgument, match="both 'architectures' and 'archMap'"):
        sg.seccomp_from_docker({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x"],
                                "archMap": [{"architecture": "y"}]}, [])
    with pytest.raises(InvalidArgument, match="Decoding seccomp profile failed"):
        gen(sg.RunOptions(security=SecurityOptions(seccomp_profile="{nope")))
    assert sg.seccomp_from_docker({}, []) is None


def test_bad_container_id() -> None:
    with pytest.raises(InvalidArgument, match="64 hex"):
        gen(container_id="abc")


def test_real_host_defaults_work() -> None:
    # the real seams, on this host: caps from the kernel, masked paths, sysctls
    spec = sg.generate_spec(BUSYBOX, sg.RunOptions(), container_id=CID, rootfs="/nonexistent",
                            cgroups_path="/x")
    check_valid(spec)
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert os.path.exists("/proc/sys/net/ipv4/ping_group_range") == (
        "net.ipv4.ping_group_range" in spec["linux"].get("sysctl", {}))

"""Parsers for the values of docker's ``run``/``create`` flags, with docker's error messages.

Each parser takes the flag's text and returns a plain value for :mod:`dockyard.engine.specgen`.
Where the docker CLI checks a value while parsing flags (pflag), the error reads like pflag's
(``invalid argument "12zz" for "-m, --memory" flag: invalid suffix: 'zz'``); where docker checks
it later (the CLI after flag parsing, or the daemon) the message is that later one, unwrapped.
References: docker/cli v28 ``cli/command/container/opts.go``, ``opts/``, go-units ``ulimit.go``;
moby v28 ``daemon/daemon_unix.go`` (``parseSecurityOpt``) and ``moby/sys/signal``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import signal as _signal
from collections.abc import Callable, Iterable

from dockyard.cli.units import ram_in_bytes
from dockyard.errors import InvalidArgument
from dockyard.values import replace, value

Lookup = Callable[[str], "str | None"]


def flag_error(value: str, flag: str, err: str) -> InvalidArgument:
    """pflag's wording for a value its ``Set`` refused; ``flag`` as pflag names it
    (``"-m, --memory"`` when the flag has a shorthand, ``"--shm-size"`` otherwise)."""
    return InvalidArgument(f"invalid argument {_go_quote(value)} for {_go_quote(flag)} flag: {err}")


def _go_quote(text: str) -> str:
    # Go's %q for the printable ASCII that flag values are made of.
    return json.dumps(text, ensure_ascii=False)


# --- sizes and numbers --------------------------------------------------------------------


def _bytes_flag(value: str, flag: str) -> int:
    try:
        return ram_in_bytes(value)
    except InvalidArgument as exc:
        raise flag_error(value, flag, exc.message) from None


def parse_memory(value: str) -> int:
    """``-m, --memory``: go-units RAMInBytes ("512m", "1g", "1.5g")."""
    return _bytes_flag(value, "-m, --memory")


def parse_memory_swap(value: str) -> int:
    """``--memory-swap``: like ``--memory``, and "-1" means unlimited swap."""
    if value == "-1":
        return -1
    return _bytes_flag(value, "--memory-swap")


def parse_shm_size(value: str) -> int:
    """``--shm-size``: bytes (binary units)."""
    return _bytes_flag(value, "--shm-size")


_RAT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?\d+/\d+")


def parse_cpus(value: str) -> int:
    """``--cpus``: a rational number of CPUs ("1.5", "3/2") -> nano CPUs, as opts.ParseCPUs."""
    if not _RAT.fullmatch(value) or value.endswith("/0"):
        raise flag_error(value, "--cpus", f"failed to parse {value} as a rational number")
    from fractions import Fraction  # only for --cpus (2.5 ms of imports)

    nano = Fraction(value) * 1_000_000_000
    if nano.denominator != 1:
        raise flag_error(value, "--cpus", "value is too precise")
    return int(nano)


def _go_int(text: str, bits: int = 64) -> int:
    """strconv.ParseInt(text, 10, bits) with its error messages."""
    if not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidArgument(f'strconv.ParseInt: parsing {_go_quote(text)}: invalid syntax')
    n = int(text)
    if not -(1 << (bits - 1)) <= n < (1 << (bits - 1)):
        raise InvalidArgument(f'strconv.ParseInt: parsing {_go_quote(text)}: value out of range')
    return n


def parse_int_flag(value: str, flag: str) -> int:
    """An int64 flag such as ``--pids-limit`` or ``-c, --cpu-shares`` (pflag's wording)."""
    try:
        return _go_int(value)
    except InvalidArgument as exc:
        raise flag_error(value, flag, exc.message.replace("strconv.ParseInt: ", "")) from None


# --- ulimits ------------------------------------------------------------------------------

ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
                "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")


@value
class Ulimit:
    name: str          # "nofile"
    soft: int          # -1 is unlimited
    hard: int

    @property
    def rlimit_type(self) -> str:
        return "RLIMIT_" + self.name.upper()


def parse_ulimit(value: str) -> Ulimit:
    """``--ulimit name=soft[:hard]`` (go-units ParseUlimit)."""
    try:
        return _parse_ulimit(value)
    except InvalidArgument as exc:
        raise flag_error(value, "--ulimit", exc.message) from None


def _parse_ulimit(value: str) -> Ulimit:
    name, sep, limits = value.partition("=")
    if not sep:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    parts = limits.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"too many limit value arguments - {limits}, can only have up "
                              "to two, `soft[:hard]`")
    hard = _go_int(parts[1]) if len(parts) == 2 else None
    soft = _go_int(parts[0])
    if hard is None:
        hard = soft
    if hard != -1:
        if soft == -1:
            raise InvalidArgument("ulimit soft limit must be less than or equal to hard limit: "
                                  f"soft: -1 (unlimited), hard: {hard}")
        if soft > hard:
            raise InvalidArgument("ulimit soft limit must be less than or equal to hard limit: "
                                  f"{soft} > {hard}")
    return Ulimit(name, soft, hard)


# --- devices and tmpfs --------------------------------------------------------------------


@value
class DeviceMapping:
    path_on_host: str
    path_in_container: str
    cgroup_permissions: str = "rwm"


def _valid_device_mode(mode: str) -> bool:
    return bool(mode) and len(set(mode)) == len(mode) and set(mode) <= set("rwm")


def parse_device(value: str) -> DeviceMapping:
    """``--device host[:container][:rwm]`` (the CLI's validateLinuxPath, then parseLinuxDevice)."""
    if value.count(":") > 2:
        raise InvalidArgument(f"bad format for path: {value}")
    split = value.split(":", 2)
    if split[0] == "":
        raise InvalidArgument(f"bad format for path: {value}")
    if len(split) == 1:
        container_path = split[0]
        value = posixpath.normpath(container_path)
    elif len(split) == 2:
        if _valid_device_mode(split[1]):
            container_path = split[0]
            value = f"{posixpath.normpath(container_path)}:{split[1]}"
        else:
            container_path = split[1]
            value = f"{split[0]}:{posixpath.normpath(container_path)}"
    else:
        container_path = split[1]
        if not _valid_device_mode(split[2]):
            raise InvalidArgument(f"bad mode specified: {split[2]}")
    if not container_path.startswith("/"):
        raise InvalidArgument(f"{container_path} is not an absolute path")
    arr = value.split(":")
    src, dst, perms = arr[0], "", "rwm"
    if len(arr) == 3:
        perms = arr[2]
    if len(arr) >= 2:
        if _valid_device_mode(arr[1]):
            perms = arr[1]
        else:
            dst = arr[1]
    return DeviceMapping(src, dst or src, perms)


def parse_tmpfs(value: str) -> tuple[str, str]:
    """``--tmpfs /run:rw,size=64m`` -> (destination, options); the daemon checks both."""
    dest, _, data = value.partition(":")
    return dest, data


# --- environment and labels ---------------------------------------------------------------


def _host_env(key: str) -> str | None:
    return os.environ.get(key)


def parse_env(value: str, lookup: Lookup = _host_env) -> str:
    """``-e K=V``; ``-e K`` takes K's value from the caller's environment, and stays a bare
    ``K`` (which unsets an image's K) when the caller has none (opts.ValidateEnv)."""
    key, sep, _ = value.partition("=")
    if key == "":
        raise flag_error(value, "-e, --env", f"invalid environment variable: {value}")
    if sep:
        return value
    host = lookup(key)
    return value if host is None else f"{key}={host}"


def parse_env_file(path: str, lookup: Lookup = _host_env) -> list[str]:
    """``--env-file``: KEY=VALUE lines, ``#`` comments, a bare KEY taken from the caller's
    environment (and dropped when unset); values are kept verbatim (docker/cli kvfile)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InvalidArgument(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        return _parse_kv_lines(data, lookup)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid env file ({path}): {exc.message}") from None


def _parse_kv_lines(data: bytes, lookup: Lookup) -> list[str]:
    out: list[str] = []
    for number, chunk in enumerate(data.split(b"\n"), start=1):
        raw = chunk.removesuffix(b"\r")  # bufio.ScanLines drops a trailing \r
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"invalid utf8 bytes at line {number}: "
                                  f"[{' '.join(str(b) for b in raw)}]") from None
        if number == 1:
            text = text.removeprefix("\ufeff")
        line = text.lstrip()
        if not line or line[0] == "#":
            continue
        key, sep, _ = line.partition("=")
        if not key:
            raise InvalidArgument(f"no variable name on line '{line}'")
        if " " in key or "\t" in key:
            raise InvalidArgument(f"variable '{key}' contains whitespaces")
        if sep:
            out.append(line)
            continue
        host = lookup(line)
        if host is not None:
            out.append(f"{key}={host}")
    return out


def parse_label(value: str) -> tuple[str, str]:
    """``-l k=v`` or ``-l k`` (an empty value), as opts.ValidateLabel."""
    key, _, val = value.partition("=")
    stripped = key.lstrip(" \t")
    if stripped == "":
        raise flag_error(value, "-l, --label", f"invalid label '{value}': empty name")
    if " " in stripped or "\t" in stripped:
        raise flag_error(value, "-l, --label", f"label '{stripped}' contains whitespaces")
    return key, val


# --- user ---------------------------------------------------------------------------------


@value
class UserSpec:
    """``-u user[:group]``; each part a name or a number (resolved against the rootfs)."""

    user: str = ""
    group: str = ""

    def __str__(self) -> str:
        return f"{self.user}:{self.group}" if self.group else self.user


def parse_user(value: str) -> UserSpec:
    # moby/sys/user reads "a:b:c" as user a, group b (the rest is ignored).
    parts = value.split(":")
    return UserSpec(parts[0], parts[1] if len(parts) > 1 else "")


# --- security options ---------------------------------------------------------------------

SECCOMP_UNCONFINED = "unconfined"
SECCOMP_BUILTIN = "builtin"


@value
class SecurityOptions:
    """What ``--security-opt`` asked for. ``seccomp_profile`` is "" (the default profile),
    "unconfined", "builtin", or the JSON text of a profile file (the CLI sends the file's
    content, not its path)."""

    no_new_privileges: bool = False
    seccomp_profile: str = ""
    apparmor_profile: str = ""
    label_opts: tuple[str, ...] = ()
    writable_cgroups: bool | None = None


def _parse_bool(text: str) -> bool | None:
    # strconv.ParseBool's spellings.
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_security_opt(value: str, *, read_file: Callable[[str], bytes] | None = None,
                       into: SecurityOptions | None = None) -> SecurityOptions:
    """One ``--security-opt`` applied on top of ``into``.

    The CLI's check (``Invalid --security-opt: "x"``; a seccomp file read and compacted),
    then the daemon's (``invalid --security-opt 2: "x"`` for an unknown key or a bad bool).
    """
    cur = into or SecurityOptions()
    key, sep, val = value.partition("=")
    if not sep and key != "no-new-privileges":
        key, sep, val = value.partition(":")
    if (not sep or val == "") and key != "no-new-privileges":
        raise InvalidArgument(f"Invalid --security-opt: {_go_quote(value)}")
    if key == "seccomp" and val not in (SECCOMP_UNCONFINED, SECCOMP_BUILTIN):
        reader = read_file or _read_bytes
        try:
            raw = reader(val)
        except OSError as exc:
            raise InvalidArgument(f"opening seccomp profile ({val}) failed: open {val}: "
                                  f"{(exc.strerror or str(exc)).lower()}") from None
        try:
            val = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
        except ValueError as exc:
            raise InvalidArgument(f"compacting json for seccomp profile ({val}) failed: "
                                  f"{exc}") from None
    if value == "no-new-privileges":
        return _replace(cur, no_new_privileges=True)
    if value == "writable-cgroups":
        return _replace(cur, writable_cgroups=True)
    if value == "disable":
        return _replace(cur, label_opts=(*cur.label_opts, "disable"))
    if key == "label":
        return _replace(cur, label_opts=(*cur.label_opts, val))
    if key == "apparmor":
        return _replace(cur, apparmor_profile=val)
    if key == "seccomp":
        return _replace(cur, seccomp_profile=val)
    if key in ("no-new-privileges", "writable-cgroups"):
        flag = _parse_bool(val)
        if flag is None:
            raise InvalidArgument(f"invalid --security-opt 2: {_go_quote(value)}")
        if key == "no-new-privileges":
            return _replace(cur, no_new_privileges=flag)
        return _replace(cur, writable_cgroups=flag)
    raise InvalidArgument(f"invalid --security-opt 2: {_go_quote(value)}")


def parse_security_opts(values: Iterable[str], *,
                        read_file: Callable[[str], bytes] | None = None) -> SecurityOptions:
    out = SecurityOptions()
    for v in values:
        out = parse_security_opt(v, read_file=read_file, into=out)
    return out


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _replace(opts: SecurityOptions, **changes: object) -> SecurityOptions:
    return replace(opts, **changes)


# --- restart policy and signals -----------------------------------------------------------

RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")


@value
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0


def parse_restart(value: str) -> RestartPolicy:
    """``--restart no|on-failure[:N]|always|unless-stopped`` (the CLI's ParseRestartPolicy,
    then the daemon's ValidateRestartPolicy)."""
    if value == "":
        return RestartPolicy()
    name, sep, count = value.partition(":")
    if sep and name == "":
        raise InvalidArgument("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count != "":
        if not re.fullmatch(r"[+-]?\d+", count):
            raise InvalidArgument("invalid restart policy format: maximum retry count must be "
                                  "an integer")
        retries = int(count)
    if name not in RESTART_POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    if retries and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")
    if retries < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    return RestartPolicy(name, retries)


def _signal_map() -> dict[str, int]:
    out = {s.name.removeprefix("SIG"): int(s) for s in _signal.Signals
           if s.name.startswith("SIG") and not s.name.startswith("SIG_")}
    lo, hi = int(_signal.SIGRTMIN), int(_signal.SIGRTMAX)
    for i in range(1, hi - lo):
        out[f"RTMIN+{i}"] = lo + i
        out[f"RTMAX-{i}"] = hi - i
    out["RTMIN"], out["RTMAX"] = lo, hi
    return out


def parse_stop_signal(value: str) -> int:
    """``--stop-signal``: "SIGTERM", "term", "15" or "RTMIN+3" (moby/sys/signal ParseSignal)."""
    if re.fullmatch(r"[+-]?\d+", value):
        n = int(value)
        if not 0 < n <= 64:     # SIGRTMAX: kill(2) would say EINVAL
            raise InvalidArgument(f"Invalid signal: {value}")
        return n
    number = _signal_map().get(value.upper().removeprefix("SIG"))
    if number is None:
        raise InvalidArgument(f"Invalid signal: {value}")
    return number


__all__ = [
    "DeviceMapping", "RestartPolicy", "SecurityOptions", "Ulimit", "UserSpec",
    "flag_error", "parse_cpus", "parse_device", "parse_env", "parse_env_file", "parse_int_flag",
    "parse_label", "parse_memory", "parse_memory_swap", "parse_restart", "parse_security_opt",
    "parse_security_opts", "parse_shm_size", "parse_stop_signal", "parse_tmpfs", "parse_ulimit",
    "parse_user",
]

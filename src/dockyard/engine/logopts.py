"""docker's ``--log-driver`` and ``--log-opt``: the drivers there are, each driver's options
checked with docker's messages, and the limits its files get.

References: moby v28 ``daemon/logger/factory.go`` (``ValidateLogOpts``),
``daemon/logger/jsonfilelog/jsonfilelog.go`` and ``daemon/logger/local/{local,config}.go``.
Docker checks some values only when the container starts; here all are checked at create.
"""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.cli.units import from_human_size
from dockyard.errors import InvalidArgument

DRIVERS = ("json-file", "local", "none")
DEFAULT_DRIVER = "json-file"
_KEYS = ("max-size", "max-file", "compress")
# max-size "-1": no rotation (dockyard's json-file rotates at 10 MiB unless told otherwise)
UNBOUNDED = "-1"


def check_log_config(driver: str, opts: Mapping[str, str]) -> dict[str, str]:
    """The options of ``driver`` as HostConfig.LogConfig.Config keeps them (max-size in
    bytes). Raises InvalidArgument with docker's message for a driver or option it refuses."""
    if driver not in DRIVERS:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    if driver == "none":
        return dict(opts)   # as docker: "none" takes any option and uses none
    out = dict(opts)
    for key in opts:
        if key not in _KEYS:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver"
                                  if driver == "json-file"
                                  else f"unknown log opt '{key}' for log driver {driver}")
    local = driver == "local"
    # json-file's compress is checked against dockyard's defaults (3 files of 10 MiB)
    size = opts.get("max-size")
    if size is not None and size != UNBOUNDED:
        try:
            # docker reads log sizes with decimal units: 10m is 10,000,000 bytes
            n = from_human_size(size)
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid value for max-size: {size}: {e.message}" if local
                                  else e.message) from None
        if n <= 0:
            raise InvalidArgument("max-size must be a positive number")
        out["max-size"] = str(n)
    count = opts.get("max-file")
    if count is not None:
        if not _is_go_int(count):
            err = f'strconv.Atoi: parsing "{count}": invalid syntax'
            raise InvalidArgument(f"invalid value for max-file: {count}: {err}" if local else err)
        if local and int(count) < 0:
            raise InvalidArgument("max-file must not be negative")
        if not local and int(count) < 1:
            raise InvalidArgument("max-file cannot be less than 1")
    compress = opts.get("compress")
    if compress is not None and compress not in _GO_BOOLS:
        err = f'strconv.ParseBool: parsing "{compress}": invalid syntax'
        raise InvalidArgument(f"invalid boolean value for compress: {err}" if local else err)
    compressed = _GO_BOOLS.get(compress or "", False)
    if local and compress is None:
        compressed = True   # the local driver's default
    files = int(count) if count is not None else None
    if local and compressed and files is not None and files <= 1:
        raise InvalidArgument("compression cannot be enabled when max file count is 1")
    if not local and compressed and (files == 1 or size == UNBOUNDED):
        raise InvalidArgument("compress cannot be true when max-file is less than 2 or "
                              "max-size is not set")
    return out


def file_limits(driver: str, opts: Mapping[str, str]) -> tuple[int | None, int]:
    """(max-size in bytes or None for no rotation, max-file) of a driver's log files, with the
    driver's defaults: docker's for local (20 MiB, 5 files), dockyard's for json-file (10 MiB,
    3 files: docker's unbounded default is a classic complaint, moby#27957)."""
    from dockyard.monitor import locallog, logfile

    local = driver == "local"
    size = opts.get("max-size") or ""
    max_size: int | None
    if size == UNBOUNDED:
        max_size = None
    elif size:
        max_size = int(size)
    else:
        max_size = locallog.DEFAULT_MAX_SIZE if local else logfile.DEFAULT_MAX_SIZE
    count = opts.get("max-file") or ""
    max_file = int(count) if count else (
        locallog.DEFAULT_MAX_FILE if local else logfile.DEFAULT_MAX_FILE)
    return max_size, max(max_file, 1)   # local's max-file 0 keeps one file, as docker's


# strconv.ParseBool
_GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


def _is_go_int(text: str) -> bool:
    digits = text[1:] if text[:1] in ("+", "-") else text
    return digits.isascii() and digits.isdigit()

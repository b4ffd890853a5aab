"""docker's human units (github.com/docker/go-units v0.5.0, the version docker CLI 28 vendors).

- :func:`human_size_with_precision` / :func:`human_size`: decimal sizes for SIZE columns
  (``docker images`` uses precision 3: "4.26MB", "1.2GB", "512B", "0B").
- :func:`bytes_size`: binary sizes for memory ("1.5MiB", "2GiB").
- :func:`human_duration` / :func:`time_ago`: the CREATED and STATUS columns ("2 hours ago").
- :func:`ram_in_bytes` (alias :func:`parse_bytes`) and :func:`from_human_size`: the parsers behind
  ``--memory``, ``--shm-size`` and friends, with go-units' error messages.
"""

from __future__ import annotations

import math
import re
import time

from dockyard.durations import human_duration
from dockyard.errors import InvalidArgument

__all__ = ["human_duration"]  # re-exported: the CLI's units in one place

KB = 1000
MB = 1000 * KB
GB = 1000 * MB
TB = 1000 * GB
PB = 1000 * TB

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB
PiB = 1024 * TiB

_DECIMAL_MAP = {"k": KB, "m": MB, "g": GB, "t": TB, "p": PB}
_BINARY_MAP = {"k": KiB, "m": MiB, "g": GiB, "t": TiB, "p": PiB}
_DECIMAL_ABBRS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_ABBRS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _size_and_unit(size: float, base: float, abbrs: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(abbrs) - 1:
        size /= base
        i += 1
    return size, abbrs[i]


def _go_g(value: float, precision: int) -> str:
    """Go's ``%.<precision>g``; Python's ``%g`` agrees with it once a precision is given."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return "%.*g" % (precision, value)  # noqa: UP031 - %g with a star precision is the point


def human_size_with_precision(size: float, precision: int) -> str:
    """go-units ``HumanSizeWithPrecision``: decimal units, ``precision`` significant digits."""
    value, unit = _size_and_unit(float(size), 1000.0, _DECIMAL_ABBRS)
    return _go_g(value, precision) + unit


def human_size(size: float) -> str:
    """go-units ``HumanSize`` (4 significant digits, decimal units)."""
    return human_size_with_precision(size, 4)


def bytes_size(size: float) -> str:
    """go-units ``BytesSize``: binary units with 4 significant digits ("1.5MiB")."""
    value, unit = _size_and_unit(float(size), 1024.0, _BINARY_ABBRS)
    return _go_g(value, 4) + unit


def time_ago(timestamp: float, now: float | None = None) -> str:
    """docker's CreatedSince: ``HumanDuration(now - created) + " ago"`` (unix seconds)."""
    if now is None:
        now = time.time()
    return human_duration(now - timestamp) + " ago"


# strconv.ParseFloat's decimal syntax (the hex and inf/nan forms cannot pass go-units' digit scan
# in any useful way).
_GO_FLOAT = re.compile(r"[+-]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?")


def _parse_size(size_str: str, umap: dict[str, int]) -> int:
    # go-units v0.5.0 parseSize: the number ends at the last digit, dot or space; one space
    # between number and suffix is dropped.
    sep = max(size_str.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise InvalidArgument(f"invalid size: '{size_str}'")
    if size_str[sep] != " ":
        num, sfx = size_str[: sep + 1], size_str[sep + 1 :]
    else:
        num, sfx = size_str[:sep], size_str[sep + 1 :]
    if not _GO_FLOAT.fullmatch(num) or "__" in num or num.endswith("_"):
        raise InvalidArgument(f'strconv.ParseFloat: parsing "{num}": invalid syntax')
    size = float(num.replace("_", ""))
    if size < 0:
        raise InvalidArgument(f"invalid size: '{size_str}'")
    if not sfx:
        return int(size)
    if len(sfx) > 3:
        raise InvalidArgument(f"invalid suffix: '{sfx}'")
    sfx = sfx.lower()
    if sfx[0] == "b":
        if len(sfx) > 1:
            raise InvalidArgument(f"invalid suffix: '{sfx}'")
        return int(size)
    mul = umap.get(sfx[0])
    if mul is None or (len(sfx) == 2 and sfx[1] != "b") or (len(sfx) == 3 and sfx[1:] != "ib"):
        raise InvalidArgument(f"invalid suffix: '{sfx}'")
    return int(size * mul)


def ram_in_bytes(size: str) -> int:
    """go-units ``RAMInBytes``: binary multipliers (k=1024), case-insensitive, optional b/ib.

    "512m" -> 536870912, "1.5g" -> 1610612736, "12zz" -> InvalidArgument("invalid suffix: 'zz'"),
    "zz" -> InvalidArgument("invalid size: 'zz'"). (go-units before v0.5.0 said "invalid size"
    for both; docker 28 vendors v0.5.0.)
    """
    return _parse_size(size, _BINARY_MAP)


parse_bytes = ram_in_bytes


def from_human_size(size: str) -> int:
    """go-units ``FromHumanSize``: the same grammar with decimal multipliers (k=1000)."""
    return _parse_size(size, _DECIMAL_MAP)

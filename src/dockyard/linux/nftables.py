"""nftables transactions through libnftables (the library behind the ``nft`` command).

Why the library and not the command: ``nft -f -`` costs a process start (about 10 ms here) for
every transaction, and a container start or exit that changes published ports needs one. The
library runs the same script language in-process, as one atomic transaction, in well under a
millisecond when it only adds rules. Where the library is missing, the ``nft`` command does the
same job.

Loaded on first use only (ctypes and the library are not on the path of a start that changes no
rule).
"""

from __future__ import annotations

import ctypes
import subprocess
from typing import Any

from dockyard.errors import Unavailable

_SONAME = "libnftables.so.1"
_lib: list[Any] = []        # [CDLL] once loaded, [None] when the library is not there


def _library() -> Any:
    if not _lib:
        try:
            lib = ctypes.CDLL(_SONAME)
        except OSError:
            _lib.append(None)
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        _lib.append(lib)
    return _lib[0]


def preload() -> None:
    """Load the library now (a process that forks workers: they inherit it)."""
    _library()


def _run(script: str, nft: str) -> tuple[int, str, str]:
    """(status, output, error text) of ``script`` run as one transaction."""
    lib = _library() if nft == "nft" else None
    if lib is None:
        try:
            done = subprocess.run([nft, "-f", "-"], input=script, capture_output=True,
                                  text=True, check=False)
        except FileNotFoundError:
            raise Unavailable("nftables: neither libnftables nor the nft command is installed",
                              hint="Install the nftables package.") from None
        return done.returncode, done.stdout, done.stderr
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise Unavailable("nftables: cannot make a libnftables context")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        rc = int(lib.nft_run_cmd_from_buffer(ctx, script.encode()))
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
    finally:
        lib.nft_ctx_free(ctx)
    return rc, out, err


def run(script: str, nft: str = "nft") -> None:
    """Run ``script`` (``nft -f`` syntax) as one nftables transaction: all of it or nothing.
    ``nft``: the command to use where the library is missing (another path: always it)."""
    rc, _out, err = _run(script, nft)
    if rc != 0:
        raise Unavailable(f"nftables: {err.strip() or 'the transaction failed'}")


def table_exists(family: str, name: str, nft: str = "nft") -> bool:
    """Whether the table ``family name`` is in the kernel (a read: changes nothing)."""
    rc, _out, _err = _run(f"list table {family} {name}\n", nft)
    return rc == 0

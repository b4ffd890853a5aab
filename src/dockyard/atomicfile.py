"""Replacing a file so that no reader ever sees half of it, and no failure leaves a piece."""

from __future__ import annotations

import os
import tempfile

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO


def replace_file(path: str, write: Callable[[BinaryIO], object], *, mode: int) -> None:
    """Make ``path`` anew with ``write(f)``: into a temporary file beside it (permissions
    ``mode``), flushed to disk, then renamed over ``path``. A reader sees the old file or the
    new one; on any failure (``write``'s too) the temporary file is removed and ``path`` is as
    it was. The directory itself is not synced: callers that need the rename to survive a
    crash sync it."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise

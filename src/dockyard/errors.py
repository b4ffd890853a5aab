"""The error hierarchy shared by every layer.

One root, :class:`DockyardError`, and a handful of categories (containerd's errdefs). Domain errors
subclass a category and carry structured fields; each front end keeps one table that maps the
categories to exit codes, HTTP statuses or gRPC codes. This module imports nothing from dockyard.
"""

from __future__ import annotations

import errno as _errno
import os as _os


class DockyardError(Exception):
    """Root of every error Dockyard raises on purpose.

    ``hint`` is a short suggestion printed under the message for a user error.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class NotFound(DockyardError):
    """The named object does not exist."""


class AlreadyExists(DockyardError):
    """An object with that name or id exists already."""


class InvalidArgument(DockyardError):
    """The request itself is malformed."""


class FailedPrecondition(DockyardError):
    """The object is in the wrong state for the request (docker's 409 Conflict)."""


Conflict = FailedPrecondition


class PermissionDenied(DockyardError):
    """The caller may not do this."""


class Unavailable(DockyardError):
    """A needed service or kernel feature is not there right now."""


class Internal(DockyardError):
    """A bug or an unexpected failure of something we rely on."""


class SyscallError(DockyardError):
    """A kernel call failed; carries the operation, the path (if any) and errno."""

    def __init__(self, op: str, err: int, path: str | None = None, *, detail: str = "") -> None:
        self.op = op
        self.errno = err
        self.path = path
        where = f" {path}" if path else ""
        extra = f" ({detail})" if detail else ""
        super().__init__(f"{op}{where}: {_errno.errorcode.get(err, str(err))}: "
                         f"{_os.strerror(err)}{extra}")

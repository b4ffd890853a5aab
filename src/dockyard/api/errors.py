"""The API's one error table: engine error category -> HTTP status (docker's errdefs mapping).
The body of every error is docker's ``{"message": "..."}``."""

from __future__ import annotations

from dockyard.errors import (
    AlreadyExists,
    DockyardError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)


class NotModified(DockyardError):
    """Nothing to do: start of a running container, stop of a stopped one (docker's 304)."""


class NotImplementedByUs(DockyardError):
    """An endpoint docker has and this daemon does not (yet)."""


# most specific first: the first class in an error's MRO that is here decides
STATUS: dict[type[DockyardError], int] = {
    NotModified: 304,
    InvalidArgument: 400,
    PermissionDenied: 403,
    NotFound: 404,
    AlreadyExists: 409,
    FailedPrecondition: 409,
    NotImplementedByUs: 501,
    Unavailable: 503,
    DockyardError: 500,
}


def status_of(e: DockyardError) -> int:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500

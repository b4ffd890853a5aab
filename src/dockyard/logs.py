"""Loggers that cost nothing until something is logged.

``logging`` takes ~6 ms to import; the modules on a container's start path log only on rare
warning paths, so they hold a :func:`get_logger` proxy that imports it on first use. Imports
nothing else from dockyard.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    import logging


class _LazyLogger:
    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attr: str) -> object:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, imported on the first call of one of its methods."""
    return _LazyLogger(name)  # type: ignore[return-value]

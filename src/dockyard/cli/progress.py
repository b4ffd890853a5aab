"""Pull and push progress, rendered as docker renders it.

Not a terminal: one line per status change (``<id>: Pull complete``), never the byte counts.
A terminal: a live bar per layer (rich), then the same final lines.
"""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any, TextIO

from dockyard.image.pull import Progress

_TERMINAL = ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Mounted from")


class PlainProgress:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, p: Progress) -> None:
        with self._lock:
            if p.id:
                if self._last.get(p.id) == p.status:
                    return
                self._last[p.id] = p.status
                self.out.write(f"{p.id}: {p.status}\n")
            else:
                self.out.write(f"{p.status}\n")
            self.out.flush()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        pass


class TerminalProgress:
    """Bars per layer while data moves; a plain line when a layer finishes."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TransferSpeedColumn,
        )
        from rich.progress import (
            Progress as RichProgress,
        )

        self.console = Console(file=out)
        self.bars = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=self.console, transient=True)
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, p: Progress) -> None:
        with self._lock:
            if not p.id:
                self.console.print(p.status, highlight=False)
                return
            task = self._tasks.get(p.id)
            if p.status in ("Downloading", "Extracting", "Pushing") and p.total:
                if task is None:
                    task = self._tasks[p.id] = self.bars.add_task(f"{p.id}: {p.status}",
                                                                  total=p.total)
                self.bars.update(task, completed=p.current, description=f"{p.id}: {p.status}")
            elif p.status in _TERMINAL or p.status.startswith("Mounted from"):
                if task is not None:
                    self.bars.remove_task(task)
                    del self._tasks[p.id]
                self.console.print(f"{p.id}: {p.status}", highlight=False)

    def __enter__(self) -> TerminalProgress:
        self.bars.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bars.stop()


def progress_for(out: TextIO = sys.stdout) -> PlainProgress | TerminalProgress:
    return TerminalProgress(out) if out.isatty() else PlainProgress(out)

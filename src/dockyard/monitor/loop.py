"""A small single-threaded event loop: fds watched with poll(2), and timers.

The monitor supervises many containers from one process, so nothing here may block on one of
them: every fd is watched, every wait is a timer. A callback that raises does not stop the loop:
its error goes to ``on_error`` with the callback's owner (the monitor gives it to the container
it belongs to).
"""

from __future__ import annotations

import heapq
import itertools
import select
import time
from collections.abc import Callable

IN = select.POLLIN
OUT = select.POLLOUT


class Timer:
    __slots__ = ("callback", "cancelled", "deadline", "owner")

    def __init__(self, deadline: float, callback: Callable[[], None], owner: object) -> None:
        self.deadline = deadline
        self.callback = callback
        self.owner = owner
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self, on_error: Callable[[object, BaseException], None]) -> None:
        self._poll = select.poll()
        self._watched: dict[int, tuple[int, Callable[[int], None], object]] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._on_error = on_error

    def watch(self, fd: int, callback: Callable[[int], None], events: int = IN,
              owner: object = None) -> None:
        """Call ``callback(revents)`` whenever ``fd`` is ready (replaces an earlier watch)."""
        if fd in self._watched:
            self._poll.modify(fd, events)
        else:
            self._poll.register(fd, events)
        self._watched[fd] = (events, callback, owner)

    def unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None:
            self._poll.unregister(fd)

    def watching(self, fd: int) -> bool:
        return fd in self._watched

    def call_later(self, delay: float, callback: Callable[[], None], owner: object = None
                   ) -> Timer:
        timer = Timer(time.monotonic() + max(0.0, delay), callback, owner)
        heapq.heappush(self._timers, (timer.deadline, next(self._seq), timer))
        return timer

    def run_once(self, max_wait: float | None = None) -> None:
        """Wait for one round of events (at most ``max_wait`` seconds) and dispatch them."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        wait = max_wait
        if self._timers:
            until = max(0.0, self._timers[0][0] - time.monotonic())
            wait = until if wait is None else min(wait, until)
        ready = self._poll.poll(None if wait is None else int(wait * 1000) + (wait > 0))
        for fd, revents in ready:
            entry = self._watched.get(fd)
            if entry is not None:
                self._call(entry[2], entry[1], revents)
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, timer = heapq.heappop(self._timers)
            if not timer.cancelled:
                timer.cancelled = True
                self._call(timer.owner, timer.callback)

    def _call(self, owner: object, callback: Callable[..., None], *args: int) -> None:
        try:
            callback(*args)
        except Exception as e:  # one container's fault must not stop the others
            self._on_error(owner, e)

"""docker's prune filters: ``until`` (a time or a duration before now) and ``label`` /
``label!`` (``key`` or ``key=value``), as ``container prune`` and ``network prune`` take them."""

from __future__ import annotations

import time

from dockyard.errors import InvalidArgument
from dockyard.values import value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

KEYS = ("until", "label", "label!")


def label_matches(labels: Mapping[str, str], spec: str) -> bool:
    """``key`` (present) or ``key=value`` (present with that value)."""
    key, eq, want = spec.partition("=")
    return key in labels and (not eq or labels[key] == want)


@value
class PruneFilter:
    until: float | None = None          # seconds since the epoch: only what is older goes
    labels: tuple[str, ...] = ()        # every one must match
    not_labels: tuple[str, ...] = ()    # none may match

    def keeps(self, created: float, labels: Mapping[str, str]) -> bool:
        """True when the object is spared by the filter."""
        if self.until is not None and created >= self.until:
            return True
        if not all(label_matches(labels, spec) for spec in self.labels):
            return True
        return any(label_matches(labels, spec) for spec in self.not_labels)


def parse(filters: Mapping[str, Sequence[str]], now: float | None = None) -> PruneFilter:
    """A filter from docker's ``{"key": ["value", ...]}``; unknown keys are refused."""
    from dockyard.engine.logread import parse_time_arg

    for key in filters:
        if key not in KEYS:
            raise InvalidArgument(f"invalid filter '{key}'")
    until = None
    now_ns = int((time.time() if now is None else now) * 1e9)
    for text in filters.get("until", ()):
        try:
            until = parse_time_arg(text, now_ns) / 1e9
        except InvalidArgument:
            raise InvalidArgument(f"invalid filter 'until={text}'") from None
    return PruneFilter(until=until, labels=tuple(filters.get("label", ())),
                       not_labels=tuple(filters.get("label!", ())))


def parse_cli(specs: Sequence[str], now: float | None = None) -> PruneFilter:
    """From ``--filter key=value`` flags."""
    filters: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, val = spec.partition("=")
        if not eq:
            raise InvalidArgument(f"bad format of filter (expected name=value): {spec}")
        filters.setdefault(key, []).append(val)
    return parse(filters, now)

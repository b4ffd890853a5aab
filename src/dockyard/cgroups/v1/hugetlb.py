"""v1 hugetlb controller: hugetlb.<size>.limit_in_bytes (and the .rsvd twin)."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, parse_uint, read_optional, write_knob
from dockyard.errors import NotFound, Unavailable
from dockyard.model.resources import HugepageLimit

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "hugetlb"


def set_limits(fs: CgroupFs, d: str, limits: tuple[HugepageLimit, ...]) -> None:
    rsvd = True
    for h in limits:
        name = f"hugetlb.{h.page_size}.limit_in_bytes"
        try:
            write_knob(fs, d, name, str(h.limit), controller=NAME)
        except Unavailable:
            raise Unavailable(f"hugepage size {h.page_size} is not supported here "
                              f"(no {name} in {d})") from None
        if rsvd:
            try:
                write_knob(fs, d, f"hugetlb.{h.page_size}.rsvd.limit_in_bytes", str(h.limit),
                           controller=NAME)
            except (Unavailable, NotFound):
                rsvd = False


def page_sizes(fs: CgroupFs, d: str) -> list[str]:
    from dockyard.cgroups.v2.hugetlb import page_sizes as sizes

    return sizes(fs, d)


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    from dockyard.cgroups.stats import HugetlbStats

    for size in page_sizes(fs, d):
        usage = read_optional(fs, d, f"hugetlb.{size}.usage_in_bytes")
        if usage is None:
            continue
        h = HugetlbStats(usage=parse_uint(usage))
        peak = read_optional(fs, d, f"hugetlb.{size}.max_usage_in_bytes")
        fail = read_optional(fs, d, f"hugetlb.{size}.failcnt")
        h.max = parse_uint(peak) if peak else 0
        h.failcnt = parse_uint(fail) if fail else 0
        st.hugetlb[size] = h


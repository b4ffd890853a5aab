"""v2 hugetlb controller: hugetlb.<size>.max (and .rsvd.max). Also used for the hugetlb
controller of a hybrid host, which lives in the unified hierarchy."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, parse_flat_keyed, parse_uint, read_optional, write_knob
from dockyard.charset import is_page_size
from dockyard.errors import NotFound, Unavailable
from dockyard.model.resources import HugepageLimit

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import Stats

NAME = "hugetlb"


def page_sizes(fs: CgroupFs, d: str) -> list[str]:
    """The page sizes this cgroup has knobs for ("2MB", "1GB")."""
    sizes = set()
    for name in fs.listdir(d):
        parts = name.split(".")   # hugetlb.2MB.max
        if len(parts) > 2 and parts[0] == "hugetlb" and is_page_size(parts[1]):
            sizes.add(parts[1])
    return sorted(sizes)


def set_limits(fs: CgroupFs, d: str, limits: tuple[HugepageLimit, ...]) -> None:
    rsvd = True
    for h in limits:
        name = f"hugetlb.{h.page_size}.max"
        try:
            write_knob(fs, d, name, str(h.limit), controller=NAME)
        except Unavailable:
            if page_sizes(fs, d):
                raise Unavailable(f"hugepage size {h.page_size} is not supported here (sizes: "
                                  f"{', '.join(page_sizes(fs, d))})") from None
            raise
        if rsvd:
            try:
                write_knob(fs, d, f"hugetlb.{h.page_size}.rsvd.max", str(h.limit),
                           controller=NAME)
            except (Unavailable, NotFound):
                rsvd = False


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    from dockyard.cgroups.stats import HugetlbStats

    for size in page_sizes(fs, d):
        usage = read_optional(fs, d, f"hugetlb.{size}.current")
        if usage is None:
            continue
        h = HugetlbStats(usage=parse_uint(usage))
        events = read_optional(fs, d, f"hugetlb.{size}.events")
        if events:
            h.failcnt = parse_flat_keyed(events).get("max", 0)
        st.hugetlb[size] = h

"""v1 blkio controller: weights (CFQ's blkio.weight or BFQ's blkio.bfq.weight) and throttling."""

from __future__ import annotations

from dockyard.cgroups.fs import CgroupFs, join, read_optional, write_knob
from dockyard.model.resources import BlockIOResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import BlkioEntry, Stats

NAME = "blkio"


def set_limits(fs: CgroupFs, d: str, b: BlockIOResources) -> None:
    # CFQ is gone from current kernels; BFQ carries the weight under another name.
    cfq = fs.exists(join(d, "blkio.weight"))
    weight, weight_device = (("blkio.weight", "blkio.weight_device") if cfq
                             else ("blkio.bfq.weight", "blkio.bfq.weight_device"))
    if b.weight:
        write_knob(fs, d, weight, str(b.weight), controller=NAME)
    if b.leaf_weight:
        write_knob(fs, d, "blkio.leaf_weight", str(b.leaf_weight), controller=NAME)
    for wd in b.weight_device:
        if wd.weight:
            write_knob(fs, d, weight_device, f"{wd.major}:{wd.minor} {wd.weight}",
                       controller=NAME)
        if wd.leaf_weight:
            write_knob(fs, d, "blkio.leaf_weight_device",
                       f"{wd.major}:{wd.minor} {wd.leaf_weight}", controller=NAME)
    for name, devs in (("blkio.throttle.read_bps_device", b.throttle_read_bps_device),
                       ("blkio.throttle.write_bps_device", b.throttle_write_bps_device),
                       ("blkio.throttle.read_iops_device", b.throttle_read_iops_device),
                       ("blkio.throttle.write_iops_device", b.throttle_write_iops_device)):
        for td in devs:
            write_knob(fs, d, name, f"{td.major}:{td.minor} {td.rate}", controller=NAME)


def parse_entries(text: str) -> list[BlkioEntry]:
    """``8:0 Read 1282048`` lines (the ``Total N`` line is skipped)."""
    from dockyard.cgroups.stats import BlkioEntry

    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        op, value = (fields[1], fields[2]) if len(fields) >= 3 else ("", fields[1])
        out.append(BlkioEntry(major=int(major), minor=int(minor), op=op, value=int(value)))
    return out


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    # First source that exists wins, as in runc: BFQ, then CFQ, then the throttle counters.
    for prefix in ("blkio.bfq.", "blkio.", "blkio.throttle."):
        served = read_optional(fs, d, prefix + "io_service_bytes_recursive")
        if served is None:
            continue
        st.blkio.io_service_bytes_recursive = parse_entries(served)
        count = read_optional(fs, d, prefix + "io_serviced_recursive")
        st.blkio.io_serviced_recursive = parse_entries(count or "")
        return

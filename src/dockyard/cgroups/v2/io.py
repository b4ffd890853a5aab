"""v2 io controller: io.bfq.weight or io.weight (converted from blkio.weight), io.max."""

from __future__ import annotations

from dockyard.cgroups.convert import blkio_weight_to_io_weight
from dockyard.cgroups.fs import CgroupFs, join, read_optional, write_knob
from dockyard.logs import get_logger
from dockyard.model.resources import BlockIOResources

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms)
if TYPE_CHECKING:
    from dockyard.cgroups.stats import BlkioEntry, Stats

log = get_logger(__name__)
NAME = "io"


def set_limits(fs: CgroupFs, d: str, b: BlockIOResources) -> None:
    # With BFQ the spec's weight range is the scheduler's own: use it as is (runc does).
    bfq = fs.exists(join(d, "io.bfq.weight"))
    if b.weight:
        if bfq:
            write_knob(fs, d, "io.bfq.weight", str(b.weight), controller=NAME)
        else:
            write_knob(fs, d, "io.weight", str(blkio_weight_to_io_weight(b.weight)),
                       controller=NAME)
    if b.leaf_weight or any(wd.leaf_weight for wd in b.weight_device):
        log.info("linux.resources.blockIO leaf weights have no cgroup v2 equivalent; ignored")
    for wd in b.weight_device:
        if not wd.weight:
            continue
        if bfq:
            write_knob(fs, d, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}",
                       controller=NAME)
        else:
            write_knob(fs, d, "io.weight",
                       f"{wd.major}:{wd.minor} {blkio_weight_to_io_weight(wd.weight)}",
                       controller=NAME)
    for key, devs in (("rbps", b.throttle_read_bps_device), ("wbps", b.throttle_write_bps_device),
                      ("riops", b.throttle_read_iops_device),
                      ("wiops", b.throttle_write_iops_device)):
        for td in devs:
            rate = "max" if td.rate == 0 else str(td.rate)
            write_knob(fs, d, "io.max", f"{td.major}:{td.minor} {key}={rate}", controller=NAME)


_OPS = {"rbytes": ("Read", "bytes"), "wbytes": ("Write", "bytes"),
        "rios": ("Read", "ios"), "wios": ("Write", "ios")}


def stats(fs: CgroupFs, d: str, st: Stats) -> None:
    from dockyard.cgroups.stats import BlkioEntry

    text = read_optional(fs, d, "io.stat")
    if text is None:
        return
    served: list[BlkioEntry] = []
    counted: list[BlkioEntry] = []
    for line in text.splitlines():
        dev, *items = line.split()
        major, _, minor = dev.partition(":")
        if not minor:
            continue
        for item in items:
            key, _, value = item.partition("=")
            if key not in _OPS:
                continue
            op, table = _OPS[key]
            entry = BlkioEntry(major=int(major), minor=int(minor), op=op, value=int(value))
            (served if table == "bytes" else counted).append(entry)
    st.blkio.io_service_bytes_recursive = served
    st.blkio.io_serviced_recursive = counted

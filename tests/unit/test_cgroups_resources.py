"""linux.resources parsing (good and bad) and the v1 -> v2 conversion formulas."""

from __future__ import annotations

import pytest

from dockyard.cgroups import convert
from dockyard.errors import InvalidArgument
from dockyard.model.resources import (
    BlockIOResources,
    CpuResources,
    DeviceRule,
    HugepageLimit,
    MemoryResources,
    NetworkResources,
    PidsResources,
    RdmaLimit,
    Resources,
    ThrottleDevice,
    WeightDevice,
    parse_resources,
)

FULL = {
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 1073741824,
               "kernel": -1, "kernelTCP": -1, "swappiness": 10, "disableOOMKiller": True,
               "useHierarchy": True, "checkBeforeUpdate": False},
    "cpu": {"shares": 1024, "quota": 50000, "burst": 10000, "period": 100000,
            "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "0-1",
            "mems": "0", "idle": 0},
    "pids": {"limit": 32},
    "blockIO": {"weight": 500, "leafWeight": 300,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 200, "leafWeight": 100},
                                 {"major": 8, "minor": 16, "weight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200},
                       {"pageSize": "1GB", "limit": 1073741824}],
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": True, "type": "c", "major": 136, "access": "wr"},
                {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
    "unified": {"memory.high": "1073741824", "io.weight": "default 100"},
}


def test_parse_full_example() -> None:
    r = parse_resources(FULL)
    assert r.memory == MemoryResources(limit=536870912, reservation=268435456,
                                       swap=1073741824, kernel=-1, kernel_tcp=-1,
                                       swappiness=10, disable_oom_killer=True,
                                       use_hierarchy=True, check_before_update=False)
    assert r.cpu == CpuResources(shares=1024, quota=50000, burst=10000, period=100000,
                                 realtime_runtime=950000, realtime_period=1000000,
                                 cpus="0-1", mems="0", idle=0)
    assert r.pids == PidsResources(limit=32)
    assert r.block_io == BlockIOResources(
        weight=500, leaf_weight=300,
        weight_device=(WeightDevice(8, 0, 200, 100), WeightDevice(8, 16, 300, None)),
        throttle_read_bps_device=(ThrottleDevice(8, 0, 1048576),),
        throttle_write_bps_device=(ThrottleDevice(8, 0, 2097152),),
        throttle_read_iops_device=(ThrottleDevice(8, 0, 100),),
        throttle_write_iops_device=(ThrottleDevice(8, 0, 200),))
    assert r.hugepage_limits == (HugepageLimit("2MB", 209715200),
                                 HugepageLimit("1GB", 1073741824))
    assert r.devices == (DeviceRule(allow=False, type="a", access="rwm"),
                         DeviceRule(allow=True, type="c", major=1, minor=3, access="rw"),
                         DeviceRule(allow=True, type="c", major=136, access="rw"),
                         DeviceRule(allow=True, type="b", access="m"))
    assert r.network == NetworkResources(class_id=1048577, priorities=(("eth0", 500),))
    assert r.rdma == (("mlx5_1", RdmaLimit(hca_handles=3, hca_objects=10000)),)
    assert r.unified == (("io.weight", "default 100"), ("memory.high", "1073741824"))


def test_absent_means_unset() -> None:
    assert parse_resources(None) == Resources()
    assert parse_resources({}) == Resources()
    r = parse_resources({"memory": {}, "cpu": {"cpus": ""}, "pids": {}})
    assert r.memory == MemoryResources()
    assert r.cpu == CpuResources()
    assert r.pids == PidsResources(limit=None)


def test_device_rule_defaults_and_v1_string() -> None:
    r = parse_resources({"devices": [{"allow": True}]})
    assert r.devices == (DeviceRule(allow=True, type="a", major=None, minor=None,
                                    access="rwm"),)
    assert r.devices[0].v1_string() == "a *:* rwm"
    assert DeviceRule(True, "c", 1, None, "r").v1_string() == "c 1:* r"


def test_swappiness_minus_one_means_unset() -> None:
    assert parse_resources({"memory": {"swappiness": 2**64 - 1}}).memory == MemoryResources()
    assert parse_resources({"memory": {"swappiness": -1}}).memory == MemoryResources()


def test_other_parse_prefix() -> None:
    with pytest.raises(InvalidArgument, match=r"^update\.pids\.limit must be an integer"):
        parse_resources({"pids": {"limit": "10"}}, where="update")


@pytest.mark.parametrize(("data", "message"), [
    ([], r"linux\.resources must be an object"),
    ({"memory": 5}, r"linux\.resources\.memory must be an object"),
    ({"memory": {"limit": "1g"}}, r"linux\.resources\.memory\.limit must be an integer"),
    ({"memory": {"limit": True}}, r"memory\.limit must be an integer"),
    ({"memory": {"limit": -2}}, r"memory\.limit must be -1 \(unlimited\) or >= 0"),
    ({"memory": {"limit": 2**63}}, r"memory\.limit is out of range for int64"),
    ({"memory": {"swappiness": 101}}, r"memory\.swappiness must be between 0 and 100"),
    ({"memory": {"limit": 100, "swap": 50}}, r"memory\.swap \(50\) is memory\+swap"),
    ({"memory": {"disableOOMKiller": "yes"}}, r"memory\.disableOOMKiller must be true or false"),
    ({"cpu": {"shares": -1}}, r"cpu\.shares is out of range for uint64"),
    ({"cpu": {"quota": -5}}, r"cpu\.quota must be -1 \(unlimited\) or >= 0"),
    ({"cpu": {"cpus": "0-3,a"}}, r"cpu\.cpus must be a list like"),
    ({"cpu": {"mems": 0}}, r"cpu\.mems must be a string"),
    ({"cpu": {"idle": 2}}, r"cpu\.idle must be 0 or 1"),
    ({"pids": {"limit": 1.5}}, r"pids\.limit must be an integer"),
    ({"blockIO": {"weight": 5}}, r"blockIO\.weight must be between 10 and 1000"),
    ({"blockIO": {"weight": 70000}}, r"blockIO\.weight is out of range for uint16"),
    ({"blockIO": {"weightDevice": [{"minor": 0, "weight": 10}]}},
     r"blockIO\.weightDevice\[0\]\.major is required"),
    ({"blockIO": {"throttleReadBpsDevice": {"major": 8}}},
     r"blockIO\.throttleReadBpsDevice must be an array"),
    ({"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": -1}]}},
     r"throttleWriteIOPSDevice\[0\]\.rate is out of range for uint64"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]},
     r"hugepageLimits\[0\]\.pageSize must look like"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, r"hugepageLimits\[0\]\.limit is required"),
    ({"devices": [{"access": "rwm"}]}, r"devices\[0\]\.allow is required"),
    ({"devices": [{"allow": True, "type": "u"}]}, r"devices\[0\]\.type must be"),
    ({"devices": [{"allow": True, "access": ""}]}, r"devices\[0\]\.access must be"),
    ({"devices": [{"allow": True, "access": "rx"}]}, r"devices\[0\]\.access must be"),
    ({"devices": [{"allow": True, "major": -3}]}, r"devices\[0\]\.major must be >= 0"),
    ({"devices": [{"allow": True, "minor": 2**40}]}, r"devices\[0\]\.minor is too large"),
    ({"network": {"priorities": [{"priority": 1}]}},
     r"network\.priorities\[0\]\.name is required"),
    ({"rdma": {"mlx": {"hcaHandles": -1}}}, r"rdma\.mlx\.hcaHandles is out of range"),
    ({"unified": {"memory.high": 5}}, r"unified\.memory\.high must be a string"),
    ({"unified": {"../cgroup.procs": "1"}}, r"key '\.\./cgroup\.procs' must name a cgroup v2"),
    ({"unified": {"nodot": "1"}}, r"key 'nodot' must name a cgroup v2 file"),
])
def test_bad_resources_name_the_field(data: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_resources(data)


# --- conversions -------------------------------------------------------------------------------

@pytest.mark.parametrize(("shares", "weight"), [
    (0, 1), (1, 1), (2, 1), (3, 1), (1024, 39), (2048, 79), (10000, 382),
    (262143, 9999), (262144, 10000), (10**9, 10000),
])
def test_cpu_shares_to_weight(shares: int, weight: int) -> None:
    assert convert.cpu_shares_to_weight(shares) == weight


def test_cpu_shares_formula_is_crun_runc_linear() -> None:
    for shares in range(2, 262145, 997):
        assert convert.cpu_shares_to_weight(shares) == 1 + ((shares - 2) * 9999) // 262142


@pytest.mark.parametrize(("blkio", "io"), [(10, 1), (100, 910), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight(blkio: int, io: int) -> None:
    assert convert.blkio_weight_to_io_weight(blkio) == io


@pytest.mark.parametrize(("swap", "limit", "v2"), [
    (None, None, None),          # nothing given
    (None, 100, None),           # only memory: swap untouched
    (None, -1, -1),              # unlimited memory, no swap given: swap unlimited too
    (0, -1, -1),
    (-1, 100, -1),               # unlimited swap
    (300, 100, 200),             # memory+swap 300 = 100 memory + 200 swap
    (100, 100, 0),               # memory+swap == memory: no swap
    (500, -1, 500),              # memory unlimited: swap as is
])
def test_memory_swap_to_v2(swap: int | None, limit: int | None, v2: int | None) -> None:
    assert convert.memory_swap_to_v2(swap, limit) == v2


def test_memory_swap_to_v2_errors() -> None:
    with pytest.raises(InvalidArgument, match=r"without linux\.resources\.memory\.limit"):
        convert.memory_swap_to_v2(100, None)
    with pytest.raises(InvalidArgument, match="must not be below"):
        convert.memory_swap_to_v2(50, 100)


@pytest.mark.parametrize(("limit", "value"), [(5, "5"), (0, "1"), (-1, "max"), (-7, "max")])
def test_pids_limit_value(limit: int, value: str) -> None:
    assert convert.pids_limit_value(limit) == value


def test_limit_to_v2() -> None:
    assert convert.limit_to_v2(-1) == "max"
    assert convert.limit_to_v2(4096) == "4096"

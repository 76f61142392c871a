"""docker update rules: moby's checks, the HostConfig merge, OCI resources, wire forms."""

from __future__ import annotations

from typing import Any

import pytest

import errdefs
from containers_svc.update import (
    apply_update,
    oci_resources,
    parse_cpuset,
    update_from_proto,
    update_to_proto,
    verify_update,
)
from gateway_svc.routes.containers_runtime import update_config_from_json

CID = "c" * 64
MB = 1024 * 1024


@pytest.mark.parametrize(("upd", "message"), [
    ({"Memory": 1 * MB}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 * MB, "MemorySwap": 32 * MB},
     "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemoryReservation": MB}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 64 * MB, "MemoryReservation": 128 * MB},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"CpuShares": -1}, "invalid CPU shares"),
    ({"NanoCpus": 5_000_000_000}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"),
    ({"NanoCpus": 500_000_000, "CpuQuota": 50000}, "Nano CPUs and CPU Quota cannot both be set"),
    ({"CpuPeriod": 10}, "CPU cfs period can not be less than 1ms"),
    ({"CpuQuota": 10}, "CPU cfs quota can not be less than 1ms"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"CpusetCpus": "x-1"}, "Invalid value x-1 for cpuset cpus"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
])  # fmt: skip
def test_verify_rejects_with_moby_texts(upd: dict[str, Any], message: str) -> None:
    with pytest.raises(errdefs.InvalidArgument, match=message):
        verify_update(upd, ncpu=2)


def test_verify_accepts_swap_alone_on_update() -> None:
    assert verify_update({"MemorySwap": 256 * MB}, ncpu=2) == []


def test_zero_values_leave_fields_alone() -> None:
    hc = {"Memory": 64 * MB, "MemorySwap": 128 * MB, "CpuShares": 512, "PidsLimit": 10}
    out = apply_update(CID, hc, {"Memory": 0, "CpuShares": 0, "CpusetCpus": ""})
    assert out == hc


def test_memory_above_the_swap_limit_needs_the_swap_too() -> None:
    with pytest.raises(errdefs.InvalidArgument) as e:
        apply_update(CID, {}, {"Memory": 100 * MB})
    assert e.value.message == (
        f"Cannot update container {CID}: Memory limit should be smaller than already set memoryswap "
        "limit, update the memoryswap at the same time"
    )
    out = apply_update(CID, {}, {"Memory": 100 * MB, "MemorySwap": 200 * MB})
    assert (out["Memory"], out["MemorySwap"]) == (100 * MB, 200 * MB)
    # -m 64m at create means a 128m swap limit (Docker's 2x), so 100m fits without it
    out = apply_update(CID, {"Memory": 64 * MB, "MemorySwap": 0}, {"Memory": 100 * MB})
    assert (out["Memory"], out["MemorySwap"]) == (100 * MB, 128 * MB)
    out = apply_update(CID, {"Memory": 64 * MB, "MemorySwap": -1}, {"Memory": 1024 * MB})
    assert out["Memory"] == 1024 * MB


def test_cpu_conflicts_with_what_is_set() -> None:
    with pytest.raises(errdefs.InvalidArgument, match="Nano CPUs cannot be updated as CPU Quota"):
        apply_update(CID, {"CpuQuota": 50000}, {"NanoCpus": 10**9})
    with pytest.raises(errdefs.InvalidArgument, match="CPU Period cannot be updated as NanoCPUs"):
        apply_update(CID, {"NanoCpus": 10**9}, {"CpuPeriod": 50000})


def test_pids_and_restart_policy() -> None:
    assert apply_update(CID, {"PidsLimit": 10}, {"PidsLimit": 0})["PidsLimit"] is None
    assert apply_update(CID, {}, {"PidsLimit": 20})["PidsLimit"] == 20
    out = apply_update(CID, {}, {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    assert out["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    with pytest.raises(errdefs.InvalidArgument, match="AutoRemove is enabled"):
        apply_update(CID, {"AutoRemove": True}, {"RestartPolicy": {"Name": "always"}})


def test_oci_resources() -> None:
    res = oci_resources({"Memory": 64 * MB, "NanoCpus": 500_000_000, "PidsLimit": 20, "CpuShares": 256,
                         "CpusetCpus": "0", "MemoryReservation": 32 * MB})  # fmt: skip
    assert res["memory"] == {"limit": 64 * MB, "swap": 128 * MB, "reservation": 32 * MB}
    assert res["cpu"] == {"shares": 256, "period": 100000, "quota": 50000, "cpus": "0"}
    assert res["pids"] == {"limit": 20}
    assert "pids" not in oci_resources({"PidsLimit": None})


def test_parse_cpuset() -> None:
    assert parse_cpuset("0-2,4") == {0, 1, 2, 4}
    with pytest.raises(ValueError):
        parse_cpuset("3-1")


def test_wire_round_trip() -> None:
    upd = {"Memory": 100 * MB, "MemorySwap": -1, "CpusetCpus": "0", "PidsLimit": 0,
           "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}}  # fmt: skip
    assert update_from_proto(update_to_proto("x", upd)) == upd


def test_update_body_from_json() -> None:
    body = {"Memory": 1, "PidsLimit": -1, "CpusetCpus": "0", "Unknown": 1,
            "RestartPolicy": {"Name": "no"}}  # fmt: skip
    out = update_config_from_json(body, "1.50")
    assert out == {"Memory": 1, "PidsLimit": 0, "CpusetCpus": "0",
                   "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}}  # fmt: skip
    assert "PidsLimit" not in update_config_from_json({"PidsLimit": 5}, "1.39")
    with pytest.raises(errdefs.InvalidArgument):
        update_config_from_json({"Memory": "1g"}, "1.50")
    with pytest.raises(errdefs.InvalidArgument):
        update_config_from_json([], "1.50")

"""True cost: what each Batch attempt ran on (moto's EC2 and ECS), instances shared by the
jobs packed on them, Spot prices of the attempt's zone and hour, and the price table's date.

Figures are worked out by hand in the comments. moto's Spot price history is
$0.00001 an hour in every zone; the shipped table's m5.large is $0.096 On-Demand
(its Spot level, $0.036, must not be what a measured Spot attempt pays).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import run_cli
from pricing_replay import pricing_replay

from bidsbatch.cost import ON_DEMAND, SPOT, CostContext, HourlyPrice, InstanceType
from bidsbatch.cost_actual import actual_run_cost, packed_shares, s3_requests
from bidsbatch.executors.awsbatch.api import BatchApi
from bidsbatch.executors.awsbatch.instances import InstanceLookup, price_at
from bidsbatch.ledger import AttemptRecord, Ledger
from bidsbatch.pipelines import Resources, load_pipeline
from bidsbatch.price_age import age_warning, table_date
from bidsbatch.pricing import load_prices, refresh_prices, save_user_prices
from bidsbatch.runs import RunDir
from bidsbatch.specs import RunInfo
from bidsbatch.timestamps import iso

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HALF = Resources(vcpus=1, memory_mib=2048)  # half an m5.large (2 vCPU, 8 GiB)
M5 = InstanceType("m5.large", 2, 8192)
MOTO_SPOT = 0.00001


def at(minutes: float) -> str:
    return iso(T0 + timedelta(minutes=minutes)) or ""


def on(scan: str, n: int, start: float, end: float, host: str, *, market: str = ON_DEMAND,
       spot: float | None = None, code: int | None = 0,
       reason: str | None = None) -> AttemptRecord:
    return AttemptRecord(scan, n, f"arr:{scan}", at(start), at(end), code, reason, None,
                         market, "m5.large", host=host, zone="us-east-1a", spot_price=spot)


def context(**kw: Any) -> CostContext:
    values: dict[str, Any] = {
        "job": HALF, "priced": True, "instance_types": {"m5.large": M5},
        "prices": {"m5.large": HourlyPrice(on_demand=0.096, spot=0.036)},
        "default_instance": M5, "region": "us-east-1", **kw}
    return CostContext(**values)


def test_a_packed_instance_is_shared_by_the_scans_on_it() -> None:
    attempts = [
        # i-1: A and B side by side for the whole hour: half of $0.096 each.
        on("A", 1, 0, 60, "i-1"), on("B", 1, 0, 60, "i-1"),
        # i-2: C alone for an hour: the whole instance, $0.096, though it fills half of it.
        on("C", 1, 0, 60, "i-2"),
        # i-3: D 0-60, E 30-90: each 30 min alone and 30 min shared: 0.75 of its hour.
        on("D", 1, 0, 60, "i-3"), on("E", 1, 30, 90, "i-3"),
    ]
    shares = packed_shares(attempts, context(), now=T0)
    assert shares == pytest.approx({("A", 1): 0.5, ("B", 1): 0.5, ("C", 1): 1.0,
                                    ("D", 1): 0.75, ("E", 1): 0.75})
    cost = actual_run_cost(attempts, context(), now=T0 + timedelta(hours=2))
    assert cost.scans["A"].dollars == pytest.approx(0.048)
    assert cost.scans["C"].dollars == pytest.approx(0.096)
    assert cost.scans["D"].dollars == pytest.approx(0.072)
    # 1 + 1 + 1.5 instance-hours of m5.large were paid for, no more, no less.
    assert cost.dollars == pytest.approx(3.5 * 0.096)
    assert cost.instance_hours == pytest.approx(3.5)
    assert cost.measured_attempts == 5


def test_volumes_and_s3_requests_are_in_the_cost() -> None:
    ctx = context(volume_gib=100, storage=load_prices().storage_rates("us-east-1"))
    attempts = [on("A", 1, 0, 60, "i-1")]
    # 2 inputs (one of 200 MiB: 4 ranged GETs) + 3 protocol GETs; 3 outputs + 4 protocol PUTs.
    req = s3_requests(input_sizes=[1000, 200 * 1024 * 1024], output_sizes=[10, 20, 30],
                      dataset_on_s3=True, output_on_s3=True)
    assert (req.gets, req.puts) == (1 + 4 + 3, 3 + 4)
    cost = actual_run_cost(attempts, ctx, now=T0, requests={"A": req})
    # 100 GiB gp3 at $0.08 a GiB-month of 730 h, for one instance-hour: $0.010959.
    assert cost.volume_dollars == pytest.approx(100 * 0.08 / 730)
    assert cost.s3_dollars == pytest.approx((8 * 0.0004 + 7 * 0.005) / 1000)
    assert cost.dollars == pytest.approx(0.096 + 100 * 0.08 / 730 + 0.0000382)


def test_spot_price_in_effect_at_the_attempts_time() -> None:
    history = [{"AvailabilityZone": "us-east-1a", "SpotPrice": "0.0400",
                "Timestamp": T0 - timedelta(hours=3)},
               {"AvailabilityZone": "us-east-1a", "SpotPrice": "0.0420",
                "Timestamp": T0 + timedelta(minutes=20)},
               {"AvailabilityZone": "us-east-1b", "SpotPrice": "0.0300",
                "Timestamp": T0 - timedelta(hours=1)}]
    assert price_at(history, zone="us-east-1a", at=T0 + timedelta(minutes=5)) == 0.04
    assert price_at(history, zone="us-east-1a", at=T0 + timedelta(minutes=30)) == 0.042
    assert price_at(history, zone="us-east-1b", at=T0) == 0.03
    assert price_at(history, zone="us-east-1c", at=T0) is None


# --------------------------------------------------------------------------- on moto


def _run_info(scans: list[str]) -> RunInfo:
    pipe = load_pipeline("demo").to_dict()
    pipe["resources"] = {**pipe["resources"], "vcpus": 1, "memory_mib": 2048}
    return RunInfo(run_id="demo-measured", dataset="s3://bucket/bids", dataset_name="hand-made",
                   output="s3://bucket/out", pipeline=pipe, pipeline_source="preset demo",
                   selection={}, scans=scans, bidsbatch_version="0.1.0")


def _ms(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)


def _instances(url: str) -> tuple[str, str]:
    """A Spot and an On-Demand m5.large on moto, registered with an ECS cluster: their ARNs."""
    ec2 = boto3.client("ec2", endpoint_url=url, region_name="us-east-1")
    ecs = boto3.client("ecs", endpoint_url=url, region_name="us-east-1")
    ecs.create_cluster(clusterName="bb-ce")
    arns = []
    for market, zone in (({"MarketType": "spot"}, "us-east-1b"), (None, "us-east-1a")):
        extra = {"InstanceMarketOptions": market} if market else {}
        inst = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                 InstanceType="m5.large", Placement={"AvailabilityZone": zone},
                                 **extra)["Instances"][0]
        doc = json.dumps({"instanceId": inst["InstanceId"]})
        arns.append(ecs.register_container_instance(
            cluster="bb-ce", instanceIdentityDocument=doc)["containerInstance"]
            ["containerInstanceArn"])
    return arns[0], arns[1]


def test_batch_attempts_on_spot_and_on_demand_priced_to_the_cent(aws, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                  ) -> None:
    spot_arn, od_arn = _instances(aws.url)
    run = RunDir(tmp_path / "demo-measured")
    run.path.mkdir()
    run.run_json.write_text(_run_info(["sub-A", "sub-B"]).to_json())
    reclaim = "Host EC2 (instance i-0123) terminated."
    # What DescribeJobs says of the two array children (moto's Batch says "TBD" for the
    # container instance, so the descriptions are written as AWS Batch gives them).
    descs = {
        "arr:0": {"jobId": "arr:0", "status": "SUCCEEDED", "attempts": [
            {"container": {"containerInstanceArn": spot_arn}, "startedAt": _ms(0),
             "stoppedAt": _ms(30), "statusReason": reclaim},
            {"container": {"containerInstanceArn": od_arn, "exitCode": 0},
             "startedAt": _ms(32), "stoppedAt": _ms(92)}]},
        "arr:1": {"jobId": "arr:1", "status": "SUCCEEDED", "attempts": [
            {"container": {"containerInstanceArn": spot_arn, "exitCode": 0},
             "startedAt": _ms(0), "stoppedAt": _ms(120)}]},
    }
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(["sub-A", "sub-B"])
        ledger.set_meta("executor", "aws-batch")
        ledger.set_meta("executor_settings", {"job_queue": "q", "region": "us-east-1"})
        for scan, cid, n, (s, e), code, why in (
                ("sub-A", "arr:0", 1, (0, 30), None, reclaim),
                ("sub-A", "arr:0", 2, (32, 92), 0, None),
                ("sub-B", "arr:1", 1, (0, 120), 0, None)):
            ledger.record_attempt(AttemptRecord(scan, n, cid, at(s), at(e), code, why, None,
                                                None, None))
        ledger.update("sub-A", state="succeeded", attempts=2, exit_code=0, job_id="arr:0")
        ledger.update("sub-B", state="succeeded", attempts=1, exit_code=0, job_id="arr:1")
        aws.reset_requests()
        lookup = InstanceLookup(BatchApi(region="us-east-1"), ledger)
        assert lookup.record(descs, {"arr:0": "sub-A", "arr:1": "sub-B"}) == 3
        first = aws.requests()
        # Once per container instance and per type, zone and hour: none asked twice.
        assert InstanceLookup(BatchApi(region="us-east-1"), ledger).record(
            descs, {"arr:0": "sub-A", "arr:1": "sub-B"}) == 3
        again = aws.requests()[len(first):]
        attempts = {(a.scan_id, a.attempt): a for a in ledger.attempts()}
    targets = [r["target"] for r in first if r["target"]]
    actions = [b.split("&")[0] for r in first if (b := r.get("body", "")).startswith("Action=")]
    assert targets.count("AmazonEC2ContainerServiceV20141113.DescribeContainerInstances") == 1
    assert actions.count("Action=DescribeInstances") == 1
    assert actions.count("Action=DescribeSpotPriceHistory") == 1  # m5.large, 1b, 09:00
    assert again == []
    a1, a2, b1 = attempts[("sub-A", 1)], attempts[("sub-A", 2)], attempts[("sub-B", 1)]
    assert (a1.market, a1.instance_type, a1.zone, a1.spot_price) == \
        (SPOT, "m5.large", "us-east-1b", MOTO_SPOT)
    assert (a2.market, a2.zone, a2.spot_price) == (ON_DEMAND, "us-east-1a", None)
    assert a1.host == b1.host != a2.host
    res = run_cli("cost", str(run.path), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # sub-A 1: 30 min on Spot beside sub-B: half of 0.5 h × $0.00001.
    # sub-A 2: 60 min On-Demand alone on its m5.large: $0.096 (the whole instance).
    # sub-B:   30 min beside sub-A, 90 min alone: 1.75 instance-hours × $0.00001.
    assert out["by_market"][ON_DEMAND] == pytest.approx(0.096)
    assert out["by_market"][SPOT] == pytest.approx((0.25 + 1.75) * MOTO_SPOT)
    assert round(out["dollars"], 2) == 0.10
    assert out["dollars"] == pytest.approx(0.096 + 2 * MOTO_SPOT)
    assert out["lost_dollars"] == pytest.approx(0.25 * MOTO_SPOT)
    assert out["measured_attempts"] == 3
    per = {(a["scan_id"], a["attempt"]): a for a in out["attempts"]}
    assert per[("sub-A", 1)]["price_per_hour"] == MOTO_SPOT
    assert per[("sub-A", 1)]["share"] == pytest.approx(0.5)
    assert per[("sub-A", 2)]["share"] == pytest.approx(1.0)
    text = run_cli("cost", str(run.path))
    assert "m5.large Spot, m5.large On-Demand" in text.stderr
    assert "measured: all 3 attempt(s)" in text.stderr


# --------------------------------------------------------------------------- prices


def test_refresh_from_the_price_list_api_and_the_tables_date(aws) -> None:  # type: ignore[no-untyped-def]
    with pricing_replay() as (url, received):
        doc = refresh_prices(
            pricing=boto3.client("pricing", endpoint_url=url, region_name="us-east-1"),
            ec2=boto3.client("ec2", endpoint_url=aws.url, region_name="us-east-1"),
            region="us-east-1", instance_types=["r5.large", "m5.large"])
    asked = {f["Field"]: f["Value"] for r in received for f in r["Filters"]
             if f["Field"] != "instanceType"}
    assert asked["regionCode"] == "us-east-1" and asked["operatingSystem"] == "Linux"
    assert {r["target"] for r in received} == {"AWSPriceListService.GetProducts"}
    prices = doc["regions"]["us-east-1"]
    assert prices["r5.large"] == {"on_demand": 0.126, "spot": MOTO_SPOT}
    assert prices["m5.large"]["on_demand"] == 0.096
    assert doc["instance_types"]["r5.large"] == {"vcpus": 2.0, "memory_mib": 16384}
    shipped = load_prices()
    assert table_date(shipped) == date(2024, 12, 1)
    warning = age_warning(shipped, today=date(2026, 12, 2))
    assert warning is not None and "2024-12-01, 731 days ago" in warning
    assert "bidsbatch cost prices --refresh" in warning
    assert age_warning(shipped, today=date(2025, 3, 1)) is None
    save_user_prices(doc)
    assert age_warning(load_prices()) is None  # the newest layer counts


def test_cli_refreshes_prices_through_the_price_list_api(aws) -> None:  # type: ignore[no-untyped-def]
    with pricing_replay() as (url, received):
        res = run_cli("cost", "prices", "--refresh", "--json",
                      env={"AWS_ENDPOINT_URL_PRICING": url})
    assert res.returncode == 0, res.stderr
    assert received, "the Price List API was not asked"
    out = json.loads(res.stdout)
    assert out["date"] == datetime.now(UTC).date().isoformat()
    assert "warning" not in res.stderr  # fresh prices: no word on their age

"""The cost model on hand-computed cases, the price table, and the cost commands end to end.

Figures are worked out by hand in the comments; prices are the shipped table's
(us-east-1) unless a test lays its own table over it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_cli

from bidsbatch.cost import (
    ON_DEMAND,
    RECLAIMED,
    SPOT,
    SUCCEEDED,
    CostContext,
    HourlyPrice,
    InstanceType,
    attempt_cost,
    estimate,
    hours_for,
    instance_share,
    outcome,
    run_cost,
    scans_per_instance,
)
from bidsbatch.errors import UsageError
from bidsbatch.executors.awsbatch.cost import batch_cost_context
from bidsbatch.executors.awsbatch.settings import BatchSettings
from bidsbatch.executors.local.executor import LocalExecutor
from bidsbatch.ledger import AttemptRecord, Ledger
from bidsbatch.pipelines import Resources, load_pipeline
from bidsbatch.pricing import (
    load_prices,
    parse_price_list_item,
    spot_prices,
)
from bidsbatch.runs import RunDir
from bidsbatch.specs import RunInfo
from bidsbatch.synth import make_dataset
from bidsbatch.timestamps import iso

M2G = Resources(vcpus=2, memory_mib=15200)
DEMO = Resources(vcpus=1, memory_mib=512)
R5_LARGE = InstanceType("r5.large", 2, 16384)
M5_LARGE = InstanceType("m5.large", 2, 8192)
M5_XLARGE = InstanceType("m5.xlarge", 4, 16384)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
#: Round prices for the hand computations that are not about the shipped table.
PRICES = {"r5.large": HourlyPrice(on_demand=0.126, spot=0.040),
          "m5.large": HourlyPrice(on_demand=0.096, spot=0.036)}


def at(minutes: float) -> str:
    return iso(T0 + timedelta(minutes=minutes)) or ""


def attempt(scan: str, n: int, start: float, end: float | None, *, code: int | None = 0,
            reason: str | None = None, market: str | None = SPOT,
            instance: str | None = "r5.large", cpu: float | None = None) -> AttemptRecord:
    return AttemptRecord(scan, n, f"job-{scan}-{n}", at(start),
                         None if end is None else at(end), code, reason, cpu, market, instance)


# --------------------------------------------------------------------------- packing


def test_packing_by_vcpus_memory_and_gpus() -> None:
    assert scans_per_instance(M2G, R5_LARGE) == 1  # 15,200 MiB of the 15,564 jobs can have
    assert scans_per_instance(M2G, M5_LARGE) == 0  # 8 GiB
    assert scans_per_instance(M2G, InstanceType("r5.4xlarge", 16, 131072)) == 8
    assert scans_per_instance(DEMO, M5_XLARGE) == 4  # the vCPUs bind: 4 of 1
    # fMRIPrep's 16 GiB do not fit a 16 GiB instance: the OS and the ECS agent keep some.
    fmriprep = Resources(vcpus=4, memory_mib=16384)
    assert scans_per_instance(fmriprep, M5_XLARGE) == 0
    assert scans_per_instance(fmriprep, InstanceType("m5.4xlarge", 16, 65536)) == 3  # 62,259 MiB
    gpu_job = Resources(vcpus=4, memory_mib=8192, gpus=1)
    assert scans_per_instance(gpu_job, InstanceType("g4dn.xlarge", 4, 16384, gpus=1)) == 1
    assert scans_per_instance(gpu_job, InstanceType("m5.2xlarge", 8, 32768)) == 0


def test_share_is_the_larger_fraction() -> None:
    assert instance_share(M2G, R5_LARGE) == 1.0  # max(2/2, 15200/16384)
    assert instance_share(Resources(vcpus=1, memory_mib=2048), M5_LARGE) == 0.5  # vCPU
    assert instance_share(Resources(vcpus=1, memory_mib=6144), M5_LARGE) == 0.75  # memory
    assert instance_share(DEMO, M5_XLARGE) == 0.25


def test_estimate_one_scan_per_instance_on_demand_and_spot() -> None:
    est = estimate(scans=24, job=M2G, instance=R5_LARGE, price=PRICES["r5.large"],
                   hours_per_scan=1.0)
    assert est.scans_per_instance == 1 and est.instance_hours == 24.0
    od, spot = est.markets[ON_DEMAND], est.markets[SPOT]
    assert od.per_scan == pytest.approx(0.126) and od.total == pytest.approx(3.024)
    assert spot.per_scan == pytest.approx(0.040) and spot.total == pytest.approx(0.96)
    assert est.spot_saving == pytest.approx(1 - 0.96 / 3.024)  # 68.3%


def test_estimate_packs_small_jobs() -> None:
    # 10 demo scans of 30 min, 4 per m5.xlarge: 10 × 0.5 / 4 = 1.25 instance-hours.
    est = estimate(scans=10, job=DEMO, instance=M5_XLARGE,
                   price=HourlyPrice(on_demand=0.192, spot=0.0768), hours_per_scan=0.5)
    assert est.instance_hours == 1.25
    assert est.markets[ON_DEMAND].total == pytest.approx(0.24)
    assert est.markets[ON_DEMAND].per_scan == pytest.approx(0.024)  # 0.5 × 0.192 / 4
    with pytest.raises(ValueError, match="does not fit"):
        estimate(scans=1, job=M2G, instance=M5_LARGE, price=PRICES["m5.large"],
                 hours_per_scan=1)


def test_the_seeds_five_cents_a_scan() -> None:
    """ANCHORS.md: m2g on r5.large, "a little over an hour" for a whole dataset run in
    parallel (so each scan ran for about that long), "roughly $0.05/scan".

    With the shipped prices (us-east-1): r5.large $0.126/h On-Demand, $0.040/h Spot.
    One scan per instance (2 vCPU, 15,200 MiB on 2 vCPU, 16 GiB), so a scan costs its
    hours × the hourly price: one hour is $0.126 On-Demand and $0.040 on Spot.
    $0.05 buys 0.05 / 0.040 = 1.25 h on Spot ("a little over an hour": consistent),
    but only 0.05 / 0.126 = 0.40 h = 24 min On-Demand (not consistent with scans that
    took the whole hour). So the seeds' figure assumes Spot instances at about $0.04/h
    and ~1.25 h per scan; the same run On-Demand costs 1.25 × 0.126 = $0.1575 a scan,
    3.15 times as much, and a Spot reclaim adds the lost part of an attempt on top.
    """
    table = load_prices()
    price = table.prices("us-east-1")["r5.large"]
    assert (price.on_demand, price.spot) == (0.126, 0.040)
    r5 = table.instance("r5.large")
    one_hour = estimate(scans=1, job=M2G, instance=r5, price=price, hours_per_scan=1.0)
    assert one_hour.markets[ON_DEMAND].per_scan == pytest.approx(0.126)
    assert one_hour.markets[SPOT].per_scan == pytest.approx(0.040)
    assert hours_for(0.05, price_per_hour=price.spot) == pytest.approx(1.25)
    assert hours_for(0.05, price_per_hour=price.on_demand) * 60 == pytest.approx(23.8, abs=0.1)
    seeds = estimate(scans=1, job=M2G, instance=r5, price=price, hours_per_scan=1.25)
    assert seeds.markets[SPOT].per_scan == pytest.approx(0.05)
    assert seeds.markets[ON_DEMAND].per_scan == pytest.approx(0.1575)


# --------------------------------------------------------------------------- after a run


def batch_context(**kw: object) -> CostContext:
    values: dict = {"job": M2G, "priced": True, "prices": PRICES,
                    "instance_types": {"r5.large": R5_LARGE, "m5.large": M5_LARGE},
                    "default_instance": R5_LARGE, "region": "us-east-1", **kw}
    return CostContext(**values)


RECLAIM = "Host EC2 (instance i-0123456789abcdef0) terminated."


def test_attempts_priced_with_reclaims_failures_and_retries() -> None:
    attempts = [
        # A: reclaimed after 30 min on Spot (0.5 × 0.040 = 0.020), then 1 h On-Demand (0.126)
        attempt("sub-A", 1, 0, 30, code=None, reason=RECLAIM),
        attempt("sub-A", 2, 32, 92, market=ON_DEMAND),
        # B: 2 h on Spot: 0.080
        attempt("sub-B", 1, 0, 120),
        # C: the app failed after 15 min on Spot: 0.010
        attempt("sub-C", 1, 0, 15, code=1, reason="Essential container in task exited"),
    ]
    assert [outcome(a) for a in attempts] == [RECLAIMED, SUCCEEDED, SUCCEEDED, "failed"]
    cost = run_cost(attempts, batch_context(), now=T0 + timedelta(hours=5))
    a = cost.scans["sub-A"]
    assert a.attempts == 2 and a.dollars == pytest.approx(0.146)
    assert a.lost_dollars == pytest.approx(0.020) and a.lost_seconds == 1800
    assert cost.scans["sub-B"].dollars == pytest.approx(0.080)
    assert cost.scans["sub-C"].lost_dollars == pytest.approx(0.010)
    assert cost.dollars == pytest.approx(0.236)  # 0.146 + 0.080 + 0.010
    assert cost.lost_dollars == pytest.approx(0.030)
    assert cost.by_market == pytest.approx({SPOT: 0.110, ON_DEMAND: 0.126})
    assert cost.by_outcome == pytest.approx({RECLAIMED: 0.020, SUCCEEDED: 0.206,
                                             "failed": 0.010})
    assert cost.succeeded_scans == 2 and cost.per_succeeded_scan == pytest.approx(0.118)
    assert cost.instance_hours == pytest.approx(0.5 + 1 + 2 + 0.25)


def test_share_of_a_bigger_instance_and_running_attempts() -> None:
    # A 1 vCPU / 2 GiB job on m5.large holds half of it: 1 h On-Demand = 0.5 × 0.096.
    ctx = batch_context(job=Resources(vcpus=1, memory_mib=2048))
    half = attempt_cost(attempt("s", 1, 0, 60, market=ON_DEMAND, instance="m5.large"), ctx,
                        now=T0)
    assert half.share == 0.5 and half.dollars == pytest.approx(0.048)
    # Still running: counted up to now (10 min on Spot r5.large: 10/60 × 0.040).
    running = attempt_cost(attempt("s", 2, 0, None, code=None), batch_context(),
                           now=T0 + timedelta(minutes=10))
    assert running.outcome == "running" and running.dollars == pytest.approx(0.04 / 6)
    # Unknown market: the context's default (On-Demand); unknown type: the default type.
    guess = attempt_cost(attempt("s", 3, 0, 60, market=None, instance=None), batch_context(),
                         now=T0)
    assert (guess.market, guess.instance_type) == (ON_DEMAND, "r5.large")
    assert guess.dollars == pytest.approx(0.126)


def test_local_runs_have_times_and_no_dollars() -> None:
    ctx = CostContext(job=DEMO, priced=False)
    attempts = [attempt("a", 1, 0, 2, market=None, instance=None, cpu=90.0),
                attempt("b", 1, 0, 1, code=3, market=None, instance=None, cpu=30.0)]
    cost = run_cost(attempts, ctx, now=T0, scan_ids=["a", "b", "c"])
    assert cost.dollars is None and cost.per_succeeded_scan is None
    assert cost.cpu_seconds == 120.0 and cost.wall_seconds == 180.0
    assert cost.scans["c"].attempts == 0 and cost.scans["c"].cpu_seconds is None
    assert cost.to_dict()["currency"] is None


# --------------------------------------------------------------------------- price table


def test_shipped_table_has_its_source_and_the_usual_types() -> None:
    table = load_prices()
    source = table.sources[0]
    assert source.where == "shipped table" and source.retrieved and "AWS" in source.source
    for name in ("r5.large", "r5.xlarge", "r5.2xlarge", "r5.4xlarge", "m5.large",
                 "m5.4xlarge", "c5.xlarge", "c5.4xlarge", "m6i.large", "r6i.large",
                 "t3.medium", "t3.large", "g4dn.xlarge"):
        price = table.prices("us-east-1")[name]
        assert price.on_demand and price.spot and price.spot < price.on_demand, name
    assert table.instance("g4dn.xlarge").gpus == 1
    assert {"us-west-2", "eu-west-1"} <= set(table.regions)
    assert table.region_or_default("ap-south-2")[0] == "us-east-1"
    with pytest.raises(UsageError, match="not in the price table"):
        table.instance("x9.nonsense")


def test_user_file_and_prices_option_override_entry_by_entry(tmp_path: Path) -> None:
    import os

    config = Path(os.environ["BIDSBATCH_CONFIG_DIR"])
    config.mkdir(parents=True)
    (config / "prices.json").write_text(json.dumps({
        "source": "my notes", "retrieved": "2026-11-01",
        "regions": {"us-east-1": {"r5.large": {"spot": 0.031}}}}))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({
        "instance_types": {"x2.tiny": {"vcpus": 1, "memory_mib": 1024}},
        "regions": {"us-east-1": {"x2.tiny": {"on_demand": 0.01}}}}))
    table = load_prices(extra)
    r5 = table.prices("us-east-1")["r5.large"]
    assert (r5.on_demand, r5.spot) == (0.126, 0.031)  # Spot from the user, On-Demand shipped
    assert table.prices("us-east-1")["x2.tiny"].on_demand == 0.01
    assert [s.where for s in table.sources] == ["shipped table", str(config / "prices.json"),
                                                str(extra)]
    extra.write_text('{"regions": {"us-east-1": {"r5.large": {"spot": "cheap"}}}}')
    with pytest.raises(UsageError, match="spot must be a non-negative number"):
        load_prices(extra)


def test_price_list_product_parsing() -> None:
    # The shape of one AmazonEC2 product from pricing:GetProducts (abridged).
    product = {
        "product": {"productFamily": "Compute Instance", "attributes": {
            "instanceType": "r5.large", "vcpu": "2", "memory": "16 GiB", "gpu": "0",
            "operatingSystem": "Linux", "tenancy": "Shared", "regionCode": "us-east-1"}},
        "terms": {"OnDemand": {"SKU.JRTCKXETXF": {"priceDimensions": {
            "SKU.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "pricePerUnit": {"USD": "0.1260000000"},
                                          "description": "$0.126 per On Demand Linux r5.large"
                                          }}}}},
    }
    inst, price = parse_price_list_item(json.dumps(product))
    assert inst == InstanceType("r5.large", 2.0, 16384, 0) and price == 0.126
    product["terms"]["OnDemand"]["SKU.JRTCKXETXF"]["priceDimensions"][
        "SKU.JRTCKXETXF.6YS6EN2CT7"]["pricePerUnit"]["USD"] = "0.0000000000"
    assert parse_price_list_item(json.dumps(product)) is None  # a reservation placeholder


def test_spot_prices_from_the_spot_price_history(aws) -> None:  # type: ignore[no-untyped-def]
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=aws.url, region_name="us-east-1")
    prices = spot_prices(ec2, ["r5.large", "m5.large"])
    assert set(prices) == {"r5.large", "m5.large"}  # moto's history: 0.00001 in every zone
    assert prices["r5.large"] == pytest.approx(0.00001)


def test_context_of_a_batch_run_states_its_assumptions() -> None:
    info = _run_info(["a"])
    attempts = [attempt("a", 1, 0, 60, market=None, instance=None),
                attempt("a", 2, 0, 60, instance="c7g.medium")]
    ctx = batch_cost_context(
        BatchSettings.from_json({"region": "eu-west-1", "job_queue": "q",
                                 "instance_types": ["r6i"]}),
        info=info, table=load_prices(), attempts=attempts)
    assert ctx.region == "eu-west-1" and ctx.default_instance.name == "r6i.large"
    text = " | ".join(ctx.assumptions)
    assert "1 attempt(s) without an instance type: priced as r6i.large" in text
    assert "c7g.medium not in the price table" in text
    assert "without a market: priced On-Demand" in text
    local = LocalExecutor().cost_context(info=info, table=load_prices(), attempts=[])
    assert not local.priced


def test_fargate_tasks_pay_for_their_own_size() -> None:
    # m2g on Fargate: 2 vCPU × $0.04048 + 14.84375 GB × $0.004445 = $0.146941 an hour;
    # Fargate Spot at 70% off: $0.0440823.
    ctx = batch_cost_context(
        BatchSettings.from_json({"job_queue": "q", "region": "us-east-1",
                                 "platform": "fargate"}),
        info=_run_info(["a"]), table=load_prices(), attempts=[])
    od = attempt_cost(attempt("a", 1, 0, 60, market=ON_DEMAND, instance=None), ctx, now=T0)
    spot = attempt_cost(attempt("a", 2, 0, 60, instance=None), ctx, now=T0)
    assert od.share == 1.0 and od.dollars == pytest.approx(0.146941, abs=1e-6)
    assert spot.dollars == pytest.approx(0.0440823, abs=1e-6)
    assert any(a.startswith("Fargate: 2 vCPU × $0.04048") for a in ctx.assumptions)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    # 3 participants × 2 sessions = 6 scans.
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=3, sessions=("1", "2"),
                        shape=(12, 12, 8), n_volumes=8)


def test_cli_estimate_m2g(ds: Path) -> None:
    res = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["scans"] == 6 and out["instance_type"]["name"] == "r5.large"
    assert out["scans_per_instance"] == 1 and out["instance_hours"] == 6.0
    # 6 scans × 1 h × $0.126 = $0.756 On-Demand; × $0.040 = $0.24 on Spot.
    assert out["markets"]["on-demand"] == {"price_per_hour": 0.126, "per_scan": 0.126,
                                           "total": 0.756}
    assert out["markets"]["spot"] == {"price_per_hour": 0.04, "per_scan": 0.04, "total": 0.24}
    assert any("1 h per scan" in a for a in out["assumptions"])
    text = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g")
    assert text.returncode == 0 and text.stdout == ""
    for figure in ("r5.large", "$0.756", "$0.240", "$0.1260", "$0.0400", "68%",
                   "assuming 1 h per scan", "shipped table, retrieved"):
        assert figure in text.stderr, figure


def test_cli_estimate_the_seeds_assumption_and_options(ds: Path) -> None:
    # The seeds' $0.05: Spot, 1.25 h per scan; only participant 01 (2 scans).
    res = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g", "--hours-per-scan", "1.25",
                  "-p", "01", "--spot", "--json")
    out = json.loads(res.stdout)
    assert out["scans"] == 2 and out["market"] == "spot"
    assert out["markets"]["spot"]["per_scan"] == pytest.approx(0.05)
    assert out["markets"]["on-demand"]["per_scan"] == pytest.approx(0.1575)
    text = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g", "--spot",
                   "--hours-per-scan", "1.25")
    assert "Spot" in text.stderr and "On-Demand  " not in text.stderr
    assert "$0.0500" in text.stderr and "1.25 h per scan" in text.stderr
    # demo: 4 per m5.xlarge at 0.5 h: 6 × 0.5 / 4 = 0.75 instance-hours × $0.192 = $0.144
    packed = json.loads(run_cli("cost", "estimate", str(ds), "-t", "m5.xlarge",
                                "--hours-per-scan", "0.5", "--json").stdout)
    assert packed["scans_per_instance"] == 4 and packed["instance_hours"] == 0.75
    assert packed["markets"]["on-demand"]["total"] == pytest.approx(0.144)
    bad = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g", "-t", "c5.large")
    assert bad.returncode == 2 and "does not fit on c5.large" in bad.stderr
    assert "r5.large" in bad.stderr  # the hint names types it fits on
    unknown = run_cli("cost", "estimate", str(ds), "-p", "09")
    assert unknown.returncode == 2


def test_cli_refresh_without_credentials_is_one_clear_line(ds: Path) -> None:
    res = run_cli("cost", "estimate", str(ds), "--pipeline", "m2g", "--refresh-prices")
    assert res.returncode == 1
    assert "error: no AWS credentials found while reading On-Demand prices" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 2


def _run_info(scans: list[str]) -> RunInfo:
    return RunInfo(run_id="m2g-handmade", dataset="s3://bucket/bids", dataset_name="hand-made",
                   output="s3://bucket/out", pipeline=load_pipeline("m2g").to_dict(),
                   pipeline_source="preset m2g", selection={}, scans=scans,
                   bidsbatch_version="0.1.0")


def test_cli_cost_of_a_batch_run_from_its_ledger(tmp_path: Path) -> None:
    """A Batch run's ledger written by hand through the Ledger API, priced by `cost RUN`."""
    scans = ["sub-A", "sub-B", "sub-C"]
    run = RunDir(tmp_path / "m2g-handmade")
    run.path.mkdir()
    run.run_json.write_text(_run_info(scans).to_json())
    with Ledger.open(run.ledger_path) as ledger:
        ledger.add_scans(scans)
        ledger.set_meta("executor", "aws-batch")
        ledger.set_meta("executor_settings", {"job_queue": "q", "region": "us-east-1"})
        for a in (attempt("sub-A", 1, 0, 30, code=None, reason=RECLAIM),
                  attempt("sub-A", 2, 32, 92, market=ON_DEMAND),
                  attempt("sub-B", 1, 0, 120),
                  attempt("sub-C", 1, 0, 15, code=1, reason="Essential container exited")):
            ledger.record_attempt(a)
        ledger.update("sub-A", state="succeeded", attempts=2, exit_code=0)
        ledger.update("sub-B", state="succeeded", attempts=1, exit_code=0)
        ledger.update("sub-C", state="failed", attempts=1, exit_code=1)
    res = run_cli("cost", str(run.path), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # Shipped prices: r5.large $0.126 On-Demand, $0.040 Spot; m2g holds a whole r5.large.
    assert out["priced"] and out["currency"] == "USD" and out["region"] == "us-east-1"
    assert out["dollars"] == pytest.approx(0.236)  # 0.020 + 0.126 + 0.080 + 0.010
    assert out["lost_dollars"] == pytest.approx(0.030)
    assert out["by_market"] == pytest.approx({"spot": 0.110, "on-demand": 0.126})
    assert out["by_outcome"]["reclaimed"] == pytest.approx(0.020)
    assert out["per_succeeded_scan"] == pytest.approx(0.118)  # 0.236 / 2
    assert out["instance_hours"] == pytest.approx(3.75)
    per_scan = {s["scan_id"]: s for s in out["scans"]}
    assert per_scan["sub-A"]["dollars"] == pytest.approx(0.146)
    assert per_scan["sub-A"]["lost_dollars"] == pytest.approx(0.020)
    assert out["assumptions"] == []  # every attempt had its type and market
    text = run_cli("cost", "show", str(run.path))
    assert text.returncode == 0
    assert "$0.236" in text.stderr and "$0.118 per succeeded scan" in text.stderr
    assert "$0.0200 to Spot reclaims (1)" in text.stderr
    assert "$0.0100 to failures (1)" in text.stderr


def test_cli_cost_after_a_local_run_shows_cpu_time_and_no_dollars(ds: Path,
                                                                  tmp_path: Path) -> None:
    res = run_cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "-p", "01", "--json")
    assert res.returncode == 0, res.stderr
    run_id = json.loads(res.stdout)["run_id"]
    cost = run_cli("cost", run_id, "--json")
    assert cost.returncode == 0, cost.stderr
    out = json.loads(cost.stdout)
    assert out["priced"] is False and out["dollars"] is None
    assert out["cpu_seconds"] > 0 and out["wall_seconds"] >= out["cpu_seconds"] / 4
    assert {s["scan_id"] for s in out["scans"]} == {"sub-01_ses-1", "sub-01_ses-2"}
    text = run_cli("cost")  # the latest run
    assert "CPU time" in text.stderr and "$" not in text.stderr
    status = run_cli("status", run_id)
    assert "CPU time" in status.stderr and "no dollars" in status.stderr
    assert run_cli("cost", "--help").returncode == 0
    missing = run_cli("cost", "no-such-run")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr

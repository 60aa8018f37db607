"""Where prices come from, and how they apply to a run.

The price table is data: ``bidsbatch/data/prices.json`` ships with the
package (its ``source`` and ``retrieved`` date inside), the user's
``$BIDSBATCH_CONFIG_DIR/prices.json`` overrides it, and a file given with
``--prices`` overrides both, entry by entry. ``--refresh-prices`` rewrites
the user's file from AWS: On-Demand prices from the Price List API
(``pricing:GetProducts``, AmazonEC2, Linux, shared tenancy; the API lives in
us-east-1) and Spot prices from ``ec2:DescribeSpotPriceHistory`` (the median
over the region's availability zones of each zone's latest price).

:func:`run_cost_for` prices a run from its ledger: the attempts, the
pipeline's resources, the instance types and markets the executor recorded,
and what to assume where it recorded none.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources as importlib_resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cost import (
    CostContext,
    HourlyPrice,
    InstanceType,
    RunCost,
    StorageRates,
    cheapest_fits,
    scans_per_instance,
)
from .errors import BidsbatchError, UsageError
from .ledger import Ledger
from .pipelines import Resources
from .runs import RunDir
from .specs import RunInfo
from .storage import atomic_write

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .cost_actual import S3Requests
    from .executors import Executor

PRICES_FILE = "prices.json"
#: Used when nothing says which region a run or an estimate is in.
DEFAULT_REGION = "us-east-1"
#: Used when nothing names an instance type: the seed setup's instance (one m2g job each).
FALLBACK_INSTANCE_TYPE = "r5.large"
#: The Price List API answers in us-east-1 (and two other regions), whatever region is priced.
PRICING_API_REGION = "us-east-1"


@dataclass(frozen=True)
class PriceSource:
    """Where a layer of the table came from."""

    where: str  # "shipped", a file path, or "AWS"
    source: str
    retrieved: str

    def describe(self) -> str:
        when = f", retrieved {self.retrieved}" if self.retrieved else ""
        return f"{self.where}{when}"


@dataclass
class PriceTable:
    """Instance types and their hourly prices per region, from one or more layers."""

    instance_types: dict[str, InstanceType] = field(default_factory=dict)
    regions: dict[str, dict[str, HourlyPrice]] = field(default_factory=dict)
    sources: list[PriceSource] = field(default_factory=list)
    #: Per region: vcpu_hour, gb_hour (USD) and spot_discount (a fraction) of Fargate.
    fargate: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Per region: EBS gp3 and S3 request prices.
    storage: dict[str, StorageRates] = field(default_factory=dict)

    def storage_rates(self, region: str) -> StorageRates:
        """EBS and S3 request prices of ``region`` (us-east-1's when it has none)."""
        return self.storage.get(region) or self.storage.get(DEFAULT_REGION) or StorageRates()

    def prices(self, region: str) -> dict[str, HourlyPrice]:
        """Prices of one region ({} when the table has none)."""
        return self.regions.get(region, {})

    def instance(self, name: str) -> InstanceType:
        """An instance type by name; UsageError naming a few known ones when unknown."""
        try:
            return self.instance_types[name]
        except KeyError:
            known = ", ".join(sorted(self.instance_types)[:8])
            raise UsageError(
                f"instance type {name!r} is not in the price table",
                hint=f"known: {known}, …; add it with --prices FILE or --refresh-prices",
            ) from None

    def region_or_default(self, region: str) -> tuple[str, list[str]]:
        """The region to price with, and an assumption when it is not the one asked for."""
        if region in self.regions:
            return region, []
        return DEFAULT_REGION, [f"no prices for {region} in the table: priced as {DEFAULT_REGION}"]

    def describe_sources(self) -> str:
        return "; ".join(s.describe() for s in self.sources)

    def merge(self, doc: dict[str, Any], *, where: str) -> None:
        """Lay a price document over this table, entry by entry."""
        types, regions, source = parse_document(doc, where=where)
        self.instance_types.update(types)
        for region, prices in regions.items():
            mine = self.regions.setdefault(region, {})
            for name, price in prices.items():
                old = mine.get(name, HourlyPrice())
                mine[name] = HourlyPrice(
                    on_demand=price.on_demand if price.on_demand is not None else old.on_demand,
                    spot=price.spot if price.spot is not None else old.spot,
                )
        for region, rates in _fargate_rates(doc, where=where).items():
            self.fargate.setdefault(region, {}).update(rates)
        for region, values in _storage_rates(doc, where=where).items():
            old = self.storage.get(region, StorageRates())
            self.storage[region] = StorageRates(**{
                k: values.get(k, getattr(old, k)) for k in StorageRates.__dataclass_fields__})
        self.sources.append(source)

    def fargate_price(self, job: Resources, region: str) -> tuple[HourlyPrice, str] | None:
        """What one Fargate task of ``job``'s size costs an hour, and how it was worked out."""
        rates = self.fargate.get(region)
        if not rates or "vcpu_hour" not in rates or "gb_hour" not in rates:
            return None
        gib = job.memory_mib / 1024
        hourly = job.vcpus * rates["vcpu_hour"] + gib * rates["gb_hour"]
        discount = rates.get("spot_discount")
        how = (f"Fargate: {job.vcpus:g} vCPU × ${rates['vcpu_hour']} + {gib:g} GB × "
               f"${rates['gb_hour']} an hour"
               + (f", Fargate Spot {discount:.0%} less" if discount is not None else ""))
        spot = None if discount is None else hourly * (1 - discount)
        return HourlyPrice(on_demand=hourly, spot=spot), how


def _fargate_rates(doc: dict[str, Any], *, where: str) -> dict[str, dict[str, float]]:
    raw = doc.get("fargate", {})
    ok = isinstance(raw, dict) and all(
        isinstance(r, dict) and all(k in ("vcpu_hour", "gb_hour", "spot_discount")
                                    and isinstance(v, int | float) and not isinstance(v, bool)
                                    and v >= 0 for k, v in r.items())
        for r in raw.values())
    if not ok:
        raise UsageError(f"{where}: 'fargate' must map regions to "
                         "{vcpu_hour, gb_hour, spot_discount} numbers")
    return {region: {k: float(v) for k, v in rates.items()} for region, rates in raw.items()}


def _storage_rates(doc: dict[str, Any], *, where: str) -> dict[str, dict[str, float]]:
    raw = doc.get("storage", {})
    names = set(StorageRates.__dataclass_fields__)
    ok = isinstance(raw, dict) and all(
        isinstance(r, dict) and all(k in names and isinstance(v, int | float)
                                    and not isinstance(v, bool) and v >= 0
                                    for k, v in r.items())
        for r in raw.values())
    if not ok:
        raise UsageError(f"{where}: 'storage' must map regions to "
                         f"{{{', '.join(sorted(names))}}} numbers")
    return {region: {k: float(v) for k, v in rates.items()} for region, rates in raw.items()}


def parse_document(doc: Any, *, where: str
                   ) -> tuple[dict[str, InstanceType], dict[str, dict[str, HourlyPrice]],
                              PriceSource]:
    """Validate a price document (the format of ``data/prices.json``); UsageError if bad."""

    def fail(message: str) -> UsageError:
        return UsageError(f"{where}: {message}",
                          hint="see bidsbatch/data/prices.json for the format")

    if not isinstance(doc, dict):
        raise fail("a price table must be a JSON object")
    types: dict[str, InstanceType] = {}
    raw_types = doc.get("instance_types", {})
    if not isinstance(raw_types, dict):
        raise fail("'instance_types' must map names to {vcpus, memory_mib[, gpus]}")
    for name, spec in raw_types.items():
        try:
            types[name] = InstanceType(name=name, vcpus=float(spec["vcpus"]),
                                       memory_mib=int(spec["memory_mib"]),
                                       gpus=int(spec.get("gpus", 0)))
        except (KeyError, TypeError, ValueError):
            raise fail(f"instance type {name!r} needs numbers vcpus and memory_mib") from None
        if types[name].vcpus <= 0 or types[name].memory_mib <= 0:
            raise fail(f"instance type {name!r} has no vCPUs or no memory")
    regions: dict[str, dict[str, HourlyPrice]] = {}
    raw_regions = doc.get("regions", {})
    if not isinstance(raw_regions, dict):
        raise fail("'regions' must map regions to {instance type: {on_demand, spot}}")
    for region, prices in raw_regions.items():
        if not isinstance(prices, dict):
            raise fail(f"region {region!r} must map instance types to prices")
        out = regions[region] = {}
        for name, entry in prices.items():
            if not isinstance(entry, dict) or set(entry) - {"on_demand", "spot"}:
                raise fail(f"{region} {name}: give 'on_demand' and/or 'spot' in USD per hour")
            values = {}
            for key in ("on_demand", "spot"):
                v = entry.get(key)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                      or v < 0):
                    raise fail(f"{region} {name}: {key} must be a non-negative number")
                values[key] = None if v is None else float(v)
            out[name] = HourlyPrice(**values)
    source = PriceSource(where=where, source=str(doc.get("source", "")),
                         retrieved=str(doc.get("retrieved", "")))
    return types, regions, source


def shipped_document() -> dict[str, Any]:
    """The price table that ships with bidsbatch."""
    res = importlib_resources.files("bidsbatch") / "data" / PRICES_FILE
    return json.loads(res.read_text(encoding="utf-8"))


def user_prices_path() -> Path:
    """The user's price table: ``$BIDSBATCH_CONFIG_DIR/prices.json`` (see config.py)."""
    from .config import config_dir

    return config_dir() / PRICES_FILE


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"price file {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read price file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"price file {path} is not valid JSON: {exc}") from None


def load_prices(extra: Path | None = None) -> PriceTable:
    """The shipped table, overridden by the user's file, overridden by ``extra``."""
    table = PriceTable()
    table.merge(shipped_document(), where="shipped table")
    user = user_prices_path()
    if user.exists():
        table.merge(_read_json(user), where=str(user))
    if extra is not None:
        table.merge(_read_json(extra), where=str(extra))
    return table


def default_region() -> str:
    """The region of the standard AWS configuration, else us-east-1."""
    return (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
            or DEFAULT_REGION)


# --------------------------------------------------------------------------- refresh from AWS


def parse_price_list_item(text: str) -> tuple[InstanceType, float] | None:
    """One AmazonEC2 product of the Price List API: its instance type and On-Demand USD/hour.

    None for products that are not an hourly On-Demand instance price.
    """
    item = json.loads(text)
    attrs = item.get("product", {}).get("attributes", {})
    name = attrs.get("instanceType")
    if not name:
        return None
    price = None
    for term in item.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd is not None and dim.get("unit", "Hrs") in ("Hrs", "Hours"):
                price = float(usd)
    if price is None or price <= 0:
        return None
    memory = str(attrs.get("memory", "0")).replace(",", "").split()[0]
    gpus = str(attrs.get("gpu", "0")).strip()
    inst = InstanceType(name=name, vcpus=float(attrs.get("vcpu", 0) or 0),
                        memory_mib=int(float(memory or 0) * 1024),
                        gpus=int(gpus) if gpus.isdigit() else 0)
    return inst, price


def _on_demand(pricing: Any, *, region: str, instance_type: str
               ) -> tuple[InstanceType, float] | None:
    filters = [
        {"Type": "TERM_MATCH", "Field": field_, "Value": value}
        for field_, value in (
            ("instanceType", instance_type), ("regionCode", region),
            ("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
            ("capacitystatus", "Used"), ("licenseModel", "No License required"),
        )
    ]
    found = None
    for page in pricing.get_paginator("get_products").paginate(
            ServiceCode="AmazonEC2", Filters=filters, FormatVersion="aws_v1"):
        for text in page.get("PriceList", []):
            parsed = parse_price_list_item(text)
            if parsed and parsed[0].name == instance_type:
                found = parsed
    return found


def spot_prices(ec2: Any, instance_types: Iterable[str]) -> dict[str, float]:
    """Current Linux Spot prices: per type, the median of each zone's latest price."""
    latest: dict[tuple[str, str], tuple[str, float]] = {}
    paginator = ec2.get_paginator("describe_spot_price_history")
    pages = paginator.paginate(InstanceTypes=sorted(set(instance_types)),
                               ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
                               StartTime=datetime.now(UTC))
    for page in pages:
        for entry in page.get("SpotPriceHistory", []):
            key = (entry["InstanceType"], entry.get("AvailabilityZone", ""))
            stamp = str(entry.get("Timestamp", ""))
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, float(entry["SpotPrice"]))
    per_type: dict[str, list[float]] = {}
    for (name, _zone), (_stamp, price) in latest.items():
        per_type.setdefault(name, []).append(price)
    return {name: statistics.median(values) for name, values in per_type.items()}


def refresh_prices(*, pricing: Any, ec2: Any, region: str, instance_types: Iterable[str]
                   ) -> dict[str, Any]:
    """A price document for ``region`` fetched from AWS now (both markets).

    ``pricing`` is a Price List API client (it answers in us-east-1,
    :data:`PRICING_API_REGION`), ``ec2`` an EC2 client of ``region``. Raises
    BidsbatchError with one line when AWS cannot be asked (no credentials,
    no access, no network).
    """
    from .aws.clients import aws_errors

    names = sorted(set(instance_types))
    with aws_errors("reading On-Demand prices from the AWS Price List API",
                    hint="or price with the shipped table (drop --refresh-prices)"), \
            ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(
            lambda n: _on_demand(pricing, region=region, instance_type=n), names))
    with aws_errors("reading Spot prices (ec2:DescribeSpotPriceHistory)",
                    hint="or price with the shipped table (drop --refresh-prices)"):
        spot = spot_prices(ec2, names)
    types: dict[str, Any] = {}
    prices: dict[str, Any] = {}
    for item in found:
        if item is None:
            continue
        inst, price = item
        types[inst.name] = {"vcpus": inst.vcpus, "memory_mib": inst.memory_mib,
                            **({"gpus": inst.gpus} if inst.gpus else {})}
        prices[inst.name] = {"on_demand": price}
    for name, price in spot.items():
        prices.setdefault(name, {})["spot"] = price
    if not prices:
        raise BidsbatchError(f"AWS returned no prices for {', '.join(names[:4])}… in {region}",
                             hint="check the region and the instance type names")
    return {
        "format": 1,
        "currency": "USD",
        "source": "AWS Price List API (AmazonEC2, Linux, shared tenancy) and "
                  "EC2 DescribeSpotPriceHistory (median over zones of the latest prices)",
        "retrieved": datetime.now(UTC).isoformat(timespec="seconds"),
        "instance_types": types,
        "regions": {region: prices},
    }


def save_user_prices(doc: dict[str, Any]) -> Path:
    """Merge a refreshed document into the user's price table; returns its path."""
    path = user_prices_path()
    current: dict[str, Any] = _read_json(path) if path.exists() else {}
    current.setdefault("instance_types", {}).update(doc.get("instance_types", {}))
    for region, prices in doc.get("regions", {}).items():
        mine = current.setdefault("regions", {}).setdefault(region, {})
        for name, entry in prices.items():
            mine.setdefault(name, {}).update(entry)
    for key in ("format", "currency", "source", "retrieved"):
        if key in doc:
            current[key] = doc[key]
    atomic_write(path, json.dumps(current, indent=2, sort_keys=True) + "\n")
    return path


# --------------------------------------------------------------------------- a run's prices


def job_resources(info: RunInfo) -> Resources:
    """The per-scan resources a run was planned with."""
    return info.pipeline.resources


def pick_instance(name: str, *, job: Resources, table: PriceTable, region: str
                  ) -> InstanceType | None:
    """An instance type from a name as Batch takes it: a type, or a family (cheapest fit)."""
    if name in table.instance_types:
        return table.instance_types[name]
    prices = table.prices(region)
    family = [i for i in table.instance_types.values()
              if i.family == name and scans_per_instance(job, i) >= 1]
    family.sort(key=lambda i: (prices.get(i.name, HourlyPrice()).on_demand or 1e9, i.vcpus))
    return family[0] if family else None


def estimate_instance(name: str | None, *, pipe: Any, table: PriceTable, region: str
                       ) -> tuple[InstanceType, str]:
    """The instance to price: asked for, else the AWS environment's, else the pipeline's."""
    from .aws.spec import default_instance_types

    if name:
        inst = pick_instance(name, job=pipe.resources, table=table, region=region)
        if inst is None:
            table.instance(name)  # raises, naming the known types
            raise UsageError(f"no {name} instance fits a {pipe.name} job")
        return inst, "--instance-type"
    try:
        from .config import default_environment_name, load_environment

        env_name = default_environment_name()
        env = load_environment(env_name) if env_name else None
    except BidsbatchError:
        env = None
    if env is not None:
        for candidate in env.instance_types:
            inst = pick_instance(candidate, job=pipe.resources, table=table, region=region)
            if inst:
                return inst, f"the AWS environment {env.name}"
    # Like Batch with several families to choose from: the cheapest per scan that fits.
    usual = [i for c in default_instance_types(pipe.name, pipe.resources)
             if (i := pick_instance(c, job=pipe.resources, table=table, region=region))]
    priced = cheapest_fits(pipe.resources, instances=usual, prices=table.prices(region),
                           hours_per_scan=1.0)
    if priced:
        return priced[0].instance, f"the {pipe.name} pipeline's usual instance types"
    return table.instance(FALLBACK_INSTANCE_TYPE), "bidsbatch's fallback"


def run_cost_for(run: RunDir, ledger: Ledger, *, executor: Executor | None,
                 table: PriceTable | None = None, now: datetime | None = None,
                 requests: Mapping[str, S3Requests] | None = None) -> RunCost:
    """The cost of a run so far, from its ledger, priced as its executor says.

    ``executor`` None: the run was never submitted (times only, no dollars).
    ``requests``: each scan's S3 requests (``scan_usage.s3_requests_of``), priced too.
    """
    from .cost_actual import actual_run_cost

    info = run.info()
    attempts = ledger.attempts()
    if executor is None:
        ctx = CostContext(job=job_resources(info), priced=False,
                          assumptions=("not submitted: no times, no dollars",))
    else:
        if table is None:
            table = load_prices() if _reads_prices(executor) else PriceTable()
        ctx = executor.cost_context(info=info, table=table, attempts=attempts)
    return actual_run_cost(attempts, ctx, now=now or datetime.now(UTC), scan_ids=info.scans,
                           requests=requests)


def _reads_prices(executor: Executor) -> bool:
    """Whether ``executor`` prices attempts from a table (the base engine's times-only
    context reads none: ``status`` of a local run loads no price file)."""
    from .executors.base import Executor

    return type(executor).cost_context is not Executor.cost_context

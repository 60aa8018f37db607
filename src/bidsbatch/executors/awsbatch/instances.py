"""What each Batch attempt ran on: its EC2 instance, type, market and zone, and the Spot price.

A job's description names the ECS container instance of each attempt
(``container.containerInstanceArn``); ECS's ``DescribeContainerInstances``
(100 a call, per cluster, the cluster being part of the ARN) gives its EC2
instance and the ``ecs.instance-type`` / ``ecs.availability-zone`` attributes;
EC2's ``DescribeInstances`` (100 ids a call) gives ``InstanceType`` and
``InstanceLifecycle`` (``spot``, or absent: On-Demand). Each container
instance is asked about once, in the same details pass that describes the
jobs (``poll.fetch_details``), and remembered in the ledger: a reclaimed
Spot instance is soon gone from both APIs.

A Spot attempt is priced at the Spot price of its type and zone when it
started (``DescribeSpotPriceHistory``: the latest price at or before that
time), asked once per type, zone and hour and kept in the ledger too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ...cost import ON_DEMAND, SPOT
from ...ledger import AttemptRecord, Ledger

#: Ledger meta keys: container instance ARN -> Host; "type\\tzone\\thour" -> Spot price.
HOSTS_KEY = "aws_batch_hosts"
SPOT_PRICES_KEY = "aws_spot_prices"
#: DescribeContainerInstances and DescribeInstances (by id): at most 100 a call.
DESCRIBE_MAX = 100
LINUX = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]


@dataclass(frozen=True)
class Host:
    """One ECS container instance as EC2 knows it."""

    instance_id: str
    instance_type: str | None
    market: str | None  # SPOT, ON_DEMAND, or None when EC2 no longer knew the instance
    zone: str | None


def container_instance_arns(desc: Mapping[str, Any]) -> list[str | None]:
    """The container instance of each attempt of a job, in the ledger's attempt order.

    Ended attempts first (``attempts``), then the running one (the job's own
    ``container``) when the job is running. Not an ARN (moto's ``TBD``): None.
    """
    def arn(container: Mapping[str, Any] | None) -> str | None:
        value = str((container or {}).get("containerInstanceArn") or "")
        return value if value.startswith("arn:") and ":container-instance/" in value else None

    out = [arn(a.get("container")) for a in desc.get("attempts") or []]
    attempts = desc.get("attempts") or []
    if desc.get("status") == "RUNNING" and (not attempts or attempts[-1].get("stoppedAt")):
        out.append(arn(desc.get("container")))
    return out


def cluster_of(arn: str) -> str | None:
    """The cluster named in a long-format container instance ARN (``…/CLUSTER/ID``)."""
    path = arn.split(":container-instance/", 1)[-1]
    return path.split("/", 1)[0] if "/" in path else None


class InstanceLookup:
    """ECS and EC2 questions of one details pass, each container instance asked once."""

    def __init__(self, api: Any, ledger: Ledger) -> None:
        self.api = api
        self.ledger = ledger
        raw = ledger.get_meta(HOSTS_KEY) or {}
        self.hosts: dict[str, Host] = {k: Host(**v) for k, v in raw.items()}
        self.prices: dict[str, float | None] = dict(ledger.get_meta(SPOT_PRICES_KEY) or {})

    # -- recording

    def record(self, descs: Mapping[str, Mapping[str, Any]],
               scans: Mapping[str, str]) -> int:
        """Note each attempt's host for the described jobs (child id -> desc, child id -> scan).

        Sets the ledger attempts' ``instance_type``, ``market``, ``host``, ``zone`` and,
        on Spot, ``spot_price``; returns how many attempts got a host.
        """
        by_job: dict[str, list[AttemptRecord]] = defaultdict(list)
        for a in self.ledger.attempts():
            if a.job_id in descs:
                by_job[a.job_id].append(a)
        pairs: list[tuple[AttemptRecord, str]] = []
        for cid, desc in descs.items():
            if cid not in scans:
                continue
            records = sorted(by_job.get(cid, []), key=lambda a: a.attempt)
            for rec, arn in zip(records, container_instance_arns(desc), strict=False):
                if arn:
                    pairs.append((rec, arn))
        if not pairs:
            return 0
        self._describe(arn for _rec, arn in pairs)
        updated = []
        for rec, arn in pairs:
            host = self.hosts.get(arn)
            if host is None:
                continue
            price = rec.spot_price
            if host.market == SPOT and host.instance_type and host.zone and rec.started_at:
                price = self.spot_price(host.instance_type, host.zone,
                                        datetime.fromisoformat(rec.started_at))
            updated.append(replace(
                rec, instance_type=host.instance_type or rec.instance_type,
                market=host.market or rec.market, host=host.instance_id, zone=host.zone,
                spot_price=price))
        with self.ledger.transaction():
            for rec in updated:
                self.ledger.record_attempt(rec)
            self.save()
        return len(updated)

    def _describe(self, arns: Iterable[str]) -> None:
        """Ask ECS, then EC2, about the container instances not known yet."""
        todo = sorted({a for a in arns if a not in self.hosts})
        per_cluster: dict[str | None, list[str]] = defaultdict(list)
        for arn in todo:
            per_cluster[cluster_of(arn)].append(arn)
        found: dict[str, dict[str, Any]] = {}
        for cluster, items in per_cluster.items():
            for i in range(0, len(items), DESCRIBE_MAX):
                resp = self.api.call(
                    self.api.ecs, "describe_container_instances",
                    "describing the ECS container instances the jobs ran on",
                    containerInstances=items[i:i + DESCRIBE_MAX],
                    **({"cluster": cluster} if cluster else {}))
                for ci in resp.get("containerInstances", ()):
                    found[ci["containerInstanceArn"]] = ci
        ids = sorted({ci["ec2InstanceId"] for ci in found.values() if ci.get("ec2InstanceId")})
        ec2: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), DESCRIBE_MAX):
            resp = self.api.call(self.api.ec2, "describe_instances",
                                 "describing the EC2 instances the jobs ran on",
                                 absent=frozenset({"InvalidInstanceID.NotFound"}),
                                 InstanceIds=ids[i:i + DESCRIBE_MAX])
            for reservation in resp.get("Reservations", ()):
                for inst in reservation.get("Instances", ()):
                    ec2[inst["InstanceId"]] = inst
        for arn, ci in found.items():
            attrs = {a.get("name"): a.get("value") for a in ci.get("attributes") or ()}
            iid = str(ci.get("ec2InstanceId") or "")
            inst = ec2.get(iid)
            market = None
            if inst is not None:
                market = SPOT if inst.get("InstanceLifecycle") == "spot" else ON_DEMAND
            self.hosts[arn] = Host(
                instance_id=iid,
                instance_type=(inst or {}).get("InstanceType") or attrs.get("ecs.instance-type"),
                market=market,
                zone=((inst or {}).get("Placement") or {}).get("AvailabilityZone")
                or attrs.get("ecs.availability-zone"),
            )

    def save(self) -> None:
        self.ledger.set_meta(HOSTS_KEY, {k: asdict(v) for k, v in self.hosts.items()})
        self.ledger.set_meta(SPOT_PRICES_KEY, self.prices)

    # -- Spot prices

    def spot_price(self, instance_type: str, zone: str, at: datetime) -> float | None:
        """USD an hour of ``instance_type`` on Spot in ``zone`` at ``at`` (cached by hour)."""
        hour = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        key = f"{instance_type}\t{zone}\t{hour.isoformat(timespec='hours')}"
        if key in self.prices:
            return self.prices[key]
        resp = self.api.call(
            self.api.ec2, "describe_spot_price_history",
            "reading the Spot price history (ec2:DescribeSpotPriceHistory)",
            InstanceTypes=[instance_type], ProductDescriptions=LINUX,
            AvailabilityZone=zone, StartTime=hour, EndTime=hour + timedelta(hours=1))
        self.prices[key] = price_at(resp.get("SpotPriceHistory") or [], zone=zone, at=at)
        return self.prices[key]


def price_at(history: list[Mapping[str, Any]], *, zone: str, at: datetime) -> float | None:
    """The price in effect at ``at``: the latest entry of ``zone`` at or before it.

    When the history has nothing that early (the hour's first change came
    later), its earliest entry.
    """
    entries = []
    for e in history:
        if e.get("AvailabilityZone") not in (zone, None):
            continue
        stamp = e.get("Timestamp")
        if isinstance(stamp, str):
            stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        if isinstance(stamp, datetime) and stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        entries.append((stamp, float(e["SpotPrice"])))
    if not entries:
        return None
    entries.sort(key=lambda p: p[0] or datetime.min.replace(tzinfo=UTC))
    before = [p for s, p in entries if s is not None and s <= at]
    return before[-1] if before else entries[0][1]


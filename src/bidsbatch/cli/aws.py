"""``bidsbatch aws setup|status|teardown|template`` and ``bidsbatch doctor``.

Thin: parse the options, build an :class:`EnvironmentSpec`, call the API in
``aws/environment.py`` (or ``doctor.py``), render on stderr. AWS sessions are
built here, from the standard configuration only (profiles, AWS_REGION,
AWS_ENDPOINT_URL), and handed to the API. Heavy imports (boto3) happen inside
the commands so that ``bidsbatch --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..console import err_console, print_json
from ..errors import BidsbatchError, UsageError

if TYPE_CHECKING:
    from ..aws.clients import AwsClients
    from ..aws.results import Change
    from ..aws.spec import EnvironmentSpec

aws_app = typer.Typer(
    name="aws",
    help="Set up, show and remove the AWS Batch environment bidsbatch runs in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def register(app: typer.Typer) -> None:
    """Add the ``aws`` command group and the ``doctor`` command to ``app``."""
    app.add_typer(aws_app, name="aws")
    app.command("doctor")(doctor)


# --------------------------------------------------------------------------- options

_NAME = typer.Argument(..., help="Environment name (letters, digits, - and _).")
_BUCKET = typer.Option(None, "--bucket", help="Shorthand: read and write the whole bucket "
                       "(when --dataset/--output are not given).")
_DATASET = typer.Option(None, "--dataset", help="s3:// dataset the jobs may read (repeatable).")
_OUTPUT = typer.Option(None, "--output", help="s3:// location the jobs may write.")
_SPOT = typer.Option(False, "--spot", help="Spot instances only (the default).")
_ON_DEMAND = typer.Option(False, "--on-demand", help="On-Demand instances only.")
_BOTH = typer.Option(False, "--both", help="Spot first, On-Demand as fallback.")
_TYPES = typer.Option(None, "--instance-types",
                      help="Instance types or families, comma-separated (default: the pipeline's).")
_MAX_VCPUS = typer.Option(None, "--max-vcpus", help="Most vCPUs running at once (default 256).")
_BID = typer.Option(None, "--bid-percentage",
                    help="Spot: highest price as a percentage of On-Demand (default 100).")
_DISK = typer.Option(None, "--root-volume-gib",
                     help="Root volume of each instance, GiB (default: the pipeline's disk).")
_SUBNETS = typer.Option(None, "--subnets", help="Subnet ids, comma-separated "
                        "(default: the default VPC's).")
_GROUPS = typer.Option(None, "--security-groups", help="Security group ids, comma-separated "
                       "(default: one of ours, no inbound rules).")
_REGION = typer.Option(None, "--region", help="AWS region (default: AWS_REGION or the profile's).")
_REQUESTER_PAYS = typer.Option(False, "--requester-pays",
                               help="The dataset bucket is Requester Pays.")
_PIPELINE = typer.Option(None, "--pipeline", help="Pipeline preset or TOML file the "
                         "environment is sized for (default m2g).")
_RETENTION = typer.Option(None, "--log-retention-days", help="Keep job logs this many days "
                          "(default 30).")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _markets(spot: bool, on_demand: bool, both: bool) -> tuple[Any, ...]:
    from ..aws.spec import Market

    if spot + on_demand + both > 1:
        raise UsageError("choose one of --spot, --on-demand and --both")
    if on_demand:
        return (Market.ON_DEMAND,)
    if both:
        return (Market.SPOT, Market.ON_DEMAND)
    return (Market.SPOT,)


def _default_region() -> str | None:
    # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is the newer name.
    return os.environ.get("AWS_REGION") or None


def _clients(region: str | None) -> AwsClients:
    import boto3
    from botocore.exceptions import BotoCoreError

    from ..aws.clients import AwsClients, translate_aws_error

    try:
        session = boto3.session.Session(region_name=region or _default_region())
    except BotoCoreError as exc:
        raise translate_aws_error(exc, "reading the AWS configuration") from None
    return AwsClients(session)


def _spec(*, name: str, region: str | None, bucket: str | None, dataset: list[str] | None,
          output: str | None, spot: bool, on_demand: bool, both: bool,
          instance_types: str | None, max_vcpus: int | None, bid_percentage: int | None,
          root_volume_gib: int | None, subnets: str | None, security_groups: str | None,
          requester_pays: bool, pipeline: str | None, log_retention_days: int | None
          ) -> EnvironmentSpec:
    from ..aws.spec import EnvironmentSpec

    return EnvironmentSpec.create(
        name=name,
        region=region or "",
        bucket=bucket,
        datasets=tuple(dataset or ()),
        output=output,
        markets=_markets(spot, on_demand, both),
        instance_types=_split(instance_types),
        max_vcpus=max_vcpus,
        bid_percentage=bid_percentage,
        root_volume_gib=root_volume_gib,
        subnets=_split(subnets),
        security_groups=_split(security_groups),
        requester_pays=requester_pays,
        pipeline=pipeline,
        log_retention_days=log_retention_days,
    )


_STYLE = {
    "created": ("+", "green"), "would create": ("+", "green"),
    "updated": ("~", "yellow"), "would update": ("~", "yellow"),
    "deleted": ("-", "red"), "would delete": ("-", "red"),
    "unchanged": ("=", "dim"), "must recreate": ("!", "bold red"),
}


def _show_change(change: Change) -> None:
    from rich.markup import escape

    mark, style = _STYLE.get(change.action, ("?", ""))
    detail = f"  [dim]{escape(change.detail)}[/]" if change.detail else ""
    err_console.print(
        f"[{style}]{mark} {change.action:<13}[/] {change.kind} [bold]{escape(change.name)}[/]"
        f"{detail}",
        highlight=False, soft_wrap=True,
    )


# --------------------------------------------------------------------------- aws setup


@aws_app.command("setup")
def setup(
    name: str = _NAME,
    bucket: str | None = _BUCKET,
    dataset: list[str] | None = _DATASET,
    output: str | None = _OUTPUT,
    spot: bool = _SPOT,
    on_demand: bool = _ON_DEMAND,
    both: bool = _BOTH,
    instance_types: str | None = _TYPES,
    max_vcpus: int | None = _MAX_VCPUS,
    bid_percentage: int | None = _BID,
    root_volume_gib: int | None = _DISK,
    subnets: str | None = _SUBNETS,
    security_groups: str | None = _GROUPS,
    region: str | None = _REGION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change only."),
    requester_pays: bool = _REQUESTER_PAYS,
    pipeline: str | None = _PIPELINE,
    log_retention_days: int | None = _RETENTION,
    as_json: bool = typer.Option(False, "--json", help="Print the changes and settings as JSON."),
) -> None:
    """Create or update the AWS Batch environment NAME (idempotent)."""
    from ..aws.environment import setup_environment

    clients = _clients(region)
    spec = _spec(
        name=name, region=clients.region, bucket=bucket, dataset=dataset, output=output,
        spot=spot, on_demand=on_demand, both=both, instance_types=instance_types,
        max_vcpus=max_vcpus, bid_percentage=bid_percentage, root_volume_gib=root_volume_gib,
        subnets=subnets, security_groups=security_groups, requester_pays=requester_pays,
        pipeline=pipeline, log_retention_days=log_retention_days,
    )
    if not spec.region:
        raise UsageError("no AWS region is set", hint="pass --region or set AWS_REGION")
    verb = "Planning" if dry_run else "Setting up"
    err_console.print(f"{verb} AWS environment [bold]{name}[/] in {spec.region}", highlight=False)
    result = setup_environment(spec, clients=clients, sleep=time.sleep, clock=time.monotonic,
                               dry_run=dry_run, on_change=_show_change)
    if as_json:
        print_json(json.dumps({
            "dry_run": dry_run,
            "changed": result.changed,
            "changes": [{"kind": c.kind, "name": c.name, "action": c.action, "detail": c.detail}
                        for c in result.changes],
            "settings": result.settings.to_dict(),
        }, indent=2))
    if dry_run:
        err_console.print("dry run: nothing was changed")
        return
    for change in result.to_recreate:
        err_console.print(f"[bold red]must recreate:[/] {change.kind} {change.name}: "
                          f"{change.detail}", highlight=False, soft_wrap=True)
    if not result.changed:
        err_console.print(f"[green]environment {name} is up to date: nothing to change[/]",
                          highlight=False)
    else:
        counts: dict[str, int] = {}
        for c in result.changes:
            if c.changed:
                counts[c.action] = counts.get(c.action, 0) + 1
        summary = ", ".join(f"{n} {a}" for a, n in counts.items())
        err_console.print(f"[green]environment {name} is ready[/] ({summary})", highlight=False)
    err_console.print(
        f"  job queue {result.settings.job_queue}; settings saved for "
        f"`bidsbatch run --executor aws-batch --environment {name}`",
        highlight=False, soft_wrap=True,
    )


# --------------------------------------------------------------------------- aws status


def _saved_region(name: str) -> str | None:
    from ..config import load_environment

    try:
        return load_environment(name).region
    except UsageError:
        return None


@aws_app.command("status")
def status(
    name: str = _NAME,
    region: str | None = _REGION,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON on stdout."),
) -> None:
    """Show each resource of environment NAME and its state."""
    from rich.table import Table

    from ..aws.spec import TAG_KEY
    from ..aws.teardown import environment_status

    clients = _clients(region or _saved_region(name))
    if not clients.region:
        raise UsageError("no AWS region is set", hint="pass --region or set AWS_REGION")
    result = environment_status(name, clients=clients)
    if not result.resources:
        raise BidsbatchError(
            f"no resources tagged {TAG_KEY}={name} in {clients.region}",
            hint=f"create it with `bidsbatch aws setup {name} --bucket BUCKET` "
            "(or pass --region)",
        )
    if as_json:
        print_json(json.dumps(result.to_dict(), indent=2))
        return
    table = Table(title=f"AWS environment {name} ({clients.region})", title_justify="left")
    for col in ("Kind", "Name", "State", "Status", "Detail"):
        table.add_column(col)
    for r in result.resources:
        table.add_row(r.kind, r.name, _state(r.state), _state(r.status), r.detail)
    for kind in result.missing:
        table.add_row(kind, "", "", "[red]MISSING[/]", "")
    err_console.print(table)
    if result.healthy:
        err_console.print(f"[green]environment {name} is complete[/]")
    else:
        err_console.print(
            f"[yellow]environment {name} needs attention:[/] run `bidsbatch doctor "
            f"--environment {name}`", highlight=False, soft_wrap=True,
        )


def _state(value: str) -> str:
    if value in ("VALID", "ENABLED", "ACTIVE"):
        return f"[green]{value}[/]"
    if value in ("INVALID", "DISABLED"):
        return f"[red]{value}[/]"
    return value


# --------------------------------------------------------------------------- aws teardown


@aws_app.command("teardown")
def teardown(
    name: str = _NAME,
    region: str | None = _REGION,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be deleted."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete every resource tagged with environment NAME, in the order AWS requires."""
    from ..aws.spec import TAG_KEY
    from ..aws.teardown import find_resources, teardown_environment
    from ..config import remove_environment

    clients = _clients(region or _saved_region(name))
    if not clients.region:
        raise UsageError("no AWS region is set", hint="pass --region or set AWS_REGION")
    found = find_resources(name, clients=clients)
    if not found:
        forgotten = False if dry_run else remove_environment(name)
        note = " (its saved settings were removed)" if forgotten else ""
        err_console.print(f"nothing tagged {TAG_KEY}={name} in {clients.region}{note}",
                          highlight=False)
        return
    if not dry_run and not yes:
        for r in found:
            err_console.print(f"  {r.kind} [bold]{r.name}[/]", highlight=False)
        if not sys.stdin.isatty():
            raise UsageError(
                f"teardown deletes {len(found)} resources of environment {name}",
                hint="pass --yes to confirm (or --dry-run to look first)",
            )
        typer.confirm(f"Delete these {len(found)} resources?", abort=True, err=True)
    verb = "Would delete" if dry_run else "Deleting"
    err_console.print(f"{verb} AWS environment [bold]{name}[/] in {clients.region}",
                      highlight=False)
    result = teardown_environment(name, clients=clients, sleep=time.sleep, clock=time.monotonic,
                                  dry_run=dry_run, on_change=_show_change, resources=found)
    if dry_run:
        err_console.print("dry run: nothing was deleted")
    else:
        err_console.print(f"[green]environment {name} is gone[/] "
                          f"({len(result.changes)} resources deleted)", highlight=False)


# --------------------------------------------------------------------------- aws template


@aws_app.command("template")
def template(
    name: str = _NAME,
    bucket: str | None = _BUCKET,
    dataset: list[str] | None = _DATASET,
    output: str | None = _OUTPUT,
    spot: bool = _SPOT,
    on_demand: bool = _ON_DEMAND,
    both: bool = _BOTH,
    instance_types: str | None = _TYPES,
    max_vcpus: int | None = _MAX_VCPUS,
    bid_percentage: int | None = _BID,
    root_volume_gib: int | None = _DISK,
    subnets: str | None = _SUBNETS,
    security_groups: str | None = _GROUPS,
    region: str | None = _REGION,
    requester_pays: bool = _REQUESTER_PAYS,
    pipeline: str | None = _PIPELINE,
    log_retention_days: int | None = _RETENTION,
    out_file: Path | None = typer.Option(None, "-o", "--out", help="Write here (default stdout)."),
) -> None:
    """Write the CloudFormation template of environment NAME (same options as setup)."""
    from ..aws.template import render_template

    spec = _spec(
        name=name, region=region or _default_region(), bucket=bucket, dataset=dataset,
        output=output, spot=spot, on_demand=on_demand, both=both,
        instance_types=instance_types, max_vcpus=max_vcpus, bid_percentage=bid_percentage,
        root_volume_gib=root_volume_gib, subnets=subnets, security_groups=security_groups,
        requester_pays=requester_pays, pipeline=pipeline, log_retention_days=log_retention_days,
    )
    text = render_template(spec)
    if out_file is None:
        print_json(text)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BidsbatchError(f"cannot write {out_file}: {exc.strerror}") from None
    err_console.print(
        f"wrote {out_file}; deploy with: aws cloudformation deploy --template-file {out_file} "
        f"--stack-name bidsbatch-{name} --capabilities CAPABILITY_NAMED_IAM",
        highlight=False, soft_wrap=True,
    )


# --------------------------------------------------------------------------- doctor


def doctor(
    # No -e: it is run's --executor (short options mean one thing in every command).
    environment: str | None = typer.Option(None, "--environment",
                                           help="Environment to check (default: the default)."),
    dataset: list[str] | None = typer.Option(None, "--dataset",
                                             help="s3:// dataset to check (repeatable)."),
    output: str | None = typer.Option(None, "--output", help="s3:// output location to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON on stdout."),
) -> None:
    """Check credentials, region, the Batch environment, the job role and the data."""
    from rich.markup import escape
    from rich.table import Table

    from ..doctor import FAIL, OK, diagnose

    report = diagnose(clients_for=_clients, environment=environment,
                      datasets=tuple(dataset or ()), output=output)
    table = Table(title="bidsbatch doctor", title_justify="left")
    for col in ("Check", "Result", "Detail"):
        table.add_column(col)
    marks = {OK: "[green]ok[/]", FAIL: "[bold red]FAIL[/]"}
    for check in report.checks:
        table.add_row(escape(check.name), marks.get(check.status, "[dim]skipped[/]"),
                      escape(check.detail))
    err_console.print(table)
    if as_json:
        print_json(json.dumps(report.to_dict(), indent=2))
    failures = report.failures
    if not failures:
        err_console.print("[green]all checks passed[/]")
        return
    err_console.print("[bold]To fix:[/]")
    for check in failures:
        err_console.print(f"[red]✗[/] {escape(check.name)}: {escape(check.detail)}",
                          highlight=False, soft_wrap=True)
        if check.fix:
            err_console.print(f"    [bold]{escape(check.fix)}[/]", highlight=False,
                              soft_wrap=True)
    raise BidsbatchError(
        f"{len(failures)} of {len(report.checks)} checks failed",
        hint="run the commands above, then `bidsbatch doctor` again",
    )

"""IAM documents of a bidsbatch environment, and a small evaluator for them.

Pure functions: no AWS calls. The job role gets exactly what a worker does
with the data and nothing else:

- ``s3:ListBucket`` on each dataset bucket, limited to the dataset prefixes by
  an ``s3:prefix`` condition, and ``s3:GetObject`` on the objects below them;
- the same on the output prefix, plus ``s3:PutObject``; ``s3:DeleteObject``
  only below the run-state prefix (``OUTPUT/.bidsbatch/``), where the worker
  removes a stale completion marker or failure record; outputs are
  overwritten, never deleted;
- ``logs:CreateLogStream`` and ``logs:PutLogEvents`` on its own log group.

No ``s3:*`` action and no ``*`` resource on any S3 action.

:func:`evaluate` decides an action on a resource against policy documents
(Allow/Deny, wildcards, the common string conditions). ``doctor`` uses it
because moto does not implement ``iam:SimulatePrincipalPolicy``, and a local
evaluation of the role's own documents gives the same answer for these
identity policies without extra permissions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

POLICY_VERSION = "2012-10-17"
#: The AWS managed policy the ECS agent on Batch instances needs.
INSTANCE_ROLE_MANAGED_POLICY = "service-role/AmazonEC2ContainerServiceforEC2Role"
#: Jobs assume their role through ECS tasks.
ECS_TASKS = "ecs-tasks.amazonaws.com"
EC2 = "ec2.amazonaws.com"


@dataclass(frozen=True, order=True)
class S3Prefix:
    """An ``s3://bucket/prefix`` location as IAM sees it."""

    bucket: str
    prefix: str = ""  # no slashes at either end; "" is the whole bucket

    @classmethod
    def parse(cls, uri: str) -> S3Prefix:
        """Parse ``s3://bucket[/prefix]``; UsageError for anything else."""
        if not uri.startswith("s3://"):
            raise UsageError(
                f"{uri!r} is not an s3:// location",
                hint="an AWS environment reads and writes S3: write s3://BUCKET/PREFIX",
            )
        bucket, _, prefix = uri[5:].partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise UsageError(
                f"{uri!r}: {bucket!r} is not a valid bucket name",
                hint="write s3://BUCKET/PREFIX",
            )
        prefix = prefix.strip("/")
        if "*" in prefix or "?" in prefix:
            raise UsageError(f"{uri!r}: wildcards are not allowed in a location")
        return cls(bucket, prefix)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def bucket_arn(self, partition: str) -> str:
        return f"arn:{partition}:s3:::{self.bucket}"

    def objects_arn(self, partition: str) -> str:
        """Every object below the prefix."""
        base = f"{self.prefix}/" if self.prefix else ""
        return f"arn:{partition}:s3:::{self.bucket}/{base}*"

    def object_arn(self, key: str, partition: str) -> str:
        """One object, ``key`` relative to the prefix."""
        base = f"{self.prefix}/" if self.prefix else ""
        return f"arn:{partition}:s3:::{self.bucket}/{base}{key}"

    def list_prefixes(self) -> list[str]:
        """The ``s3:prefix`` values a listing of this location may use."""
        return [self.prefix, f"{self.prefix}/*"] if self.prefix else []

    @property
    def listing_prefix(self) -> str:
        """The prefix a listing of this location sends (what storage/s3.py sends)."""
        return f"{self.prefix}/" if self.prefix else ""


def trust_policy(service: str, *, source_account: str | None = None) -> dict[str, Any]:
    """A role trust policy for ``service``, limited to one account when given.

    ``aws:SourceAccount`` guards against the confused-deputy problem: only ECS
    tasks of this account can assume the job role.
    """
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if source_account:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return {"Version": POLICY_VERSION, "Statement": [statement]}


def log_group_arn(*, partition: str, region: str, account_id: str, name: str) -> str:
    """The ARN covering a log group and its streams (what logs actions are granted on)."""
    return f"arn:{partition}:logs:{region}:{account_id}:log-group:{name}:*"


def job_role_policy(
    *,
    datasets: Sequence[S3Prefix],
    output: S3Prefix,
    log_group: str,
    partition: str,
    requester_pays: bool = False,
    deletable: str | None = None,
) -> dict[str, Any]:
    """The least-privilege permissions of a job: read datasets, write output, write logs.

    ``log_group`` is the log group's ARN (see :func:`log_group_arn`).
    ``deletable`` is the key prefix below the output where jobs may delete
    objects (the run state), or None for nowhere.
    ``requester_pays`` changes no action (a Requester Pays read is an ordinary
    ``s3:GetObject`` whose cost goes to the caller); it names the statement so
    that a reader of the policy sees the intent.
    """
    statements: list[dict[str, Any]] = []
    read = sorted(set(datasets))
    if read:
        statements += _list_statements("ListDatasets", read, partition)
        statements.append(
            {
                "Sid": "ReadDatasetsRequesterPays" if requester_pays else "ReadDatasets",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": _one_or_many(sorted({d.objects_arn(partition) for d in read})),
            }
        )
    statements += _list_statements("ListOutput", [output], partition)
    statements.append(
        {
            "Sid": "ReadWriteOutput",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": output.objects_arn(partition),
        }
    )
    if deletable:
        statements.append(
            {
                "Sid": "DeleteRunState",
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": output.object_arn(f"{deletable.strip('/')}/*", partition),
            }
        )
    statements.append(
        {
            "Sid": "WriteLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": log_group,
        }
    )
    return {"Version": POLICY_VERSION, "Statement": statements}


def _list_statements(sid: str, locations: Sequence[S3Prefix], partition: str) -> list[dict]:
    by_bucket: dict[str, list[S3Prefix]] = {}
    for loc in locations:
        by_bucket.setdefault(loc.bucket, []).append(loc)
    out = []
    for i, bucket in enumerate(sorted(by_bucket)):
        locs = by_bucket[bucket]
        statement: dict[str, Any] = {
            "Sid": sid if len(by_bucket) == 1 else f"{sid}{i + 1}",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": locs[0].bucket_arn(partition),
        }
        # A location on the whole bucket needs no condition; otherwise only its prefixes.
        if all(loc.prefix for loc in locs):
            values = sorted({p for loc in locs for p in loc.list_prefixes()})
            statement["Condition"] = {"StringLike": {"s3:prefix": values}}
        out.append(statement)
    return out


def _one_or_many(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`evaluate`: allowed or not, and which statement decided."""

    allowed: bool
    reason: str


def evaluate(
    documents: Iterable[Mapping[str, Any]],
    *,
    action: str,
    resource: str,
    context: Mapping[str, str] | None = None,
) -> Decision:
    """Whether identity policy ``documents`` allow ``action`` on ``resource``.

    An explicit Deny wins, then any Allow; otherwise the implicit deny.
    Conditions that cannot be evaluated here count against an Allow and for a
    Deny, so the answer errs towards "not allowed".
    """
    ctx = {k.lower(): v for k, v in (context or {}).items()}
    allow: str | None = None
    for doc in documents:
        for st in _statements(doc):
            if not _applies(st, action, resource):
                continue
            effect = str(st.get("Effect", ""))
            matched = _conditions_hold(st.get("Condition") or {}, ctx, unknown=effect == "Deny")
            if not matched:
                continue
            label = f"statement {st['Sid']}" if st.get("Sid") else "a statement"
            if effect == "Deny":
                return Decision(False, f"{action} is explicitly denied by {label}")
            if effect == "Allow" and allow is None:
                allow = label
    if allow:
        return Decision(True, f"{action} is allowed by {allow}")
    return Decision(False, f"no statement allows {action} on {resource}")


def trusts_service(document: Mapping[str, Any], service: str) -> bool:
    """Whether a trust policy lets ``service`` assume the role (conditions aside)."""
    for st in _statements(document):
        if st.get("Effect") != "Allow":
            continue
        actions = [a.lower() for a in _as_list(st.get("Action"))]
        if not any(_glob(a, "sts:assumerole") for a in actions):
            continue
        principal = st.get("Principal") or {}
        services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if service in services:
            return True
    return False


def _statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    st = doc.get("Statement", [])
    return [st] if isinstance(st, dict) else list(st)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _applies(st: Mapping[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in st:
        action_ok = not any(_glob(action, a, fold=True) for a in _as_list(st["NotAction"]))
    else:
        action_ok = any(_glob(action, a, fold=True) for a in _as_list(st.get("Action")))
    if not action_ok:
        return False
    if "NotResource" in st:
        return not any(_glob(resource, r) for r in _as_list(st["NotResource"]))
    return any(_glob(resource, r) for r in _as_list(st.get("Resource")))


def _glob(value: str, pattern: str, *, fold: bool = False) -> bool:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    flags = re.IGNORECASE | re.DOTALL if fold else re.DOTALL
    return re.fullmatch(regex, value, flags) is not None


_STRING_OPS = {
    "stringequals": (lambda v, p: v == p, False),
    "stringnotequals": (lambda v, p: v == p, True),
    "stringequalsignorecase": (lambda v, p: v.lower() == p.lower(), False),
    "stringnotequalsignorecase": (lambda v, p: v.lower() == p.lower(), True),
    "stringlike": (lambda v, p: _glob(v, p), False),
    "stringnotlike": (lambda v, p: _glob(v, p), True),
}


def _conditions_hold(conditions: Mapping[str, Any], ctx: Mapping[str, str], *, unknown: bool
                     ) -> bool:
    for op, pairs in conditions.items():
        name = op.lower()
        if_exists = name.endswith("ifexists")
        if if_exists:
            name = name[: -len("ifexists")]
        if name == "null":
            for key, want in pairs.items():
                missing = key.lower() not in ctx
                if missing != (str(_as_list(want)[0]).lower() == "true"):
                    return False
            continue
        if name not in _STRING_OPS:
            # An operator this evaluator does not know: assume the cautious outcome.
            if not unknown:
                return False
            continue
        test, negated = _STRING_OPS[name]
        for key, wanted in pairs.items():
            value = ctx.get(key.lower())
            if value is None:
                # A missing key fails a positive test and passes a negated one.
                if not (if_exists or negated):
                    return False
                continue
            hit = any(test(value, p) for p in _as_list(wanted))
            if hit == negated:
                return False
    return True

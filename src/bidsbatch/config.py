"""The user's configuration: the AWS environments made by ``bidsbatch aws setup``.

One JSON file, ``environments.json``, in the config directory:
``$BIDSBATCH_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/bidsbatch``, else
``~/.config/bidsbatch``. It holds names, ARNs and S3 locations so that
``bidsbatch run --executor aws-batch --environment NAME`` needs no other flag.

Never credentials: the settings are typed and have no field for them, and
:func:`save_environment` refuses any value that looks like an access key.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import BidsbatchError, UsageError
from .storage import atomic_write

ENVIRONMENTS_FILE = "environments.json"
_FORMAT_VERSION = 1

#: Access key ids (AKIA…, ASIA…) and anything named like a secret never go in the file.
_KEY_ID = re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{12,}\b")


@dataclass(frozen=True)
class EnvironmentSettings:
    """One AWS environment: what a run needs to use it, and how it was set up.

    The first group of fields is what executors read (queue, job role, log
    group, region); the second records the setup options so that ``doctor``
    can print the exact ``bidsbatch aws setup`` command that repairs it.
    """

    name: str
    region: str
    account_id: str
    job_queue: str
    job_queue_arn: str
    job_role_arn: str
    log_group: str
    compute_environments: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    output: str = ""
    requester_pays: bool = False
    pipeline: str = "m2g"
    # Setup options, as the user gave them (empty subnets: the default VPC's).
    markets: tuple[str, ...] = ("spot",)
    instance_types: tuple[str, ...] = ()
    max_vcpus: int = 0
    bid_percentage: int = 100
    root_volume_gib: int = 0
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    log_retention_days: int = 30
    updated_at: str = field(default="", compare=False)

    @property
    def output_bucket(self) -> str:
        """The bucket of the output location ('' when there is none)."""
        return _split_s3(self.output)[0]

    @property
    def output_prefix(self) -> str:
        """The key prefix of the output location, without slashes at the ends."""
        return _split_s3(self.output)[1]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for k, v in data.items():
            if isinstance(v, tuple):
                data[k] = list(v)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str) -> EnvironmentSettings:
        """Settings from their JSON form; unknown keys (from newer versions) are ignored."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            values[key] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**values)
        except TypeError as exc:
            raise BidsbatchError(
                f"{where}: an environment entry is incomplete ({exc})",
                hint="run `bidsbatch aws setup NAME ...` again to rewrite it",
            ) from None


def config_dir() -> Path:
    """Where bidsbatch keeps the user's configuration."""
    explicit = os.environ.get("BIDSBATCH_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg).expanduser() / "bidsbatch"
    return Path.home() / ".config" / "bidsbatch"


def environments_path() -> Path:
    """The file that lists the AWS environments."""
    return config_dir() / ENVIRONMENTS_FILE


def list_environments() -> list[EnvironmentSettings]:
    """Every saved environment, sorted by name."""
    doc = _read()
    path = environments_path()
    return [
        EnvironmentSettings.from_dict(entry, where=str(path))
        for _name, entry in sorted(doc["environments"].items())
    ]


def default_environment_name() -> str | None:
    """The environment used when none is named: the marked default, or the only one."""
    doc = _read()
    envs = doc["environments"]
    if doc.get("default") in envs:
        return str(doc["default"])
    if len(envs) == 1:
        return next(iter(envs))
    return None


def load_environment(name: str | None = None) -> EnvironmentSettings:
    """The environment ``name``, or the default one when ``name`` is None.

    Raises :class:`UsageError` when it does not exist, pointing to
    ``bidsbatch aws setup``.
    """
    doc = _read()
    envs: dict[str, Any] = doc["environments"]
    if name is None:
        name = default_environment_name()
        if name is None:
            if not envs:
                raise UsageError(
                    "no AWS environment is set up",
                    hint="create one with `bidsbatch aws setup NAME --bucket BUCKET`",
                )
            raise UsageError(
                f"several AWS environments ({', '.join(sorted(envs))}) and none is the default",
                hint="name one with --environment NAME",
            )
    entry = envs.get(name)
    if entry is None:
        known = f" (known: {', '.join(sorted(envs))})" if envs else ""
        raise UsageError(
            f"no AWS environment named {name!r}{known}",
            hint=f"create it with `bidsbatch aws setup {name} --bucket BUCKET`",
        )
    return EnvironmentSettings.from_dict(entry, where=str(environments_path()))


def save_environment(settings: EnvironmentSettings, *, make_default: bool = False) -> Path:
    """Add or replace ``settings`` in the file; the first environment becomes the default."""
    data = settings.to_dict()
    data["updated_at"] = datetime.now(UTC).replace(microsecond=0).isoformat()
    _refuse_credentials(data)
    doc = _read()
    doc["environments"][settings.name] = data
    if make_default or doc.get("default") not in doc["environments"]:
        doc["default"] = settings.name
    return _write(doc)


def remove_environment(name: str) -> bool:
    """Forget the environment ``name``; True when it was there."""
    doc = _read()
    if name not in doc["environments"]:
        return False
    del doc["environments"][name]
    if doc.get("default") == name:
        # With one environment left it is the default anyway; with more, none is.
        doc["default"] = next(iter(doc["environments"])) if len(doc["environments"]) == 1 else None
    _write(doc)
    return True


# --------------------------------------------------------------------------- file


def _read() -> dict[str, Any]:
    path = environments_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": _FORMAT_VERSION, "default": None, "environments": {}}
    except OSError as exc:
        raise BidsbatchError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BidsbatchError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
            hint="fix or delete the file, then run `bidsbatch aws setup NAME ...` again",
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("environments", {}), dict):
        raise BidsbatchError(
            f"{path} is not a bidsbatch environments file",
            hint="fix or delete the file, then run `bidsbatch aws setup NAME ...` again",
        )
    doc.setdefault("environments", {})
    return doc


def _write(doc: dict[str, Any]) -> Path:
    path = environments_path()
    doc["version"] = _FORMAT_VERSION
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    try:
        atomic_write(path, text)  # a crash never leaves half a file
    except OSError as exc:
        raise BidsbatchError(
            f"cannot write {path}: {exc.strerror}",
            hint="set BIDSBATCH_CONFIG_DIR to a writable folder",
        ) from None
    return path


def _refuse_credentials(data: dict[str, Any]) -> None:
    text = json.dumps(data)
    names = {k.upper() for k in data}
    if _KEY_ID.search(text) or names & {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}:
        raise UsageError(
            "refusing to store what looks like an AWS access key in the configuration",
            hint="environments hold names and ARNs only; credentials stay in your AWS profile",
        )


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        return "", ""
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")

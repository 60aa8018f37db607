"""What setup, status and teardown report: one :class:`Change` per resource, and totals.

Plain dataclasses, kept apart from the engines that make them so that
:mod:`bidsbatch.aws.environment` (setup) and :mod:`bidsbatch.aws.teardown`
share them without importing each other in a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import EnvironmentSettings


@dataclass(frozen=True)
class Change:
    """What happened (or would happen) to one resource."""

    kind: str
    name: str
    action: str  # created, updated, unchanged, deleted, must recreate; "would ..." in a dry run
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.action not in ("unchanged",)


@dataclass
class SetupResult:
    """The outcome of :func:`setup_environment`."""

    settings: EnvironmentSettings
    changes: list[Change]
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return any(c.changed for c in self.changes)

    @property
    def to_recreate(self) -> list[Change]:
        return [c for c in self.changes if c.action == "must recreate"]


@dataclass(frozen=True)
class Resource:
    """A resource of an environment as AWS describes it now."""

    kind: str
    name: str
    ident: str  # ARN or id
    state: str = ""  # ENABLED / DISABLED for queues and compute environments
    status: str = ""  # VALID / INVALID / CREATING ... for Batch resources
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "id": self.ident, "state": self.state,
                "status": self.status, "detail": self.detail}


@dataclass
class EnvironmentStatus:
    """The resources of an environment, and the expected ones that are missing."""

    name: str
    region: str
    resources: list[Resource]
    missing: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.missing and not any(
            r.status == "INVALID" or r.state == "DISABLED" for r in self.resources
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "healthy": self.healthy,
            "missing": self.missing,
            "resources": [r.to_dict() for r in self.resources],
        }


@dataclass
class TeardownResult:
    """The outcome of :func:`teardown_environment`."""

    name: str
    changes: list[Change]
    forgotten: bool = False
    dry_run: bool = False


OnChange = Callable[[Change], None]

"""One registry of executors; everything else (CLI choices, help) derives from it."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..errors import UsageError
from .base import Executor

#: name -> "module:Class". Adding an executor is one line here and its module.
REGISTRY: dict[str, str] = {
    "local": "bidsbatch.executors.local:LocalExecutor",
    "aws-batch": "bidsbatch.executors.awsbatch:AwsBatchExecutor",
    "slurm": "bidsbatch.executors.slurm:SlurmExecutor",
}


def executor_names() -> list[str]:
    return list(REGISTRY)


def executor_class(name: str) -> type[Executor]:
    target = REGISTRY.get(name)
    if target is None:
        raise UsageError(f"unknown executor {name!r}",
                         hint=f"choose one of: {', '.join(REGISTRY)}")
    module, _, cls = target.partition(":")
    try:
        return getattr(import_module(module), cls)
    except ImportError as exc:
        raise UsageError(f"the {name} executor is not available: {exc}") from None


def make_executor(name: str, options: dict[str, Any] | None = None) -> Executor:
    """An executor by name, configured from ``options`` (CLI values or saved settings)."""
    return executor_class(name).from_options(dict(options or {}))


__all__ = ["REGISTRY", "Executor", "executor_class", "executor_names", "make_executor"]

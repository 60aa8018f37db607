"""Executors: where scans run. One registry (``registry.py``); one package per engine.

:func:`make_executor` builds one from settings given on the command line or
through the API; :func:`restore_executor` rebuilds the one a run was
submitted with, from the settings saved in its ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Executor
from .registry import Engine, engine, engines, visible_names
from .settings import ExecutorSettings, option


def make_executor(name: str, options: Mapping[str, Any] | None = None) -> Executor:
    """An executor by name, its settings from ``options`` (checked and completed)."""
    eng = engine(name)
    settings = eng.settings.from_json(dict(options or {}))
    return eng.load().from_settings(settings)


def restore_executor(name: str, saved: Mapping[str, Any],
                     overrides: Mapping[str, Any] | None = None) -> Executor:
    """The executor a run was submitted with, from its saved settings.

    Saved settings were checked when the run was submitted, so they are not
    checked again (an AWS environment deleted since must not stop ``status``);
    ``overrides`` (``retry --jobs``) are.
    """
    eng = engine(name)
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    settings = eng.settings.from_json(dict(saved)).merged(changes)
    cls = eng.load()
    return cls.from_settings(settings) if changes else cls(settings)


__all__ = ["Engine", "Executor", "ExecutorSettings", "engine", "engines", "make_executor",
           "option", "restore_executor", "visible_names"]

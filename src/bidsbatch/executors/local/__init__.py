"""The local executor: every scan on this machine, in parallel, under a detached supervisor.

``executor.py`` is the client side (submit, poll, cancel, logs, from any
process); ``supervisor.py`` is the detached process that forks one worker
per scan; ``slots.py`` says how many fit at once.
"""

from __future__ import annotations

from ..registry import Engine
from .settings import LocalSettings

ENGINE = Engine(
    name="local",
    description="this machine, in parallel (a detached supervisor forks a worker per scan)",
    settings=LocalSettings,
    executor="bidsbatch.executors.local.executor:LocalExecutor",
)

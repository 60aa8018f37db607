"""The local executor's settings: how many scans at once, and where scratch goes."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ExecutorSettings, option


@dataclass(frozen=True)
class LocalSettings(ExecutorSettings):
    """Settings of ``--executor local``."""

    jobs: int | None = option(
        flag="--jobs", short="-j", on_retry=True,
        help="Local executor: scans at once (default: as many as the CPUs and memory fit "
             "for the pipeline's resources).")
    scratch: str | None = option(help="Local scratch folder for workers.")

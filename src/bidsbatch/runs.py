"""Run directories: where a planned run lives on this machine.

``$BIDSBATCH_HOME/runs/<run-id>/`` (``BIDSBATCH_HOME`` defaults to
``$XDG_STATE_HOME/bidsbatch``, i.e. ``~/.local/state/bidsbatch``) holds
``run.json``, ``specs/<scan>.json``, ``ledger.sqlite`` and ``logs/``.
``--run-dir`` puts one elsewhere. The newest run is remembered so that
``bidsbatch status`` without an argument shows it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import RunNotFoundError
from .specs import RunInfo, Spec
from .storage import atomic_write


def bidsbatch_home() -> Path:
    """The folder bidsbatch keeps its runs in."""
    env = os.environ.get("BIDSBATCH_HOME")
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "bidsbatch"


def runs_root() -> Path:
    return bidsbatch_home() / "runs"


@dataclass(frozen=True)
class RunDir:
    """A run directory on this machine."""

    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def specs_dir(self) -> Path:
        return self.path / "specs"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger.sqlite"

    def spec_path(self, scan_id: str) -> Path:
        return self.specs_dir / f"{scan_id}.json"

    def log_path(self, scan_id: str) -> Path:
        return self.logs_dir / f"{scan_id}.log"

    def info(self) -> RunInfo:
        try:
            return RunInfo.from_json(self.run_json.read_text(), source=str(self.run_json))
        except FileNotFoundError:
            raise RunNotFoundError(f"{self.path} is not a run directory (no run.json)") from None

    def spec(self, scan_id: str) -> Spec:
        path = self.spec_path(scan_id)
        try:
            return Spec.from_json(path.read_text(), source=str(path))
        except FileNotFoundError:
            known = sorted(p.stem for p in self.specs_dir.glob("*.json"))[:6]
            raise RunNotFoundError(
                f"run {self.path.name} has no scan {scan_id}",
                hint=f"scans: {', '.join(known)}{', …' if len(known) == 6 else ''}",
            ) from None

    def specs(self) -> list[Spec]:
        return [self.spec(s) for s in self.info().scans]


def mark_latest(run: RunDir) -> None:
    home = bidsbatch_home()
    home.mkdir(parents=True, exist_ok=True)
    atomic_write(home / "latest", str(run.path.resolve()) + "\n")


def find_run(ref: str | None) -> RunDir:
    """A run by id, by path, or the newest one when ``ref`` is None."""
    if ref is None:
        latest = bidsbatch_home() / "latest"
        if not latest.exists():
            raise RunNotFoundError(
                "no run yet", hint="plan or run one first: bidsbatch run DATASET OUTPUT"
            )
        return RunDir(Path(latest.read_text().strip()))
    as_path = Path(ref).expanduser()
    if (as_path / "run.json").exists():
        return RunDir(as_path.absolute())
    by_id = runs_root() / ref
    if (by_id / "run.json").exists():
        return RunDir(by_id)
    known = sorted(p.name for p in runs_root().glob("*/run.json"))
    known_ids = sorted(p.parent.name for p in runs_root().glob("*/run.json"))[-5:]
    raise RunNotFoundError(
        f"no run {ref!r}",
        hint=(f"recent runs: {', '.join(known_ids)}" if known else "no runs yet")
        + "; or give the run directory's path",
    )

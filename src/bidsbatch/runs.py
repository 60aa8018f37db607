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

from .errors import RunNotFoundError, UsageError
from .specs import RunInfo, Spec
from .storage import atomic_write, hostile_reason


def bidsbatch_home() -> Path:
    """The folder bidsbatch keeps its runs in."""
    env = os.environ.get("BIDSBATCH_HOME")
    if env:
        home = Path(env).expanduser()
        if home.exists() and not home.is_dir():
            raise UsageError(f"BIDSBATCH_HOME={env} is a file, not a folder",
                             hint="point BIDSBATCH_HOME at a folder, or unset it")
        return home
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
            data = self.run_json.read_bytes()
        except FileNotFoundError:
            raise RunNotFoundError(f"{self.path} is not a run directory (no run.json)") from None
        except OSError as exc:
            raise UsageError(f"cannot read {self.run_json}: {exc.strerror}") from None
        return RunInfo.from_json(data, source=str(self.run_json))

    def spec(self, scan_id: str) -> Spec:
        path = self.spec_path(scan_id)
        if hostile_reason(scan_id) or "/" in scan_id:
            raise UsageError(f"{scan_id!r} is not a scan id", hint="e.g. sub-01_ses-1")
        try:
            return Spec.from_json(path.read_bytes(), source=str(path))
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
    try:
        home.mkdir(parents=True, exist_ok=True)
        atomic_write(home / "latest", str(run.path.resolve()) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {home / 'latest'}: {exc.strerror}",
                         hint="point BIDSBATCH_HOME at a writable folder") from None


def find_run(ref: str | None) -> RunDir:
    """A run by id, by path, or the newest one when ``ref`` is None.

    Its ``run.json`` is read at once: a damaged one is one clear error for every
    command, before any of them acts on the run.
    """
    run = _find_run(ref)
    run.info()
    return run


def _find_run(ref: str | None) -> RunDir:
    if ref is None:
        latest = bidsbatch_home() / "latest"
        if not latest.exists():
            raise RunNotFoundError(
                "no run started yet",
                hint="start one with: bidsbatch run DATASET OUTPUT --pipeline NAME (a planned "
                     "run is named by its id: bidsbatch runs lists them)"
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

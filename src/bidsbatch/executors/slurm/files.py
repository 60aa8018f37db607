"""A Slurm run's files in its run directory (on the disk the cluster shares).

``slurm/manifest-<n>.json`` (submission ``n``: array index ``offset + i`` →
scan), ``slurm/submit-<n>.sh`` (its job script), ``slurm/group-<n>.sh``, and
the tasks' logs ``logs/slurm/<array>_<task>.log`` (Slurm's ``%A_%a``). A
manifest is never rewritten: a running array reads it by index.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import BidsbatchError
from ...runs import RunDir
from ...specs import Manifest
from ...storage import atomic_write


class SlurmFiles:
    """Where the Slurm executor keeps a run's scripts, manifests and logs."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.folder = run.path / "slurm"
        self.log_dir = run.logs_dir / "slurm"

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def manifest(self, n: int) -> Path:
        return self.folder / f"manifest-{n}.json"

    def array_script(self, n: int) -> Path:
        return self.folder / f"submit-{n}.sh"

    def group_script(self, n: int) -> Path:
        return self.folder / f"group-{n}.sh"

    def task_log(self, key: str) -> Path:
        """The log of task ``A_i`` (or of plain job ``A``, the group step: ``group-A``)."""
        return self.log_dir / (f"{key}.log" if "_" in key else f"group-{key}.log")

    def write_manifest(self, n: int, run_id: str, scan_ids: list[str]) -> Path:
        path = self.manifest(n)
        if path.exists():
            raise BidsbatchError(f"{path} already exists",
                                 hint="another bidsbatch is submitting this run; wait for it")
        # absolute entries: the worker reads the run's own specs, not copies
        specs = [str(self.run.spec_path(s).resolve()) for s in scan_ids]
        atomic_write(path, Manifest(run_id=run_id, specs=specs).to_json())
        return path

    def write_script(self, path: Path, text: str) -> Path:
        atomic_write(path, text)
        path.chmod(0o755)
        return path

"""Submitting a run: one manifest and one job script per submission, one sbatch per chunk.

A submission (the first ``run``, a ``retry``) writes ``manifest-<n>.json``
once, listing its scans by position, then submits ``--array=0-(c-1)%T`` for
each chunk of at most ``MaxArraySize`` scans (the limit caps the *index*,
so chunk ``k`` starts at index 0 and its script gets the manifest offset of
its first scan). 10,000 scans on a cluster with the usual limit of 10,001
are one sbatch call. The group step is one more job, with
``--dependency=afterany:`` on every array that still has work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...ledger import Ledger
from ...runs import RunDir
from ...specs import RunInfo, Spec
from ...states import ScanState
from . import script
from .commands import SlurmCommands
from .files import SlurmFiles
from .settings import DEFAULT_MAX_ARRAY_SIZE, SlurmSettings

EXECUTOR = "slurm"
ORPHAN_REASON = "its submission was cut off before it reached Slurm"


@dataclass(frozen=True)
class Chunk:
    """Scans ``offset .. offset+len(scans)-1`` of a manifest, as one array job."""

    offset: int
    scans: list[str]


def chunks(scan_ids: Sequence[str], size: int) -> list[Chunk]:
    """Split a submission into arrays of at most ``size`` tasks."""
    size = max(1, size)
    return [Chunk(offset=i, scans=list(scan_ids[i:i + size]))
            for i in range(0, len(scan_ids), size)]


def array_option(n: int, max_running: int | None) -> str:
    """``--array=0-(n-1)``, throttled to ``%T`` tasks at once when asked."""
    spec = f"0-{n - 1}" if n > 1 else "0"
    return f"--array={spec}%{max_running}" if max_running else f"--array={spec}"


class Submitter:
    """Submits one run's scans and its group step, recording every job in the ledger."""

    def __init__(self, *, commands: SlurmCommands, settings: SlurmSettings, run: RunDir,
                 info: RunInfo, ledger: Ledger) -> None:
        self.commands = commands
        self.settings = settings
        self.run = run
        self.info = info
        self.ledger = ledger
        self.files = SlurmFiles(run)

    def next_submission(self) -> int:
        n = int(self.ledger.get_meta("slurm_submissions") or 0) + 1
        self.ledger.set_meta("slurm_submissions", n)
        return n

    def array_size(self) -> int:
        """Tasks per array: the setting, else the cluster's ``MaxArraySize`` (indexes 0..N-1)."""
        if self.settings.slurm_array_size:
            return self.settings.slurm_array_size
        return self.commands.max_array_size() or DEFAULT_MAX_ARRAY_SIZE

    def submit_scans(self, specs: list[Spec], *, force: bool) -> list[str]:
        """Submit ``specs`` as arrays; their array ids. Scans left without a job are planned."""
        if not specs:
            return []
        self.files.prepare()
        n = self.next_submission()
        scan_ids = [s.scan_id for s in specs]
        manifest = self.files.write_manifest(n, self.info.run_id, scan_ids)
        text = script.array_script(
            run_id=self.info.run_id, submission=n, manifest=manifest,
            log_dir=self.files.log_dir, shape=script.JobShape.of(specs[0].resources),
            settings=self.settings, force=force)
        path = self.files.write_script(self.files.array_script(n), text)
        array_ids: list[str] = []
        try:
            for chunk in chunks(scan_ids, self.array_size()):
                array_id = self.commands.sbatch(
                    path, options=[array_option(len(chunk.scans), self.settings.slurm_max_running)],
                    args=[str(chunk.offset)])
                array_ids.append(array_id)
                with self.ledger.transaction():
                    self.ledger.add_job(array_id, kind="array", executor=EXECUTOR,
                                        scans=chunk.scans,
                                        details={"submission": n, "offset": chunk.offset,
                                                 "script": str(path)})
                    for i, scan_id in enumerate(chunk.scans):
                        key = f"{array_id}_{i}"
                        self.ledger.update(scan_id, job_id=key,
                                           log=str(self.files.task_log(key)))
        except BaseException:
            covered = {s for j in self.ledger.jobs(kind="array") if j.job_id in array_ids
                       for s in j.scans}
            left = [s for s in scan_ids if s not in covered]
            if left:
                self.ledger.update_many(left, state=ScanState.PLANNED, reason=ORPHAN_REASON)
            raise
        return array_ids

    def submit_group(self, *, live_arrays: list[str]) -> str:
        """The group job, after every array in ``live_arrays`` ended (whatever their fate)."""
        self.files.prepare()
        old = self.ledger.group().job_id
        if old:
            # a retry adds arrays: the old group job would not wait for them
            self.commands.scancel([old])
        group = self.info.pipeline.group
        resources = (group.resources if group else None) or self.info.pipeline.resources
        n = int(self.ledger.get_meta("slurm_submissions") or 1)
        text = script.group_script(
            run_id=self.info.run_id, run_dir=self.run.path.resolve(),
            log_dir=self.files.log_dir, shape=script.JobShape.of(resources),
            settings=self.settings)
        path = self.files.write_script(self.files.group_script(n), text)
        options = [f"--dependency=afterany:{':'.join(live_arrays)}"] if live_arrays else []
        job_id = self.commands.sbatch(path, options=options)
        self.ledger.add_job(job_id, kind="group", executor=EXECUTOR, scans=[],
                            details={"after": live_arrays, "script": str(path)})
        self.ledger.set_group(job_id=job_id)
        return job_id

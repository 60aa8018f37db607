"""The fake executor: a deterministic engine in this process, that can be told to fail or lose.

``--executor fake`` queues each submitted scan as a job of its own; every
:meth:`poll` then runs the queued jobs one after another, in this process,
through the real worker (stage in, run the app, stage out, commit), and the
group step after them. Nothing runs between polls, so ``run --no-wait``
followed by ``cancel`` cancels jobs that never started, and the order of
events is the same every time. Two settings make the engine misbehave the
way real ones do:

- ``--fake-fail PATTERNS``: those scans' jobs fail (exit 1) before their
  worker starts, as a node that cannot start a container;
- ``--fake-lose PATTERNS``: the engine forgets those jobs on submission,
  as a cluster that lost its state; ``poll`` must then settle them.

PATTERNS are comma-separated globs of scan ids. The engine's own state
(its jobs) is a JSON file in the run directory, so ``status`` in another
process sees the same engine.
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import BidsbatchError
from ..ledger import Ledger
from ..markers import done_scans
from ..runs import RunDir
from ..specs import Spec
from ..states import ACTIVE, GroupState, ScanState
from ..storage import atomic_write
from .base import Executor, with_own_bin_on_path
from .registry import Engine
from .settings import ExecutorSettings, option

NAME = "fake"
STATE_FILE = "fake-engine.json"
FAIL_CODE = 1
LOST_REASON = "the engine lost this job (no job, no marker)"


@dataclass(frozen=True)
class FakeSettings(ExecutorSettings):
    """Settings of ``--executor fake``."""

    fake_fail: str | None = option(
        on_retry=True,
        help="Fake executor: scans (comma-separated globs) whose jobs fail before running.")
    fake_lose: str | None = option(
        help="Fake executor: scans (comma-separated globs) whose jobs the engine loses.")
    keep_scratch: bool | None = option(
        flag="--keep-scratch", on_retry=True,
        help="Keep the scratch folder of a failed scan (and say where), for debugging.")


def _matches(scan_id: str, patterns: str | None) -> bool:
    return any(fnmatch.fnmatchcase(scan_id, p.strip())
               for p in (patterns or "").split(",") if p.strip())


class FakeExecutor(Executor):
    """Runs scans in this process, when polled."""

    name = NAME
    settings_type = FakeSettings
    settings: FakeSettings

    # -- the engine's own record

    def _load(self, run: RunDir) -> dict[str, dict[str, object]]:
        path = run.path / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _save(self, run: RunDir, jobs: dict[str, dict[str, object]]) -> None:
        atomic_write(run.path / STATE_FILE, json.dumps(jobs, indent=1, sort_keys=True))

    # -- the interface

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        jobs = self._load(run)
        for spec in specs:
            job_id = f"fake-{len(jobs) + 1}"
            ledger.add_job(job_id, kind="job", executor=NAME, scans=[spec.scan_id])
            ledger.update(spec.scan_id, job_id=job_id)
            lost = _matches(spec.scan_id, self.settings.fake_lose)
            jobs[job_id] = {"scan": spec.scan_id, "state": "lost" if lost else "queued",
                            "force": force}
        if ledger.group().state == GroupState.SUBMITTED:
            jobs[f"fake-{len(jobs) + 1}"] = {"scan": "group", "state": "queued"}
        self._save(run, jobs)

    def poll(self, run: RunDir, ledger: Ledger) -> None:
        # This process is the engine's node: its apps are found as the local supervisor's.
        os.environ.update(with_own_bin_on_path(os.environ))
        jobs = self._load(run)
        for job_id, job in jobs.items():
            if job["state"] == "queued" and job["scan"] != "group":
                job["state"] = self._run_scan(run, ledger, job_id, str(job["scan"]),
                                              force=bool(job.get("force")))
                self._save(run, jobs)
        self._settle_lost(run, ledger, jobs)
        for job in jobs.values():
            if job["state"] == "queued" and job["scan"] == "group":
                job["state"] = self._run_group(run, ledger)
                self._save(run, jobs)

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        jobs = self._load(run)
        for job in jobs.values():
            if job["state"] == "queued":
                job["state"] = "cancelled"
        self._save(run, jobs)
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, ScanState.PLANNED))]
        if left:
            ledger.update_many(left, state=ScanState.CANCELLED, reason="cancelled by the user")
        if ledger.group().state in (GroupState.SUBMITTED, GroupState.RUNNING):
            ledger.set_group(GroupState.CANCELLED, reason="cancelled by the user")

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        path = run.logs_dir / "group.log" if scan_id == "group" else run.log_path(scan_id)
        if not path.exists():
            raise BidsbatchError(f"no log yet for {scan_id} in run {run.path.name}",
                                 hint="the fake engine runs jobs when polled: bidsbatch status")
        yield from path.read_text(encoding="utf-8", errors="replace").splitlines()

    # -- running

    def _run_scan(self, run: RunDir, ledger: Ledger, job_id: str, scan_id: str, *,
                  force: bool) -> str:
        from ..worker import WorkerOptions, run_worker

        attempt = ledger.start_attempt(scan_id, job_id=job_id)
        log = run.log_path(scan_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        if _matches(scan_id, self.settings.fake_fail):
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(f"fake engine: job {job_id} failed before its worker started\n")
            ledger.finish_attempt(scan_id, state=ScanState.FAILED, exit_code=FAIL_CODE,
                                  reason=f"exit {FAIL_CODE}: injected failure (--fake-fail)")
            return "failed"
        with open(log, "a", encoding="utf-8") as fh:
            code = run_worker(run.spec(scan_id), stream=fh, options=WorkerOptions(
                attempt=attempt, job_id=job_id, force=force,
                keep_scratch=bool(self.settings.keep_scratch)))
        state = ScanState.SUCCEEDED if code == 0 else ScanState.FAILED
        ledger.finish_attempt(scan_id, state=state, exit_code=code,
                              reason=None if code == 0 else f"exit {code}")
        return str(state)

    def _settle_lost(self, run: RunDir, ledger: Ledger,
                     jobs: dict[str, dict[str, object]]) -> None:
        """Active scans whose job the engine does not know: done by marker, else failed."""
        known = {j for j, job in jobs.items() if job["state"] != "lost"}
        orphans = [r.scan_id for r in ledger.scans(states=ACTIVE) if r.job_id not in known]
        if not orphans:
            return
        done = done_scans(run.info().open_output(), [run.spec(s) for s in orphans])
        with ledger.transaction():
            for scan_id in orphans:
                if scan_id in done:
                    ledger.update(scan_id, state=ScanState.SUCCEEDED,
                                  reason="its job was lost; its marker says done")
                else:
                    ledger.update(scan_id, state=ScanState.FAILED, reason=LOST_REASON)

    def _run_group(self, run: RunDir, ledger: Ledger) -> str:
        from ..group import run_group_step
        from ..worker import WorkerLog

        counts = ledger.counts()
        if counts[ScanState.FAILED] or counts[ScanState.CANCELLED]:
            ledger.set_group(GroupState.SKIPPED, reason="some scans did not succeed")
            return "skipped"
        ledger.set_group(GroupState.RUNNING, started_at=ledger.now())
        log = run.logs_dir / "group.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            try:
                code = run_group_step(str(run.path), log=WorkerLog(fh))
            except BidsbatchError as exc:
                fh.write(f"error: {exc}\n")
                code = exc.exit_code
        state = GroupState.SUCCEEDED if code == 0 else GroupState.FAILED
        ledger.set_group(state, exit_code=code, finished_at=ledger.now())
        return str(state)


ENGINE = Engine(name=NAME, settings=FakeSettings,
                description="a deterministic engine in this process, for tests and trials",
                executor="bidsbatch.executors.fake:FakeExecutor")

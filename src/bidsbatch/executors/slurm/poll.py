"""Watching a run: one squeue call per poll for the whole run, the markers, sacct if any.

Every job of a run is named ``bb-<run-id>``, so one ``squeue --name … -t all
-r`` lists every task of every array (and the group job) in any state Slurm
still remembers (``MinJobAge`` after their end). What is done is the
completion markers' to say. When the cluster has accounting, one ``sacct``
call for all the run's arrays adds exit codes and the tasks squeue forgot;
without it (``accounting storage is disabled``) the poll goes on without,
and remembers not to ask again. A task that is gone from both with no marker
failed: its log's tail is the reason.

Polls are spaced (``poll_seconds``, 30 s by default: admins count squeue and
sacct calls); a poll asked for sooner changes nothing and calls nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...group import group_record_key
from ...ledger import Ledger, ScanRecord
from ...markers import failed_key
from ...states import ACTIVE, GROUP_ACTIVE, GroupState, ScanState
from ...storage import Location
from .commands import SlurmCommands, TaskRow
from .files import SlurmFiles
from .group_job import SKIPPED_LINE
from .logs import reason_from_log, tail_lines
from .script import job_name
from .states import Phase, describe, phase

CANCEL_REASON = "cancelled by the user"
VANISHED = "gone from Slurm's queue without a completion marker"


@dataclass
class Seen:
    """What one poll learnt of a run's jobs, by ``A_i`` (tasks) and ``A`` (plain jobs)."""

    rows: dict[str, TaskRow]

    def get(self, key: str | None) -> TaskRow | None:
        return self.rows.get(key) if key else None


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds())
    except ValueError:
        return None


def _iso(slurm_time: str | None) -> str | None:
    """Slurm's local ``YYYY-MM-DDTHH:MM:SS`` as the ledger's ISO time with offset."""
    if not slurm_time:
        return None
    try:
        return datetime.fromisoformat(slurm_time).astimezone().isoformat(timespec="milliseconds")
    except ValueError:
        return None


class Poller:
    """Brings a run's ledger up to date with Slurm."""

    def __init__(self, *, commands: SlurmCommands, ledger: Ledger, run_id: str,
                 output: Callable[[], Location], done_scans: Callable[[list[str]], set[str]],
                 files: SlurmFiles, poll_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.commands = commands
        self.files = files
        self.ledger = ledger
        self.run_id = run_id
        self.output = output
        self.done_scans = done_scans
        self.poll_seconds = poll_seconds
        self.clock = clock

    # -- when

    def due(self) -> bool:
        """Time for another look? (And anything left to look at?)"""
        group = self.ledger.group().state in GROUP_ACTIVE
        if not self.ledger.scans(states=ACTIVE) and not group:
            return False
        last = self.ledger.get_meta("slurm_polled_at")
        return last is None or self.clock() - float(last) >= self.poll_seconds

    def mark_polled(self) -> None:
        self.mark(self.ledger, self.clock())

    @staticmethod
    def mark(ledger: Ledger, now: float) -> None:
        """The cluster was just asked (or just given jobs): the next look waits."""
        ledger.set_meta("slurm_polled_at", now)

    # -- what

    def seen(self) -> Seen:
        """One squeue call (and, with accounting, one sacct call) for the whole run."""
        rows = {r.key: r for r in self.commands.squeue(name=job_name(self.run_id))}
        if self.ledger.get_meta("slurm_accounting", True):
            ids = [j.job_id for j in self.ledger.jobs()]
            since = min((j.submitted_at for j in self.ledger.jobs()), default=None)
            acct = self.commands.sacct(ids, since=_sacct_time(since)) if ids else []
            if acct is None:
                self.ledger.set_meta("slurm_accounting", False)
            else:
                for r in acct:
                    live = rows.get(r.key)
                    # squeue knows the live state best; sacct adds exit code and CPU time
                    rows[r.key] = r if live is None else TaskRow(
                        **{**live.__dict__, "exit_code": r.exit_code,
                           "cpu_seconds": r.cpu_seconds})
        return Seen(rows)

    def poll(self, *, force: bool = False) -> None:
        if not force and not self.due():
            return
        seen = self.seen()
        self.mark_polled()
        active = self.ledger.scans(states=ACTIVE)
        maybe_done = [r.scan_id for r in active
                      if (row := seen.get(r.job_id)) is None or phase(row.state) in
                      (Phase.ENDED, Phase.FAILED, Phase.CANCELLED)]
        done = self.done_scans(maybe_done) if maybe_done else set()
        cancelling = bool(self.ledger.get_meta("cancel_requested"))
        # start_attempt and finish_attempt commit each on their own (one small write each)
        for rec in active:
            self._scan(rec, seen.get(rec.job_id), done=rec.scan_id in done,
                       cancelling=cancelling)
        self._group(seen)

    # -- per scan

    def _scan(self, rec: ScanRecord, row: TaskRow | None, *, done: bool,
              cancelling: bool) -> None:
        if row is None:
            if rec.job_id is None:
                return  # not submitted yet (another bidsbatch is submitting)
            self._end(rec, None, done=done, why=VANISHED)
            return
        p = phase(row.state)
        started = _iso(row.start)
        if p in (Phase.QUEUED, Phase.REQUEUED):
            if rec.state == ScanState.RUNNING:
                # it ran and is back in the queue (node failure, preemption): an attempt
                self._finish(rec.scan_id, state=ScanState.SUBMITTED, exit_code=None,
                             reason=f"requeued by Slurm ({describe(row.state)})", row=row)
            return
        if p is Phase.RUNNING:
            # COMPLETING (and the like) carry the time they began ending: only RUNNING's
            # start time says which attempt this is
            started = started if row.state == "RUNNING" else rec.started_at or started
            if rec.state == ScanState.RUNNING and started and rec.started_at != started:
                # requeued and started again between two polls: that was an attempt too
                self._finish(rec.scan_id, state=ScanState.SUBMITTED, exit_code=None,
                             reason="requeued by Slurm", row=None)
            if rec.state != ScanState.RUNNING or (started and rec.started_at != started):
                self.ledger.start_attempt(rec.scan_id, job_id=row.key, started_at=started)
            return
        why = None
        if p is Phase.CANCELLED:
            why = CANCEL_REASON if cancelling else "cancelled on the cluster (scancel)"
        elif p is Phase.FAILED:
            why = describe(row.state) if row.state.split()[0] != "FAILED" else None
        elif p is Phase.ENDED:
            why = "exited without a completion marker"
        self._end(rec, row, done=done, why=why,
                  cancelled=p is Phase.CANCELLED and cancelling)

    def _end(self, rec: ScanRecord, row: TaskRow | None, *, done: bool, why: str | None,
             cancelled: bool = False) -> None:
        if rec.state != ScanState.RUNNING:
            self.ledger.start_attempt(rec.scan_id, job_id=rec.job_id,
                                      started_at=_iso(row.start) if row else None)
        if done:
            self._finish(rec.scan_id, state=ScanState.SUCCEEDED, exit_code=0, reason=None, row=row)
            return
        code = row.exit_code if row else None
        record = self._failure_record(rec.scan_id)
        if code is None and record:
            code = record.get("exit_code")
        tail = reason_from_log(Path(rec.log)) if rec.log else None
        parts = [p for p in (why, tail) if p]
        reason = ": ".join(parts) if parts else f"exit {code}" if code is not None else VANISHED
        state = ScanState.CANCELLED if cancelled else ScanState.FAILED
        self._finish(rec.scan_id, state=state, exit_code=code, reason=reason, row=row)

    def _finish(self, scan_id: str, *, state: ScanState, exit_code: int | None, reason: str | None,
                row: TaskRow | None) -> None:
        cpu = None
        finished = None
        if row is not None:
            finished = _iso(row.end)
            wall = _seconds(row.start, row.end)
            # what a cluster charges: allocated CPUs × wall time (sacct's TotalCPU is use)
            cpu = row.cpus * wall if wall is not None else None
        self.ledger.finish_attempt(scan_id, state=state, exit_code=exit_code, reason=reason,
                                   cpu_seconds=cpu, finished_at=finished)

    def _failure_record(self, scan_id: str) -> dict | None:
        try:
            output = self.output()
            if output.exists(failed_key(scan_id)):
                data = json.loads(output.read_bytes(failed_key(scan_id)))
                return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None
        return None

    # -- the group job

    def _group(self, seen: Seen) -> None:
        group = self.ledger.group()
        if group.state not in GROUP_ACTIVE or not group.job_id:
            return
        row = seen.get(group.job_id)
        p = phase(row.state) if row else Phase.ENDED
        if p in (Phase.QUEUED, Phase.REQUEUED):
            return
        if p is Phase.RUNNING:
            if group.state != GroupState.RUNNING:
                self.ledger.set_group(GroupState.RUNNING,
                                      started_at=_iso(row.start) if row else None)
            return
        if row is not None:
            self.ledger.set_group(finished_at=_iso(row.end), exit_code=row.exit_code)
        if p is Phase.CANCELLED:
            self.ledger.set_group(GroupState.CANCELLED)
            return
        try:
            recorded = self.output().exists(group_record_key(self.run_id))
        except OSError:
            recorded = False
        log = self.files.task_log(group.job_id)
        if recorded and p is Phase.ENDED:
            self.ledger.set_group(GroupState.SUCCEEDED)
        elif any(SKIPPED_LINE in ln for ln in tail_lines(log)):
            self.ledger.set_group(GroupState.SKIPPED, reason="some scans did not succeed")
        else:
            self.ledger.set_group(GroupState.FAILED, reason=reason_from_log(log) or describe(
                row.state if row else "gone"))


def _sacct_time(iso: str | None) -> str:
    """sacct's ``--starttime`` (local time, seconds) from the ledger's ISO time."""
    if not iso:
        return "now-7days"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%dT%H:%M:%S")

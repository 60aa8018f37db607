"""Start, resume, retry, wait for and cancel runs: the flow shared by every executor.

``start`` writes the plan, asks the completion markers which scans are
already done (those are skipped without touching their data), records the
rest as submitted and hands them to the executor. ``wait`` polls the
executor and reports progress through a callback. The ledger is only a
record: what is done is read from the markers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .executors import Executor, restore_executor
from .ledger import GroupRecord, Ledger, ScanRecord
from .runlock import run_lock
from .runs import RunDir, mark_latest
from .specs import Spec
from .states import ACTIVE, GroupState, ScanState

if TYPE_CHECKING:
    from .planning import Plan


@dataclass
class Started:
    """What ``start`` did."""

    run: RunDir
    submitted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    already_active: list[str] = field(default_factory=list)


def start(plan: Plan, *, executor: Executor, run_dir: Any = None, force: bool = False) -> Started:
    """Write ``plan``, skip the scans already done, submit the others to ``executor``.

    A plan already written to ``run_dir`` (``bidsbatch run`` shows it first) is not
    written again.
    """
    run = plan.write(run_dir)
    mark_latest(run)  # started, not just planned: status/logs/retry without RUN find it
    # One starter at a time per run directory (the local supervisor keeps holding it).
    with run_lock(run.path), Ledger.open(run.ledger_path) as ledger:
        from .specstream import scan_ids_of  # the planner's model: not for status

        ledger.add_scans(scan_ids_of(plan.specs))  # the ids, without making the specs
        ledger.record_executor(executor.name, executor.saved_settings())
        executor.poll(run, ledger)  # a previous invocation may still be running
        active: set[str] = set()
        if executor.busy(run, ledger) and ledger.scans(states=ACTIVE):
            if not executor.accepts_rerun_while_active:
                raise UsageError(
                    f"run {run.path.name} is already running",
                    hint=f"watch it with: bidsbatch status {run.path.name} --watch",
                )
            active = {r.scan_id for r in ledger.scans(states=ACTIVE)}
        output = plan.info.open_output()
        from .markers import done_scans  # the planner's side: not for status

        done = set() if force else done_scans(output, plan.specs)
        todo: list[Spec] = []
        result = Started(run=run)
        with ledger.transaction():
            for spec in plan.specs:
                if spec.scan_id in active:
                    result.already_active.append(spec.scan_id)
                elif spec.scan_id in done:
                    ledger.update(spec.scan_id, state=ScanState.SKIPPED,
                                  reason="already done (completion marker)")
                    result.skipped.append(spec.scan_id)
                else:
                    ledger.update(spec.scan_id, state=ScanState.SUBMITTED, exit_code=None,
                                  reason=None)
                    todo.append(spec)
        _prepare_group(plan, ledger, nothing_new=not todo)
        executor.submit(run, todo, ledger, force=force)
        result.submitted = [s.scan_id for s in todo]
        return result


def _prepare_group(plan: Plan, ledger: Ledger, *, nothing_new: bool) -> None:
    if plan.pipeline.group is None:
        ledger.set_group(None)
        return
    if nothing_new and ledger.group().state == GroupState.SUCCEEDED:
        return  # every scan was done and so was the group step
    ledger.set_group(GroupState.SUBMITTED)


def executor_for(run: RunDir, ledger: Ledger, overrides: dict[str, Any] | None = None) -> Executor:
    """Rebuild the executor a run was submitted with (settings saved in its ledger)."""
    name = ledger.executor_name
    if not name:
        raise UsageError(f"run {run.path.name} was planned but never submitted",
                         hint="start it with bidsbatch run")
    return restore_executor(name, ledger.executor_settings, overrides)


def submitted_executor(run: RunDir, ledger: Ledger) -> Executor | None:
    """The run's executor, or None when the run was planned and never submitted."""
    return executor_for(run, ledger) if ledger.executor_name else None


def retry_failed(run: RunDir, *, overrides: dict[str, Any] | None = None) -> list[str]:
    """Submit the failed (and cancelled) scans of ``run`` again; returns their ids."""
    with run_lock(run.path), Ledger.open(run.ledger_path) as ledger:
        executor = executor_for(run, ledger, overrides)
        # What the retry changed (``--jobs``) holds for the rest of the run.
        ledger.record_executor(executor.name, executor.saved_settings())
        executor.poll(run, ledger)
        # An engine that keeps its own queue takes the failed ones while the rest run.
        if ledger.scans(states=ACTIVE) and not executor.accepts_rerun_while_active:
            raise UsageError(f"run {run.path.name} is still running",
                             hint="wait for it or cancel it before retrying")
        again = [r.scan_id for r in ledger.scans(states=(ScanState.FAILED,
                                                          ScanState.CANCELLED))]
        if not again:
            return []
        specs = [run.spec(s) for s in again]
        ledger.update_many(again, state=ScanState.SUBMITTED, exit_code=None, reason=None)
        if ledger.group().state is not None:
            ledger.set_group(GroupState.SUBMITTED)
        executor.submit(run, specs, ledger, force=False)
        return again


def fetch_details(run: RunDir) -> None:
    """Have the run's executor record every attempt's details, for cost and the report.

    ``status`` keeps scan states only (cheap on AWS Batch); this reads the rest once
    (see :meth:`Executor.fetch_details`). A run never submitted has nothing to read.
    """
    with Ledger.open(run.ledger_path) as ledger:
        if ledger.executor_name:
            executor_for(run, ledger).fetch_details(run, ledger)


def cancel(run: RunDir) -> dict[str, int]:
    with Ledger.open(run.ledger_path) as ledger:
        executor = executor_for(run, ledger)
        executor.cancel(run, ledger)
        return ledger.counts()


@dataclass
class Snapshot:
    """The state of a run at one moment, for progress displays."""

    counts: dict[ScanState, int]
    records: list[ScanRecord]
    group_state: GroupState | None
    elapsed: float
    busy: bool
    group: GroupRecord = field(default_factory=GroupRecord)
    #: The records that changed since the previous snapshot of the same wait (all of
    #: them in the first): what a progress view looks at for new failures and retries.
    changed: list[ScanRecord] | None = None

    @property
    def failed(self) -> bool:
        """Did anything of the run fail or get cancelled (the run's exit code is then 1)?"""
        return bool(self.counts[ScanState.FAILED] or self.counts[ScanState.CANCELLED]
                    or self.group_state == GroupState.FAILED)


class LiveRecords:
    """A run's scan records kept up to date from the rows that changed (not re-read whole).

    Reading every row on each check cost 304 ms at 100,000 scans; the rows updated
    since the last check are few. ``updated_at`` is written from this machine's clock
    by the one writer of a local run, and by the caller's own ``poll`` otherwise.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, ScanRecord] = {}
        self.stamp: str | None = None

    def refresh(self, ledger: Ledger) -> list[ScanRecord]:
        """Bring the records up to date; the ones that changed."""
        newest = ledger.last_update()  # first: a row changed from now on is read next time
        changed = ledger.scans_updated_since(self.stamp)
        added = False
        for rec in changed:
            added = added or rec.scan_id not in self.by_id
            self.by_id[rec.scan_id] = rec
        if added and self.stamp is not None:
            self.by_id = dict(sorted(self.by_id.items()))
        self.stamp = newest
        return changed


def snapshot(run: RunDir, ledger: Ledger, executor: Executor, *, started: float,
             records: LiveRecords | None = None) -> Snapshot:
    executor.poll(run, ledger)
    changed = None
    if records is None:
        all_records = ledger.scans()
    else:
        changed = records.refresh(ledger)
        all_records = list(records.by_id.values())
    return Snapshot(
        counts=ledger.counts(),
        records=all_records,
        group_state=(group := ledger.group()).state,
        group=group,
        elapsed=time.monotonic() - started,
        busy=executor.busy(run, ledger),
        changed=changed,
    )


def wait(
    run: RunDir,
    *,
    on_update: Callable[[Snapshot], None] | None = None,
    interval: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
    max_interval: float | None = None,
) -> Snapshot:
    """Poll until nothing of the run is queued or running; return the final snapshot.

    Between two checks the executor waits for its run to change
    (:meth:`Executor.wait_for_change`: the local one wakes the moment its
    supervisor exits), so the end of a run is seen at once whatever the interval.
    """
    started = time.monotonic()
    with Ledger.open(run.ledger_path) as ledger:
        executor = executor_for(run, ledger)
        # An engine that asks to be polled less often (a cluster's controller) is.
        interval = max(interval, executor.min_poll_seconds)
        if max_interval is not None:
            max_interval = max(max_interval, executor.min_poll_seconds)
        delay = interval
        records = LiveRecords()
        while True:
            snap = snapshot(run, ledger, executor, started=started, records=records)
            if not snap.busy:
                # The last word is the whole ledger, read once.
                snap = replace(snap, records=ledger.scans())
            if on_update:
                on_update(snap)
            if not snap.busy:
                return snap
            executor.wait_for_change(run, ledger, delay, sleep=sleep)
            if max_interval:
                delay = min(max_interval, delay * 1.5)

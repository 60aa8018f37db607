"""Bringing the ledger up to date with Batch, cheaply, at two levels of detail.

**Status** (:func:`poll`, for ``status``, ``run``'s progress, ``retry``): one
``DescribeJobs`` (100 ids a call) for the run's live jobs: array parents,
single jobs, the group step. For an array whose
``arrayProperties.statusSummary`` did not change since the last poll, nothing
more. A final array whose parent ScanState.SUCCEEDED has every child succeeded: its
scans are closed in one ledger transaction, no child asked about. A final
array that ScanState.FAILED lists its ``FAILED`` children (``ListJobs``, 1,000 a page;
a summary carries the exit code and reason) and the rest succeeded. A live
array lists children by state, only the states whose counts disagree with
the ledger (and the running ones, a set that moves), and records what the
summaries say; only a child that left ``RUNNING`` for the queue again (a
Spot reclaim, a retried fault) is described, for its reason. A finished
10,000-scan run's first status is 1 call, 2 if some scans failed; a job
that is final and recorded is never asked about again.

**Details** (:func:`fetch_details`, for ``cost``, ``report`` and the end of
``run``): every attempt of every scan (start, stop, exit code, Spot
reclaims) and its log stream, from ``DescribeJobs`` 100 ids a call, only for
the scans whose attempt records are missing. A second pass asks nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from ...ledger import JobRecord, Ledger
from ...ledger import ScanRecord as Record
from ...states import ACTIVE, GroupState, ScanState
from .api import FINAL, BatchApi
from .instances import InstanceLookup
from .states import (
    JobState,
    PollState,
    apply_job,
    apply_summary,
    failure_reason,
    group_outcome,
    ms_iso,
)
from .submit import EXECUTOR, child_id, child_index

#: Child ids described in full that have no attempt to record (ended before they
#: started, or forgotten by Batch): the details pass does not ask about them again.
NO_ATTEMPTS_KEY = "aws_batch_no_attempts"
ORPHAN_REASON = "not submitted: the submission was interrupted; run the same command again"


def release_orphans(ledger: Ledger, state: PollState) -> None:
    """Scans marked submitted that never got a job (the client died first) are planned again.

    So are active scans whose job is final and fully recorded: nothing will move them.
    """
    orphans = [r.scan_id for r in ledger.scans(states=ACTIVE)
               if not r.job_id or state.jobs.get(r.job_id.split(":")[0], JobState()).done]
    if orphans:
        ledger.update_many(orphans, state=ScanState.PLANNED, reason=ORPHAN_REASON)


@dataclass
class _Changes:
    """What one poll learnt of the children of the run's jobs, applied in one transaction."""

    #: child id -> (scan, its job, the ListJobs summary): state, times, exit code, reason.
    listed: dict[str, tuple[str, JobRecord, dict[str, Any]]] = field(default_factory=dict)
    #: child id -> (scan, its job): succeeded, by its final array's outcome alone.
    succeeded: dict[str, tuple[str, JobRecord]] = field(default_factory=dict)
    #: child id -> (scan, its job): to record from a full description.
    described: dict[str, tuple[str, JobRecord]] = field(default_factory=dict)


def poll(api: BatchApi, ledger: Ledger, *,
         done_scans: Callable[[list[str]], set[str]] | None = None) -> None:
    """Update the ledger's scan states from Batch for every job of the run not known to be done.

    The status level (see the module's docstring): states, times, exit codes and
    reasons, not every attempt (:func:`fetch_details` records those).
    ``done_scans`` tells which scans have a completion marker: asked only about
    the scans of a job Batch no longer reports (it forgets jobs some days after
    they end), whose fate is then read from the markers.
    """
    state = PollState(ledger)
    release_orphans(ledger, state)
    live = [j for j in ledger.jobs() if j.executor == EXECUTOR and state.is_live(j.job_id)]
    if not live:
        return
    descs = api.describe_jobs(j.job_id for j in live)
    records = {r.scan_id: r for r in ledger.scans()}
    changes = _Changes()
    for job in live:
        desc = descs.get(job.job_id)
        js = state[job.job_id]
        if desc is None:
            _vanished(ledger, job, records, done_scans)
            js.done = True
            continue
        if job.kind == "array":
            _changed_children(api, job, desc, js.summary, js.status, records, changes)
            js.summary = (desc.get("arrayProperties") or {}).get("statusSummary") or {}
        elif job.kind == "single" and _runs_it(records, job):
            changes.described[job.job_id] = (job.scans[0], job)
        js.status = desc["status"]
        js.done = desc["status"] in FINAL
    extra = api.describe_jobs(c for c in changes.described if c not in descs)
    with ledger.transaction():
        for cid, (scan, job, summary) in changes.listed.items():
            apply_summary(ledger, scan, cid, summary, cancelled=state[job.job_id].cancelled)
        for cid, (scan, _job) in changes.succeeded.items():
            ledger.update(scan, state=ScanState.SUCCEEDED, job_id=cid, exit_code=0, reason=None)
        for cid, (scan, job) in changes.described.items():
            desc = extra.get(cid) or descs.get(cid)
            if desc is not None:
                apply_job(ledger, scan, cid, desc, cancelled=state[job.job_id].cancelled)
        _group(ledger, state, live, descs)
    # A final array is done only when none of its scans is left active (a listing that
    # lagged behind the summary is read again next time).
    pending = {r.job_id.split(":")[0] for r in ledger.scans(states=ACTIVE) if r.job_id}
    for job in live:
        if state[job.job_id].done and job.job_id in pending:
            state[job.job_id].done = False
            state[job.job_id].summary = None
    state.save()


def _runs_it(records: dict[str, Record], job: JobRecord) -> bool:
    """Is this single job still the job of its scan (not replaced by a newer one)?"""
    rec = records.get(job.scans[0]) if job.scans else None
    return rec is not None and rec.job_id == job.job_id


def _changed_children(api: BatchApi, job: JobRecord, desc: dict[str, Any],
                      last_summary: dict[str, int] | None, last_status: str | None,
                      records: dict[str, Record], changes: _Changes) -> None:
    """Find the children of an array whose state differs from the ledger's, never by id."""
    summary = (desc.get("arrayProperties") or {}).get("statusSummary") or {}
    if summary == last_summary and desc["status"] == last_status:
        return
    mine: dict[int, Record] = {}
    for i, scan in enumerate(job.scans):
        rec = records.get(scan)
        if rec is not None and rec.job_id == child_id(job, i):
            mine[i] = rec
    have = {
        "SUCCEEDED": {i for i, r in mine.items() if r.state == ScanState.SUCCEEDED},
        # The ledger marks a cancelled scan at once; Batch's FAILED confirms it (finished_at).
        "FAILED": {i for i, r in mine.items()
                   if r.state in (ScanState.FAILED, ScanState.CANCELLED) and r.finished_at},
        "RUNNING": {i for i, r in mine.items() if r.state == ScanState.RUNNING},
    }

    def cid(index: int) -> str:
        return child_id(job, index)

    if desc["status"] in FINAL:
        _final_children(api, job, desc, summary, mine, have, changes)
        return
    for status in ("SUCCEEDED", "FAILED"):
        # Final sets only grow: equal counts mean the same children.
        if summary.get(status, 0) != len(have[status]):
            for child in api.children(job.job_id, status):
                i = child_index(child["jobId"])
                if i in mine and i not in have[status]:
                    changes.listed[cid(i)] = (mine[i].scan_id, job, child)
    if summary.get("RUNNING", 0) or have["RUNNING"]:
        # The running set moves (a retry goes back to the queue): compare the sets.
        running = {child_index(c["jobId"]): c for c in api.children(job.job_id, "RUNNING")}
        for i in running.keys() - have["RUNNING"]:
            if i in mine:
                changes.listed[cid(i)] = (mine[i].scan_id, job, running[i])
        for i in have["RUNNING"] - running.keys():
            if cid(i) not in changes.listed:
                # Neither running nor newly ended: back in the queue for another attempt,
                # and only a description says why (few: Spot reclaims, retried faults).
                changes.described[cid(i)] = (mine[i].scan_id, job)


def _final_children(api: BatchApi, job: JobRecord, desc: dict[str, Any],
                    summary: dict[str, int], mine: dict[int, Record],
                    have: dict[str, set[int]], changes: _Changes) -> None:
    """Every child of a final array has ended: the FAILED ones are listed, the rest succeeded."""
    todo = mine.keys() - have["SUCCEEDED"] - have["FAILED"]
    if not todo:
        return
    failed: dict[int, dict[str, Any]] = {}
    # A parent SUCCEEDS only when every child did: then there is nothing to list.
    if desc["status"] == "FAILED" or summary.get("FAILED", 0):
        failed = {child_index(c["jobId"]): c for c in api.children(job.job_id, "FAILED")}
        if len(failed) < summary.get("FAILED", 0):
            # The listing lags behind the summary: record what it has, close the rest
            # on the next poll rather than call a failed child succeeded.
            todo &= failed.keys()
    for i in todo:
        if i in failed:
            changes.listed[child_id(job, i)] = (mine[i].scan_id, job, failed[i])
        else:
            changes.succeeded[child_id(job, i)] = (mine[i].scan_id, job)


def fetch_details(api: BatchApi, ledger: Ledger, *,
                  scan_ids: Collection[str] | None = None, attempts_only: bool = False) -> int:
    """Record every attempt (times, exit code, reason) and log stream the ledger lacks.

    The details level (see the module's docstring), for cost and the report:
    ``DescribeJobs`` 100 ids a call for the running and ended scans whose
    current job has no complete attempt records yet; none when all have.
    ``scan_ids`` limits it to those scans, in any state; ``attempts_only`` records
    the attempts without touching the scans' rows (before they are submitted
    again). Returns how many jobs were described.
    """
    state = PollState(ledger)
    ours = {j.job_id for j in ledger.jobs() if j.executor == EXECUTOR}
    recorded: dict[tuple[str, str | None], list[bool]] = defaultdict(list)
    for a in ledger.attempts():
        recorded[(a.scan_id, a.job_id)].append(a.finished_at is not None)
    skip = set(ledger.get_meta(NO_ATTEMPTS_KEY) or [])
    wanted = set(scan_ids) if scan_ids is not None else None
    want: dict[str, tuple[str, str]] = {}  # child id -> (scan, its job)
    for rec in ledger.scans():
        if wanted is not None:
            if rec.scan_id not in wanted:
                continue
        elif rec.state not in (ScanState.RUNNING, ScanState.SUCCEEDED, ScanState.FAILED,
                               ScanState.CANCELLED):
            continue
        if not rec.job_id or rec.job_id in skip or rec.job_id.split(":")[0] not in ours:
            continue
        done = recorded.get((rec.scan_id, rec.job_id), [])
        # A running scan's current attempt is open; an ended scan's are all closed.
        complete = (not all(done)) if rec.state == ScanState.RUNNING else bool(done) and all(done)
        if not complete:
            want[rec.job_id] = (rec.scan_id, rec.job_id.split(":")[0])
    if not want:
        return 0
    descs = api.describe_jobs(want)
    with ledger.transaction():
        for cid, (scan, job_id) in want.items():
            desc = descs.get(cid)
            if desc is None or (desc["status"] in FINAL and not desc.get("attempts")):
                skip.add(cid)
            if desc is not None:
                apply_job(ledger, scan, cid, desc, cancelled=state[job_id].cancelled,
                          attempts_only=attempts_only)
        ledger.set_meta(NO_ATTEMPTS_KEY, sorted(skip))
    # What each attempt ran on, from the same descriptions (instance type, market, zone).
    InstanceLookup(api, ledger).record(descs, {cid: scan for cid, (scan, _j) in want.items()})
    return len(descs)


def _vanished(ledger: Ledger, job: JobRecord, records: dict[str, Record],
              done_scans: Callable[[list[str]], set[str]] | None) -> None:
    """Batch no longer knows the job (long gone, or another region): the markers decide."""
    reason = f"AWS Batch no longer reports job {job.job_id}"
    active = [scan for i, scan in enumerate(job.scans)
              if (rec := records.get(scan)) is not None and rec.job_id == child_id(job, i)
              and rec.state in ACTIVE]
    done = done_scans(active) if active and done_scans else set()
    with ledger.transaction():
        for scan in active:
            if scan in done:
                ledger.update(scan, state=ScanState.SUCCEEDED,
                              reason=f"{reason}; its marker says done")
            else:
                ledger.update(scan, state=ScanState.FAILED, reason=reason)
    if job.kind == "group" and ledger.group().job_id == job.job_id:
        ledger.set_group(GroupState.FAILED, reason=reason)


def _group(ledger: Ledger, state: PollState, live: list[JobRecord],
           descs: dict[str, dict[str, Any]]) -> None:
    gid = ledger.group().job_id
    if not gid or gid not in descs or all(j.job_id != gid for j in live):
        return
    desc = descs[gid]
    counts = ledger.counts()
    outcome, reason = group_outcome(desc, cancelled=state[gid].cancelled,
                                    scans_failed=bool(counts[ScanState.FAILED]
                                                      or counts[ScanState.CANCELLED]))
    ledger.set_group(outcome, reason=reason)
    if desc.get("startedAt"):
        ledger.set_group(started_at=ms_iso(desc["startedAt"]))
    if desc["status"] in FINAL:
        ledger.set_group(finished_at=ms_iso(desc.get("stoppedAt")),
                         exit_code=(desc.get("container") or {}).get("exitCode"))
        if outcome == GroupState.FAILED:
            ledger.set_group(reason=failure_reason(desc))

"""Bringing the ledger up to date with Batch, cheaply.

One ``DescribeJobs`` (100 ids a call) for the run's live jobs: array
parents, single jobs, the group step. For an array whose
``arrayProperties.statusSummary`` did not change since the last poll,
nothing more. For one that did, ``ListJobs(arrayJobId, jobStatus)`` pages
for the states whose counts disagree with the ledger (and the running ones,
a set that moves), then ``DescribeJobs`` for just the children that changed:
their attempts, times, exit codes and log streams. A job that is final and
fully recorded is never asked about again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ledger import ACTIVE, CANCELLED, FAILED, PLANNED, RUNNING, SUCCEEDED, JobRecord, Ledger
from ..ledger import ScanRecord as Record
from .awsbatch_api import FINAL, BatchApi
from .awsbatch_status import JobState, PollState, apply_job, failure_reason, group_outcome, ms_iso
from .awsbatch_submit import EXECUTOR, child_id, child_index

ORPHAN_REASON = "not submitted: the submission was interrupted; run the same command again"


def release_orphans(ledger: Ledger, state: PollState) -> None:
    """Scans marked submitted that never got a job (the client died first) are planned again.

    So are active scans whose job is final and fully recorded: nothing will move them.
    """
    orphans = [r.scan_id for r in ledger.scans(states=ACTIVE)
               if not r.job_id or state.jobs.get(r.job_id.split(":")[0], JobState()).done]
    if orphans:
        ledger.update_many(orphans, state=PLANNED, reason=ORPHAN_REASON)


def poll(api: BatchApi, ledger: Ledger, *,
         done_scans: Callable[[list[str]], set[str]] | None = None) -> None:
    """Update the ledger from Batch for every job of the run not known to be done.

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
    changed: dict[str, tuple[str, JobRecord]] = {}  # child id -> (scan, its job)
    for job in live:
        desc = descs.get(job.job_id)
        js = state[job.job_id]
        if desc is None:
            _vanished(ledger, job, records, done_scans)
            js.done = True
            continue
        if job.kind == "array":
            _changed_children(api, job, desc, js.summary, js.status, records, changed)
            js.summary = (desc.get("arrayProperties") or {}).get("statusSummary") or {}
        elif job.kind == "single" and _runs_it(records, job):
            changed[job.job_id] = (job.scans[0], job)
        js.status = desc["status"]
        js.done = desc["status"] in FINAL
    extra = api.describe_jobs(c for c in changed if c not in descs)
    with ledger.transaction():
        for cid, (scan, job) in changed.items():
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
                      records: dict[str, Record],
                      changed: dict[str, tuple[str, JobRecord]]) -> None:
    """Find the children of an array whose state differs from the ledger's."""
    summary = (desc.get("arrayProperties") or {}).get("statusSummary") or {}
    if summary == last_summary and desc["status"] == last_status:
        return
    mine: dict[int, Record] = {}
    for i, scan in enumerate(job.scans):
        rec = records.get(scan)
        if rec is not None and rec.job_id == child_id(job, i):
            mine[i] = rec
    have = {
        "SUCCEEDED": {i for i, r in mine.items() if r.state == SUCCEEDED},
        # The ledger marks a cancelled scan at once; Batch's FAILED confirms it (finished_at).
        "FAILED": {i for i, r in mine.items() if r.state in (FAILED, CANCELLED) and r.finished_at},
        "RUNNING": {i for i, r in mine.items() if r.state == RUNNING},
    }

    def note(index: int) -> None:
        if index in mine:
            changed[child_id(job, index)] = (mine[index].scan_id, job)

    if desc["status"] in FINAL:
        # Every child has ended: read those the ledger has not closed by id, no listing.
        closed = have["SUCCEEDED"] | have["FAILED"]
        for i in mine.keys() - closed:
            note(i)
        return
    for status in ("SUCCEEDED", "FAILED"):
        # Final sets only grow: equal counts mean the same children.
        if summary.get(status, 0) != len(have[status]):
            for child in api.children(job.job_id, status):
                if child_index(child["jobId"]) not in have[status]:
                    note(child_index(child["jobId"]))
    if summary.get("RUNNING", 0) or have["RUNNING"]:
        # The running set moves (a retry goes back to the queue): compare the sets.
        running = {child_index(c["jobId"]) for c in api.children(job.job_id, "RUNNING")}
        for i in running ^ have["RUNNING"]:
            note(i)


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
                ledger.update(scan, state=SUCCEEDED, reason=f"{reason}; its marker says done")
            else:
                ledger.update(scan, state=FAILED, reason=reason)
    if job.kind == "group" and ledger.get_meta("group_job_id") == job.job_id:
        ledger.set_meta("group_state", FAILED)
        ledger.set_meta("group_reason", reason)


def _group(ledger: Ledger, state: PollState, live: list[JobRecord],
           descs: dict[str, dict[str, Any]]) -> None:
    gid = ledger.get_meta("group_job_id")
    if not gid or gid not in descs or all(j.job_id != gid for j in live):
        return
    desc = descs[gid]
    counts = ledger.counts()
    outcome, reason = group_outcome(desc, cancelled=state[gid].cancelled,
                                    scans_failed=bool(counts[FAILED] or counts[CANCELLED]))
    ledger.set_meta("group_state", outcome)
    ledger.set_meta("group_reason", reason)
    if desc.get("startedAt"):
        ledger.set_meta("group_started_at", ms_iso(desc["startedAt"]))
    if desc["status"] in FINAL:
        ledger.set_meta("group_finished_at", ms_iso(desc.get("stoppedAt")))
        ledger.set_meta("group_exit_code", (desc.get("container") or {}).get("exitCode"))
        if outcome == FAILED:
            ledger.set_meta("group_reason", failure_reason(desc))

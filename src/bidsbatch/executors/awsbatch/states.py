"""Batch job states into the ledger: scan states, attempts, times, exit codes, reasons.

``SUBMITTED``/``PENDING``/``RUNNABLE``/``STARTING`` are *submitted*,
``RUNNING`` is *running*, ``SUCCEEDED`` and ``FAILED`` are final. A job the
user cancelled stays *cancelled* while Batch winds it down (it does not flap
back to *submitted*), and a ``FAILED`` one of those is *cancelled* too.
Two levels of detail. :func:`apply_summary` records what a ``ListJobs``
job summary says (state, times, exit code, reason): enough for ``status``.
:func:`apply_job` records a full ``DescribeJobs`` description, every attempt
Batch reports (times, exit code, reason) and the log stream: what cost,
the report and ``logs`` need.

What poll remembers between calls (each job's last status and array
summary, whether it is done, whether it was cancelled) lives in the
ledger's meta table, so a poll where nothing changed costs one
``DescribeJobs`` per 100 live jobs and nothing else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ...ledger import AttemptRecord, Ledger
from ...states import GroupState, ScanState
from ...timestamps import iso

STATE_OF = {
    "SUBMITTED": ScanState.SUBMITTED, "PENDING": ScanState.SUBMITTED,
    "RUNNABLE": ScanState.SUBMITTED, "STARTING": ScanState.SUBMITTED,
    "RUNNING": ScanState.RUNNING, "SUCCEEDED": ScanState.SUCCEEDED, "FAILED": ScanState.FAILED,
}
#: The group job's Batch status as the group step's state, while it has not ended.
GROUP_STATE_OF = {
    "SUBMITTED": GroupState.SUBMITTED, "PENDING": GroupState.SUBMITTED,
    "RUNNABLE": GroupState.SUBMITTED, "STARTING": GroupState.SUBMITTED,
    "RUNNING": GroupState.RUNNING,
}
CANCEL_REASON = "cancelled by the user (bidsbatch cancel)"
#: Batch's reason for an ordinary non-zero exit: the exit code says more.
_GENERIC_REASON = "Essential container in task exited"
_EXIT_HINTS = {
    75: "a transient fault outlived every attempt",
    124: "the app ran past its timeout",
    126: "the app cannot be executed in the image",
    127: "command not found in the image (does it have bidsbatch? see "
         "`bidsbatch image dockerfile`)",
    137: "killed (out of memory? raise resources.memory_mib)",
}
META_KEY = "aws_batch_jobs"


def ms_iso(ms: Any) -> str | None:
    """Batch's milliseconds since the epoch as the ledger's ISO time."""
    if not ms:
        return None
    return iso(datetime.fromtimestamp(int(ms) / 1000, UTC))


@dataclass
class JobState:
    """What poll remembers of one Batch job."""

    status: str | None = None
    summary: dict[str, int] | None = None
    done: bool = False  # final, and everything about it recorded
    cancelled: bool = False


class PollState:
    """Every job's :class:`JobState`, kept in the ledger's meta table."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        raw = ledger.get_meta(META_KEY) or {}
        self.jobs = {k: JobState(**v) for k, v in raw.items()}

    def __getitem__(self, job_id: str) -> JobState:
        return self.jobs.setdefault(job_id, JobState())

    def is_live(self, job_id: str) -> bool:
        """Not known to be final (a job poll never saw counts as live)."""
        return not self[job_id].done

    def save(self) -> None:
        self.ledger.set_meta(META_KEY, {k: asdict(v) for k, v in self.jobs.items()})


def failure_reason(desc: dict[str, Any]) -> str:
    """One line on why a job (or its last attempt) failed."""
    container = desc.get("container") or {}
    attempts = desc.get("attempts") or []
    last = attempts[-1] if attempts else {}
    code = container.get("exitCode", (last.get("container") or {}).get("exitCode"))
    detail = (container.get("reason") or (last.get("container") or {}).get("reason")
              or desc.get("statusReason") or last.get("statusReason"))
    parts = []
    if code is not None:
        parts.append(f"exit {code}")
        if code in _EXIT_HINTS:
            parts.append(_EXIT_HINTS[code])
    if detail and (detail != _GENERIC_REASON or code is None):
        parts.append(detail)
    return ": ".join(parts) or "failed"


def _attempt_reason(attempt: dict[str, Any]) -> str | None:
    container = attempt.get("container") or {}
    return container.get("reason") or attempt.get("statusReason")


def apply_job(ledger: Ledger, scan_id: str, child_id: str, desc: dict[str, Any], *,
              cancelled: bool, attempts_only: bool = False) -> None:
    """Record what Batch says of the job (or array child) that runs ``scan_id``.

    Every attempt goes to the attempts table; the scan's row (state, times, log)
    too unless ``attempts_only`` (the job is about to be replaced by a new one).
    """
    status = desc["status"]
    attempts = list(desc.get("attempts") or [])
    running_now = status == "RUNNING" and (not attempts or attempts[-1].get("stoppedAt"))
    earlier = [a.attempt for a in ledger.attempts(scan_id) if a.job_id != child_id]
    base = max(earlier, default=0)
    for k, a in enumerate(attempts, start=1):
        container = a.get("container") or {}
        ledger.record_attempt(AttemptRecord(
            scan_id=scan_id, attempt=base + k, job_id=child_id,
            started_at=ms_iso(a.get("startedAt")), finished_at=ms_iso(a.get("stoppedAt")),
            exit_code=container.get("exitCode"), reason=_attempt_reason(a),
            cpu_seconds=None, market=None, instance_type=None,
        ))
    n = len(attempts)
    if running_now:
        # Batch lists an attempt once it has ended; the one running now is the job itself.
        n += 1
        ledger.record_attempt(AttemptRecord(
            scan_id=scan_id, attempt=base + n, job_id=child_id,
            started_at=ms_iso(desc.get("startedAt")), finished_at=None, exit_code=None,
            reason=None, cpu_seconds=None, market=None, instance_type=None,
        ))
    if attempts_only:
        return
    container = desc.get("container") or {}
    last = attempts[-1] if attempts else {}
    log = container.get("logStreamName") or (last.get("container") or {}).get("logStreamName")
    state = STATE_OF.get(status, ScanState.SUBMITTED)
    final = status in ("SUCCEEDED", "FAILED")
    fields: dict[str, Any] = {
        "job_id": child_id, "attempts": base + n, "log": log,
        "started_at": (ms_iso(desc.get("startedAt")) if running_now
                       else ms_iso(last.get("startedAt") or desc.get("startedAt"))),
        "finished_at": ms_iso(desc.get("stoppedAt") or last.get("stoppedAt")) if final else None,
        "exit_code": container.get("exitCode") if final else None,
        "reason": None,
    }
    if state == ScanState.FAILED:
        fields["reason"] = failure_reason(desc)
    elif state == ScanState.SUBMITTED and attempts:
        fields["reason"] = f"attempt {base + n} ended ({_attempt_reason(last) or 'no reason'}); " \
                           "retrying"
    if cancelled and state != ScanState.SUCCEEDED:
        state = ScanState.CANCELLED
        fields["reason"] = CANCEL_REASON
    ledger.update(scan_id, state=state, **fields)


def apply_summary(ledger: Ledger, scan_id: str, child_id: str, summary: dict[str, Any], *,
                  cancelled: bool) -> None:
    """Record a ``ListJobs`` summary of the job (or array child) that runs ``scan_id``.

    The state, times, exit code and reason only: a summary lists no attempts and no
    log stream, which :func:`apply_job` records later (the details pass).
    """
    status = summary["status"]
    state = STATE_OF.get(status, ScanState.SUBMITTED)
    final = status in ("SUCCEEDED", "FAILED")
    container = summary.get("container") or {}
    fields: dict[str, Any] = {
        "job_id": child_id,
        "started_at": ms_iso(summary.get("startedAt")),
        "finished_at": ms_iso(summary.get("stoppedAt")) if final else None,
        "exit_code": container.get("exitCode") if final else None,
        "reason": failure_reason(summary) if state == ScanState.FAILED else None,
    }
    if cancelled and state != ScanState.SUCCEEDED:
        state = ScanState.CANCELLED
        fields["reason"] = CANCEL_REASON
    ledger.update(scan_id, state=state, **fields)


def group_outcome(desc: dict[str, Any], *, cancelled: bool,
                  scans_failed: bool) -> tuple[GroupState, str | None]:
    """The group step's state (and a reason) for the group job's description."""
    status = desc["status"]
    if status == "SUCCEEDED":
        return GroupState.SUCCEEDED, None
    if cancelled:
        return GroupState.CANCELLED, CANCEL_REASON
    if status == "FAILED":
        if scans_failed:
            # Batch fails a job whose dependency failed: the step never ran.
            return GroupState.SKIPPED, "some scans did not succeed"
        return GroupState.FAILED, failure_reason(desc)
    return GROUP_STATE_OF.get(status, GroupState.SUBMITTED), None

"""The AWS Batch executor: one array job per run, Spot-aware retries, IAM roles only.

``submit`` uploads the run's specs and a manifest to
``OUTPUT/.bidsbatch/runs/<run-id>/`` and submits one array job per 10,000
scans (a plain job for a single scan) running ``bidsbatch worker --manifest
s3://…`` (each child finds its scan by ``AWS_BATCH_JOB_ARRAY_INDEX``), then
the group step as a job that depends on them. The job definition is
registered once per pipeline and content (see ``jobdef``), with a
retry strategy that retries Spot reclaims and transient faults only. Jobs
get AWS access from their job role, never from keys.

Submitting is idempotent: a run submitted again (after the client died
midway, or with the ledger lost) finds its jobs by the ledger or by name and
submits only what no live or succeeded job covers (``submit``).
``poll`` reads the arrays' status summaries and asks for children only when
those change, and then by listing, never one by one (``poll``);
``fetch_details`` reads every attempt (for cost and the report) once, 100
jobs a call. ``cancel`` terminates each live job once
(an array parent takes its children with it); ``logs`` reads every
attempt's CloudWatch stream (``logs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ...errors import BidsbatchError, UsageError
from ...ledger import AttemptRecord, Ledger, ScanRecord
from ...markers import done_scans, failed_log_key, worker_log_key
from ...pipelines import check_no_credentials
from ...runs import RunDir
from ...specs import RunInfo, Spec
from ...states import ACTIVE, GROUP_ACTIVE, GroupState, ScanState
from ...storage import Location
from ..base import Executor
from ..settings import ExecutorSettings
from .api import BatchApi
from .cost import batch_cost_context
from .logs import BatchLogs, cloudwatch_url
from .poll import ORPHAN_REASON, fetch_details, poll
from .runfiles import RunFiles
from .settings import BatchSettings
from .states import CANCEL_REASON, PollState
from .submit import EXECUTOR, Submitter

if TYPE_CHECKING:
    from ...cost import CostContext
    from ...pricing import PriceTable


class AwsBatchExecutor(Executor):
    """Runs scans as AWS Batch array jobs."""

    name = EXECUTOR
    settings_type = BatchSettings
    accepts_rerun_while_active: ClassVar[bool] = True
    runs_in_image: ClassVar[bool] = True
    settings: BatchSettings

    def __init__(self, settings: BatchSettings, *, api: BatchApi | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(settings)
        self.sleep = sleep
        self.api = api or BatchApi(region=settings.region, sleep=sleep)

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> AwsBatchExecutor:
        assert isinstance(settings, BatchSettings)
        return cls(settings.resolved())

    def saved_settings(self) -> dict[str, Any]:
        data = self.settings.to_json()
        if not data["region"]:
            import boto3

            # Saved with the run, so that status and logs ask the region it ran in.
            data["region"] = boto3.session.Session().region_name
        return data

    def describe(self) -> str:
        return f"{self.name} ({self.settings.job_queue})"

    # -- submit

    def submit(self, run: RunDir, specs: list[Spec], ledger: Ledger, *, force: bool) -> None:
        info = run.info()
        state = PollState(ledger)
        try:
            if specs:
                # Their old jobs are done with; each gets its new (or covering) job below.
                # What those jobs' attempts cost is recorded first (``status`` reads no
                # attempts): none to read on a first submit.
                fetch_details(self.api, ledger, scan_ids={s.scan_id for s in specs},
                              attempts_only=True)
                with ledger.transaction():
                    for spec in specs:
                        ledger.update(spec.scan_id, job_id=None)
            output = check_run(info, specs, self.settings)
            sub = Submitter(api=self.api, settings=self.settings, run=run, info=info,
                            ledger=ledger, state=state, files=RunFiles(output, info.run_id))
            jobs = sub.known_jobs()
            todo = sub.uncovered(specs, jobs, force=force)
            new_ids = sub.submit_scans(todo, jobs, force=force)
            if info.pipeline.group and ledger.group().state == GroupState.SUBMITTED:
                sub.submit_group(jobs, new_ids=new_ids)
        except BaseException:
            # What got no job is planned again; what did is in the ledger already.
            left = [s.scan_id for s in specs
                    if (rec := ledger.scan(s.scan_id)) and rec.job_id is None]
            if left:
                ledger.update_many(left, state=ScanState.PLANNED, reason=ORPHAN_REASON)
            if ledger.group().state == GroupState.SUBMITTED and not _live_group(ledger, state):
                ledger.set_group(None)
            raise
        finally:
            state.save()

    # -- watch

    def poll(self, run: RunDir, ledger: Ledger) -> None:
        def done(scan_ids: list[str]) -> set[str]:
            info = run.info()
            output = info.open_output()
            return done_scans(output, [run.spec(s) for s in scan_ids])

        poll(self.api, ledger, done_scans=done)

    def fetch_details(self, run: RunDir, ledger: Ledger) -> None:
        fetch_details(self.api, ledger)

    def busy(self, run: RunDir, ledger: Ledger) -> bool:
        if ledger.scans(states=ACTIVE):
            return True
        return ledger.group().state in GROUP_ACTIVE and \
            _live_group(ledger, PollState(ledger))

    def cancel(self, run: RunDir, ledger: Ledger) -> None:
        state = PollState(ledger)
        for job in ledger.jobs():
            js = state[job.job_id]
            if job.executor != self.name or js.done or js.cancelled:
                continue
            # On an array parent this cancels the queued children and terminates the
            # running ones: one call per array, not one per scan.
            self.api.call(self.api.batch, "terminate_job", f"cancelling Batch job {job.job_id}",
                          jobId=job.job_id, reason=CANCEL_REASON)
            js.cancelled = True
        state.save()
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, ScanState.PLANNED))]
        if left:
            ledger.update_many(left, state=ScanState.CANCELLED, reason=CANCEL_REASON)
        if ledger.group().state in GROUP_ACTIVE:
            ledger.set_group(GroupState.CANCELLED, reason=CANCEL_REASON)

    def logs(self, run: RunDir, scan_id: str, *, follow: bool = False) -> Iterator[str]:
        with Ledger.open(run.ledger_path) as ledger:
            job_ids = _log_jobs(ledger, scan_id)
        reader = BatchLogs(self.api, sleep=self.sleep)
        if follow:
            if not job_ids:
                raise BidsbatchError(f"no log yet for {scan_id} in run {run.path.name}",
                                     hint="it has not been submitted; see bidsbatch status")
            yield from reader.lines(job_ids, follow=True)
            return
        lines = list(reader.lines(job_ids, follow=False)) if job_ids else []
        if reader.events == 0:
            # No CloudWatch events (the job never started, or its logs went elsewhere):
            # the worker keeps its own log next to the marker.
            own = _worker_log(run.info(), scan_id)
            if own is None and not lines:
                raise BidsbatchError(f"no log yet for {scan_id} in run {run.path.name}",
                                     hint="its job has not started; see bidsbatch status")
            lines += own or []
        yield from lines

    # -- hooks for the report and cost

    def log_file(self, run: RunDir, record: ScanRecord) -> Path | None:
        return None  # in CloudWatch Logs

    def log_link(self, run: RunDir, record: ScanRecord) -> str | None:
        region = self.settings.region or ""
        if record.log:  # a CloudWatch log stream name, as Batch reports it (logStreamName)
            return cloudwatch_url(region=region, group=self.settings.effective_log_group,
                                  stream=record.log)
        if record.job_id:
            return (f"https://{region}.console.aws.amazon.com/batch/home?region={region}"
                    f"#jobs/detail/{quote(record.job_id, safe='')}")
        return None

    def log_tail(self, run: RunDir, record: ScanRecord, lines: int = 30) -> list[str] | None:
        return None  # one CloudWatch read per failed scan is not worth a report

    def log_missing(self, run: RunDir, record: ScanRecord) -> str:
        return ("The log is in CloudWatch Logs: open it from the scan table, or run "
                "bidsbatch logs RUN SCAN.")

    def log_note(self) -> str:
        return ""

    def cost_context(self, *, info: RunInfo, table: PriceTable,
                     attempts: list[AttemptRecord]) -> CostContext:
        return batch_cost_context(self.settings, info=info, table=table, attempts=attempts)


def check_run(info: RunInfo, specs: list[Spec], settings: BatchSettings) -> Location:
    """Refuse what Batch jobs cannot run: local data, AWS keys for the job. Returns the output."""
    for what, uri in (("output", info.output), ("dataset", info.dataset)):
        if not uri.startswith("s3://"):
            raise UsageError(
                f"AWS Batch jobs cannot reach the local {what} {uri}",
                hint=f"give an s3:// {what} with --executor aws-batch, or use --executor local",
            )
    check_no_credentials(info.pipeline.env, where=f"pipeline {info.pipeline.name}")
    for spec in specs:
        check_no_credentials(spec.env, where=f"the spec of {spec.scan_id}")
    check_no_credentials(settings.job_env, where="the job environment")
    # The run's own files are written with the caller's identity: never unsigned.
    return info.open_output()


def _live_group(ledger: Ledger, state: PollState) -> bool:
    gid = ledger.group().job_id
    return bool(gid) and state.is_live(gid) and not state[gid].cancelled


def _log_jobs(ledger: Ledger, scan_id: str) -> list[str]:
    """The Batch jobs that ran ``scan_id`` (every attempt), oldest first."""
    if scan_id == "group":
        gid = ledger.group().job_id
        return [gid] if gid else []
    rec = ledger.scan(scan_id)
    ids = [a.job_id for a in ledger.attempts(scan_id) if a.job_id]
    if rec is not None and rec.job_id:
        ids.append(rec.job_id)
    # Attempts of other executors (the same run run locally first) have no Batch job:
    # only the ids of this run's own Batch jobs' children are asked for.
    ours = {j.job_id for j in ledger.jobs() if j.executor == EXECUTOR}
    return [j for j in dict.fromkeys(ids) if j.split(":", 1)[0] in ours]


def _worker_log(info: RunInfo, scan_id: str) -> list[str] | None:
    """The worker's own log of the scan's last attempt, from the output location, if any."""
    if scan_id == "group":
        return None
    output = info.open_output()
    for key in (worker_log_key(scan_id), failed_log_key(scan_id)):
        if output.exists(key):
            return [f"==> the worker's log {output.describe(key)}",
                    *output.read_text(key).splitlines()]
    return None

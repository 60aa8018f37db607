"""Submitting a run to AWS Batch: find what is already there, submit the rest, then the group step.

1. **Known jobs**: the ledger's jobs table, plus whatever ``ListJobs`` finds
   under the run's name prefix that the ledger lacks (it was lost, or the
   client died between ``SubmitJob`` and writing it down); not asked when the
   run's ``run.json`` is not on S3 yet (it is written before any job). A found job's
   scans come from its manifest.
2. **Covered scans**: a scan whose latest job is still queued or running, or
   succeeded (unless ``--force``), is not submitted again; it is pointed at
   that job. A scan whose job failed, or was cancelled, is submitted again.
3. **Arrays**: the rest, up to 10,000 a job (a single job for one scan), each
   with its own manifest; every job is written to the ledger as soon as
   Batch returns its id.
4. **Group step**: one job that depends on the run's live jobs (through
   barrier jobs when there are more than 20), or the group job already
   there when nothing new was submitted.
"""

from __future__ import annotations

from typing import Any

from ...errors import BidsbatchError
from ...ledger import JobRecord, Ledger
from ...runs import RunDir
from ...specs import RunInfo, Spec
from ...states import GroupState, ScanState
from .api import FINAL, BatchApi
from .jobdef import ensure_job_definition, resource_requirements
from .naming import job_name, job_tags, name_prefix, parse_job_name
from .runfiles import RunFiles
from .settings import BatchSettings
from .states import GROUP_STATE_OF, PollState, apply_job

EXECUTOR = "aws-batch"
#: AWS Batch takes at most 20 dependencies per job.
MAX_DEPENDS = 20
SCAN_KINDS = ("array", "single")
#: A barrier job only waits: the smallest container each platform takes.
BARRIER_RESOURCES = {
    "ec2": [{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "512"}],
    "fargate": [{"type": "VCPU", "value": "0.25"}, {"type": "MEMORY", "value": "512"}],
}


def child_index(child_id: str) -> int:
    return int(child_id.rsplit(":", 1)[1])


def child_id(job: JobRecord, index: int) -> str:
    return f"{job.job_id}:{index}" if job.kind == "array" else job.job_id


def submission(job: JobRecord) -> int:
    return int(job.details.get("submission", 0))


class Submitter:
    """One ``submit`` of a run: the state it needs, gathered once."""

    def __init__(self, *, api: BatchApi, settings: BatchSettings, run: RunDir, info: RunInfo,
                 ledger: Ledger, state: PollState, files: RunFiles) -> None:
        self.api = api
        self.settings = settings
        self.run = run
        self.info = info
        self.ledger = ledger
        self.state = state
        self.files = files
        self._jobdef: str | None = None
        self._next: int | None = None

    # -- what is there already

    def known_jobs(self) -> list[JobRecord]:
        """The ledger's jobs of this run, after adding those only Batch still knows."""
        known = {j.job_id for j in self.ledger.jobs()}
        # Every job of the run is submitted after its run.json is on S3: without it (a first
        # submit) there is nothing to find, and one HEAD spares a ListJobs.
        found = (self.api.jobs_named(self.settings.job_queue, name_prefix(self.info.run_id))
                 if self.files.any_job_submitted() else [])
        for summary in found:
            parsed = parse_job_name(self.info.run_id, summary["jobName"])
            if summary["jobId"] in known or parsed is None:
                continue
            kind, n = parsed
            details: dict[str, Any] = {"submission": n, "name": summary["jobName"],
                                       "found_by": "ListJobs"}
            scans: list[str] = []
            if kind in SCAN_KINDS:
                try:
                    scans = self.files.manifest_scans(n)
                except BidsbatchError as exc:
                    details["manifest_error"] = exc.message
            self.ledger.add_job(summary["jobId"], kind=kind, executor=EXECUTOR, scans=scans,
                                details=details)
            if kind == "group":
                self._adopt_group(summary["jobId"], n)
        return [j for j in self.ledger.jobs() if j.executor == EXECUTOR]

    def _adopt_group(self, job_id: str, n: int) -> None:
        current = self.ledger.group().job_id
        mine = {j.job_id: submission(j) for j in self.ledger.jobs(kind="group")}
        if current is None or mine.get(current, -1) < n:
            self.ledger.set_group(job_id=job_id)

    def uncovered(self, specs: list[Spec], jobs: list[JobRecord], *, force: bool) -> list[Spec]:
        """The specs no live (or, without ``force``, succeeded) job already covers."""
        todo = {s.scan_id for s in specs}
        latest: dict[str, tuple[JobRecord, int]] = {}
        for job in sorted((j for j in jobs if j.kind in SCAN_KINDS), key=submission):
            for i, scan in enumerate(job.scans):
                if scan in todo:
                    latest[scan] = (job, i)
        if not latest:
            return specs
        jobs_by_id = {job.job_id: job for job, _i in latest.values()}
        descs = self.api.describe_jobs(jobs_by_id)
        statuses = {jid: self._child_statuses(job, descs[jid], force=force)
                    for jid, job in jobs_by_id.items() if jid in descs}
        covered: dict[str, tuple[JobRecord, str]] = {}
        for scan, (job, i) in latest.items():
            status = statuses.get(job.job_id, {}).get(i)
            if status is None or status == "FAILED":
                continue
            if status == "SUCCEEDED" and force:
                continue
            if status not in FINAL and self.state[job.job_id].cancelled:
                continue  # being cancelled: it will not run
            covered[scan] = (job, child_id(job, i))
        if covered:
            self._point_at(covered)
        return [s for s in specs if s.scan_id not in covered]

    def _child_statuses(self, job: JobRecord, desc: dict[str, Any], *,
                        force: bool) -> dict[int, str]:
        """Index -> Batch status of a job's children (a live child may read 'RUNNABLE')."""
        status = desc["status"]
        if job.kind == "single" or status == "SUCCEEDED":
            return dict.fromkeys(range(len(job.scans)), status)
        known: dict[int, str] = {}
        wanted = ["SUCCEEDED"] if status == "FAILED" else ["FAILED", "SUCCEEDED"]
        for st in wanted:
            for child in self.api.children(job.job_id, st):
                known[child_index(child["jobId"])] = st
        default = "FAILED" if status == "FAILED" else "RUNNABLE"
        return {i: known.get(i, default) for i in range(len(job.scans))}

    def _point_at(self, covered: dict[str, tuple[JobRecord, str]]) -> None:
        """Point covered scans at their job, with what Batch says of it now."""
        descs = self.api.describe_jobs(cid for _job, cid in covered.values())
        with self.ledger.transaction():
            for scan, (job, cid) in covered.items():
                desc = descs.get(cid)
                if desc is None:
                    self.ledger.update(scan, job_id=cid, state=ScanState.SUBMITTED)
                else:
                    apply_job(self.ledger, scan, cid, desc,
                              cancelled=self.state[job.job_id].cancelled)
                js = self.state[job.job_id]
                js.summary, js.done = None, False  # let poll look at it again

    # -- submitting

    def next_submission(self, jobs: list[JobRecord]) -> int:
        if self._next is None:
            used = {submission(j) for j in jobs} | self.files.manifest_numbers() | {0}
            self._next = max(used) + 1
        n = self._next
        self._next += 1
        return n

    def job_definition(self) -> str:
        if self._jobdef is None:
            self._jobdef = ensure_job_definition(self.api, self.info.pipeline, self.settings)
        return self._jobdef

    def _request(self, *, kind: str, n: int, command: list[str],
                 overrides: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "jobName": job_name(self.info.run_id, kind=kind, n=n,
                                dataset=self.info.dataset_name),
            "jobQueue": self.settings.job_queue,
            "jobDefinition": self.job_definition(),
            "containerOverrides": {"command": command, **(overrides or {})},
            "tags": job_tags(self.info.run_id, kind=kind, n=n, dataset_uri=self.info.dataset),
            "propagateTags": True,
            **extra,
        }

    def _details(self, request: dict[str, Any], n: int, **more: Any) -> dict[str, Any]:
        return {"submission": n, "name": request["jobName"],
                "job_definition": request["jobDefinition"], "queue": self.settings.job_queue,
                "log_group": self.settings.effective_log_group, **more}

    def submit_scans(self, specs: list[Spec], jobs: list[JobRecord], *,
                     force: bool) -> list[str]:
        """One array job per ``array_size`` specs (a single job for one); returns their ids."""
        if not specs:
            return []
        self.files.write_run_json(self.run)
        ids = []
        size = self.settings.array_size
        for start in range(0, len(specs), size):
            chunk = specs[start:start + size]
            scans = [s.scan_id for s in chunk]
            n = self.next_submission(jobs)
            manifest, pack = self.files.write_submission(n, chunk, run=self.run)
            kind = "array" if len(chunk) > 1 else "single"
            # The child reads its own spec out of the pack by index (two ranged GETs).
            target = ["--pack", pack] if kind == "array" else ["--pack", pack, "--index", "0"]
            command = ["bidsbatch", "worker", *target, *(["--force"] if force else [])]
            extra = {"arrayProperties": {"size": len(chunk)}} if kind == "array" else {}
            request = self._request(kind=kind, n=n, command=command, **extra)
            job_id = self.api.submit_job(request)
            with self.ledger.transaction():
                self.ledger.add_job(job_id, kind=kind, executor=EXECUTOR, scans=scans,
                                    details=self._details(request, n, manifest=manifest,
                                                          pack=pack, force=force))
                for i, scan in enumerate(scans):
                    self.ledger.update(scan, state=ScanState.SUBMITTED, reason=None,
                                       job_id=f"{job_id}:{i}" if kind == "array" else job_id)
            ids.append(job_id)
        return ids

    def submit_group(self, jobs: list[JobRecord], *, new_ids: list[str]) -> None:
        """The group step's job, depending on every live job of the run."""
        group = self.info.pipeline.group
        current = self.ledger.group().job_id
        if current and not new_ids:
            desc = self.api.describe_jobs([current]).get(current)
            if desc and desc["status"] != "FAILED" and not self.state[current].cancelled:
                # Nothing new ran: the group job already there still stands.
                self.state[current].done = False
                self.ledger.set_group(GROUP_STATE_OF.get(desc["status"], GroupState.SUBMITTED))
                return
        if current and self.state.is_live(current) and not self.state[current].cancelled:
            # It waits on the old jobs only; the new one waits on all of them.
            self.api.call(self.api.batch, "terminate_job", "replacing the group step job",
                          jobId=current, reason="superseded by a newer group step job")
            self.state[current].cancelled = True
        self.files.ensure_run_json(self.run)  # the group step reads it; submit_scans wrote it
        depends = self._dependencies(self._live_scan_jobs(jobs, new_ids), jobs)
        n = self.next_submission(jobs)
        overrides: dict[str, Any] = {}
        if group is not None and group.resources is not None:
            overrides["resourceRequirements"] = resource_requirements(
                group.resources, platform=self.settings.platform)
        request = self._request(kind="group", n=n, overrides=overrides,
                                command=["bidsbatch", "group-step", "--run",
                                         self.files.run_json_uri],
                                dependsOn=[{"jobId": d} for d in depends])
        job_id = self.api.submit_job(request)
        self.ledger.add_job(job_id, kind="group", executor=EXECUTOR, scans=[],
                            details=self._details(request, n, depends_on=depends))
        self.ledger.set_group(GroupState.SUBMITTED, job_id=job_id, reason=None)

    def _live_scan_jobs(self, jobs: list[JobRecord], new_ids: list[str]) -> list[str]:
        older = [j.job_id for j in jobs if j.kind in SCAN_KINDS and j.job_id not in new_ids
                 and self.state.is_live(j.job_id) and not self.state[j.job_id].cancelled]
        descs = self.api.describe_jobs(older) if older else {}
        live = [jid for jid in older if jid in descs and descs[jid]["status"] not in FINAL]
        return live + list(new_ids)

    def _dependencies(self, ids: list[str], jobs: list[JobRecord]) -> list[str]:
        """At most 20 ids to depend on: barrier jobs stand for groups of 20 when there are more."""
        level = list(ids)
        while len(level) > MAX_DEPENDS:
            above = []
            for start in range(0, len(level), MAX_DEPENDS):
                chunk = level[start:start + MAX_DEPENDS]
                n = self.next_submission(jobs)
                request = self._request(kind="barrier", n=n,
                                        command=["bidsbatch", "--version"],
                                        overrides={"resourceRequirements": BARRIER_RESOURCES[
                                            self.settings.platform]},
                                        dependsOn=[{"jobId": d} for d in chunk])
                job_id = self.api.submit_job(request)
                self.ledger.add_job(job_id, kind="barrier", executor=EXECUTOR, scans=[],
                                    details=self._details(request, n, depends_on=chunk))
                above.append(job_id)
            level = above
        return level

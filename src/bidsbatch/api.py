"""The Python API: crawl a dataset, plan a run, run it, follow it — what the CLI calls.

::

    import bidsbatch

    ds = bidsbatch.crawl("s3://openneuro.org/ds000114", no_sign_request=True)
    plan = bidsbatch.plan(ds, "s3://my-bucket/derivatives/m2g", pipeline="m2g",
                          participants=["01", "02"])
    result = bidsbatch.run(plan, executor="aws-batch", environment="lab", wait=False)
    bidsbatch.status(result.run_id).counts      # {ScanState.SUCCEEDED: 3, ...}

Each call returns a typed value; errors are :class:`~bidsbatch.errors.BidsbatchError`
(``UsageError`` for what the caller passed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .executors.registry import DEFAULT_EXECUTOR
from .storage import S3Options

if TYPE_CHECKING:
    from .bids import Dataset
    from .ledger import GroupRecord, ScanRecord
    from .pipelines import Pipeline
    from .planning import Plan
    from .states import ScanState


@dataclass(frozen=True)
class RunStatus:
    """Where a run is: its scans, the counts per state, the group step."""

    run_id: str
    run_dir: Path
    scans: list[ScanRecord]
    counts: dict[ScanState, int]
    group: GroupRecord
    #: Something of the run is still queued or running.
    busy: bool

    @property
    def ok(self) -> bool:
        """Nothing failed or was cancelled (and nothing is still running)."""
        from .states import GroupState, ScanState

        return not self.busy and not (self.counts[ScanState.FAILED]
                                      or self.counts[ScanState.CANCELLED]
                                      or self.group.state == GroupState.FAILED)


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did: what it submitted and skipped, and the run's status after."""

    run_id: str
    run_dir: Path
    submitted: list[str]
    skipped: list[str]
    status: RunStatus


def crawl(uri: str, *, requester_pays: bool = False, no_sign_request: bool = False,
          max_workers: int = 16) -> Dataset:
    """Crawl the BIDS dataset at ``uri`` (a folder, ``file://`` or ``s3://``) into its scans."""
    from .bids import crawl as crawl_dataset

    s3 = S3Options(requester_pays=requester_pays, no_sign_request=no_sign_request)
    return crawl_dataset(uri, s3=s3, max_workers=max_workers)


def plan(dataset: Dataset | str, output: str, *, pipeline: Pipeline | str = "demo",
         participants: Iterable[str] = (), sessions: Iterable[str] = (),
         exclude: Iterable[str] = (), labels_file: Path | None = None,
         requester_pays: bool = False, no_sign_request: bool = False,
         run_dir: Path | str | None = None) -> Plan:
    """Plan a run (a dry run): one spec per selected scan, written to its run directory.

    ``dataset`` is a crawled :class:`~bidsbatch.bids.Dataset` or a URI to crawl;
    ``pipeline`` a preset name, a TOML file, or a :class:`~bidsbatch.pipelines.Pipeline`.
    """
    from .pipelines import load_pipeline
    from .planning import make_plan
    from .selection import Selection

    s3 = S3Options(requester_pays=requester_pays, no_sign_request=no_sign_request)
    pipe = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    selection = Selection.build(participants=list(participants), sessions=list(sessions),
                                exclude=list(exclude), labels_file=labels_file)
    if isinstance(dataset, str):
        dataset = crawl(dataset, requester_pays=requester_pays,
                        no_sign_request=no_sign_request)
    made = make_plan(dataset, output, pipeline=pipe, selection=selection, s3=s3)
    made.write(run_dir)
    return made


def run(plan: Plan, *, executor: str = DEFAULT_EXECUTOR, wait: bool = True, force: bool = False,
        run_dir: Path | str | None = None, **settings: Any) -> RunResult:
    """Skip the scans of ``plan`` already done, submit the rest to ``executor``.

    ``settings`` are the executor's (``jobs=4`` for local, ``job_queue=…`` for
    AWS Batch: the fields of its settings class). With ``wait`` it returns
    when nothing of the run is queued or running any more.
    """
    from . import runner
    from .executors import make_executor

    exe = make_executor(executor, _given(settings))
    started = runner.start(plan, executor=exe, run_dir=run_dir, force=force)
    current = _wait(started.run) if wait else status(started.run.path)
    return RunResult(run_id=plan.run_id, run_dir=started.run.path,
                     submitted=started.submitted, skipped=started.skipped, status=current)


def status(run: str | Path | RunResult) -> RunStatus:
    """The run's status now (asks its executor once); ``run`` is an id, a folder or a result."""
    from . import runner
    from .ledger import Ledger
    from .runs import find_run

    ref = run.run_dir if isinstance(run, RunResult) else run
    found = find_run(str(ref))
    with Ledger.open(found.ledger_path) as ledger:
        executor = runner.submitted_executor(found, ledger)
        if executor is None:
            ledger.add_scans(found.info().scans)
        else:
            executor.poll(found, ledger)
        return RunStatus(run_id=found.info().run_id, run_dir=found.path,
                         scans=ledger.scans(), counts=ledger.counts(), group=ledger.group(),
                         busy=bool(executor and executor.busy(found, ledger)))


def _wait(found: Any) -> RunStatus:
    from . import runner

    snap = runner.wait(found, interval=0.2, max_interval=2.0)
    return RunStatus(run_id=found.info().run_id, run_dir=found.path, scans=snap.records,
                     counts=snap.counts, group=snap.group, busy=snap.busy)


def _given(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if v is not None}

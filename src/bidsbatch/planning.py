"""Plan: a crawled dataset and a pipeline become a run with one spec per scan."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .bids import Dataset, Scan, crawl
from .containers.settings import ContainerSpec
from .errors import UsageError
from .pipelines import Pipeline, check_no_credentials, load_pipeline
from .runs import RunDir, mark_latest, runs_root
from .selection import Selection
from .specs import InputFile, RunInfo, Spec, sha256_of
from .storage import S3Options, atomic_write, open_location


@dataclass
class Plan:
    """A planned run: ``run.json`` and the specs, not yet written."""

    info: RunInfo
    specs: list[Spec]
    dataset: Dataset
    pipeline: Pipeline
    #: Where this plan was last written: writing it there again is a no-op.
    _written: RunDir | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def write(self, run_dir: Path | str | None = None) -> RunDir:
        """Write ``run.json`` and ``specs/`` into ``run_dir`` (default: the runs home).

        Files are replaced atomically and only when their content changed, so
        planning the same run again is a no-op. Writing this same plan to the same
        place again returns at once: its specs are not serialised again.
        """
        run = RunDir(Path(run_dir).expanduser().absolute() if run_dir else
                     runs_root() / self.run_id)
        if self._written is not None and run.run_json.exists() \
                and self._written.path.absolute() == run.path.absolute():
            return self._written
        run.specs_dir.mkdir(parents=True, exist_ok=True)
        run.logs_dir.mkdir(exist_ok=True)
        _write_if_changed(run.run_json, self.info.to_json())
        keep = set()
        for spec in self.specs:
            path = run.spec_path(spec.scan_id)
            keep.add(path.name)
            _write_if_changed(path, spec.to_json())
        for stale in run.specs_dir.glob("*.json"):
            if stale.name not in keep:
                stale.unlink()
        mark_latest(run)
        self._written = run
        return run


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    atomic_write(path, text)


def make_plan(
    dataset: Dataset | str,
    output: str,
    *,
    pipeline: Pipeline | str = "demo",
    selection: Selection = Selection(),
    s3: S3Options = S3Options(),
    container: ContainerSpec | None = None,
) -> Plan:
    """Plan a run: one :class:`Spec` per selected scan. Deterministic.

    ``container`` is how every scan's app runs (:func:`bidsbatch.containers.choose.
    container_spec` decides it); by default the pipeline's own ``[container]``
    runtime, else none (a plain process): nothing is detected here.
    """
    if isinstance(pipeline, str):
        pipeline = load_pipeline(pipeline)
    if container is None:
        from .containers.choose import container_spec

        container = container_spec(pipeline.container, pipeline_name=pipeline.name,
                                   detect=False, require_license=False)
    check_no_credentials(pipeline.env, where=f"pipeline {pipeline.name}")
    if isinstance(dataset, str):
        dataset = crawl(dataset, s3=s3)
    out_loc = open_location(output)  # --requester-pays/--no-sign-request: the dataset's
    out_uri = out_loc.uri
    ds_uri = dataset.uri
    if not out_loc.is_remote and not ds_uri.startswith("s3://"):
        ds_path, out_path = Path(ds_uri), Path(out_uri)
        inside = out_path == ds_path or ds_path in out_path.parents
        under_derivatives = ds_path / "derivatives" in out_path.parents
        if inside and not under_derivatives:
            raise UsageError(
                f"output {out_uri} is inside the dataset {ds_uri}",
                hint="write outputs elsewhere, or under the dataset's derivatives/ folder",
            )
    scans = selection.apply(dataset.scans)
    specs_wo_run = [_spec(scan, dataset, out_uri, pipeline, s3, container) for scan in scans]
    run_id = _run_id(pipeline, ds_uri, out_uri, selection, s3, specs_wo_run)
    specs = [_with_run_id(s, run_id) for s in specs_wo_run]
    info = RunInfo(
        run_id=run_id,
        dataset=ds_uri,
        dataset_name=dataset.name,
        output=out_uri,
        pipeline=pipeline,
        pipeline_source=pipeline.source,
        selection=selection.to_dict(),
        scans=[s.scan_id for s in specs],
        bidsbatch_version=__version__,
        requester_pays=s3.requester_pays,
        no_sign_request=s3.no_sign_request,
        warnings=list(dataset.warnings),
        container=asdict(container),
    )
    return Plan(info=info, specs=specs, dataset=dataset, pipeline=pipeline)


def _spec(scan: Scan, dataset: Dataset, output: str, pipeline: Pipeline,
          s3: S3Options, container: ContainerSpec) -> Spec:
    argv = pipeline.argv_for(participant=scan.participant, session=scan.session,
                             scan_id=scan.id)
    inputs = [InputFile.from_object(f) for f in scan.files]
    config_hash = sha256_of({
        "pipeline": pipeline.output_hash(),
        "argv": argv,
        "inputs": [[f.key, f.size, f.etag] for f in inputs],
    })
    r = pipeline.resources
    return Spec(
        run_id="",
        scan_id=scan.id,
        participant=scan.participant,
        session=scan.session,
        dataset=dataset.uri,
        output=output,
        pipeline=pipeline.name,
        image=pipeline.image,
        argv=argv,
        inputs=inputs,
        resources=r,
        attempts=pipeline.attempts,
        config_hash=config_hash,
        env=dict(sorted(pipeline.env.items())),
        output_excludes=list(pipeline.output_excludes),
        requester_pays=s3.requester_pays,
        no_sign_request=s3.no_sign_request,
        container=container,
    )


def _with_run_id(spec: Spec, run_id: str) -> Spec:
    from dataclasses import replace

    return replace(spec, run_id=run_id)


def _run_id(pipeline: Pipeline, dataset: str, output: str, selection: Selection,
            s3: S3Options, specs: list[Spec]) -> str:
    """Derived from the plan's content: the same plan is the same run."""
    digest = sha256_of({
        "pipeline": pipeline.to_dict(),
        "dataset": dataset,
        "output": output,
        "selection": selection.to_dict(),
        "s3": [s3.requester_pays, s3.no_sign_request],
        "scans": [[s.scan_id, s.config_hash] for s in specs],
    })
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline.name)
    return f"{safe_name}-{digest[:10]}"

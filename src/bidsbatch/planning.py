"""Plan: a crawled dataset and a pipeline become a run with one spec per scan."""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .bids import Dataset, Scan, crawl
from .containers.settings import ContainerSpec
from .errors import DatasetError, UsageError
from .fingerprint import ParticipantsTable, config_hash, digest_of_description, fingerprint
from .pipelines import Pipeline, check_no_credentials, load_pipeline
from .runlist import remember
from .runmarker import claim_run_dir, previous_scans
from .runs import RunDir, runs_root
from .safety import check_output_apart, check_run_dir_apart, check_s3_options
from .scan_inputs import missing_required, without_excluded
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
        if not self.info.dataset.startswith("s3://"):
            check_run_dir_apart(run.path, self.info.dataset)
        claim_run_dir(run.path)  # a folder of the user's own is refused, never cleaned
        # Stale specs are those the previous run.json listed: only files bidsbatch wrote.
        stale = previous_scans(run.path) - {s.scan_id for s in self.specs}
        try:
            run.specs_dir.mkdir(exist_ok=True)
            run.logs_dir.mkdir(exist_ok=True)
            _write_if_changed(run.run_json, self.info.to_json())
            for spec in self.specs:
                _write_if_changed(run.spec_path(spec.scan_id), spec.to_json())
            for scan_id in stale:
                run.spec_path(scan_id).unlink(missing_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write run directory {run.path}: {exc.strerror}",
                             hint="give --run-dir a writable folder") from None
        remember(run)  # for `bidsbatch runs`; the latest-run pointer moves when a run starts
        self._written = run
        return run


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    try:
        # A new file is written in place (no temporary name and rename: a third of the
        # system calls of 100,000 specs). Exclusive creation: an existing one, even one
        # appearing meanwhile, goes the atomic way below. A plan cut off mid-file leaves
        # a spec that differs from its content, which the next plan replaces.
        with open(path, "xb") as fh:
            fh.write(data)
        return
    except FileExistsError:
        pass
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
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
    check_s3_options(requester_pays=s3.requester_pays, no_sign_request=s3.no_sign_request)
    check_output_apart(ds_uri, out_uri)  # resolved: a symlink to the dataset is the dataset
    scans = selection.apply(dataset.scans)
    left_out = {}
    runnable = []
    for scan in scans:
        why = missing_required(scan.folder, scan.files, pipeline.required_inputs)
        if why is None:
            runnable.append(scan)
        else:
            left_out[scan.id] = why
    if scans and not runnable:
        raise DatasetError(
            f"pipeline {pipeline.name} can process none of the {len(scans)} scan(s) of "
            f"{ds_uri}: {next(iter(left_out.values()))} in any of them",
            hint=f"it needs {' or '.join(pipeline.required_inputs)} data "
            "([inputs] require of the pipeline)",
        )
    participants = _participants(dataset, s3)
    shared = _Shared(pipeline_hash=pipeline.output_hash(),
                     description=digest_of_description(dataset.description))
    specs_wo_run = [_spec(scan, dataset, out_uri, pipeline, s3, participants, container,
                          shared=shared)
                    for scan in runnable]
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
        left_out=left_out,
        container=asdict(container),
    )
    return Plan(info=info, specs=specs, dataset=dataset, pipeline=pipeline)


def _participants(dataset: Dataset, s3: S3Options) -> ParticipantsTable | None:
    """``participants.tsv``, read once: each scan's hash covers its own row."""
    if not any(f.key == "participants.tsv" for f in dataset.dataset_files):
        return None
    try:
        text = open_location(dataset.uri, s3=s3).read_text("participants.tsv")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{dataset.uri}: participants.tsv is not UTF-8 text ({exc})",
                           hint="save it as UTF-8 (see the BIDS spec)") from None
    return ParticipantsTable.parse(text)


@dataclass(frozen=True)
class _Shared:
    """What every scan's spec of a plan shares, computed once (not 100,000 times)."""

    pipeline_hash: str
    description: str  # the digest of what apps read of dataset_description.json


def _spec(scan: Scan, dataset: Dataset, output: str, pipeline: Pipeline,
          s3: S3Options, participants: ParticipantsTable | None,
          container: ContainerSpec, *, shared: _Shared) -> Spec:
    argv = pipeline.argv_for(participant=scan.participant, session=scan.session,
                             scan_id=scan.id)
    inputs = [InputFile.from_object(f)
              for f in without_excluded(scan.files, pipeline.input_excludes)]
    entries = fingerprint(
        pipeline_hash=shared.pipeline_hash, argv=argv, participant=scan.participant,
        inputs=inputs, description=dataset.description, participants=participants,
        description_digest=shared.description,
    )
    expected = [[_fill_output_glob(g, scan) for g in alternatives if _applies(g, scan)]
                for alternatives in pipeline.expected_outputs]
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
        config_hash=config_hash(entries),
        env=dict(sorted(pipeline.env.items())),
        output_excludes=list(pipeline.output_excludes),
        expected_outputs=[e for e in expected if e],
        fingerprint=entries,
        requester_pays=s3.requester_pays,
        no_sign_request=s3.no_sign_request,
        container=container,
    )


def _applies(glob: str, scan: Scan) -> bool:
    """A glob naming ``{session}`` says nothing about a sessionless scan."""
    return scan.session is not None or "{session}" not in glob


def _fill_output_glob(glob: str, scan: Scan) -> str:
    return glob.replace("{participant}", scan.participant).replace("{session}",
                                                                     scan.session or "")


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
        # Every input, descriptive ones too: a plan whose specs differ is another run
        # (the scans' own config hashes, and so their markers, need not change).
        "scans": [[s.scan_id, s.config_hash, sha256_of([[f.key, f.size, f.etag]
                                                         for f in s.inputs])]
                  for s in specs],
    })
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline.name)
    return f"{safe_name}-{digest[:10]}"

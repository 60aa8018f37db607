"""Plan: a crawled dataset and a pipeline become a run with one spec per scan."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .bids import Dataset, crawl
from .containers.settings import ContainerSpec
from .errors import DatasetError, UsageError
from .pipelines import Pipeline, check_no_credentials, load_pipeline
from .runlist import remember
from .runmarker import claim_run_dir, previous_scans
from .runs import RunDir, runs_root
from .safety import check_output_apart, check_run_dir_apart, check_s3_options
from .scan_inputs import missing_required
from .selection import Selection
from .specfiles import write_if_changed, write_specs
from .specs import InputFile, RunInfo, Spec
from .specstream import _ENCODER as _ENC
from .specstream import DigestTable, PlannedSpecs, RowDigests, SpecMaker, scan_ids_of, sha256_hex
from .storage import S3Options, open_location


@dataclass
class Plan:
    """A planned run: ``run.json`` and the specs, not yet written."""

    info: RunInfo
    #: One spec per scan, in order. A plan of :func:`make_plan` makes each when it is read
    #: (:class:`~bidsbatch.specstream.PlannedSpecs`): 100,000 are never held at once.
    specs: Sequence[Spec]
    dataset: Dataset
    pipeline: Pipeline
    #: Where this plan was last written: writing it there again is a no-op.
    _written: RunDir | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    @property
    def input_bytes(self) -> int:
        """The bytes of every scan's inputs (without making the specs of a large plan)."""
        if isinstance(self.specs, PlannedSpecs):
            return self.specs.input_bytes
        return sum(s.input_bytes for s in self.specs)

    @property
    def participant_count(self) -> int:
        """How many participants the specs are of."""
        if isinstance(self.specs, PlannedSpecs):
            return len({scan.participant for scan in self.specs.scans})
        return len({s.participant for s in self.specs})

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
        stale = previous_scans(run.path) - set(scan_ids_of(self.specs))
        try:
            run.specs_dir.mkdir(exist_ok=True)
            run.logs_dir.mkdir(exist_ok=True)
            write_if_changed(str(run.run_json), self.info.to_json().encode("utf-8"))
            write_specs(run.specs_dir, self.specs)  # made, written and let go one by one
            for scan_id in stale:
                run.spec_path(scan_id).unlink(missing_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot write run directory {run.path}: {exc.strerror}",
                             hint="give --run-dir a writable folder") from None
        remember(run)  # for `bidsbatch runs`; the latest-run pointer moves when a run starts
        self._written = run
        return run


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
    maker = SpecMaker(dataset=dataset, output=out_uri, pipeline=pipeline, s3=s3,
                      container=container)
    # The run id covers every scan's config hash: the digests first, the specs when read.
    digests = DigestTable(with_rows=participants is not None)

    def rows() -> Iterator[tuple[str, str, str]]:
        for scan in runnable:
            inputs = maker.inputs(scan)
            d = maker.digests(scan, maker.argv(scan), inputs, participants)
            digests.append(d)
            yield scan.id, d.config_hash, _inputs_digest(inputs)

    run_id = _run_id_of(pipeline, ds_uri, out_uri, selection, s3, rows())
    specs = PlannedSpecs(maker, runnable, digests, run_id)
    info = RunInfo(
        run_id=run_id,
        dataset=ds_uri,
        dataset_name=dataset.name,
        output=out_uri,
        pipeline=pipeline,
        pipeline_source=pipeline.source,
        selection=selection.to_dict(),
        scans=specs.scan_ids,
        bidsbatch_version=__version__,
        requester_pays=s3.requester_pays,
        no_sign_request=s3.no_sign_request,
        warnings=list(dataset.warnings),
        left_out=left_out,
        container=asdict(container),
    )
    return Plan(info=info, specs=specs, dataset=dataset, pipeline=pipeline)


def _participants(dataset: Dataset, s3: S3Options) -> RowDigests | None:
    """``participants.tsv``, read once: each scan's hash covers its own row."""
    if not any(f.key == "participants.tsv" for f in dataset.dataset_files):
        return None
    try:
        text = open_location(dataset.uri, s3=s3).read_text("participants.tsv")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{dataset.uri}: participants.tsv is not UTF-8 text ({exc})",
                           hint="save it as UTF-8 (see the BIDS spec)") from None
    return RowDigests(text)


def _run_id(pipeline: Pipeline, dataset: str, output: str, selection: Selection,
            s3: S3Options, specs: Iterable[Spec]) -> str:
    """Derived from the plan's content: the same plan is the same run."""
    return _run_id_of(pipeline, dataset, output, selection, s3,
                      ((s.scan_id, s.config_hash, _inputs_digest(s.inputs)) for s in specs))


def _inputs_digest(inputs: list[InputFile]) -> str:
    return sha256_hex([[f.key, f.size, f.etag] for f in inputs])


def _run_id_of(pipeline: Pipeline, dataset: str, output: str, selection: Selection,
               s3: S3Options, scans: Iterable[tuple[str, str, str]]) -> str:
    """The run id from each scan's (id, config hash, inputs digest), in order.

    The digest is ``sha256_of`` of one object, fed to the hash piece by piece (its
    keys in sorted order) rather than built whole: 100,000 scans' rows are not held.
    """
    h = hashlib.sha256()
    for key, value in (("dataset", dataset), ("output", output),
                       ("pipeline", pipeline.to_dict())):
        h.update(f'{"{" if key == "dataset" else ","}"{key}":{_ENC.encode(value)}'.encode())
    h.update(f',"s3":{_ENC.encode([s3.requester_pays, s3.no_sign_request])},"scans":['
             .encode())
    # Every input, descriptive ones too: a plan whose specs differ is another run
    # (the scans' own config hashes, and so their markers, need not change).
    for i, row in enumerate(scans):
        h.update(("," if i else "").encode() + _ENC.encode(list(row)).encode())
    h.update(f'],"selection":{_ENC.encode(selection.to_dict())}}}'.encode())
    digest = h.hexdigest()
    safe_name = "".join(c if c.isalnum() or c in "-_" else "-" for c in pipeline.name)
    return f"{safe_name}-{digest[:10]}"

"""Plan a run over items: one spec per item, the same specs and run a BIDS plan gives.

A spec's inputs are keys under the item set's root (the worker stages them into
``{bids_dir}``, keys kept); each named input becomes a placeholder holding its
staged path (``{tile}`` → ``{bids_dir}/tiles/36/N/XF/2019/1/5/0``), each field a
placeholder holding its value, ``{item}`` the item's id. A command (``kind =
"items"``) or a CWL job template (``kind = "cwl"``) naming a placeholder an item
lacks leaves that item out, saying why.
"""

from __future__ import annotations

import string
from dataclasses import asdict, replace
from typing import Any

from .. import __version__
from ..bids import Dataset
from ..containers.settings import ContainerSpec
from ..cwl.job import fill_job
from ..errors import DatasetError, PipelineError
from ..fingerprint import config_hash, fingerprint
from ..pipelines import RUNTIME_PLACEHOLDERS, Pipeline, check_no_credentials, render_template
from ..planning import Plan, _run_id
from ..safety import check_output_apart, check_s3_options
from ..specs import InputFile, RunInfo, Spec, canonical_json
from ..storage import S3Options, open_location
from .base import Item, ItemSet, ItemSource
from .selection import ItemSelection


def make_item_plan(
    source: ItemSource | ItemSet,
    output: str,
    *,
    pipeline: Pipeline,
    selection: ItemSelection = ItemSelection(),
    s3: S3Options = S3Options(),
    container: ContainerSpec,
    max_workers: int = 16,
) -> Plan:
    """One :class:`Spec` per selected item that the pipeline can run on. Deterministic."""
    if pipeline.kind == "bids":
        raise PipelineError(
            f"pipeline {pipeline.name} is a BIDS App (kind = \"bids\"): it runs over the scans "
            "of a BIDS dataset, not over items",
            hint="give it kind = \"items\" (a command with the items' {placeholders}) or "
                 "kind = \"cwl\"")
    check_s3_options(requester_pays=s3.requester_pays, no_sign_request=s3.no_sign_request)
    check_no_credentials(pipeline.env, where=f"pipeline {pipeline.name}")
    found = source if isinstance(source, ItemSet) else source.list_items(
        s3=s3, max_workers=max_workers)
    out_uri = open_location(output).uri
    check_output_apart(found.root, out_uri)
    chosen = selection.apply(found.items)
    left_out: dict[str, str] = {}
    specs: list[Spec] = []
    for item in chosen:
        spec, why = _spec(item, root=found.root, output=out_uri, pipeline=pipeline, s3=s3,
                          container=container)
        if spec is None:
            left_out[item.id] = why
        else:
            specs.append(spec)
    if not specs:
        raise DatasetError(f"pipeline {pipeline.name} can run on none of the {len(chosen)} "
                           f"item(s): {next(iter(left_out.values()))}",
                           hint="check the placeholders of its command or job template "
                                "against the items' inputs and fields")
    run_id = _run_id(pipeline, found.root, out_uri, _SelectionRecord(selection), s3, specs)
    specs = [replace(s, run_id=run_id) for s in specs]
    info = RunInfo(
        run_id=run_id, dataset=found.root, dataset_name=found.name, output=out_uri,
        pipeline=pipeline, pipeline_source=pipeline.source, selection=selection.to_dict(),
        scans=[s.scan_id for s in specs], bidsbatch_version=__version__,
        requester_pays=s3.requester_pays, no_sign_request=s3.no_sign_request,
        warnings=list(found.warnings), left_out=left_out, container=asdict(container),
    )
    dataset = Dataset(uri=found.root, description={"Name": found.name}, scans=[])
    return Plan(info=info, specs=specs, dataset=dataset, pipeline=pipeline)


class _SelectionRecord:
    """What :func:`bidsbatch.planning._run_id` reads of a selection."""

    def __init__(self, selection: ItemSelection) -> None:
        self._selection = selection

    def to_dict(self) -> dict[str, list[str]]:
        return self._selection.to_dict()


def item_values(item: Item, pipeline: Pipeline) -> dict[str, str]:
    """The placeholders of one item: its fields, its inputs' staged paths, ``{item}``."""
    r = pipeline.resources
    values = {name: value for name, value in item.fields}
    for inp in item.inputs:
        key = inp.key.rstrip("/")
        values[inp.name] = "{bids_dir}/" + key if key else "{bids_dir}"
    values.update({
        "item": item.id, "scan_id": item.id,
        "n_cpus": str(max(1, int(r.vcpus))), "mem_mib": str(r.memory_mib),
        "mem_gb": str(max(1, r.memory_mib // 1024)),
    })
    return values


def _names(strings: list[str]) -> set[str]:
    return {n for s in strings for _l, n, _s, _c in string.Formatter().parse(s) if n is not None}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _spec(item: Item, *, root: str, output: str, pipeline: Pipeline, s3: S3Options,
          container: ContainerSpec) -> tuple[Spec | None, str]:
    values = item_values(item, pipeline)
    job_strings = _strings(pipeline.cwl.job) if pipeline.cwl else []
    missing = sorted(_names([p for p in pipeline.command if isinstance(p, str)] + job_strings)
                     - set(values) - RUNTIME_PLACEHOLDERS)
    if missing:
        return None, f"no {{{missing[0]}}} for this item"
    argv = render_template(pipeline.command, values)
    cwl = None
    hashed_argv = argv
    if pipeline.cwl is not None:
        cwl = replace(pipeline.cwl, job=fill_job(pipeline.cwl.job, values))
        hashed_argv = [*argv, canonical_json(cwl.job)]
    inputs = [InputFile.from_object(f) for f in item.files]
    entries = fingerprint(pipeline_hash=pipeline.output_hash(), argv=hashed_argv,
                          participant=item.id, inputs=inputs, description={},
                          participants=None)
    return Spec(
        run_id="", scan_id=item.id, participant=item.id, session=None, dataset=root,
        output=output, pipeline=pipeline.name, image=pipeline.image, argv=argv, inputs=inputs,
        resources=pipeline.resources, attempts=pipeline.attempts,
        config_hash=config_hash(entries), env=dict(sorted(pipeline.env.items())),
        output_excludes=list(pipeline.output_excludes),
        expected_outputs=[[_fill(g, values) for g in alt]
                          for alt in pipeline.expected_outputs],
        fingerprint=entries, requester_pays=s3.requester_pays,
        no_sign_request=s3.no_sign_request, container=container, cwl=cwl,
        kind=pipeline.kind,
    ), ""


def _fill(glob: str, values: dict[str, str]) -> str:
    return glob.replace("{item}", values["item"])

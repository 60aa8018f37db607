"""The group step: one command over the whole output, after every scan is done.

Run by the local supervisor when the scans end, and by a Batch job that
depends on the run's arrays. ``{bids_dir}`` is the dataset (its dataset-level
files staged in when it is remote), ``{output_dir}`` the output (staged in
without ``.bidsbatch/`` when remote; what the step writes or changes is
staged back out). The step's record is ``OUTPUT/.bidsbatch/group/<run>.json``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from . import __version__
from .containers.base import Limits
from .containers.job import AppPaths, prepare_launch
from .containers.settings import ContainerSpec
from .errors import EX_TEMPFAIL, BidsbatchError, TransientStorageError
from .markers import STATE_PREFIX
from .pipelines import CREDENTIAL_VARIABLES, fill_runtime, render_template
from .provenance import read_description, record_for_group
from .specs import RunInfo, canonical_json
from .storage import LocalLocation, Location, open_location
from .storage.transfer import Collected, collect_files, download_many, upload_tree
from .timestamps import iso, utcnow
from .worker import Scratch, WorkerLog, run_app, scratch_base


def group_record_key(run_id: str) -> str:
    return f"{STATE_PREFIX}/group/{run_id}.json"


def load_run_info(uri: str) -> RunInfo:
    """A run's ``run.json`` from a run directory, a path to it, or an ``s3://`` URI."""
    path = Path(uri)
    if path.is_dir():
        path = path / "run.json"
    if not uri.startswith("s3://"):
        return RunInfo.from_json(path.read_bytes(), source=str(path))
    parent, _, name = uri.rpartition("/")
    return RunInfo.from_json(open_location(parent).read_bytes(name), source=uri)


def run_group_step(run_uri: str, *, scratch: Path | None = None, keep_scratch: bool = False,
                   log: WorkerLog | None = None) -> int:
    """Run the pipeline's group command for the run at ``run_uri``; return its exit code."""
    log = log or WorkerLog(sys.stdout)
    info = load_run_info(run_uri)
    group = info.pipeline.group
    if group is None:
        log.info(f"pipeline {info.pipeline.name} has no group step: nothing to do")
        return 0
    dataset = info.open_dataset()
    output = info.open_output()
    work = Scratch.make(scratch_base(scratch, os.environ), "group")
    started = utcnow()
    description_before = read_description(output)  # a group app may rewrite it: merged back
    try:
        bids_dir = _dataset_dir(dataset, work, log)
        out_dir, before = _output_dir(output, work, log)
        resources = group.resources or info.pipeline.resources
        # The same container as the scans (run.json says which), output writable.
        launch = prepare_launch(
            ContainerSpec.from_dict(info.container or {}), image=info.pipeline.image,
            host=AppPaths(bids=str(bids_dir), out=str(out_dir), work=str(work.work),
                          tmp=str(work.tmp)),
            limits=Limits(cpus=resources.vcpus, memory_mib=resources.memory_mib,
                          gpus=resources.gpus),
            name=f"bidsbatch-{info.run_id}-group-{os.getpid()}", environ=os.environ)
        paths = launch.paths
        argv = fill_runtime(render_template(group.command, {}), bids_dir=paths.bids,
                            output_dir=paths.out, work_dir=paths.work)
        env = {k: v for k, v in launch.base_env.items()
               if k.upper() not in CREDENTIAL_VARIABLES}
        env.update(info.pipeline.env)
        env.update({"TMPDIR": paths.tmp, "BIDSBATCH_RUN_ID": info.run_id})
        invocation = launch.invocation(argv, env)
        result = run_app(invocation.argv, env=invocation.env, cwd=work.work,
                         timeout=resources.timeout_minutes * 60.0, log=log,
                         cleanup=launch.cleanup)
        if result.exit_code != 0:
            log.error(f"group step failed: {result.reason}")
            return result.exit_code
        if not isinstance(output, LocalLocation):
            changed = _changed_since(out_dir, before)
            log.info(f"stage-out: {len(changed.files)} file(s) written by the group step")
            upload_tree(out_dir, output, excludes=[], collected=changed)
        record_for_group(output, info, before=description_before, log=log)
        output.write_text(group_record_key(info.run_id), canonical_json({
            "run_id": info.run_id, "exit_code": 0, "started_at": iso(started),
            "finished_at": iso(utcnow()), "argv": argv, "host": socket.gethostname(),
            "bidsbatch_version": __version__,
        }))
        log.info("group step done")
        return 0
    except TransientStorageError as exc:
        log.error(exc)
        return EX_TEMPFAIL
    except BidsbatchError as exc:
        log.error(exc)
        return exc.exit_code
    finally:
        if not keep_scratch:
            work.remove()


def _dataset_dir(dataset: Location, work: Scratch, log: WorkerLog) -> Path:
    if isinstance(dataset, LocalLocation):
        return dataset.root
    top = dataset.list("", delimiter="/").objects
    log.info(f"stage-in: {len(top)} dataset-level file(s) from {dataset.uri}")
    download_many(dataset, top, work.bids)
    return work.bids


def _output_dir(output: Location, work: Scratch,
                log: WorkerLog) -> tuple[Path, dict[str, tuple[int, float]]]:
    if isinstance(output, LocalLocation):
        output.root.mkdir(parents=True, exist_ok=True)
        return output.root, {}
    objects = [o for o in output.walk() if not o.key.startswith(f"{STATE_PREFIX}/")]
    log.info(f"stage-in: {len(objects)} output file(s) from {output.uri}")
    download_many(output, objects, work.out)
    before = {}
    for o in objects:
        st = (work.out / o.key).stat()
        before[o.key] = (st.st_size, st.st_mtime)
    return work.out, before


def _changed_since(out_dir: Path, before: dict[str, tuple[int, float]]) -> Collected:
    """The files the step added or changed (size or mtime differ from what was staged in)."""
    collected = collect_files(out_dir, reserved=(STATE_PREFIX,))
    keep = []
    for f in collected.files:
        st = f.path.stat()
        if before.get(f.key) != (st.st_size, st.st_mtime):
            keep.append(f)
    collected.files = keep
    return collected

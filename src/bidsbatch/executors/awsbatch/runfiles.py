"""A run's files on S3, where its Batch jobs read them: ``OUTPUT/.bidsbatch/runs/<run-id>/``.

``run.json`` (the group step reads it) and, per submission ``n``, two
objects: ``specs-<n>.pack`` (``bidsbatch.specpack``: the submission's specs,
child ``i`` reads the ``i``-th with two ranged GETs) and ``manifest-<n>.json``
(index -> scan, for people and for finding a lost job's scans: entry ``i`` is
``specs/<scan>.json``, the name of that spec in the run directory). One PUT
per submission instead of one per scan: 10,000 scans are a handful of
requests. Neither is ever overwritten: a running array reads its pack by
index, so changing one under it would give its children other scans. Runs
submitted before packs have ``specs/<scan>.json`` objects beside a manifest
whose entries point at them (``worker --manifest``).
"""

from __future__ import annotations

import re

from ... import specpack
from ...errors import BidsbatchError
from ...markers import STATE_PREFIX
from ...runs import RunDir
from ...specs import Manifest, Spec
from ...storage import Location

_SUBMISSION = re.compile(r"(?:manifest-(\d+)\.json|specs-(\d+)\.pack)$")


class RunFiles:
    """The run's folder under the output location."""

    def __init__(self, output: Location, run_id: str) -> None:
        self.output = output
        self.run_id = run_id
        self.prefix = f"{STATE_PREFIX}/runs/{run_id}"
        self._run_json_written = False  # by this object, i.e. in this submit

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def uri(self, name: str) -> str:
        return self.output.describe(self.key(name))

    @property
    def run_json_uri(self) -> str:
        return self.uri("run.json")

    def manifest_uri(self, n: int) -> str:
        return self.uri(f"manifest-{n}.json")

    def pack_uri(self, n: int) -> str:
        return self.uri(f"specs-{n}.pack")

    def write_run_json(self, run: RunDir) -> None:
        """Write ``run.json``."""
        self.output.write_text(self.key("run.json"), run.run_json.read_text(encoding="utf-8"))
        self._run_json_written = True

    def ensure_run_json(self, run: RunDir) -> None:
        """Write ``run.json`` unless this object wrote it already (a run's is fixed by its id)."""
        if not self._run_json_written:
            self.write_run_json(run)

    def any_job_submitted(self) -> bool:
        """Can a job of this run exist? Not without ``run.json``: it is written before any."""
        return self.output.exists(self.key("run.json"))

    def manifest_numbers(self) -> set[int]:
        """The submission numbers of the manifests already written."""
        out = set()
        for obj in self.output.list(self.key(""), delimiter="/").objects:
            m = _SUBMISSION.search(obj.key)
            if m:
                out.add(int(m.group(1) or m.group(2)))
        return out

    def write_submission(self, n: int, specs: list[Spec], *,
                         run: RunDir | None = None) -> tuple[str, str]:
        """Write ``specs-<n>.pack`` then ``manifest-<n>.json`` (neither may exist yet).

        Returns the URIs of the manifest and of the pack. The pack goes first, so
        that a manifest never names scans whose specs are not there. With ``run``,
        each spec is packed as its file in the run directory (the bytes ``show``
        prints), read instead of serialised again.
        """
        key = self.key(f"manifest-{n}.json")
        if self.output.exists(key):
            raise BidsbatchError(f"{self.output.describe(key)} already exists",
                                 hint="another bidsbatch is submitting this run; wait for it")
        pack = self.key(f"specs-{n}.pack")
        self.output.write_bytes(pack, specpack.build(
            self.run_id, [_planned_bytes(run, s) for s in specs]))
        manifest = Manifest(run_id=self.run_id,
                            specs=[f"specs/{s.scan_id}.json" for s in specs])
        self.output.write_text(key, manifest.to_json())
        return self.output.describe(key), self.output.describe(pack)

    def manifest_scans(self, n: int) -> list[str]:
        """The scan ids of ``manifest-<n>.json``, by index."""
        key = self.key(f"manifest-{n}.json")
        manifest = Manifest.from_json(self.output.read_bytes(key),
                                      source=self.output.describe(key))
        return [entry.rsplit("/", 1)[-1].removesuffix(".json") for entry in manifest.specs]


def _planned_bytes(run: RunDir | None, spec: Spec) -> Spec | bytes:
    """The run directory's file of ``spec`` when it holds this very spec, else the spec."""
    if run is None:
        return spec
    try:
        data = run.spec_path(spec.scan_id).read_bytes()
    except OSError:
        return spec
    # The file is what plan wrote for this run id; a cheap check that it is this one.
    return data if f'"config_hash": "{spec.config_hash}"'.encode() in data else spec

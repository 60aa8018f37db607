"""A run's files on S3, where its Batch jobs read them: ``OUTPUT/.bidsbatch/runs/<run-id>/``.

``run.json`` (the group step reads it), ``specs/<scan>.json`` (one per
scan, as planned) and ``manifest-<n>.json`` (one per submission: child ``i``
of array ``n`` processes entry ``i``). Manifest entries are relative
(``specs/<scan>.json``); the worker resolves them against the manifest's
folder. A manifest is never overwritten: a running array reads its manifest
by index, so changing one under it would give its children other scans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from ...errors import BidsbatchError
from ...markers import STATE_PREFIX
from ...runs import RunDir
from ...specs import Manifest, Spec
from ...storage import Location

_MANIFEST = re.compile(r"manifest-(\d+)\.json$")


class RunFiles:
    """The run's folder under the output location."""

    def __init__(self, output: Location, run_id: str, *, max_workers: int = 16) -> None:
        self.output = output
        self.run_id = run_id
        self.prefix = f"{STATE_PREFIX}/runs/{run_id}"
        self.max_workers = max_workers
        self._run_json_written = False  # by this object, i.e. in this submit

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def uri(self, name: str) -> str:
        return self.output.describe(self.key(name))

    @property
    def run_json_uri(self) -> str:
        return self.uri("run.json")

    def spec_uri(self, scan_id: str) -> str:
        return self.uri(f"specs/{scan_id}.json")

    def manifest_uri(self, n: int) -> str:
        return self.uri(f"manifest-{n}.json")

    def upload(self, run: RunDir, specs: Iterable[Spec]) -> int:
        """Write ``run.json`` and the specs not yet there (or changed); return how many specs."""
        self.write_run_json(run)
        specs = list(specs)
        if not specs:
            return 0  # no need to list what is there
        have = {o.key: o.size for o in self.output.walk(self.key("specs/"))}
        todo = []
        for spec in specs:
            text = spec.to_json()
            key = self.key(f"specs/{spec.scan_id}.json")
            # Specs are deterministic for a run id: same size means the same file.
            if have.get(key) != len(text.encode("utf-8")):
                todo.append((key, text))
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(todo))) as pool:
                list(pool.map(lambda kv: self.output.write_text(*kv), todo))
        return len(todo)

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
            m = _MANIFEST.search(obj.key)
            if m:
                out.add(int(m.group(1)))
        return out

    def write_manifest(self, n: int, scan_ids: list[str]) -> str:
        """Write ``manifest-<n>.json`` (which must not exist yet); return its URI."""
        key = self.key(f"manifest-{n}.json")
        if self.output.exists(key):
            raise BidsbatchError(f"{self.output.describe(key)} already exists",
                                 hint="another bidsbatch is submitting this run; wait for it")
        manifest = Manifest(run_id=self.run_id, specs=[f"specs/{s}.json" for s in scan_ids])
        self.output.write_text(key, manifest.to_json())
        return self.output.describe(key)

    def manifest_scans(self, n: int) -> list[str]:
        """The scan ids of ``manifest-<n>.json``, by index."""
        key = self.key(f"manifest-{n}.json")
        manifest = Manifest.from_json(self.output.read_bytes(key),
                                      source=self.output.describe(key))
        return [entry.rsplit("/", 1)[-1].removesuffix(".json") for entry in manifest.specs]

"""A plan's specs made as they are read, not 100,000 of them held at once.

A spec of a plan is a function of its scan and of what the whole plan
shares (pipeline, output, container...), except for three digests: its
argv's, its ``participants.tsv`` row's and its config hash. The planner
computes those once per scan (the run id needs every config hash before any
spec can be written) and keeps only them; :class:`PlannedSpecs` is the
sequence ``Plan.specs`` holds, and it makes each :class:`Spec` when it is
read. The specs it makes are those the one-spec-at-a-time planner made,
field for field (``tests/test_plan_stream.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

from .bids import Dataset, Scan
from .canonical import _Unusual
from .commandtemplate import CompiledCommand
from .containers.settings import ContainerSpec
from .fingerprint import (
    ARGV_ENTRY,
    DESCRIPTION_ENTRY,
    PIPELINE_ENTRY,
    digest_of_description,
    is_descriptive,
    participant_rows,
    participants_entry,
)
from .pipelines import Pipeline
from .specs import InputFile, Spec
from .spectext import PlanTemplate, SpecTextWriter
from .storage import ObjectInfo, S3Options
from .storage.transfer import compile_excludes, is_excluded

#: sha256_of's encoding: sorted keys, no spaces, non-ASCII kept.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(data: Any) -> str:
    """``specs.sha256_of(data)``, without ``json.dumps``' keyword handling each call."""
    return hashlib.sha256(_ENCODER.encode(data).encode()).hexdigest()


@dataclass(frozen=True)
class ScanDigests:
    """What a scan's spec needs hashing for, computed once."""

    argv: str
    participant_row: str | None  # None: the dataset has no participants.tsv
    config_hash: str


class DigestTable:
    """Every scan's :class:`ScanDigests`, 96 bytes a scan in one buffer.

    Three hex strings and their object are ~500 bytes a scan: 50 MB of a
    100,000-scan plan, a third of its memory goal.
    """

    def __init__(self, *, with_rows: bool) -> None:
        self._buf = bytearray()
        self._rows = with_rows
        self._width = 96 if with_rows else 64

    def append(self, d: ScanDigests) -> None:
        if (d.participant_row is not None) != self._rows:
            raise ValueError("a participants.tsv row digest for some scans only")
        self._buf += bytes.fromhex(d.argv)
        if d.participant_row is not None:
            self._buf += bytes.fromhex(d.participant_row)
        self._buf += bytes.fromhex(d.config_hash)

    def __len__(self) -> int:
        return len(self._buf) // self._width

    def __getitem__(self, i: int) -> ScanDigests:
        if not 0 <= i < len(self):
            raise IndexError(i)
        at, end = i * self._width, (i + 1) * self._width
        b = self._buf
        row = b[at + 32:at + 64].hex() if self._rows else None
        return ScanDigests(b[at:at + 32].hex(), row, b[end - 32:end].hex())

    def __iter__(self) -> Iterator[ScanDigests]:
        return (self[i] for i in range(len(self)))


class RowDigests:
    """``participants.tsv`` as a plan needs it: each row's digest, not the row.

    ``hex(p)`` is ``sha256_of(ParticipantsTable.parse(text).rows.get(p))``; 100,000
    rows as dicts were 40 MB of a plan's peak, their digests are a third of that.
    """

    def __init__(self, text: str) -> None:
        self._digests = {label: hashlib.sha256(_ENCODER.encode(row).encode()).digest()
                         for label, row in participant_rows(text)}
        self._missing = sha256_hex(None)

    def hex(self, participant: str) -> str:
        digest = self._digests.get(participant)
        return self._missing if digest is None else digest.hex()


class SpecMaker:
    """Makes the specs of one plan: the parts every scan shares, prepared once."""

    def __init__(self, *, dataset: Dataset, output: str, pipeline: Pipeline, s3: S3Options,
                 container: ContainerSpec) -> None:
        self.dataset = dataset
        self.output = output
        self.pipeline = pipeline
        self.s3 = s3
        self.container = container
        self.pipeline_hash = pipeline.output_hash()
        self.description = digest_of_description(dataset.description)
        self.command = CompiledCommand.compile(pipeline.command)
        r = pipeline.resources
        self.constants = {"n_cpus": str(max(1, int(r.vcpus))), "mem_mib": str(r.memory_mib),
                          "mem_gb": str(max(1, r.memory_mib // 1024))}
        self.excludes = compile_excludes(pipeline.input_excludes)
        self.env = dict(sorted(pipeline.env.items()))
        # The dataset-level files are the same objects in every scan: one InputFile each.
        self._shared_inputs = {id(o): (o, InputFile.from_object(o))
                               for o in dataset.dataset_files}

    def argv(self, scan: Scan) -> list[str]:
        """``pipeline.argv_for(...)`` of the scan."""
        values = {"participant": scan.participant, "session": scan.session or "",
                  "scan_id": scan.id, **self.constants}
        return self.command.render(values)

    def inputs(self, scan: Scan) -> list[InputFile]:
        shared = self._shared_inputs
        out = []
        for f in scan.files:
            if self.excludes and is_excluded(f.key, self.excludes):
                continue
            known = shared.get(id(f))
            out.append(known[1] if known is not None and known[0] is f else _input(f))
        return out

    def expected_outputs(self, scan: Scan) -> list[list[str]]:
        expected = [[_fill_output_glob(g, scan) for g in alternatives if _applies(g, scan)]
                    for alternatives in self.pipeline.expected_outputs]
        return [e for e in expected if e]

    def texts(self, scans: list[Scan], digests: DigestTable, run_id: str
              ) -> Iterator[tuple[str, str]]:
        """Each scan's id and its spec's ``to_json()`` text, most without making the Spec."""
        if not scans:
            return
        probe = self.spec(scans[0], digests[0], run_id)
        template: PlanTemplate | None = None
        with contextlib.suppress(_Unusual):
            template = PlanTemplate(probe, self.dataset.dataset_files)
            if self._text(template, scans[0], digests[0]) != probe.to_json():
                template = None  # a shape the template does not know: spec by spec
        if template is None:
            writer = SpecTextWriter()
            for scan, d in zip(scans, digests, strict=True):
                yield scan.id, writer.text(self.spec(scan, d, run_id))
            return
        for scan, d in zip(scans, digests, strict=True):
            try:
                text = self._text(template, scan, d)
            except _Unusual:
                text = self.spec(scan, d, run_id).to_json()
            yield scan.id, text

    def _text(self, template: PlanTemplate, scan: Scan, d: ScanDigests) -> str:
        # The listing's objects as they are: the text reads key, size and etag alone.
        inputs = [f for f in scan.files if not is_excluded(f.key, self.excludes)] \
            if self.excludes else scan.files
        return template.text(
            argv=self.argv(scan), config_hash=d.config_hash,
            expected_outputs=self.expected_outputs(scan),
            fingerprint=self.entries(scan, inputs, argv_digest=d.argv,
                                     participant_row=d.participant_row),
            inputs=inputs, participant=scan.participant, scan_id=scan.id,
            session=scan.session)

    def digests(self, scan: Scan, argv: list[str], inputs: list[InputFile],
                participants: RowDigests | None) -> ScanDigests:
        """The table is the planner's alone: the specs, made later, need only its digests."""
        argv_digest = sha256_hex(argv)
        row = None
        if participants is not None:
            row = participants.hex(scan.participant)
        entries = self.entries(scan, inputs, argv_digest=argv_digest, participant_row=row)
        return ScanDigests(argv_digest, row, sha256_hex(entries))

    def entries(self, scan: Scan, inputs: Iterable[InputFile | ObjectInfo], *, argv_digest: str,
                participant_row: str | None) -> dict[str, str]:
        """``fingerprint.fingerprint(...)`` of the scan, from its digests."""
        entries = {PIPELINE_ENTRY: self.pipeline_hash, ARGV_ENTRY: argv_digest}
        for f in inputs:
            if not is_descriptive(f.key):
                entries[f.key] = f"{f.size}:{f.etag or ''}"
        entries[DESCRIPTION_ENTRY] = self.description
        if participant_row is not None:
            entries[participants_entry(scan.participant)] = participant_row
        return entries

    def spec(self, scan: Scan, digests: ScanDigests, run_id: str, *,
             argv: list[str] | None = None, inputs: list[InputFile] | None = None) -> Spec:
        p = self.pipeline
        argv = self.argv(scan) if argv is None else argv
        inputs = self.inputs(scan) if inputs is None else inputs
        return Spec(
            run_id=run_id,
            scan_id=scan.id,
            participant=scan.participant,
            session=scan.session,
            dataset=self.dataset.uri,
            output=self.output,
            pipeline=p.name,
            image=p.image,
            argv=argv,
            inputs=inputs,
            resources=p.resources,
            attempts=p.attempts,
            config_hash=digests.config_hash,
            env=dict(self.env),  # each spec its own, as before: one changed is not all
            output_excludes=list(p.output_excludes),
            expected_outputs=self.expected_outputs(scan),
            fingerprint=self.entries(scan, inputs, argv_digest=digests.argv,
                                     participant_row=digests.participant_row),
            requester_pays=self.s3.requester_pays,
            no_sign_request=self.s3.no_sign_request,
            container=self.container,
        )


def _input(f: ObjectInfo) -> InputFile:
    return InputFile(f.key, f.size, f.etag)


def _applies(glob: str, scan: Scan) -> bool:
    """A glob naming ``{session}`` says nothing about a sessionless scan."""
    return scan.session is not None or "{session}" not in glob


def _fill_output_glob(glob: str, scan: Scan) -> str:
    return glob.replace("{participant}", scan.participant).replace("{session}",
                                                                     scan.session or "")


class PlannedSpecs(Sequence[Spec]):
    """``Plan.specs`` of a BIDS plan: each spec made when read (a new object each time)."""

    def __init__(self, maker: SpecMaker, scans: list[Scan], digests: DigestTable,
                 run_id: str) -> None:
        self._maker = maker
        self._scans = scans
        self._digests = digests
        self._run_id = run_id

    @property
    def scan_ids(self) -> list[str]:
        return [s.id for s in self._scans]

    @property
    def scans(self) -> list[Scan]:
        return list(self._scans)

    @property
    def input_bytes(self) -> int:
        """``sum(s.input_bytes for s in self)``, without making the specs."""
        excludes = self._maker.excludes
        return sum(f.size for scan in self._scans for f in scan.files
                   if not excludes or not is_excluded(f.key, excludes))

    def __len__(self) -> int:
        return len(self._scans)

    @overload
    def __getitem__(self, index: int) -> Spec: ...

    @overload
    def __getitem__(self, index: slice) -> list[Spec]: ...

    def __getitem__(self, index: int | slice) -> Spec | list[Spec]:
        if isinstance(index, slice):
            return [self._make(i) for i in range(*index.indices(len(self._scans)))]
        return self._make(range(len(self._scans))[index])

    def _make(self, i: int) -> Spec:
        return self._maker.spec(self._scans[i], self._digests[i], self._run_id)

    def texts(self) -> Iterator[tuple[str, str]]:
        """Each spec's scan id and ``to_json()`` text, in order (what ``Plan.write`` writes)."""
        return self._maker.texts(self._scans, self._digests, self._run_id)

    def __iter__(self) -> Iterator[Spec]:
        maker, run_id = self._maker, self._run_id
        for scan, digests in zip(self._scans, self._digests, strict=True):
            yield maker.spec(scan, digests, run_id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list's equality, a list's unhashability

    def __repr__(self) -> str:
        return f"PlannedSpecs({len(self)} specs of run {self._run_id})"


def scan_ids_of(specs: Iterable[Spec]) -> list[str]:
    """The scan ids of ``specs``, without making the specs of a :class:`PlannedSpecs`."""
    if isinstance(specs, PlannedSpecs):
        return specs.scan_ids
    return [s.scan_id for s in specs]

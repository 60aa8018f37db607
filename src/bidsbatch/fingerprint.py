"""What one scan's result depends on: the entries its config hash covers.

A scan's config hash must change when, and only when, something that can
change that scan's outputs changed: the pipeline (its output-relevant
settings and the scan's argv), the scan's own files and the inherited files
that apply to it. Adding a subject, or a line to ``README``, must not redo
the 500 scans already done.

So the dataset-level descriptive files are staged (the app may read them)
but kept out of the hash: ``README*``, ``CHANGES``, ``LICENSE``,
``CITATION.cff``, ``participants.json``, and ``dataset_description.json``
but for the fields an app reads (:data:`DESCRIPTION_FIELDS_READ`).
``participants.tsv`` counts by the scan's own row: adding ``sub-09``'s row
changes no other scan.

A fingerprint maps names to digests; the marker keeps the fingerprint of
what was done, so ``plan`` can say which entries changed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .specs import InputFile, sha256_of

#: Root files that describe the dataset: no scan's result depends on them.
DESCRIPTIVE_ROOT_FILES = {"CHANGES", "LICENSE", "CITATION.cff", "participants.json",
                          "participants.tsv", "dataset_description.json"}
#: The fields of dataset_description.json that BIDS tools read to index the data
#: (version rules, raw or derivative, HED schema of the events, URIs of other datasets).
DESCRIPTION_FIELDS_READ = ("BIDSVersion", "DatasetType", "HEDVersion", "DatasetLinks")

PIPELINE_ENTRY = "pipeline"
ARGV_ENTRY = "argv"
DESCRIPTION_ENTRY = "dataset_description.json[" + ",".join(DESCRIPTION_FIELDS_READ) + "]"


def participants_entry(participant: str) -> str:
    return f"participants.tsv[sub-{participant}]"


def is_descriptive(key: str) -> bool:
    """A root file that describes the dataset (staged, not hashed)."""
    return "/" not in key and (key.startswith("README") or key in DESCRIPTIVE_ROOT_FILES)


@dataclass(frozen=True)
class ParticipantsTable:
    """``participants.tsv``: its rows by participant label (without ``sub-``)."""

    rows: Mapping[str, Mapping[str, str]]

    @classmethod
    def parse(cls, text: str) -> ParticipantsTable:
        rows: dict[str, dict[str, str]] = {}
        for label, row in participant_rows(text):
            rows[label] = row
        return cls(rows=rows)


def participant_rows(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Each row of ``participants.tsv`` with its label (a label again: the later row wins)."""
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    for row in reader:
        pid = (row.get("participant_id") or "").strip()
        if pid:
            label = pid[4:] if pid.startswith("sub-") else pid
            yield label, {str(k): (v or "") for k, v in row.items() if k is not None}


def fingerprint(
    *,
    pipeline_hash: str,
    argv: list[str],
    participant: str,
    inputs: Iterable[InputFile],
    description: Mapping[str, Any],
    participants: ParticipantsTable | None,
    description_digest: str | None = None,
) -> dict[str, str]:
    """The entries one scan's result depends on, each with a digest.

    ``description_digest`` is :func:`description_digest` of ``description``, when the
    caller computed it once for many scans.
    """
    entries = {PIPELINE_ENTRY: pipeline_hash, ARGV_ENTRY: sha256_of(argv)}
    for f in inputs:
        if not is_descriptive(f.key):
            entries[f.key] = f"{f.size}:{f.etag or ''}"
    entries[DESCRIPTION_ENTRY] = description_digest or digest_of_description(description)
    if participants is not None:
        entries[participants_entry(participant)] = sha256_of(
            participants.rows.get(participant))
    return entries


def digest_of_description(description: Mapping[str, Any]) -> str:
    """The digest of what apps read of ``dataset_description.json`` (its entry's value)."""
    return sha256_of({k: description[k] for k in DESCRIPTION_FIELDS_READ if k in description})


def config_hash(entries: Mapping[str, str]) -> str:
    return sha256_of(dict(entries))


def changed_entries(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The entries added, removed or changed from ``old`` to ``new``, sorted."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))

"""Small BIDS layouts for crawl tests: each a list of keys and the scans it must give.

File bodies are tiny placeholders (as in bids-examples): the crawl reads names,
not images. Tests that need real images use ``bidsbatch.synth``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

DESCRIPTION = json.dumps({"Name": "layout", "BIDSVersion": "1.10.0"})


@dataclass(frozen=True)
class Layout:
    name: str
    keys: tuple[str, ...]
    scans: dict[str, tuple[str, ...]]  # scan id -> files it must have beyond dataset files
    dataset_files: tuple[str, ...] = ("dataset_description.json",)
    bodies: dict[str, str] = field(default_factory=dict)

    def write(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for key in self.keys:
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            if key == "dataset_description.json":
                body = DESCRIPTION
            else:
                body = self.bodies.get(key, f"content of {key}\n")
            path.write_text(body)
        return root


def _anat(sub: str, ses: str | None = None) -> str:
    base = f"sub-{sub}/" + (f"ses-{ses}/" if ses else "")
    name = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    return f"{base}anat/{name}_T1w.nii.gz"


LAYOUTS = [
    Layout(
        "sessionless",
        ("dataset_description.json", "participants.tsv", _anat("01"), _anat("02"),
         "sub-02/func/sub-02_task-rest_bold.nii.gz"),
        {"sub-01": (_anat("01"),),
         "sub-02": (_anat("02"), "sub-02/func/sub-02_task-rest_bold.nii.gz")},
        dataset_files=("dataset_description.json", "participants.tsv"),
    ),
    Layout(
        "plus-labels",
        ("dataset_description.json", _anat("a+b", "pre+op"), _anat("ab", "pre")),
        {"sub-a+b_ses-pre+op": (_anat("a+b", "pre+op"),),
         "sub-ab_ses-pre": (_anat("ab", "pre"),)},
    ),
    Layout(
        "named-sessions",
        ("dataset_description.json", _anat("01", "baseline"), _anat("01", "followup"),
         "sub-01/sub-01_sessions.tsv"),
        {"sub-01_ses-baseline": (_anat("01", "baseline"), "sub-01/sub-01_sessions.tsv"),
         "sub-01_ses-followup": (_anat("01", "followup"), "sub-01/sub-01_sessions.tsv")},
    ),
    Layout(
        "prefix-labels",  # sub-01 must not take sub-010's files (the old script's bug)
        ("dataset_description.json", _anat("01"), _anat("010"), _anat("0100")),
        {"sub-01": (_anat("01"),), "sub-010": (_anat("010"),), "sub-0100": (_anat("0100"),)},
    ),
    Layout(
        "empty-session",  # ses-2 of sub-01 holds only a folder marker; sub-02 has nothing
        ("dataset_description.json", _anat("01", "1"), "sub-01/ses-2/anat/.keep",
         "sub-02/.keep"),
        {"sub-01_ses-1": (_anat("01", "1"),)},
    ),
    Layout(
        "runs",
        ("dataset_description.json",
         *(f"sub-01/ses-1/func/sub-01_ses-1_task-rest_run-{r}_bold.nii.gz" for r in (1, 2, 3)),
         "task-rest_bold.json", "task-other_bold.json"),
        {"sub-01_ses-1": tuple(
            [f"sub-01/ses-1/func/sub-01_ses-1_task-rest_run-{r}_bold.nii.gz" for r in (1, 2, 3)]
            + ["task-rest_bold.json"])},
    ),
    Layout(
        "mixed-sessions",  # one subject with sessions, one without
        ("dataset_description.json", _anat("01", "1"), _anat("01", "2"), _anat("02")),
        {"sub-01_ses-1": (_anat("01", "1"),), "sub-01_ses-2": (_anat("01", "2"),),
         "sub-02": (_anat("02"),)},
    ),
    Layout(
        "inheritance",
        ("dataset_description.json", "README", "CHANGES", "participants.tsv",
         "participants.json", "dwi.bval", "dwi.bvec", "T1w.json", "task-rest_bold.json",
         "acq-hi_T1w.json", ".bidsignore",
         "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
         "sub-01/sub-01_task-rest_bold.json",
         "sub-01/ses-2/func/sub-01_ses-2_task-rest_bold.nii.gz",
         "derivatives/x/sub-01/anat/sub-01_desc-x_T1w.nii.gz",
         "sourcedata/raw.dcm", "code/script.py", ".git/config", "sub-01/ses-1/.hidden",
         "sub-01/ses-1/extra/notes.txt", "stimuli/a.png"),
        {"sub-01_ses-1": ("dwi.bval", "dwi.bvec", "T1w.json",
                          "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz",
                          "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
                          # .bidsignore'd, and an input all the same (issue 12)
                          "sub-01/ses-1/extra/notes.txt"),
         "sub-01_ses-2": ("task-rest_bold.json", "sub-01/sub-01_task-rest_bold.json",
                          "sub-01/ses-2/func/sub-01_ses-2_task-rest_bold.nii.gz")},
        dataset_files=("dataset_description.json", "README", "CHANGES", "participants.tsv",
                       "participants.json", ".bidsignore"),
        bodies={".bidsignore": "extra/\n"},
    ),
]

LAYOUT_BY_NAME = {layout.name: layout for layout in LAYOUTS}

"""The fast canonical JSON writes the very bytes the old serializer wrote.

Specs must stay byte-identical for the same inputs (a plan written again is a
no-op, the run id and the markers do not move): every case here is compared
with ``json.dumps(asdict(value), sort_keys=True, indent=2, ensure_ascii=False)``,
the way specs were written before ``canonical.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import pytest

from bidsbatch.canonical import canonical_text
from bidsbatch.containers.settings import Asset, ContainerSpec, HostBind
from bidsbatch.pipelines import Resources
from bidsbatch.specs import InputFile, Manifest, Spec, canonical_json


def old_serializer(value: object) -> str:
    """What ``to_json`` was: ``json.dumps`` of the spec's ``to_dict`` (``asdict`` less the
    fields left out while None), or of ``asdict``."""
    if isinstance(value, Spec):
        data: object = value.to_dict()
    else:
        data = asdict(value) if hasattr(value, "__dataclass_fields__") else value
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def spec(**changes: object) -> Spec:
    base: dict[str, object] = dict(
        run_id="demo-0123456789", scan_id="sub-01_ses-1", participant="01", session="1",
        dataset="/data/ds", output="s3://bucket/derivatives", pipeline="demo",
        image="bidsbatch/demo:0.1.0",
        argv=["app", "{bids_dir}", "{output_dir}", "participant", "--participant_label", "01"],
        inputs=[InputFile("sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", 123456, '"abc"'),
                InputFile("dataset_description.json", 87, None)],
        resources=Resources(vcpus=1.5, memory_mib=512, disk_gib=2, timeout_minutes=10),
        attempts=3, config_hash="f" * 64,
    )
    base.update(changes)
    return Spec(**base)  # type: ignore[arg-type]


SPECS = {
    "plain": spec(),
    "sessionless, no inputs, defaults": spec(scan_id="sub-02", participant="02", session=None,
                                             inputs=[]),
    "unicode, escapes and control characters": spec(
        participant="ü01", argv=["é", 'quote " and \\ backslash', "tab\tnew\nline\x01", "☃"],
        env={"Z": "last", "A": "first", "MIDDLE": ""}),
    "nested lists, fingerprint, requester pays": spec(
        expected_outputs=[["sub-01/**/*_mask.nii.gz", "sub-01.html"], [], ["x"]],
        output_excludes=["tmp/**"], fingerprint={"pipeline": "a" * 64, "b/c.json": "12:"},
        requester_pays=True, no_sign_request=False),
    "a container with binds and assets": spec(container=ContainerSpec(
        runtime="podman", entrypoint="keep", network=True, env=["LICENSE_SERVER"],
        binds=[HostBind("/opt/fs/license.txt", "/opt/freesurfer/license.txt")],
        assets=[Asset("atlas", "s3://b/atlas.nii.gz", "/opt/atlas.nii.gz")],
        variables={"FS_LICENSE": "/opt/freesurfer/license.txt"}, user="1000:1000",
        command=["podman", "--root", "/x"])),
    "large and odd numbers": spec(
        inputs=[InputFile("sub-01/anat/big.nii.gz", 2**63 + 5, None)],
        resources=Resources(vcpus=0.1, memory_mib=10**9, gpus=0, disk_gib=0,
                            timeout_minutes=-1)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_spec_bytes_are_those_of_the_old_serializer(name: str) -> None:
    value = SPECS[name]
    assert value.to_json() == old_serializer(value)
    assert Spec.from_json(value.to_json()).to_json() == value.to_json()


class Colour(StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Odd:
    """What the fast path leaves to json.dumps, and what it handles itself."""

    nan: float = float("nan")
    keys: dict = field(default_factory=lambda: {2: "int key", 1: "another"})
    tup: tuple = (1, (2.5, None), True, False)
    colour: Colour = Colour.RED
    empty: dict = field(default_factory=dict)
    nested: dict = field(default_factory=lambda: {"r": Resources(), "l": [[], [{}]]})


@pytest.mark.parametrize("value", [
    Odd(), {"a": float("inf")}, [1, "two", 3.0, -0.0, 1e300, 1e-300],
    {"é": {"z": 1, "a": [None]}}, [], {}, "just a string", 0,
    Manifest(run_id="r", specs=["specs/sub-01.json", "specs/sub-02.json"]),
])
def test_other_values_match_json_dumps(value: object) -> None:
    assert canonical_text(value) == old_serializer(value)
    if not hasattr(value, "__dataclass_fields__"):
        assert canonical_json(value) == old_serializer(value)


def test_a_bids_spec_has_no_cwl_key_as_before_cwl_existed() -> None:
    text = spec().to_json()
    assert '"cwl"' not in text
    assert Spec.from_dict(json.loads(text)).to_json() == text

"""Pipelines as data: presets load, templates render, bad files are refused clearly."""

from __future__ import annotations

import pytest

from bidsbatch.errors import CredentialsInJobError, PipelineError
from bidsbatch.pipelines import Pipeline, fill_runtime, load_pipeline, preset_names


def test_presets_ship_and_validate() -> None:
    assert set(preset_names()) >= {"demo", "m2g", "fmriprep", "mriqc"}
    for name in preset_names():
        p = load_pipeline(name)
        assert p.image and p.command and p.name == name


def test_m2g_resources_match_its_batch_docs() -> None:
    p = load_pipeline("m2g")
    assert (p.resources.vcpus, p.resources.memory_mib) == (2, 15200)


def _pipe(**over: object) -> Pipeline:
    data = {"name": "t", "image": "img:1",
            "command": ["app", "{bids_dir}", "{output_dir}", "--p", "{participant}",
                        ["--s", "{session}"], "--mem", "{mem_mib}"],
            "resources": {"vcpus": 2, "memory_mib": 4096}}
    data.update(over)
    return Pipeline.from_dict(data, source="t.toml")


def test_optional_part_vanishes_without_session() -> None:
    p = _pipe()
    with_ses = p.argv_for(participant="01", session="pre", scan_id="sub-01_ses-pre")
    without = p.argv_for(participant="01", session=None, scan_id="sub-01")
    assert with_ses == ["app", "{bids_dir}", "{output_dir}", "--p", "01", "--s", "pre",
                        "--mem", "4096"]
    assert without == ["app", "{bids_dir}", "{output_dir}", "--p", "01", "--mem", "4096"]
    assert fill_runtime(without, bids_dir="/in", output_dir="/out", work_dir="/w")[:3] == [
        "app", "/in", "/out"]


def test_labels_with_braces_or_spaces_stay_one_argument() -> None:
    argv = _pipe().argv_for(participant="a+b", session=None, scan_id="sub-a+b")
    assert argv[4] == "a+b"


def test_output_hash_ignores_resources_but_not_command() -> None:
    base = _pipe()
    more_memory = _pipe(resources={"vcpus": 2, "memory_mib": 8192})
    other_image = _pipe(image="img:2")
    assert base.output_hash() == more_memory.output_hash()
    assert base.output_hash() != other_image.output_hash()


@pytest.mark.parametrize("over,message", [
    ({"image": ""}, "'image' is missing"),
    ({"command": []}, "non-empty list"),
    ({"command": ["app", "{participant}", 3]}, "is not a string"),
    ({"command": [["--x", "{session}"], "{participant}"]}, "cannot be optional"),
    ({"command": ["app", "{participant}", "{bogus}"]}, "unknown placeholder {bogus}"),
    ({"resources": {"vcpus": 0}}, "vcpus must be a number"),
    ({"resources": {"gpus": 1.5}}, "gpus must be a whole number"),
    ({"resources": {"cpu": 2}}, "unknown key(s) cpu"),
    ({"retry": {"attempts": 11}}, "from 1 to 10"),
    ({"colour": "blue"}, "unknown key(s) colour"),
])
def test_bad_pipelines(over: dict, message: str) -> None:
    with pytest.raises(PipelineError) as info:
        _pipe(**over)
    assert message in info.value.message and "t.toml" in info.value.message


def test_credentials_in_env_are_refused() -> None:
    with pytest.raises(CredentialsInJobError):
        _pipe(env={"AWS_ACCESS_KEY_ID": "AKIA..."})


def test_group_step_is_optional_and_validated() -> None:
    assert load_pipeline("demo").group is not None
    with pytest.raises(PipelineError, match=r"group\.command"):
        _pipe(group={"command": ["app", "{nope}"]})

"""A plan's specs, made as they are read and written by the fast writer, are the plain ones.

The planner keeps three digests a scan and makes each spec when it is read
(specstream.py), the argv comes from a template parsed once
(commandtemplate.py), and the writer reuses the text of shared fields
(spectext.py). Each is compared here with the straightforward way, on a
varied dataset (sessions and none in one dataset, participants.tsv, root
sidecars, input excludes, env) and several pipelines, items too: the spec
files on disk against ``json.dumps(spec.to_dict(), sort_keys=True,
indent=2)``, and every field that is computed against ``argv_for``,
``fingerprint`` and ``config_hash``, the run id against ``sha256_of`` of the
whole plan.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bidsbatch.bids import crawl
from bidsbatch.commandtemplate import CompiledCommand
from bidsbatch.fingerprint import ParticipantsTable, config_hash, fingerprint
from bidsbatch.items.base import Item, ItemInput, ItemSet
from bidsbatch.items.plan import make_item_plan
from bidsbatch.pipelines import Resources, load_pipeline, render_template
from bidsbatch.planning import make_plan
from bidsbatch.scan_inputs import without_excluded
from bidsbatch.specs import InputFile, Spec, sha256_of
from bidsbatch.spectext import SpecTextWriter
from bidsbatch.storage import ObjectInfo
from bidsbatch.synth import make_dataset

PIPELINES = ["demo", "fmriprep", "mriqc", "m2g", "custom"]


def plain_text(spec: Spec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream") / "ds"
    make_dataset(root, subjects=3, sessions=["1", "2"], modalities=["anat", "func", "dwi"],
                 shape=(4, 4, 4), n_volumes=3)
    # One subject without sessions, with a non-ASCII sidecar value and a file to exclude.
    anat = root / "sub-solo" / "anat"
    anat.mkdir(parents=True)
    (anat / "sub-solo_T1w.nii.gz").write_bytes(b"\x1f\x8bsolo")
    (anat / "sub-solo_T1w.json").write_text('{"Institution": "Universit\u00e9"}\n')
    (anat / "sub-solo_T2w.nii.gz").write_bytes(b"\x1f\x8bt2")
    with (root / "participants.tsv").open("a") as fh:
        fh.write("sub-solo\t33\tF\n" if "sex" in (root / "participants.tsv").read_text()
                 else "sub-solo\t33\n")
    return root


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "custom.toml"
    path.write_text(
        'name = "cust\u00f6m tool"\nimage = "x/y:1"\n'
        'command = ["run", "{bids_dir}", "{output_dir}", "--label={participant}",'
        ' ["--ses", "{session}", "lit{{eral}}"], "--id", "{scan_id}", "--cpu", "{n_cpus}",'
        ' "--gb", "{mem_gb}", "{work_dir}/x"]\n'
        '[inputs]\nexclude = ["**/*_T2w.nii.gz"]\n'
        '[env]\nZ_LAST = "\u2603"\nA_FIRST = "1"\n'
        '[output]\nexclude = ["tmp/**"]\n'
        'expect = [["sub-{participant}/ses-{session}/x", "sub-{participant}.html"], ["log"]]\n'
        '[resources]\nvcpus = 2.5\nmemory_mib = 3000\n')
    return path


@pytest.mark.parametrize("name", PIPELINES)
def test_streamed_specs_are_the_plain_ones(name: str, dataset: Path, custom: Path,
                                           tmp_path: Path) -> None:
    check_against_the_plain_way(dataset, str(custom) if name == "custom" else name, tmp_path)


def test_without_participants_tsv_too(dataset: Path, custom: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    (copy / "participants.tsv").unlink()
    check_against_the_plain_way(copy, str(custom), tmp_path / "plans")


def check_against_the_plain_way(dataset: Path, name: str, tmp_path: Path) -> None:
    pipe = load_pipeline(name)
    ds = crawl(str(dataset))
    assert {s.session for s in ds.scans} == {None, "1", "2"}  # both shapes in one plan
    plan = make_plan(ds, str(tmp_path / "out"), pipeline=pipe)
    run = plan.write(tmp_path / "run")
    specs = list(plan.specs)
    assert len(specs) == len(plan.specs) > 3
    assert [s.scan_id for s in specs] == plan.info.scans
    # The summary `plan` prints, without making the specs: what they sum to.
    assert plan.input_bytes == sum(s.input_bytes for s in specs)
    assert plan.participant_count == len({s.participant for s in specs})
    table = dataset / "participants.tsv"
    participants = ParticipantsTable.parse(table.read_text()) if table.exists() else None
    scans = {s.id: s for s in ds.scans}
    for spec in specs:
        # The bytes: the fast writer's file, the plain serialiser's text.
        assert run.spec_path(spec.scan_id).read_text(encoding="utf-8") == plain_text(spec)
        # The fields: as the one-spec-at-a-time planner computed them.
        scan = scans[spec.scan_id]
        argv = pipe.argv_for(participant=scan.participant, session=scan.session,
                             scan_id=scan.id)
        inputs = [InputFile.from_object(f)
                  for f in without_excluded(scan.files, pipe.input_excludes)]
        entries = fingerprint(pipeline_hash=pipe.output_hash(), argv=argv,
                              participant=scan.participant, inputs=inputs,
                              description=ds.description, participants=participants)
        assert (spec.argv, spec.inputs, spec.fingerprint) == (argv, inputs, entries)
        assert spec.config_hash == config_hash(entries)
        assert spec.env == dict(sorted(pipe.env.items()))
        assert spec.run_id == plan.run_id and spec.session == scan.session
    # The run id: sha256_of the whole plan, as it was computed in one piece.
    digest = sha256_of({
        "pipeline": pipe.to_dict(), "dataset": ds.uri, "output": plan.info.output,
        "selection": plan.info.selection, "s3": [False, False],
        "scans": [[s.scan_id, s.config_hash, sha256_of([[f.key, f.size, f.etag]
                                                         for f in s.inputs])]
                  for s in specs]})
    assert plan.run_id.endswith("-" + digest[:10])
    if name.endswith("custom.toml"):
        assert not any(f.key.endswith("_T2w.nii.gz") for s in specs for f in s.inputs)
        assert any("lit{eral}" in s.argv for s in specs)
    # The same plan again: the same run, not a byte moved.
    before = {p.name: p.read_bytes() for p in run.specs_dir.iterdir()}
    again = make_plan(crawl(str(dataset)), str(tmp_path / "out"), pipeline=pipe)
    assert again.run_id == plan.run_id and again.specs == plan.specs
    again.write(tmp_path / "run")
    assert {p.name: p.read_bytes() for p in run.specs_dir.iterdir()} == before


def test_a_changed_spec_file_is_rewritten_and_a_stale_one_removed(dataset: Path,
                                                                    tmp_path: Path) -> None:
    plan = make_plan(crawl(str(dataset)), str(tmp_path / "out"), pipeline="demo")
    run = plan.write(tmp_path / "run")
    first = plan.specs[0]
    path = run.spec_path(first.scan_id)
    path.write_text("{}\n")
    (run.specs_dir / "sub-gone.json").write_text("{}\n")  # not listed by run.json: kept
    again = make_plan(crawl(str(dataset)), str(tmp_path / "out"), pipeline="demo")
    again.write(tmp_path / "run")
    assert path.read_text() == plain_text(first)
    assert (run.specs_dir / "sub-gone.json").exists()


def test_item_plans_are_written_as_before(tmp_path: Path) -> None:
    root = tmp_path / "items"
    root.mkdir()
    pipe_file = tmp_path / "ls.toml"
    pipe_file.write_text('name = "ls"\nkind = "items"\nimage = "x"\n'
                         'command = ["ls", "{tile}", "--date", "{date}", "{item}"]\n')
    items = [Item(id=f"tile-{i}", inputs=(ItemInput("tile", f"t/{i}/"),),
                  files=(ObjectInfo(f"t/{i}/a.jp2", 10 + i, f'"e{i}"'),
                         ObjectInfo(f"t/{i}/\u00e9.xml", 3, None)),
                  fields=(("date", f"2019-01-0{i}"),)) for i in range(1, 4)]
    found = ItemSet(root=str(root), name="tiles", items=items)
    from bidsbatch.containers.settings import ContainerSpec

    plan = make_item_plan(found, str(tmp_path / "out"), pipeline=load_pipeline(str(pipe_file)),
                          container=ContainerSpec())
    run = plan.write(tmp_path / "run")
    assert len(plan.specs) == 3
    for spec in plan.specs:
        assert spec.kind == "items"
        assert run.spec_path(spec.scan_id).read_text(encoding="utf-8") == plain_text(spec)


def test_the_writer_matches_to_json_on_odd_and_changing_values() -> None:
    base = Spec(run_id="r", scan_id="sub-01", participant="01", session=None, dataset="/d",
                output="/o", pipeline="p", image="i", argv=["a", "\u00e9\n\"q\""],
                inputs=[InputFile("k", 1, None), InputFile("k2", 2**70, '"etag\\"')],
                resources=Resources(), attempts=1, config_hash="c",
                fingerprint={"b": "2", "a": "1"}, env={"Z": "z", "A": ""})
    from dataclasses import replace

    odd = [
        base,
        replace(base, scan_id="sub-02", argv=[]),  # the shared fields' text reused
        replace(base, resources=Resources(vcpus=float("nan"))),  # json.dumps' NaN
        replace(base, argv=["x", 3, None, True]),  # not all strings
        replace(base, fingerprint={"x": 1}, env={}),  # a value not a string
        replace(base, attempts=True),  # equal to 1, written as true
        replace(base, inputs=[InputFile("k", True, None)]),
        replace(base, kind="items"),
        base,
    ]
    writer = SpecTextWriter()
    for spec in odd:
        assert writer.text(spec) == spec.to_json() == plain_text(spec)


@pytest.mark.parametrize("template", [
    ["a", "{participant}", ["--s", "{session}"], "{bids_dir}/{scan_id}", "}}{{x}}"],
    [["{work_dir}", "{nothing}"], "{n_cpus}{mem_mib}", "{{literal}}", "{unknown}"],
    [["--only-runtime", "{output_dir}"], "plain"],
])
@pytest.mark.parametrize("session", [None, "", "1"])
def test_compiled_commands_render_as_render_template(template: list, session: str | None
                                                     ) -> None:
    values = {"participant": "0{1}", "session": session or "", "scan_id": "sub-01",
              "n_cpus": "2", "mem_mib": "100"}
    assert CompiledCommand.compile(template).render(values) == render_template(template, values)


def test_specs_are_made_when_read(dataset: Path, tmp_path: Path) -> None:
    """The plan keeps no Spec: reading one twice makes two equal objects."""
    plan = make_plan(crawl(str(dataset)), str(tmp_path / "out"), pipeline="demo")
    a, b = plan.specs[-1], plan.specs[len(plan.specs) - 1]
    assert a == b and a is not b
    assert plan.specs[1:3] == list(plan.specs)[1:3]
    with pytest.raises(IndexError):
        plan.specs[len(plan.specs)]
    assert os.fspath(tmp_path)  # the run was never written: nothing to clean


def test_row_digests_are_those_of_the_parsed_table() -> None:
    from bidsbatch.specstream import RowDigests

    text = ("participant_id\tage\tsex\nsub-01\t3\tF\n02\t4\n\t5\nsub-01\t9\tM\n"
            "sub-03\t\t\textra\nsub-\u00e904\t1\tF\n")
    table = ParticipantsTable.parse(text)
    digests = RowDigests(text)
    for label in ["01", "02", "03", "\u00e904", "04", ""]:
        assert digests.hex(label) == sha256_of(table.rows.get(label)), label

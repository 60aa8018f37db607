"""CWL pipelines: the shipped md5sum tool over items, run by a real cwltool.

Without cwltool every item fails with one clear line; ``retry`` with cwltool on
PATH runs them; a second ``run`` finds them done. With podman, cwltool's docker
mode runs the tool in a FROM-scratch busybox image (``--user-space-docker-cmd``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from conftest import REPO

EXAMPLE = REPO / "examples" / "cwl"
SAMPLES = {"NA12878": "@r1\nACGT\n", "NA12891": "@r2\nGGCC\n"}


def _setup(tmp_path: Path, *, image: str | None = None) -> tuple[Path, Path]:
    pipe_dir = tmp_path / "pipe"
    pipe_dir.mkdir()
    tool = (EXAMPLE / "md5sum.cwl").read_text()
    if image:
        tool = tool.replace("docker.io/library/busybox:1.36", image)
    (pipe_dir / "md5sum.cwl").write_text(tool)
    shutil.copy(EXAMPLE / "md5sum.toml", pipe_dir / "md5sum.toml")
    rows = ["id,reads,lane"]
    for name, text in SAMPLES.items():
        (tmp_path / "fastq").mkdir(exist_ok=True)
        (tmp_path / "fastq" / f"{name}.fq").write_text(text)
        rows.append(f"{name},./fastq/{name}.fq,L1")
    listing = tmp_path / "samples.csv"
    listing.write_text("\n".join(rows) + "\n")
    return pipe_dir / "md5sum.toml", listing


def _path_without_cwltool() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if not (Path(p) / "cwltool").exists())


def _check_outputs(out: Path | str, read=lambda key: b"") -> None:  # type: ignore[no-untyped-def]
    for name, text in SAMPLES.items():
        if isinstance(out, Path):
            line = (out / name / "md5sum.txt").read_text()
            marker = json.loads((out / ".bidsbatch" / "done" / f"{name}.json").read_text())
        else:
            line = read(f"{name}/md5sum.txt").decode()
            marker = json.loads(read(f".bidsbatch/done/{name}.json"))
        assert line.split()[0] == hashlib.md5(text.encode()).hexdigest()
        obj = marker["tool_output"]["output_file"]
        assert obj["class"] == "File" and obj["basename"] == "md5sum.txt"
        assert obj["location"] == f"{out}/{name}/md5sum.txt"
        assert "path" not in obj
        assert [o["key"] for o in marker["outputs"]] == [f"{name}/md5sum.txt"]


def test_cwl_tool_over_items_missing_cwltool_then_retry_then_resume(
        cli, cwltool_bin: Path, tmp_path: Path) -> None:
    pipe, listing = _setup(tmp_path)
    out = tmp_path / "out"
    run = ["run", "--items", str(listing), str(out), "--pipeline", str(pipe),
           "--container", "none", "--run-dir", str(tmp_path / "run")]
    plan = cli("plan", *run[1:], "--json")
    assert plan.returncode == 0, plan.output
    spec = json.loads(plan.stdout)["specs"][0]
    assert spec["cwl"]["job"] == {"input_file": {"class": "File",
                                                 "path": "{bids_dir}/NA12878.fq"}}
    assert spec["cwl"]["text"].startswith("#!/usr/bin/env cwl-runner")

    first = cli(*run, env={"PATH": _path_without_cwltool()})
    assert first.returncode == 1, first.output
    failed = json.loads((out / ".bidsbatch" / "failed" / "NA12878.json").read_text())
    assert failed["stage"] == "app" and failed["exit_code"] == 127
    log = (out / ".bidsbatch" / "failed" / "NA12878.log").read_text()
    assert "cwltool is not installed" in log and "bidsbatch[cwl]" in log

    path = f"{cwltool_bin}{os.pathsep}{os.environ['PATH']}"
    retried = cli("retry", str(tmp_path / "run"), env={"PATH": path})
    assert retried.returncode == 0, retried.output
    _check_outputs(out)
    assert not (out / ".bidsbatch" / "failed" / "NA12878.json").exists()

    again = cli(*run, env={"PATH": path})
    assert again.returncode == 0, again.output
    assert "0 scan(s) submitted" in again.output


def test_cwl_tool_in_podman(cli, cwltool_bin: Path, tools_image: str, tmp_path: Path) -> None:
    pipe, listing = _setup(tmp_path, image=tools_image)
    out = tmp_path / "out"
    path = f"{cwltool_bin}{os.pathsep}{os.environ['PATH']}"
    res = cli("run", "--items", str(listing), str(out), "--pipeline", str(pipe),
              "--container", "podman", "--run-dir", str(tmp_path / "run"),
              "--exclude-item", "NA12891", env={"PATH": path})
    assert res.returncode == 0, res.output
    log = (out / ".bidsbatch" / "done" / "NA12878.log").read_text()
    assert "--user-space-docker-cmd podman" in log
    assert (out / "NA12878" / "md5sum.txt").read_text().split()[0] == hashlib.md5(
        SAMPLES["NA12878"].encode()).hexdigest()
    assert not (out / "NA12891").exists()


def test_cwl_tool_on_aws_batch_from_s3_then_resume(cli, aws, s3, cwltool_bin: Path,
                                                    tmp_path: Path) -> None:
    from batch_children import run_children
    from test_awsbatch import Batch

    aws.configure({"batch": {"use_docker": False}})
    batch = Batch(aws)
    s3.create_bucket(Bucket="genomes")
    pipe, _ = _setup(tmp_path)
    listing = tmp_path / "samples.jsonl"
    rows = []
    for name, text in SAMPLES.items():
        s3.put_object(Bucket="genomes", Key=f"fastq/{name}.fq", Body=text.encode())
        rows.append(json.dumps({"id": name, "reads": f"s3://genomes/fastq/{name}.fq"}))
    listing.write_text("\n".join(rows) + "\n")
    run = ["run", "--items", str(listing), "s3://genomes/md5", "--pipeline", str(pipe),
           *batch.flags()]
    sub = cli(*run, "--no-wait", "--json")
    assert sub.returncode == 0, sub.output
    spec = json.loads(sub.stdout)
    assert spec["run_id"]
    # The job is the image: cwltool runs there with --no-container, found on its PATH.
    env = {"PATH": f"{cwltool_bin}{os.pathsep}{os.environ['PATH']}"}
    assert run_children(batch, spec["run_id"], env) == [0, 0]

    def read(key: str) -> bytes:
        return s3.get_object(Bucket="genomes", Key=f"md5/{key}")["Body"].read()

    _check_outputs("s3://genomes/md5", read)
    again = cli(*run, "--no-wait")
    assert again.returncode == 0 and "0 scan(s) submitted" in again.output, again.output

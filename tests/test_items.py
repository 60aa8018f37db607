"""Item sources beyond BIDS: a Sentinel-2 tiles × dates source, a glob, a list file.

The Sentinel-2 bucket is laid out as ``sentinel-s2-l1c`` on the moto server, which
refuses (403) every request to it that does not carry ``x-amz-request-payer``: the
check is at the server, on every List, Head and Get.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import sentinel2_layout as s2
from conftest import REPO

SEN2COR = REPO / "examples" / "sentinel2" / "sen2cor.toml"
JANUARY = ["10SDG-2019-01-10-0", "36NXF-2019-01-05-0", "36NXF-2019-01-15-0",
           "36NXF-2019-01-15-1"]


def _pipeline(tmp_path: Path, image: str = "localhost/none", runtime: str = "none") -> Path:
    text = SEN2COR.read_text().replace('image = "sen2cor:2.11"', f'image = "{image}"')
    text = text.replace('runtime = "podman"', f'runtime = "{runtime}"')
    out = tmp_path / "sen2cor.toml"
    out.write_text(text)
    return out


def _bucket_requests(aws) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return [r for r in aws.requests() if r["path"].lstrip("/").split("/")[0] == s2.BUCKET]


@pytest.fixture
def s2_bucket(s3, aws):  # type: ignore[no-untyped-def]
    objects = s2.write_bucket(s3)
    aws.requester_pays(s2.BUCKET)
    aws.reset_requests()
    return objects


def test_sentinel2_plans_scenes_paying_on_every_request(cli, s2_bucket, aws, s3,
                                                        tmp_path: Path) -> None:
    s3.create_bucket(Bucket="l2a-out")
    args = ["plan", "s3://l2a-out/run", "--pipeline", str(_pipeline(tmp_path)),
            "--tiles", "36NXF,T10SDG", "--dates", "2019-01-01..2019-01-31",
            "--run-dir", str(tmp_path / "run")]
    refused = cli(*args)
    assert refused.returncode == 1, refused.output
    errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Requester Pays" in errors[0], refused.stderr
    assert "hint: pass --requester-pays" in refused.stderr
    assert "Traceback" not in refused.output
    aws.reset_requests()

    res = cli(*args, "--requester-pays", "--json")
    assert res.returncode == 0, res.output
    plan = json.loads(res.stdout)
    specs = {s["scan_id"]: s for s in plan["specs"]}
    assert sorted(specs) == JANUARY
    for tile, day, seq in s2.SCENES:
        spec = specs[f"{tile}-{day.isoformat()}-{seq}"]
        want = sorted(s2.scene_objects(tile, day, seq))
        assert sorted(f["key"] for f in spec["inputs"]) == want
        assert spec["dataset"] == f"s3://{s2.BUCKET}"
        assert spec["requester_pays"] is True
        assert spec["argv"] == [
            "L2A_Process", "{bids_dir}/" + s2.product_prefix(tile, day, seq).rstrip("/"),
            "--resolution=10", "--output_dir", "{output_dir}",
            "--tile", "{bids_dir}/" + s2.tile_prefix(tile, day, seq).rstrip("/")]
    seen = _bucket_requests(aws)
    assert seen and all(r["payer"] == "requester" for r in seen), seen
    # Only the exact prefixes: one listing per tile and month (January is whole), a
    # tileInfo.json and a product listing per scene; never the bucket, never a decoy.
    lists = sorted(parse_qs(r["query"])["prefix"][0] for r in seen if r["method"] == "GET"
                   and "list-type" in r["query"])
    assert lists == sorted(["tiles/10/S/DG/2019/1/", "tiles/36/N/XF/2019/1/"]
                           + [s2.product_prefix(*s) for s in s2.SCENES]), lists
    gets = [r["path"] for r in seen if r["method"] == "GET" and "list-type" not in r["query"]]
    assert len(gets) == len(s2.SCENES) and all(g.endswith("/tileInfo.json") for g in gets)

    # A part of a month is listed day by day; the same plan gives the same specs.
    again = cli("plan", "s3://l2a-out/run", "--pipeline", str(_pipeline(tmp_path)),
                "--tiles", "36NXF", "--dates", "2019-01-14..2019-01-16", "--requester-pays",
                "--item", "36NXF-2019-01-15-1", "--json", "--run-dir", str(tmp_path / "r2"))
    assert again.returncode == 0, again.output
    assert [s["scan_id"] for s in json.loads(again.stdout)["specs"]] == ["36NXF-2019-01-15-1"]
    assert specs["36NXF-2019-01-15-1"]["inputs"] == json.loads(again.stdout)["specs"][0]["inputs"]


def test_items_glob_plans_one_item_per_match_paying(cli, s2_bucket, aws, s3,
                                                    tmp_path: Path) -> None:
    s3.create_bucket(Bucket="glob-out")
    pipe = tmp_path / "ls.toml"
    pipe.write_text('name = "ls"\nkind = "items"\nimage = "x"\n'
                    'command = ["ls", "-R", "{input}", "{output_dir}/{name}.txt"]\n'
                    '[container]\nruntime = "none"\n')
    res = cli("plan", "--items-glob", f"s3://{s2.BUCKET}/products/2019/1/*/*/", "s3://glob-out",
              "--pipeline", str(pipe), "--requester-pays", "--json",
              "--run-dir", str(tmp_path / "run"))
    assert res.returncode == 0, res.output
    plan = json.loads(res.stdout)
    january = [s for s in s2.SCENES + s2.DECOYS if (s[1].year, s[1].month) == (2019, 1)]
    by_id = {s["scan_id"]: s for s in plan["specs"]}
    assert len(by_id) == len(january) == 5
    for tile, day, seq in january:
        name = s2.product_name(tile, day, seq)
        spec = by_id[f"{day.day}_{name}"]
        prefix = s2.product_prefix(tile, day, seq)
        assert spec["dataset"] == f"s3://{s2.BUCKET}/products/2019/1"
        assert sorted(f["key"] for f in spec["inputs"]) == sorted(
            k.removeprefix("products/2019/1/") for k in s2.scene_objects(tile, day, seq)
            if k.startswith(prefix))
        assert spec["argv"][2:] == ["{bids_dir}/" + prefix.removeprefix("products/2019/1/")
                                    .rstrip("/"), f"{{output_dir}}/{name}.txt"]
    seen = _bucket_requests(aws)
    assert seen and all(r["payer"] == "requester" for r in seen)
    # Level by level with the delimiter: the days of January, then each day's products.
    delimited = [r for r in seen if "delimiter" in r["query"]]
    assert len(delimited) == 1 + 3


def test_list_file_runs_items_locally_with_resume_and_retry(cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for sample in ("a", "b", "c"):
        (data / sample).mkdir(parents=True)
        (data / sample / "reads.fq").write_text(f"@{sample}\nACGT\n")
    (data / "ref.fa").write_text(">ref\nACGT\n")
    listing = tmp_path / "samples.tsv"
    listing.write_text("id\treads\treference\tlane\n"
                       "s-a\t./data/a/\t./data/ref.fa\tL1\n"
                       "s-b\t./data/b/reads.fq\t./data/ref.fa\tL2\n"
                       "s-c\t./data/c/\t./data/ref.fa\tL3\n")
    pipe = tmp_path / "copy.toml"
    pipe.write_text('name = "copy"\nkind = "items"\nimage = "x"\n'
                    'command = ["cp", "{reads}", "{output_dir}/{item}-{lane}"]\n'
                    '[retry]\nattempts = 1\n[container]\nruntime = "none"\n')
    out = tmp_path / "out"
    run = ["run", "--items", str(listing), str(out), "--pipeline", str(pipe),
           "--run-dir", str(tmp_path / "run"), "--exclude-item", "s-c"]
    first = cli(*run)
    assert first.returncode == 1, first.output  # s-a's input is a folder: cp fails
    assert (out / "s-b-L2" / "reads.fq").exists() is False
    assert (out / "s-b-L2").read_text() == "@b\nACGT\n"
    assert (out / ".bidsbatch" / "done" / "s-b.json").exists()
    assert (out / ".bidsbatch" / "failed" / "s-a.json").exists()
    # The inputs were staged under the list file's folder, keys kept.
    spec = json.loads((tmp_path / "run" / "specs" / "s-a.json").read_text())
    assert sorted(f["key"] for f in spec["inputs"]) == ["a/reads.fq", "ref.fa"]

    shutil.rmtree(data / "a")
    (data / "a").mkdir()
    (data / "a" / "reads.fq").write_text("@a2\n")
    listing.write_text(listing.read_text().replace("./data/a/\t", "./data/a/reads.fq\t"))
    again = cli(*run)
    assert again.returncode == 0, again.output
    assert (out / "s-a-L1").read_text() == "@a2\n"
    assert not (out / "s-c-L3").exists()
    done_b = (out / ".bidsbatch" / "done" / "s-b.json").read_text()
    assert json.loads(done_b)["attempt"] == 1  # resumed: s-b was not run again


def test_job_role_of_aws_setup_may_read_the_requester_pays_bucket() -> None:
    from bidsbatch.aws import policies

    role = policies.job_role_policy(
        datasets=[policies.S3Prefix.parse(f"s3://{s2.BUCKET}")],
        output=policies.S3Prefix.parse("s3://l2a-out/run"), log_group="arn:aws:logs:*:*:*",
        partition="aws", requester_pays=True)
    arn = f"arn:aws:s3:::{s2.BUCKET}"
    assert policies.evaluate([role], action="s3:ListBucket", resource=arn,
                             context={"s3:prefix": "tiles/36/N/XF/2019/1/"}).allowed
    assert policies.evaluate([role], action="s3:GetObject",
                             resource=f"{arn}/tiles/36/N/XF/2019/1/5/0/B02.jp2").allowed
    assert not policies.evaluate([role], action="s3:PutObject",
                                 resource=f"{arn}/tiles/x").allowed


def _out_keys(s3, bucket: str, prefix: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    found = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            for o in found}


#: The two scenes of 36NXF on 2019-01-15: the second fails its first attempt.
DAY = [s for s in s2.SCENES if s[:2] == ("36NXF", s2.SCENES[1][1])]


def _check_l2a(s3, prefix: str) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    out = _out_keys(s3, "l2a-out", prefix)
    for tile, day, seq in DAY:
        name = s2.product_name(tile, day, seq).replace("MSIL1C", "MSIL2A")
        for band in s2.BANDS:
            body = s2.scene_objects(tile, day, seq)[s2.tile_prefix(tile, day, seq) + band]
            got = out[f"{name}.SAFE/GRANULE/IMG_DATA/R10m/{band[:-4]}_10m.txt"]
            assert got.decode().strip() == hashlib.md5(body).hexdigest()


def test_sentinel2_scenes_run_in_podman_with_retry_and_resume(
        cli, s2_bucket, aws, s3, tools_image: str, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="l2a-out")
    pipe = _pipeline(tmp_path, image=tools_image, runtime="podman")
    pipe.write_text(pipe.read_text().replace("attempts = 3", "attempts = 1"))
    run = ["run", "s3://l2a-out/run", "--pipeline", str(pipe), "--tiles", "36NXF",
           "--dates", "2019-01-15", "--requester-pays", "--run-dir", str(tmp_path / "run")]
    first = cli(*run)
    assert first.returncode == 1, first.output  # the stand-in's transient fault
    done = _out_keys(s3, "l2a-out", "run/.bidsbatch/done/")
    assert sorted(k for k in done if k.endswith(".json")) == ["36NXF-2019-01-15-0.json"]
    retried = cli("retry", str(tmp_path / "run"))
    assert retried.returncode == 0, retried.output
    marker = json.loads(_out_keys(s3, "l2a-out", "run/.bidsbatch/done/")
                        ["36NXF-2019-01-15-1.json"])
    assert marker["attempt"] == 2
    _check_l2a(s3, "run/")
    again = cli(*run)
    assert again.returncode == 0 and "0 scan(s) submitted" in again.output, again.output
    seen = _bucket_requests(aws)
    assert any(r["method"] == "GET" and r["path"].endswith("/B02.jp2") for r in seen)
    assert all(r["payer"] == "requester" for r in seen)


def test_sentinel2_scenes_on_aws_batch_then_resume(cli, s2_bucket, aws, s3,
                                                   tmp_path: Path) -> None:
    from batch_children import run_children
    from test_awsbatch import Batch

    aws.configure({"batch": {"use_docker": False}})
    batch = Batch(aws)
    s3.create_bucket(Bucket="l2a-out")
    # The job is the image: the worker runs L2A_Process as found on its PATH.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "L2A_Process").symlink_to(REPO / "tests" / "sen2cor_standin.sh")
    env = {"PATH": f"{tools}:{os.environ['PATH']}"}
    run = ["run", "s3://l2a-out/batch", "--pipeline", str(_pipeline(tmp_path, image="sen2cor:x")),
           "--tiles", "36NXF", "--dates", "2019-01-14..2019-01-15", "--requester-pays",
           *batch.flags()]
    sub = cli(*run, "--no-wait", "--json")
    assert sub.returncode == 0, sub.output
    run_id = json.loads(sub.stdout)["run_id"]
    assert run_children(batch, run_id, env) == [0, 3]
    # Batch's retry strategy runs the failed child again, as attempt 2.
    assert run_children(batch, run_id, env, attempt=2, only={1}) == [0]
    _check_l2a(s3, "batch/")
    again = cli(*run, "--no-wait")
    assert again.returncode == 0 and "0 scan(s) submitted" in again.output, again.output
    assert all(r["payer"] == "requester" for r in _bucket_requests(aws))

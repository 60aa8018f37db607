"""The container layer: each runtime's command line, the settings, and real podman runs.

The command-line tests need nothing installed. The end-to-end tests run the
installed ``bidsbatch`` CLI with ``--container podman`` on images built by
``containers_fixture`` (no registry), and check what the app saw from inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_KEY_ID, FAKE_SECRET, run_cli
from containers_fixture import Images, Podman

from bidsbatch.containers import make_runtime
from bidsbatch.containers.base import Bind, ContainerRequest, Entrypoint, Limits
from bidsbatch.errors import UsageError
from bidsbatch.pipelines import Pipeline
from bidsbatch.synth import make_dataset


@pytest.fixture(scope="module")
def synth_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """Two subjects, no sessions: one scan each."""
    return make_dataset(tmp_path_factory.mktemp("synth") / "ds", subjects=2, sessions=None,
                        shape=(8, 8, 6), n_volumes=5)


@pytest.fixture(scope="module")
def ses_ds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return make_dataset(tmp_path_factory.mktemp("synth") / "ds", subjects=2,
                        sessions=("1", "2"), shape=(8, 8, 6), n_volumes=5)

REQUEST = ContainerRequest(
    image="me/app:1",
    argv=["app", "/bids", "/out", "participant", "--participant_label", "01"],
    binds=[Bind(Path("/s/bids"), "/bids"), Bind(Path("/s/out"), "/out", read_only=False)],
    env={"OMP_NUM_THREADS": "2", "TMPDIR": "/work/.tmp"}, pass_env={"LICENSE_TOKEN": "s3cret"},
    workdir="/work", limits=Limits(cpus=2, memory_mib=4096), user="1000:1000",
    name="bidsbatch-r-sub-01-1-9",
)


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


# --------------------------------------------------------------------------- command lines


def test_docker_command_line() -> None:
    inv = make_runtime("docker", environ={"PATH": "/bin", "AWS_SECRET_ACCESS_KEY": "x"}
                       ).invocation(REQUEST)
    argv = inv.argv
    assert argv[:3] == ["docker", "run", "--rm"]
    assert _after(argv, "--network") == ["none"] and _after(argv, "--user") == ["1000:1000"]
    assert _after(argv, "--cpus") == ["2"] and _after(argv, "--memory") == ["4096m"]
    assert _after(argv, "-v") == ["/s/bids:/bids:ro", "/s/out:/out"]
    assert _after(argv, "-w") == ["/work"] and _after(argv, "--name") == [REQUEST.name]
    # passed-through variables are named only; their values are in the client's environment
    assert _after(argv, "--env") == ["OMP_NUM_THREADS=2", "TMPDIR=/work/.tmp", "LICENSE_TOKEN"]
    assert "s3cret" not in " ".join(argv) and inv.env["LICENSE_TOKEN"] == "s3cret"
    assert "TMPDIR" not in inv.env and "AWS_SECRET_ACCESS_KEY" not in inv.env
    # replace: the command's first word is the entrypoint, the rest its arguments
    assert _after(argv, "--entrypoint") == ["app"]
    assert argv[-6:] == ["me/app:1", "/bids", "/out", "participant", "--participant_label", "01"]
    assert inv.container == REQUEST.name


def test_keep_entrypoint_passes_arguments_only() -> None:
    from dataclasses import replace

    request = replace(REQUEST, entrypoint=Entrypoint.KEEP, network=True,
                      limits=Limits(cpus=1, memory_mib=512, gpus=1))
    argv = make_runtime("docker", environ={}).invocation(request).argv
    assert "--entrypoint" not in argv and "--network" not in argv
    assert argv[argv.index("me/app:1") + 1:] == REQUEST.argv[1:]  # no "app app …"
    assert _after(argv, "--gpus") == ["1"]


def test_podman_never_pulls_at_run_time_and_gets_gpus_by_cdi() -> None:
    from dataclasses import replace

    argv = make_runtime("podman", environ={}).invocation(
        replace(REQUEST, limits=Limits(gpus=2))).argv
    assert argv[:4] == ["podman", "run", "--rm", "--pull=never"]
    assert _after(argv, "--device") == ["nvidia.com/gpu=all"]


def test_apptainer_command_line(tmp_path: Path) -> None:
    from dataclasses import replace

    rt = make_runtime("apptainer", command=["singularity"], environ={"HOME": "/h"},
                      image_cache=tmp_path)
    inv = rt.invocation(replace(REQUEST, image="/c/x.sif", limits=Limits(gpus=1)))
    argv = inv.argv
    assert argv[:2] == ["singularity", "exec"]
    assert {"--containall", "--cleanenv", "--no-home", "--nv"} <= set(argv)
    assert _after(argv, "-B") == ["/s/bids:/bids:ro", "/s/out:/out"]
    assert _after(argv, "--pwd") == ["/work"]
    assert argv[argv.index("/c/x.sif") + 1:] == REQUEST.argv
    assert inv.env["APPTAINERENV_TMPDIR"] == "/work/.tmp" and "TMPDIR" not in inv.env
    assert inv.env["APPTAINERENV_LICENSE_TOKEN"] == "s3cret"
    kept = rt.invocation(replace(REQUEST, image="/c/x.sif", entrypoint=Entrypoint.KEEP)).argv
    assert kept[1] == "run" and kept[kept.index("/c/x.sif") + 1:] == REQUEST.argv[1:]


def test_no_runtime_runs_the_argv_as_is() -> None:
    inv = make_runtime("none", environ={}).invocation(REQUEST)
    assert inv.argv == REQUEST.argv and inv.env == {**REQUEST.env, **REQUEST.pass_env}


def test_detection_asks_each_runtime(tmp_path: Path) -> None:
    from bidsbatch.containers import detect_runtime

    # A client that is on PATH but cannot run containers is not chosen.
    fails = [sys.executable, "-c", "import sys; print('no daemon', file=sys.stderr); "
             "sys.exit(1)"]
    found, reasons = detect_runtime({"apptainer": fails, "podman": fails, "docker": fails})
    assert found is None
    assert reasons == ["apptainer: no daemon", "podman: no daemon", "docker: no daemon"]


def test_pipeline_container_table() -> None:
    base = {"name": "t", "image": "i:1", "command": ["app", "{participant}"]}
    p = Pipeline.from_dict({**base, "container": {"entrypoint": "keep", "network": True,
                                                  "env": ["LICENSE_SERVER"]},
                            "assets": {"atlas": {"source": "s3://b/a.nii", "target": "/opt/a"}}})
    assert p.container.entrypoint is Entrypoint.KEEP and p.container.network
    assert p.container.assets[0].target == "/opt/a"
    assert p.output_hash() == Pipeline.from_dict(base).output_hash()
    for bad, message in (({"container": {"entrypoint": "x"}}, "container.entrypoint"),
                         ({"container": {"runtime": "lxc"}}, "container.runtime"),
                         ({"container": {"env": ["AWS_SECRET_ACCESS_KEY"]}}, "refusing"),
                         ({"assets": {"a": {"source": "x", "target": "rel"}}}, "absolute")):
        with pytest.raises(UsageError, match=message):
            Pipeline.from_dict({**base, **bad})


# --------------------------------------------------------------------------- plan


def test_fmriprep_without_a_license_is_one_line_at_plan_time(synth_ds: Path,
                                                             tmp_path: Path) -> None:
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", "fmriprep",
                  "--container", "podman")
    assert res.returncode == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert errors == ["error: pipeline fmriprep needs a FreeSurfer license: none given"]
    assert "--fs-license-file" in res.stderr and "Traceback" not in res.output
    assert run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", "m2g",
                   "--container", "none").returncode == 2

    lic = tmp_path / "license.txt"
    lic.write_text("me@example.org\n12345\n")
    ok = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", "fmriprep",
                 "--container", "podman", "--fs-license-file", str(lic), "--json")
    assert ok.returncode == 0, ok.output
    spec = json.loads(ok.stdout)["specs"][0]
    assert spec["container"]["runtime"] == "podman"
    assert spec["container"]["entrypoint"] == "keep"
    assert {"source": str(lic), "target": "/opt/freesurfer/license.txt"} in \
        spec["container"]["binds"]


def test_license_from_the_user_config(synth_ds: Path, tmp_path: Path) -> None:
    lic = tmp_path / "license.txt"
    lic.write_text("x\n")
    config = Path(os.environ["BIDSBATCH_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        f'[container]\nruntime = "docker"\nfs_license_file = "{lic}"\n')
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", "fmriprep",
                  "--json")
    assert res.returncode == 0, res.output
    spec = json.loads(res.stdout)["specs"][0]
    assert spec["container"]["runtime"] == "docker"
    assert spec["container"]["variables"]["FS_LICENSE"] == "/opt/freesurfer/license.txt"


def test_demo_preset_runs_without_a_container(synth_ds: Path, tmp_path: Path) -> None:
    res = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--json")
    assert json.loads(res.stdout)["specs"][0]["container"]["runtime"] == "none"


# --------------------------------------------------------------------------- real podman


def _pipeline(tmp_path: Path, image: str, command: list[str], *, entrypoint: str = "keep",
              extra: str = "", name: str = "ctr", group: list[str] | None = None) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nimage = "{image}"\ncommand = {json.dumps(command)}\n'
                    f'[resources]\nvcpus = 1\nmemory_mib = 256\ntimeout_minutes = 5\n'
                    f'[retry]\nattempts = 1\n'
                    + (f'[group]\ncommand = {json.dumps(group)}\n' if group else "")
                    + f'[container]\nentrypoint = "{entrypoint}"\n{extra}')
    return path


FAKEAPP = ["fakeapp", "{bids_dir}", "{output_dir}", "participant", "--participant_label",
           "{participant}"]


def _leftover_containers(podman: Podman) -> list[str]:
    out = podman.run("ps", "-a", "--format", "{{.Names}}").stdout.decode()
    return [n for n in out.split() if n.startswith("bidsbatch-")]


def test_scans_run_in_podman_with_the_contract(images: Images, synth_ds: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    pipe = _pipeline(tmp_path, images.busybox, FAKEAPP,
                     group=["fakeapp", "{bids_dir}", "{output_dir}", "group"])
    env = {"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    res = run_cli("run", str(synth_ds), str(out), "--pipeline", str(pipe), "-p", "01,02",
                  "--container", "podman", env=env)
    assert res.returncode == 0, res.output
    assert f"image: podman {images.busybox}" in res.stderr
    # the group step ran in the same image, the dataset read-only, the output writable
    assert (out / "group.txt").read_text().split() == [
        "bids=read-only", "cwd=/work", "tmpdir=/work/.tmp", "subjects=2"]
    for label in ("01", "02"):
        report = dict(line.split("=", 1) for line in
                      (out / f"sub-{label}/report.txt").read_text().splitlines())
        assert report["uid"] == f"{os.getuid()} gid={os.getgid()}"
        assert report["bids"] == "read-only"
        assert report["net"].split() == ["lo"]  # --network none: loopback only
        assert report["tmpdir"] == "/work/.tmp" and report["tmp"] == "writable"
        assert report["cwd"] == "/work"
        inputs = (out / f"sub-{label}/inputs.txt").read_text().split()
        assert inputs and all(p.startswith(f"/bids/sub-{label}/") or p.count("/") == 2
                              for p in inputs)
        names = {ln.split("=", 1)[0]: ln.split("=", 1)[1] for ln in
                 (out / f"sub-{label}/env.txt").read_text().splitlines() if "=" in ln}
        assert names["BIDSBATCH_BIDS_DIR"] == "/bids" and names["OMP_NUM_THREADS"] == "1"
        assert not [n for n in names if n.startswith("AWS_")]
        text = (out / f"sub-{label}/env.txt").read_text()
        assert FAKE_KEY_ID not in text and FAKE_SECRET not in text
        # only the contract's variables (and what the image itself sets), not the worker's
        assert "VIRTUAL_ENV" not in names and "BIDSBATCH_HOME" not in names
    for path in out.rglob("*"):
        assert path.stat().st_uid == os.getuid()
    assert _leftover_containers(images.podman) == []


def test_outputs_of_another_container_user(images: Images, synth_ds: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    pipe = _pipeline(tmp_path, images.busybox, FAKEAPP)
    res = run_cli("run", str(synth_ds), str(out), "--pipeline", str(pipe), "-p", "01",
                  "--container", "podman", "--container-user", "1234:1234")
    assert res.returncode == 0, res.output  # its folders were made for that user
    sessions = sorted(out.glob("sub-01/report.txt"))
    assert sessions and "uid=1234 gid=1234" in sessions[0].read_text()
    assert all(p.stat().st_uid == os.getuid() for p in out.rglob("*"))


def test_demo_app_runs_in_a_debian_container(demo_image: str, ses_ds: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = ["bidsbatch-demo-app", "{bids_dir}", "{output_dir}", "participant",
               "--participant_label", "{participant}", ["--session_label", "{session}"]]
    path = _pipeline(tmp_path, demo_image, [], name="democtr")
    text = path.read_text().replace("command = []", "command = " + json.dumps(command))
    path.write_text(text)
    res = run_cli("run", str(ses_ds), str(out), "--pipeline", str(path), "-p", "01",
                  "--container", "podman", "--json")
    assert res.returncode == 0, res.output
    status = json.loads(res.stdout)
    assert status["counts"]["succeeded"] == 2
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")
                     if ".bidsbatch" not in p.parts)
    assert any(w.startswith("sub-01/ses-1/") for w in written), written
    log = run_cli("logs", status["run_id"], "sub-01_ses-1").stdout
    assert "podman run --rm --pull=never" in log and "--network none" in log
    assert "--memory 256m" in log
    # The app is conmon's child, not the worker's: its usage is read from its cgroup.
    usage = json.loads((out / ".bidsbatch/done/sub-01_ses-1.json").read_text())["usage"]
    assert usage["measured"].startswith("the container's cgroup (podman"), usage
    assert 10 < usage["peak_memory_mib"] <= 256 and usage["cpu_seconds"] > 0


def test_memory_limit_is_enforced(demo_image: str, synth_ds: Path, tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, demo_image,
                     ["python3", "-c", "b = bytearray(600 * 1024 * 1024); print('{participant}')"],
                     entrypoint="replace")
    res = run_cli("run", str(synth_ds), str(tmp_path / "out"), "--pipeline", str(pipe),
                  "-p", "01", "--container", "podman", "--json")
    assert res.returncode == 1, res.output
    scans = json.loads(res.stdout)["scans"]
    assert {s["exit_code"] for s in scans} == {137}  # SIGKILL by the OOM killer


def test_a_stopped_worker_leaves_no_container(images: Images, synth_ds: Path,
                                              tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, images.busybox, FAKEAPP, extra='env = ["APP_SLEEP"]\n')
    plan = run_cli("plan", str(synth_ds), str(tmp_path / "out"), "--pipeline", str(pipe),
                   "-p", "01", "--container", "podman", "--json")
    spec = json.loads(plan.stdout)["specs"][0]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    res = run_cli("worker", "--spec", str(spec_path), "--timeout", "0.05",
                  env={"APP_SLEEP": "120"})
    assert res.returncode == 124, res.output
    assert _leftover_containers(images.podman) == []

    # SIGTERM to the worker (a cancel): the app's container goes with it.
    proc = subprocess.Popen([str(Path(sys.executable).parent / "bidsbatch"), "worker",
                             "--spec", str(spec_path), "--force"],
                            env={**os.environ, "APP_SLEEP": "120"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not _leftover_containers(images.podman) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftover_containers(images.podman), "the container never started"
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert _leftover_containers(images.podman) == []


def test_missing_image_is_one_error_before_any_scan(podman: Podman, synth_ds: Path,
                                                    tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, "localhost/bidsbatch-no-such-image:1", FAKEAPP)
    res = run_cli("run", str(synth_ds), str(tmp_path / "out"), "--pipeline", str(pipe),
                  "--container", "podman")
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "podman cannot pull localhost/bidsbatch-no-such-image:1" \
        in errors[0], res.stderr
    assert "submitted" not in res.stderr


def test_image_pull_says_what_it_will_use(images: Images, tmp_path: Path) -> None:
    pipe = _pipeline(tmp_path, images.busybox, FAKEAPP)
    res = run_cli("image", "pull", str(pipe), "--container", "podman")
    assert res.returncode == 0, res.output
    assert res.stdout.startswith(f"image: podman {images.busybox}") and "found" in res.stdout


# --------------------------------------------------------------------------- real Apptainer


def test_scans_run_in_apptainer_from_a_sif_built_once(apptainer: list[str], images: Images,
                                                      synth_ds: Path, tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    images.podman.run("save", "--format", "docker-archive", "-o", str(archive), images.busybox)
    cache = tmp_path / "sif"
    config = Path(os.environ["BIDSBATCH_CONFIG_DIR"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        f'[container]\nimage_cache = "{cache}"\n'
        f"[container.commands]\napptainer = {json.dumps(apptainer)}\n")
    pipe = _pipeline(tmp_path, f"docker-archive:{archive}", FAKEAPP)

    first = run_cli("image", "pull", str(pipe), "--container", "apptainer")
    assert first.returncode == 0, first.output
    assert first.stdout.startswith("image: apptainer docker-archive:") and "built" in first.stdout
    again = run_cli("image", "pull", str(pipe), "--container", "apptainer")
    assert again.returncode == 0 and "cached" in again.stdout
    sifs = sorted(cache.glob("*.sif"))
    assert len(sifs) == 1 and sifs[0].name.startswith("sha256-")

    out = tmp_path / "out"
    env = {"AWS_ACCESS_KEY_ID": FAKE_KEY_ID, "AWS_SECRET_ACCESS_KEY": FAKE_SECRET}
    res = run_cli("run", str(synth_ds), str(out), "--pipeline", str(pipe), "--container",
                  "apptainer", env=env, timeout=600)
    assert res.returncode == 0, res.output
    assert sorted(cache.glob("*.sif")) == sifs  # every scan ran the one SIF
    for label in ("01", "02"):
        report = dict(line.split("=", 1) for line in
                      (out / f"sub-{label}/report.txt").read_text().splitlines())
        assert report["bids"] == "read-only"
        assert report["tmpdir"] == "/work/.tmp" and report["tmp"] == "writable"
        assert report["cwd"] == "/work"
        text = (out / f"sub-{label}/env.txt").read_text()
        assert FAKE_KEY_ID not in text and FAKE_SECRET not in text and "AWS_" not in text
        assert "BIDSBATCH_BIDS_DIR=/bids" in text

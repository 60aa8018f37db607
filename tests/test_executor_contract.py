"""ONE contract every executor passes, through the CLI as a user would run it.

The same test bodies run on every engine: the fake one (in process), the local
one (a detached supervisor), AWS Batch on a real moto server, and a toy engine
that a plugin adds with one module and one entry point (the registry line of a
distribution that is not ours). Each engine gets a small harness that says how
to reach it and how to make it misbehave; the assertions are shared.

moto's Batch runs no container: its jobs succeed (or fail) at once. The Batch
harness therefore runs each child's submitted command here, with the
variables a Batch child gets (``AWS_BATCH_JOB_ARRAY_INDEX``…), so that the
worker really stages in, runs the demo app, stages out and commits, as it
would in the job. What moto cannot model (some children of one array failing
and not others) is skipped for Batch with the reason, and tested where it can
be in ``test_awsbatch.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import BIN, run_cli, unique_bucket, upload_tree

from bidsbatch.synth import make_dataset

ENGINES = ["fake", "local", "aws-batch", "slurm", "toy"]
SCANS = ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1", "sub-02_ses-2"]
FAILING = ["sub-02_ses-1", "sub-02_ses-2"]


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds", subjects=2, sessions=("1", "2"),
                        shape=(8, 8, 6), n_volumes=5)


# --------------------------------------------------------------------------- the toy plugin

TOY_MODULE = '''
"""A toy executor from another distribution: it runs every scan at submission."""
from dataclasses import dataclass

from bidsbatch.executors import Executor, ExecutorSettings, option
from bidsbatch.executors.registry import Engine
from bidsbatch.states import ACTIVE, GroupState, ScanState


@dataclass(frozen=True)
class ToySettings(ExecutorSettings):
    toy_greeting: str = option("hello", help="Toy executor: what each job says first.")


class ToyExecutor(Executor):
    name = "toy"
    settings_type = ToySettings

    def submit(self, run, specs, ledger, *, force):
        import os

        from bidsbatch.executors.base import with_own_bin_on_path
        from bidsbatch.worker import WorkerOptions, run_worker

        os.environ.update(with_own_bin_on_path(os.environ))  # this machine runs the apps

        for spec in specs:
            attempt = ledger.start_attempt(spec.scan_id, job_id=f"toy-{spec.scan_id}")
            path = run.log_path(spec.scan_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as fh:
                fh.write(self.settings.toy_greeting + "\\n")
                code = run_worker(run.spec(spec.scan_id), stream=fh,
                                  options=WorkerOptions(attempt=attempt, force=force))
            ledger.finish_attempt(spec.scan_id, exit_code=code,
                                  state=ScanState.SUCCEEDED if code == 0 else ScanState.FAILED,
                                  reason=None if code == 0 else f"exit {code}")
        if ledger.group().state == GroupState.SUBMITTED and not ledger.scans(
                states=(ScanState.FAILED,)):
            from bidsbatch.group import run_group_step
            from bidsbatch.worker import WorkerLog

            with open(run.logs_dir / "group.log", "a") as fh:
                code = run_group_step(str(run.path), log=WorkerLog(fh))
            ledger.set_group(GroupState.SUCCEEDED if code == 0 else GroupState.FAILED)
        elif ledger.group().state == GroupState.SUBMITTED:
            ledger.set_group(GroupState.SKIPPED, reason="some scans did not succeed")

    def poll(self, run, ledger):
        pass

    def cancel(self, run, ledger):
        left = [r.scan_id for r in ledger.scans(states=(*ACTIVE, ScanState.PLANNED))]
        ledger.update_many(left, state=ScanState.CANCELLED, reason="cancelled")

    def logs(self, run, scan_id, *, follow=False):
        yield from run.log_path(scan_id).read_text().splitlines()


ENGINE = Engine(name="toy", description="a toy from a plugin", settings=ToySettings,
                executor="toy_executor:ToyExecutor")
'''


@pytest.fixture(scope="session")
def toy_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for PYTHONPATH holding a plugin distribution: one module, one entry point."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "toy_executor.py").write_text(textwrap.dedent(TOY_MODULE))
    info = root / "toy_executor-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-executor\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bidsbatch.executors]\ntoy = toy_executor\n")
    return root


# --------------------------------------------------------------------------- harnesses


class Harness:
    """How the contract reaches one engine. Subclasses override what differs."""

    name = ""
    #: What this engine cannot show (a reason), by contract test.
    cannot: ClassVar[dict[str, str]] = {}

    def __init__(self, ds: Path, tmp: Path) -> None:
        self.ds, self.tmp = ds, tmp
        self.env: dict[str, str] = {}

    def places(self) -> tuple[str, str]:
        """(dataset, output) for a new run."""
        return str(self.ds), str(self.tmp / f"out-{time.monotonic_ns()}")

    def flags(self) -> list[str]:
        return ["--executor", self.name]

    def failing(self) -> tuple[list[str], dict[str, str]]:
        """Flags and environment that make the scans of FAILING fail."""
        return [], {"BIDSBATCH_DEMO_FAIL": "02"}

    def slow(self) -> tuple[list[str], dict[str, str]]:
        """Flags and environment under which submitted scans are still active a while."""
        return [], {"BIDSBATCH_DEMO_SLEEP": "60"}

    def settle(self, run_id: str, env: dict[str, str]) -> None:
        """Let the engine do the run's work (poll, wait, or play the engine's part)."""
        res = cli("status", run_id, "--watch", "--json", env={**self.env, **env})
        assert res.returncode in (0, 1), res.stderr

    def marker(self, output: str, scan: str) -> dict[str, Any] | None:
        path = Path(output) / ".bidsbatch/done" / f"{scan}.json"
        return json.loads(path.read_text()) if path.exists() else None


class FakeHarness(Harness):
    name = "fake"

    def failing(self) -> tuple[list[str], dict[str, str]]:
        return ["--fake-fail", "sub-02_*"], {}

    def slow(self) -> tuple[list[str], dict[str, str]]:
        return [], {}  # nothing runs until polled


class LocalHarness(Harness):
    name = "local"


class ToyHarness(Harness):
    name = "toy"
    cannot: ClassVar[dict[str, str]] = {
        "cancel": "the toy runs every scan at submission: nothing is left to cancel"}

    def __init__(self, ds: Path, tmp: Path, plugin: Path) -> None:
        super().__init__(ds, tmp)
        self.env = {"PYTHONPATH": str(plugin)}


class BatchHarness(Harness):
    name = "aws-batch"
    cannot: ClassVar[dict[str, str]] = {
        "retry": "moto fails every child of an array or none (MOTO_SIMPLE_BATCH_FAIL_"
                 "AFTER is read by the server process): test_awsbatch.py covers retry",
        "cancel": "jobs on this server succeed at once; test_awsbatch.py cancels "
                  "queued jobs on a server that holds them"}

    def __init__(self, ds: Path, tmp: Path, batch: Any) -> None:
        super().__init__(ds, tmp)
        self.batch = batch
        self.bucket = unique_bucket()
        upload_tree(batch.s3, ds, self.bucket, "bids/ds")

    def places(self) -> tuple[str, str]:
        return (f"s3://{self.bucket}/bids/ds",
                f"s3://{self.bucket}/out-{time.monotonic_ns()}")

    def flags(self) -> list[str]:
        return self.batch.flags()

    def settle(self, run_id: str, env: dict[str, str]) -> None:
        """Play the part of Batch's compute: run each new job's command, as its child would."""
        from bidsbatch.ledger import Ledger
        from bidsbatch.runs import runs_root

        with Ledger.open(runs_root() / run_id / "ledger.sqlite") as ledger:
            jobs = ledger.jobs()
        done = self.__dict__.setdefault("ran", set())
        described = {j["jobId"]: j for j in self.batch.batch.describe_jobs(
            jobs=[j.job_id for j in jobs if j.job_id not in done])["jobs"]} if jobs else {}
        child_env = {**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                     "AWS_BATCH_JOB_ATTEMPT": "1"}
        for job in sorted(jobs, key=lambda j: j.kind != "array"):  # the group step last
            if job.job_id in done:
                continue
            done.add(job.job_id)
            command = described[job.job_id]["container"]["command"]
            indexes = range(len(job.scans)) if job.kind == "array" else [None]
            for i in indexes:
                extra = {} if i is None else {"AWS_BATCH_JOB_ARRAY_INDEX": str(i),
                                              "AWS_BATCH_JOB_ID": f"{job.job_id}:{i}"}
                proc = subprocess.run([str(BIN / "bidsbatch"), *command[1:]],
                                      env={**child_env, **extra}, capture_output=True,
                                      text=True, timeout=120)
                assert proc.returncode == 0, proc.stdout + proc.stderr

    def marker(self, output: str, scan: str) -> dict[str, Any] | None:
        bucket, _, prefix = output[len("s3://"):].partition("/")
        try:
            body = self.batch.s3.get_object(Bucket=bucket,
                                            Key=f"{prefix}/.bidsbatch/done/{scan}.json")
        except self.batch.s3.exceptions.NoSuchKey:
            return None
        return json.loads(body["Body"].read())


class SlurmHarness(Harness):
    """A real one-node Slurm cluster on 127.0.0.1 (``slurm_cluster.py``), no accounting."""

    name = "slurm"

    def __init__(self, ds: Path, tmp: Path, cluster: Any) -> None:
        super().__init__(ds, tmp)
        self.env = dict(cluster.env)

    def flags(self) -> list[str]:
        return ["--executor", "slurm", "--slurm-poll-seconds", "1"]


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(*args, env=env)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, ds: Path, tmp_path: Path,
           toy_plugin: Path) -> Iterator[Harness]:
    name = request.param
    if name == "fake":
        yield FakeHarness(ds, tmp_path)
    elif name == "local":
        yield LocalHarness(ds, tmp_path)
    elif name == "toy":
        yield ToyHarness(ds, tmp_path, toy_plugin)
    elif name == "slurm":
        yield SlurmHarness(ds, tmp_path, request.getfixturevalue("slurm"))
    else:
        from test_awsbatch import Batch

        aws = request.getfixturevalue("aws")
        aws.configure({"batch": {"use_docker": False}})
        yield BatchHarness(ds, tmp_path, Batch(aws))


def _skip_unless(h: Harness, test: str) -> None:
    if test in h.cannot:
        pytest.skip(f"{h.name}: {h.cannot[test]}")


def _status(h: Harness, run_id: str) -> dict[str, Any]:
    res = cli("status", run_id, "--json", env=h.env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _states(status: dict[str, Any]) -> dict[str, str]:
    return {s["scan_id"]: s["state"] for s in status["scans"]}


def _submit(h: Harness, dataset: str, output: str, *extra: str,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    res = cli("run", "--pipeline", "demo", dataset, output, *h.flags(), *extra, "--no-wait",
              "--json",
              env={**h.env, **(env or {})})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# --------------------------------------------------------------------------- the contract


def test_runs_every_scan_skips_done_ones_and_runs_the_group_step(engine: Harness) -> None:
    h = engine
    dataset, output = h.places()
    sub = _submit(h, dataset, output)
    assert sorted(sub["submitted"]) == SCANS and sub["skipped"] == []
    h.settle(sub["run_id"], {})
    status = _status(h, sub["run_id"])
    assert _states(status) == dict.fromkeys(SCANS, "succeeded")
    assert status["group_state"] == "succeeded"
    for scan in SCANS:
        marker = h.marker(output, scan)
        assert marker is not None and marker["exit_code"] == 0 and marker["outputs"], scan
    # the same command again: every scan is done, nothing is submitted
    again = _submit(h, dataset, output)
    assert again["submitted"] == [] and sorted(again["skipped"]) == SCANS


def test_status_and_logs_of_a_scan(engine: Harness) -> None:
    h = engine
    dataset, output = h.places()
    sub = _submit(h, dataset, output, "-p", "01")
    h.settle(sub["run_id"], {})
    table = cli("status", sub["run_id"], env=h.env)
    assert table.returncode == 0, table.stderr
    assert "sub-01_ses-1" in table.stderr and "succeeded 2" in table.stderr
    logs = cli("logs", sub["run_id"], "sub-01_ses-2", env=h.env)
    assert logs.returncode == 0, logs.stderr
    assert "scan sub-01_ses-2 of run" in logs.stdout and "[app]" in logs.stdout
    unknown = cli("logs", sub["run_id"], "sub-09", env=h.env)
    assert unknown.returncode == 2 and "has no scan sub-09" in unknown.stderr


def test_failed_scans_then_retry_runs_only_those(engine: Harness) -> None:
    h = engine
    _skip_unless(h, "retry")
    dataset, output = h.places()
    flags, env = h.failing()
    sub = _submit(h, dataset, output, *flags, env=env)
    h.settle(sub["run_id"], env)
    status = _status(h, sub["run_id"])
    states = _states(status)
    assert {s for s, v in states.items() if v == "failed"} == set(FAILING)
    assert {s for s, v in states.items() if v == "succeeded"} == set(SCANS) - set(FAILING)
    assert status["group_state"] == "skipped"
    assert all(h.marker(output, s) is None for s in FAILING)
    # retry without the fault: only the failed scans run again
    retry_flags = ["--fake-fail", ""] if h.name == "fake" else []
    res = cli("retry", sub["run_id"], *retry_flags, env=h.env)
    assert res.returncode == 0, res.stderr
    assert f"retrying {len(FAILING)} scan(s): {', '.join(FAILING)}" in res.stderr
    after = _status(h, sub["run_id"])
    attempts = {s["scan_id"]: s["attempts"] for s in after["scans"]}
    assert attempts == {s: 2 if s in FAILING else 1 for s in SCANS}
    assert set(_states(after).values()) == {"succeeded"}
    assert after["group_state"] == "succeeded"
    assert cli("retry", sub["run_id"], env=h.env).stderr.startswith("nothing to retry")


def test_cancel_stops_what_is_queued_or_running(engine: Harness) -> None:
    h = engine
    _skip_unless(h, "cancel")
    dataset, output = h.places()
    flags, env = h.slow()
    sub = _submit(h, dataset, output, *flags, "--jobs", "1", env=env) if h.name == "local" \
        else _submit(h, dataset, output, *flags, env=env)
    res = cli("cancel", sub["run_id"], env=h.env)
    assert res.returncode == 0, res.stderr
    status = _status(h, sub["run_id"])
    assert set(_states(status).values()) == {"cancelled"}
    assert status["group_state"] == "cancelled"
    assert all(h.marker(output, s) is None for s in SCANS)


def test_a_job_the_engine_lost_is_failed_not_running_forever(ds: Path, tmp_path: Path) -> None:
    """Active in the ledger, unknown to the engine, no marker: failed, with the reason.

    The fake engine is the one that can be told to lose jobs; the rule it exercises is
    what every engine's poll does with a job that vanished.
    """
    out = tmp_path / "out"
    res = cli("run", "--pipeline", "demo", str(ds), str(out), "--executor", "fake", "--fake-lose",
              "sub-01_ses-1",
              "--json")
    assert res.returncode == 1, res.stderr
    status = json.loads(res.stdout)
    states = _states(status)
    assert states.pop("sub-01_ses-1") == "failed"
    assert set(states.values()) == {"succeeded"}
    lost = next(s for s in status["scans"] if s["scan_id"] == "sub-01_ses-1")
    assert lost["reason"] == "the engine lost this job (no job, no marker)"
    assert not (out / ".bidsbatch/done/sub-01_ses-1.json").exists()


def test_options_of_another_executor_are_refused(ds: Path, tmp_path: Path) -> None:
    res = cli("run", "--pipeline", "demo", str(ds), str(tmp_path / "out"), "--job-queue", "q")
    assert res.returncode == 2
    assert "--job-queue is an option of the aws-batch executor, not of local" in res.stderr


# --------------------------------------------------------------------------- the registry


def test_a_plugin_executor_is_one_module_and_one_entry_point(toy_plugin: Path,
                                                            ds: Path, tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(toy_plugin)}
    helptext = cli("run", "--help", env=env)
    assert helptext.returncode == 0
    assert "--toy-greeting" in helptext.stdout and "toy: a toy from a plugin" in helptext.stdout
    plain = cli("run", "--help")
    assert "--toy-greeting" not in plain.stdout  # not installed: not there
    out = tmp_path / "out"
    res = cli("run", "--pipeline", "demo", str(ds), str(out), "--executor", "toy",
              "--toy-greeting", "bonjour",
              "-p", "01", "--json", env=env)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["counts"]["succeeded"] == 2
    logs = cli("logs", status["run_id"], "sub-01_ses-1", env=env)
    assert logs.stdout.splitlines()[0] == "bonjour"
    unknown = cli("run", "--pipeline", "demo", str(ds), str(out), "--executor", "nope")
    assert unknown.returncode == 2 and "unknown executor 'nope'" in unknown.stderr
    assert "choose one of: local, aws-batch, slurm, fake" in unknown.stderr


def test_no_executor_name_is_compared_outside_its_package() -> None:
    """Shared code asks executors through hooks; engine names live in the registry only.

    Every string constant in the code (docstrings aside) outside an engine's own
    package and the registry is checked.
    """
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "bidsbatch"
    names = {"aws-batch", "local", "slurm", "fake"}
    offenders = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).as_posix()
        if rel.startswith(("executors/local/", "executors/awsbatch/", "executors/slurm/",
                           "executors/fake.py", "executors/registry.py")):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef
                                    | ast.AsyncFunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr)
                      and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names \
                    and id(node) not in docstrings:
                offenders.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert offenders == [], "\n".join(offenders)


def test_no_import_circle_and_nothing_imports_the_cli() -> None:
    """Imports run one way. Module-level imports form no circle (imports inside a
    function, made when it is called, and those only for type checkers are not
    counted); no module outside ``cli/`` imports the CLI, not even inside a function
    (the local worker is forked without it)."""
    import ast

    src = Path(__file__).resolve().parents[1] / "src" / "bidsbatch"
    modules = {}
    for path in src.rglob("*.py"):
        name = ".".join(("bidsbatch", *path.relative_to(src).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path

    def package(mod: str) -> str:
        return mod if modules[mod].name == "__init__.py" else mod.rpartition(".")[0]

    def targets(mod: str, node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names}
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            parts = package(mod).split(".")
            base = ".".join(parts[:len(parts) - node.level + 1])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
        return subs or {base}

    def top_level(tree: ast.Module) -> list[ast.AST]:
        out = []
        for stmt in tree.body:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                out.append(stmt)
            elif isinstance(stmt, ast.Try):
                out += [s for s in stmt.body if isinstance(s, ast.Import | ast.ImportFrom)]
        return out

    graph: dict[str, set[str]] = {}
    cli_users = []
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        every = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        if not mod.startswith("bidsbatch.cli") and any(
                t.startswith("bidsbatch.cli") for n in every for t in targets(mod, n)):
            cli_users.append(mod)
        deps = {t for n in top_level(tree) for t in targets(mod, n)}
        # A module's own packages are imported before it: not a dependency of its own.
        graph[mod] = {d for d in deps & modules.keys()
                      if d != mod and not mod.startswith(d + ".")}
    circles = set()
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            d = todo.pop()
            if d == start:
                circles.add(start)
                break
            if d not in seen:
                seen.add(d)
                todo += graph[d]
    assert cli_users == [] and sorted(circles) == []

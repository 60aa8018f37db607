"""The m2g, fMRIPrep and MRIQC presets against the apps' own command-line parsers.

For each preset the argv of a scan with a session and of a scan without one (and
the group step, where there is one) goes through the app's parser, and the parsed
values must be the participant, session, directories and resources we meant.

* fMRIPrep and MRIQC: the REAL parser, ``<app>.cli.parser._build_parser()`` from
  the app's own wheel, at the version of the preset's image tag. Only the app's
  wheel (and niworkflows' for fMRIPrep) is downloaded, with ``pip download
  --no-deps``, and unpacked into a cache; the parser's few imports that are not
  the app's own (nipype, templateflow, pybids) come from the test extras. The
  parser runs in a subprocess: importing ``fmriprep.config`` sets the
  multiprocessing start method and environment variables for the whole process.
* m2g: the image is built from m2g's git repository (branch ``deploy``), not
  from PyPI, whose m2g 0.3.0 (February 2020) predates the functional pipeline
  and has no ``--pipeline``, ``--n_cpus`` or ``--mem_gb``. So the test fetches
  ``m2g/scripts/m2g_bids.py`` at pinned commits (sha256 checked) and rebuilds the
  parser from the ``ArgumentParser(...)`` and ``add_argument(...)`` calls of
  its ``main()``: the same argparse declarations, without m2g's heavy imports.

Downloads are cached in ``~/.cache/bidsbatch-test`` (or ``$BIDSBATCH_TEST_CACHE``).
Without network access the tests skip, except in CI (``CI=true``) where they fail.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from bidsbatch.pipelines import Pipeline, fill_runtime, load_pipeline

# Read at import: the autouse fixture in conftest.py clears BIDSBATCH_* variables.
CACHE = Path(
    os.environ.get("BIDSBATCH_TEST_CACHE") or Path.home() / ".cache" / "bidsbatch-test"
)
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

#: Files the presets expect inside the image; the test stands in a temporary file.
IMAGE_FILES = {"/opt/freesurfer/license.txt": "freesurfer-license.txt"}

#: fMRIPrep's parser imports ``niworkflows.utils.spaces``. fMRIPrep 25.2.7 takes
#: niworkflows >=1.14.5,<1.16; 1.15 needs Python 3.12, so the oldest one it accepts.
#: Only this wheel, without dependencies.
NIWORKFLOWS = "niworkflows==1.14.5"

#: m2g_bids.py at git tag v0.3.0 and at the head of ``deploy``, which the
#: ``neurodata/m2g`` image clones when it is built.
M2G_SOURCES = {
    "v0.3.0": ("3bc4e9a2430c6b50941770f411f4c279a98f3026",
               "29ac6bb39b127776501b3bb5d34f5102dfc5243afd56b506a5b928d09329174e"),
    "deploy": ("95d271f748e7d35b8d7feaa1b0112f471be8e514",
               "88b59482c439ed600287c23729654c634519b7abe975554b0e485f6743460fc1"),
}
M2G_URL = "https://raw.githubusercontent.com/neurodata/m2g/{commit}/m2g/scripts/m2g_bids.py"
#: m2g 0.3.0 as published on PyPI (February 2020): the release the preset targets.
M2G_PYPI = "m2g==0.3.0"
M2G_REFS = ["pypi", *sorted(M2G_SOURCES)]

#: (participant, session) of the scans each preset is checked with.
SCANS = [("01", "pre"), ("ctrl+2", None)]


def _unavailable(reason: str) -> NoReturn:
    """No network (or a missing test extra): fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must work in CI)")
    pytest.skip(reason)


def _scan_id(participant: str, session: str | None) -> str:
    return f"sub-{participant}" + (f"_ses-{session}" if session else "")


@dataclass
class Dirs:
    bids: Path
    output: Path
    work: Path
    files: dict[str, str]

    def argv(self, argv: list[str]) -> list[str]:
        """Runtime placeholders filled; image files replaced by local stand-ins."""
        filled = fill_runtime(argv, bids_dir=str(self.bids), output_dir=str(self.output),
                              work_dir=str(self.work))
        return [self.files.get(a, a) for a in filled]


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        '{"Name": "t", "BIDSVersion": "1.10.1"}', encoding="utf-8")
    files = {}
    for inside, name in IMAGE_FILES.items():
        (tmp_path / name).write_text("stand-in\n", encoding="utf-8")
        files[inside] = str(tmp_path / name)
    return Dirs(bids=bids, output=tmp_path / "out", work=tmp_path / "work", files=files)


def _declared_options(argv: list[str], declared: list[str]) -> None:
    """Every option in ``argv`` is spelled as declared (argparse would accept prefixes)."""
    used = [a for a in argv[1:] if a.startswith("-")]
    unknown = [a for a in used if a not in declared]
    assert not unknown, f"options not declared by the app's parser: {unknown}"


# --------------------------------------------------------------------------- downloads


def _pip_download(spec: str) -> Path:
    """The wheel of ``spec`` (``name==version``), downloaded once, unpacked in the cache."""
    name, version = spec.split("==")
    target = CACHE / "wheels" / f"{name}-{version}"
    if (target / ".complete").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "--quiet", "--dest", tmp, spec],
            capture_output=True, text=True, timeout=600, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            _unavailable(f"pip download {spec} failed: {proc.stderr.strip()[-500:]}")
        unpacked = Path(tmp) / "site"
        with zipfile.ZipFile(wheels[0]) as whl:
            whl.extractall(unpacked)
        (unpacked / ".complete").write_text(wheels[0].name + "\n", encoding="utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a concurrent run got there first
            unpacked.rename(target)
    return target


def _m2g_source(ref: str) -> str:
    """m2g_bids.py of m2g 0.3.0: from its PyPI wheel (what CI checks), or at a git commit.

    PyPI is reachable wherever bidsbatch installs; GitHub may not be (CI here reaches
    package registries only), so the git refs are extra checks that skip without it.
    """
    if ref == "pypi":
        site = _pip_download(M2G_PYPI)
        return (site / "m2g" / "scripts" / "m2g_bids.py").read_text(encoding="utf-8")
    commit, sha256 = M2G_SOURCES[ref]
    cached = CACHE / "m2g" / commit / "m2g_bids.py"
    if cached.exists() and hashlib.sha256(cached.read_bytes()).hexdigest() == sha256:
        return cached.read_text(encoding="utf-8")
    url = M2G_URL.format(commit=commit)
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            data = response.read()
    except OSError as exc:
        pytest.skip(f"cannot download {url} ({exc}); the PyPI source is checked instead")
    digest = hashlib.sha256(data).hexdigest()
    assert digest == sha256, f"{url} has sha256 {digest}, expected {sha256}"
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data.decode("utf-8")


# --------------------------------------------------------------------------- nipreps apps


@dataclass
class Parsed:
    version: str
    location: str
    options: list[str]
    results: list[dict[str, Any]]


@pytest.fixture(scope="session")
def templateflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TemplateFlow home holding only each template's description.

    fMRIPrep's parser checks space names against TemplateFlow's list of templates,
    which TemplateFlow builds by indexing its home with pybids: ~2,600 files of the
    full skeleton take 10-15 s, the 30 template descriptions a fraction of a second.
    Taken from the skeleton the installed templateflow ships; no network.
    """
    spec = importlib.util.find_spec("templateflow")  # without importing it
    if spec is None or spec.origin is None:
        _unavailable("templateflow (a test extra) is not installed")
    skeleton = Path(spec.origin).parent / "conf" / "templateflow-skel.zip"
    home = tmp_path_factory.mktemp("templateflow")
    with zipfile.ZipFile(skeleton) as zf:
        names = [n for n in zf.namelist()
                 if re.fullmatch(r"tpl-[^/]+/template_description\.json", n)]
        assert names, f"no template descriptions in {skeleton}"
        zf.extractall(home, members=names)
    return home


def _nipreps_parse(app: str, sites: list[Path], argvs: list[list[str]],
                   templateflow_home: Path | None = None) -> Parsed:
    """``argvs`` through ``<app>.cli.parser._build_parser()`` in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [*(str(s) for s in sites), *filter(None, [env.get("PYTHONPATH")])])
    env.update(NIPYPE_NO_ET="1", NO_ET="1")  # no telemetry pings on import
    if templateflow_home is not None:
        env["TEMPLATEFLOW_HOME"] = str(templateflow_home)
    proc = subprocess.run(
        [sys.executable, __file__, "--probe", app], input=json.dumps(argvs),
        capture_output=True, text=True, env=env, timeout=300, check=False)
    if proc.returncode == 3:  # an import the test extras should provide is missing
        _unavailable(f"cannot build the {app} parser: {proc.stderr.strip()[-500:]}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return Parsed(out["version"], out["location"], out["options"], out["results"])


def _probe_main(app: str) -> int:
    """Subprocess side of :func:`_nipreps_parse` (``python test_presets.py --probe app``)."""
    argvs = json.loads(sys.stdin.read())
    try:
        pkg = importlib.import_module(app)
        version_mod = importlib.import_module(f"{app}.cli.version")
        parser_mod = importlib.import_module(f"{app}.cli.parser")
        # _build_parser asks PyPI and GitHub whether the version is the latest or flagged.
        version_mod.check_latest = lambda: None
        version_mod.is_flagged = lambda: (False, None)
        parser = parser_mod._build_parser()  # imports the rest (niworkflows, ...)
    except ImportError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    results = []
    for argv in argvs:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                namespace = parser.parse_args(argv[1:])
        except SystemExit:
            results.append({"error": err.getvalue()})
        else:
            results.append({"namespace": vars(namespace)})
    print(json.dumps({"version": pkg.__version__, "location": pkg.__file__,
                      "options": sorted(parser._option_string_actions),
                      "results": results}, default=str))
    return 0


def _image_version(pipe: Pipeline, repository: str) -> str:
    match = re.fullmatch(re.escape(repository) + r":(\d+\.\d+\.\d+)", pipe.image)
    assert match, f"{pipe.image} is not pinned to a release of {repository}"
    return match.group(1)


def _scan_argvs(pipe: Pipeline, dirs: Dirs) -> list[list[str]]:
    return [dirs.argv(pipe.argv_for(participant=p, session=s, scan_id=_scan_id(p, s)))
            for p, s in SCANS]


def _namespace(result: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in result, f"the app's parser refused the argv:\n{result['error']}"
    return result["namespace"]


def test_fmriprep_preset_parses_with_fmriprep_parser(dirs: Dirs, templateflow_home: Path) -> None:
    pipe = load_pipeline("fmriprep")
    version = _image_version(pipe, "nipreps/fmriprep")
    assert tuple(int(x) for x in version.split(".")) >= (25, 2, 0), "--session-label is 25.2+"
    assert pipe.group is None  # fMRIPrep has no group level (analysis_level: participant)
    sites = [_pip_download(f"fmriprep=={version}"), _pip_download(NIWORKFLOWS)]
    argvs = _scan_argvs(pipe, dirs)
    parsed = _nipreps_parse("fmriprep", sites, argvs, templateflow_home)

    assert parsed.version == version and parsed.location.startswith(str(sites[0]))
    r = pipe.resources
    for argv, (participant, session), result in zip(argvs, SCANS, parsed.results, strict=True):
        assert argv[0] == "fmriprep"
        _declared_options(argv, parsed.options)
        ns = _namespace(result)
        assert ns["bids_dir"] == str(dirs.bids) and ns["output_dir"] == str(dirs.output)
        assert ns["analysis_level"] == "participant"
        assert ns["participant_label"] == [participant]
        assert ns["session_label"] == ([session] if session else None)
        # Per-session jobs keep ses-<label> in anatomical outputs and FreeSurfer subject.
        assert ns["subject_anatomical_reference"] == ("sessionwise" if session else "first-lex")
        assert ns["work_dir"] == str(dirs.work)
        assert ns["nprocs"] == int(r.vcpus)
        assert ns["memory_gb"] == pytest.approx(r.memory_mib / 1000)  # --mem-mb: MB to GB
        assert ns["fs_license_file"] == dirs.files["/opt/freesurfer/license.txt"]
        assert ns["skip_bids_validation"] is True and ns["notrack"] is True


def test_mriqc_preset_parses_with_mriqc_parser(dirs: Dirs) -> None:
    pipe = load_pipeline("mriqc")
    version = _image_version(pipe, "nipreps/mriqc")
    sites = [_pip_download(f"mriqc=={version}")]
    argvs = _scan_argvs(pipe, dirs)
    assert pipe.group is not None
    group_argv = dirs.argv(pipe.group.command)  # a group step has no plan-time values
    parsed = _nipreps_parse("mriqc", sites, [*argvs, group_argv])

    assert parsed.version == version and parsed.location.startswith(str(sites[0]))
    r = pipe.resources
    *scans, group = parsed.results
    for argv, (participant, session), result in zip(argvs, SCANS, scans, strict=True):
        assert argv[0] == "mriqc"
        _declared_options(argv, parsed.options)
        ns = _namespace(result)
        assert ns["bids_dir"] == str(dirs.bids) and ns["output_dir"] == str(dirs.output)
        assert ns["analysis_level"] == ["participant"]
        assert ns["participant_label"] == [participant]
        assert ns["session_id"] == ([session] if session else None)
        assert ns["work_dir"] == str(dirs.work)
        assert ns["nprocs"] == int(r.vcpus)
        assert ns["memory_gb"] == r.memory_mib // 1024
        assert ns["no_sub"] is True and ns["notrack"] is True

    _declared_options(group_argv, parsed.options)
    ns = _namespace(group)
    assert ns["analysis_level"] == ["group"] and ns["participant_label"] is None
    assert ns["output_dir"] == str(dirs.output) and ns["work_dir"] == str(dirs.work)
    assert ns["no_sub"] is True and ns["notrack"] is True


# --------------------------------------------------------------------------- m2g


def _m2g_parser(source: str) -> argparse.ArgumentParser:
    """The parser ``main()`` of m2g_bids.py builds, from its own argparse calls."""
    tree = ast.parse(source)
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")

    def is_call(node: ast.AST, attr: str) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "parser"
                and node.func.attr == attr)

    def builds_parser(stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.Assign):  # parser = ArgumentParser(...)
            return ([ast.unparse(t) for t in stmt.targets] == ["parser"]
                    and isinstance(stmt.value, ast.Call)
                    and ast.unparse(stmt.value.func) == "ArgumentParser")
        return isinstance(stmt, ast.Expr) and is_call(stmt.value, "add_argument")

    kept: list[ast.stmt] = []
    for stmt in main.body:
        if any(is_call(n, "parse_args") for n in ast.walk(stmt)):
            break
        if builds_parser(stmt):
            kept.append(stmt)
        else:  # a docstring or a print; anything else touching the parser is unexpected
            names = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
            assert "parser" not in names, f"unexpected parser use at line {stmt.lineno}"
    else:
        raise AssertionError("m2g_bids.main() never calls parser.parse_args()")
    assert kept and len(kept) > 1, "no ArgumentParser / add_argument calls found in main()"
    for stmt in kept:  # only literal arguments: nothing of m2g runs
        call = stmt.value
        assert isinstance(call, ast.Call)
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            ast.literal_eval(arg)
    namespace: dict[str, Any] = {"ArgumentParser": argparse.ArgumentParser}
    exec(compile(ast.Module(body=kept, type_ignores=[]), "m2g_bids.py", "exec"), namespace)
    return namespace["parser"]


@pytest.mark.parametrize("ref", M2G_REFS)
def test_m2g_preset_parses_with_m2g_parser(ref: str, dirs: Dirs) -> None:
    pipe = load_pipeline("m2g")
    assert pipe.image.startswith("neurodata/m2g:")
    assert pipe.group is None  # m2g has no group level (and no analysis-level positional)
    parser = _m2g_parser(_m2g_source(ref))
    for participant, session in SCANS:
        argv = dirs.argv(pipe.argv_for(participant=participant, session=session,
                                       scan_id=_scan_id(participant, session)))
        assert argv[0] == "m2g"
        _declared_options(argv, sorted(parser._option_string_actions))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                ns = vars(parser.parse_args(argv[1:]))
            except SystemExit as exc:
                pytest.fail(f"m2g's parser ({ref}) refused {argv}: {exc} {err.getvalue()}")
        assert ns["input_dir"] == str(dirs.bids) and ns["output_dir"] == str(dirs.output)
        assert ns["participant_label"] == [participant]
        assert ns["session_label"] == ([session] if session else None)
        assert ns.get("pipeline", "dwi") == "dwi"  # the diffusion connectome in every version
        assert ns["push_location"] is None  # bidsbatch uploads, not m2g


def test_m2g_scratch_is_left_out_of_the_outputs() -> None:
    """m2g writes registration scratch to <output_dir>/sub-X/ses-Y/tmp_d/{reg_a,reg_m}."""
    from bidsbatch.storage.transfer import compile_excludes, is_excluded

    patterns = compile_excludes(load_pipeline("m2g").output_excludes)
    assert is_excluded("sub-01/ses-pre/tmp_d/reg_a/t1w_aligned_mni.nii.gz", patterns)
    assert not is_excluded("sub-01/ses-pre/connectomes_d/desikan/edgelist.csv", patterns)


def test_m2g_rebuilt_parser_refuses_what_m2g_refuses() -> None:
    """The rebuilt parser is a real argparse parser: unknown options and missing dirs fail."""
    parser = _m2g_parser(_m2g_source("pypi"))
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parser.parse_args(["/in", "/out", "--participant_label", "01", "--n_procs", "2"])
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parser.parse_args(["--participant_label", "01", "/in", "/out"])  # nargs="+" eats them


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"] and len(sys.argv) == 3:
        sys.exit(_probe_main(sys.argv[2]))
    sys.exit("usage: test_presets.py --probe fmriprep|mriqc  (argv lists as JSON on stdin)")

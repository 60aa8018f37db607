"""Real podman for the tests, and the images they run, built here without any registry.

:func:`find_podman` finds podman, or installs Debian's (with runc, buildah,
skopeo, debootstrap and a static busybox) when running as root with ``CI``
set; otherwise the tests that need it skip with the reason. podman runs
with this file's own ``containers.conf`` (through ``CONTAINERS_CONF``,
nothing in /etc): no CNI bridge, runc, ulimits within the machine's limits.

Images (kept in podman's storage, so a second session builds nothing):

- ``localhost/bidsbatch-test-busybox`` FROM scratch: Debian's static busybox
  and a shell-script BIDS App that reports what it sees (< 2 s);
- ``localhost/bidsbatch-test-debian:bookworm``: a debootstrap'd minbase
  rootfs with python3, numpy and nibabel (``podman import``, ~1-2 min once);
- ``localhost/bidsbatch-test-demo:<hash>``: that plus bidsbatch's demo app
  (which imports nothing from bidsbatch), ``ENTRYPOINT ["python3", "/opt/demo.py"]``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["podman", "runc", "buildah", "skopeo", "debootstrap", "busybox-static"]
#: Kept between test sessions (podman's own storage persists too).
CACHE = Path(os.environ.get("BIDSBATCH_TEST_CACHE", "/var/tmp/bidsbatch-test-containers"))

# The three settings podman needs on these machines (Debian 12, cgroups v1 hybrid, no
# CAP_SYS_RESOURCE): no network namespace by default (never the CNI bridge), runc
# (crun refuses hybrid cgroups), and ulimits within the hard limits.
CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

BUSYBOX_APP = r"""#!/bin/sh
# A BIDS App in a shell script: bids_dir output_dir level --participant_label X
bids=$1; out=$2; label=$5
if [ "$3" = group ]; then
  if touch "$bids/written-by-group" 2>/dev/null; then b=writable; else b=read-only; fi
  echo "bids=$b cwd=$(pwd) tmpdir=$TMPDIR subjects=$(ls -d "$out"/sub-* | wc -l)" \
    > "$out/group.txt"
  exit 0
fi
mkdir -p "$out/sub-$label"
r="$out/sub-$label/report.txt"
echo "uid=$(id -u) gid=$(id -g)" > "$r"
if touch "$bids/written-by-app" 2>/dev/null; then echo "bids=writable" >> "$r"
else echo "bids=read-only" >> "$r"; fi
echo "net=$(ls /sys/class/net | tr '\n' ' ')" >> "$r"
echo "tmpdir=$TMPDIR" >> "$r"
echo "cwd=$(pwd)" >> "$r"
touch "$TMPDIR/tmp-ok" && echo "tmp=writable" >> "$r"
env | sort > "$out/sub-$label/env.txt"
find "$bids" -type f | sort > "$out/sub-$label/inputs.txt"
if [ -n "$APP_SLEEP" ]; then sleep "$APP_SLEEP"; fi
echo "app done for $label"
"""


@dataclass(frozen=True)
class Podman:
    binary: str
    conf: Path

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([self.binary, *args], capture_output=True, timeout=timeout,
                              input=input)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} failed: "
                               f"{proc.stderr.decode(errors='replace')[-800:]}")
        return proc

    def exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0


def _install() -> str:
    if os.name != "posix" or os.geteuid() != 0:
        return "podman is not installed (apt-get install podman runc; needs root)"
    if not os.environ.get("CI"):
        return ("podman is not installed; set CI=1 to let the tests install it with apt-get, "
                "or run: apt-get install -y " + " ".join(PACKAGES))
    if not shutil.which("apt-get"):
        return "podman is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return f"{' '.join(cmd[:2])} failed: {tail[0]}"
    return ""


def find_podman() -> tuple[Podman | None, str]:
    """podman set up for this machine (installing it when allowed); else (None, why not)."""
    missing = [p for p in ("podman", "busybox", "debootstrap") if not shutil.which(p)]
    if missing:
        why = _install()
        if why:
            return None, why
    if os.geteuid() != 0:
        return None, "the podman tests run podman as root (rootless needs subuid setup)"
    CACHE.mkdir(parents=True, exist_ok=True)
    conf = CACHE / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = str(conf)
    podman = Podman(shutil.which("podman") or "podman", conf)
    info = podman.run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        return None, f"podman info failed: {info.stderr.decode(errors='replace')[-300:]}"
    return podman, ""


def build_busybox(podman: Podman) -> str:
    digest = hashlib.sha256(BUSYBOX_APP.encode()).hexdigest()[:12]
    ref = f"localhost/bidsbatch-test-busybox:{digest}"
    if podman.exists(ref):
        return ref
    with tempfile.TemporaryDirectory(prefix="bb-busybox-") as ctx:
        shutil.copy(shutil.which("busybox") or "/bin/busybox", Path(ctx) / "busybox")
        app = Path(ctx) / "app.sh"
        app.write_text(BUSYBOX_APP)
        app.chmod(0o755)
        (Path(ctx) / "Containerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "COPY app.sh /usr/local/bin/fakeapp\n"
            'ENTRYPOINT ["/usr/local/bin/fakeapp"]\n')
        podman.run("build", "-q", "-t", ref, ctx)
    return ref


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def _unmount_under(root: Path) -> None:
    """Unmount what a failed debootstrap left mounted under ``root`` (deepest first)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)


def _debootstrap(podman: Podman, ref: str, *, suite: str, include: str, check: str) -> str:
    """``ref``, imported from a minbase rootfs of ``suite`` (kept in the cache folder)."""
    if podman.exists(ref):
        return ref
    rootfs = CACHE / f"rootfs-{suite}"
    if not (rootfs / check).exists():
        partial = Path(tempfile.mkdtemp(prefix=f"rootfs-{suite}.", dir=CACHE))
        proc = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={include}", suite, str(partial),
             _mirror()], capture_output=True, text=True, timeout=1800)
        _unmount_under(partial)  # debootstrap mounts /proc in it and may leave it
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeError(f"debootstrap failed: {(proc.stderr or proc.stdout)[-800:]}")
        shutil.rmtree(rootfs, ignore_errors=True)
        partial.rename(rootfs)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    proc = subprocess.run([podman.binary, "import", "--change", 'CMD ["/bin/bash"]', "-", ref],
                          stdin=tar.stdout, capture_output=True, timeout=600)
    tar.stdout.close()
    tar.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"podman import failed: {proc.stderr.decode()[-500:]}")
    return ref


def build_debian(podman: Podman) -> str:
    return _debootstrap(podman, "localhost/bidsbatch-test-debian:bookworm", suite="bookworm",
                        include="python3,python3-numpy,python3-nibabel", check="usr/bin/python3")


def build_apptainer(podman: Podman) -> str:
    """Debian sid's apptainer (bookworm has none; sid's needs a newer libc than the host's)."""
    return _debootstrap(podman, "localhost/bidsbatch-test-apptainer:sid", suite="sid",
                        include="apptainer,squashfs-tools,ca-certificates",
                        check="usr/bin/apptainer")


def apptainer_command(podman: Podman, image: str) -> list[str]:
    """The apptainer client, run in its sid container with this host's /tmp at /tmp.

    bidsbatch's scratch folders, SIF cache and image archives are under /tmp in the
    tests, so every path on the command line means the same inside. Privileged: the
    container builds and mounts SIFs (squashfs); no network.
    """
    return [podman.binary, "run", "--rm", "--privileged", "--network=none",
            "-v", "/tmp:/tmp", "--env", "APPTAINERENV_*", image, "apptainer"]


def build_demo(podman: Podman, debian: str) -> str:
    source = (REPO / "src/bidsbatch/apps/demo.py").read_bytes()
    ref = f"localhost/bidsbatch-test-demo:{hashlib.sha256(source).hexdigest()[:12]}"
    if podman.exists(ref):
        return ref
    with tempfile.TemporaryDirectory(prefix="bb-demo-") as ctx:
        (Path(ctx) / "demo.py").write_bytes(source)
        (Path(ctx) / "Containerfile").write_text(
            f"FROM {debian}\nCOPY demo.py /opt/demo.py\n"
            'ENTRYPOINT ["python3", "/opt/demo.py"]\n')
        podman.run("build", "-q", "-t", ref, ctx)
    return ref


@dataclass(frozen=True)
class Images:
    podman: Podman
    busybox: str


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    found, why = find_podman()
    if found is None:
        pytest.skip(why)
    yield found


@pytest.fixture(scope="session")
def images(podman: Podman) -> Images:
    """The busybox app image (seconds to build)."""
    return Images(podman=podman, busybox=build_busybox(podman))


@pytest.fixture(scope="session")
def apptainer(podman: Podman) -> list[str]:
    """A real Apptainer client command (Debian sid's, in a podman container)."""
    return apptainer_command(podman, build_apptainer(podman))


@pytest.fixture(scope="session")
def demo_image(podman: Podman) -> str:
    """The demo app on Debian (a debootstrap the first time, then cached)."""
    return build_demo(podman, build_debian(podman))


def build_busybox_tools(podman: Podman, busybox: str) -> str:
    """The busybox image without its entrypoint, plus the stand-in ``L2A_Process``.

    cwltool does not override an image's entrypoint, and a Sen2Cor-shaped command
    starts with its own program: both want an image that runs argv as given.
    """
    script = (REPO / "tests" / "sen2cor_standin.sh").read_bytes()
    digest = hashlib.sha256(busybox.encode() + script).hexdigest()[:12]
    ref = f"localhost/bidsbatch-test-busybox-tools:{digest}"
    if podman.exists(ref):
        return ref
    with tempfile.TemporaryDirectory(prefix="bb-tools-") as ctx:
        (Path(ctx) / "L2A_Process").write_bytes(script)
        (Path(ctx) / "L2A_Process").chmod(0o755)
        (Path(ctx) / "Containerfile").write_text(
            f"FROM {busybox}\nCOPY L2A_Process /usr/local/bin/L2A_Process\nENTRYPOINT []\n")
        podman.run("build", "-q", "-t", ref, ctx)
    return ref


@pytest.fixture(scope="session")
def tools_image(images: Images) -> str:
    """busybox, no entrypoint, with the Sen2Cor stand-in (seconds to build)."""
    return build_busybox_tools(images.podman, images.busybox)

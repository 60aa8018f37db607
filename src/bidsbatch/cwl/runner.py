"""``python -m bidsbatch.cwl.runner OBJECT ARGS…``: run cwltool, its output object into OBJECT.

cwltool prints the output object on stdout and its log on stderr; the worker
merges an app's streams into its log, so this process keeps the object apart
(a file the worker reads into the completion marker) and lets the log through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

#: The exit code of a missing program (the shell's): cwltool is not installed.
EX_NOT_FOUND = 127


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m bidsbatch.cwl.runner OBJECT [cwltool arguments]",
              file=sys.stderr)
        return 2
    try:
        from cwltool.main import main as cwltool_main
    except ImportError:
        cwltool_main = None
    with open(args[0], "w", encoding="utf-8") as out:
        if cwltool_main is not None:
            return int(cwltool_main(argsl=args[1:], stdout=out))
        # Else a cwltool of its own environment (pipx, a venv): found next to us or on PATH.
        program = find_program()
        if program is None:
            print("error: cwltool is not installed, and a CWL pipeline needs it; hint: pip "
                  "install 'bidsbatch[cwl]' (in the job's image too), or put a cwltool on "
                  "PATH", file=sys.stderr, flush=True)
            return EX_NOT_FOUND
        return subprocess.run([program, *args[1:]], stdout=out, check=False).returncode


def find_program() -> str | None:
    """A ``cwltool`` program: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "cwltool"
    return str(beside) if beside.is_file() else shutil.which("cwltool")


if __name__ == "__main__":
    sys.exit(main())

"""The ``[cwl]`` table of a pipeline file: the tool and the job template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PipelineError
from ..safety import read_utf8


@dataclass(frozen=True)
class CwlTool:
    """A CWL tool and its job template.

    ``text``: the tool document itself (a single file; ``cwltool --pack`` makes one
    of a tool with imports), shipped in every spec so that a job needs nothing but
    its spec; empty for a tool named by URL, which cwltool fetches.
    """

    tool: str
    text: str = ""
    job: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> CwlTool:
        return cls(tool=str(data["tool"]), text=str(data.get("text") or ""),
                   job=dict(data.get("job") or {}))


def parse_cwl(value: Any, *, source: str, fail: Callable[[str], PipelineError]) -> CwlTool:
    """``[cwl]``: ``tool`` (a path relative to the pipeline file, or a URL) and ``[cwl.job]``."""
    if not isinstance(value, dict) or set(value) - {"tool", "job"}:
        raise fail("[cwl] takes 'tool' (a .cwl file or URL) and [cwl.job] (the job template)")
    tool = value.get("tool")
    if not isinstance(tool, str) or not tool.strip():
        raise fail("cwl.tool is missing: name the tool's .cwl file or URL")
    job = value.get("job", {})
    if not isinstance(job, dict):
        raise fail("[cwl.job] must be a table (the job object, with {placeholders})")
    if tool.startswith(("http://", "https://")):
        return CwlTool(tool=tool, job=job)
    base = Path(source).parent if Path(source).suffix == ".toml" else Path.cwd()
    path = (base / tool).resolve() if not Path(tool).is_absolute() else Path(tool)
    try:
        text = read_utf8(path, what="CWL tool")
    except OSError as exc:
        raise fail(f"cannot read the CWL tool {path}: {exc.strerror or exc}") from None
    return CwlTool(tool=path.name, text=text, job=job)

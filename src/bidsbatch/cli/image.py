"""``bidsbatch image``: the container image AWS Batch jobs run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..console import err_console
from .container_options import ContainerOpt, ImageCacheOpt
from .options import PipelineOpt

image_app = typer.Typer(
    name="image", no_args_is_help=True,
    help="Images: pull or build a pipeline's image; the Batch image with bidsbatch added.",
)


def register(app: typer.Typer) -> None:
    """Add the ``image`` commands to ``app`` (once, however often this is called)."""
    if any(group.typer_instance is image_app for group in app.registered_groups):
        return
    app.add_typer(image_app, name="image")


@image_app.command("dockerfile")
def dockerfile_command(
    pipeline: PipelineOpt = "m2g",
    base: Annotated[str | None, typer.Option(
        help="The image to add bidsbatch to (default: the pipeline's image).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "--out", "-o", help="Write the Dockerfile here instead of to stdout.")] = None,
) -> None:
    """Print a Dockerfile that adds bidsbatch to a pipeline's image, for AWS Batch."""
    from ..image import dockerfile, image_plan
    from ..pipelines import load_pipeline

    plan = image_plan(load_pipeline(pipeline), base=base)
    text = dockerfile(plan)
    if output is None:
        print(text, end="")
        return
    output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}; build it with: docker build -t {plan.suggested_tag} "
                      f"-f {output} {output.parent}", highlight=False)


@image_app.command("pull")
def pull_command(
    pipeline: Annotated[str, typer.Argument(help="A preset or a pipeline TOML file.")],
    container: ContainerOpt = None,
    image_cache: ImageCacheOpt = None,
) -> None:
    """Pull (or, for Apptainer, build a SIF of) a pipeline's image once; say what runs."""
    from ..containers.choose import ContainerChoice, container_spec
    from ..containers.images import describe, ensure
    from ..pipelines import load_pipeline

    pipe = load_pipeline(pipeline)
    how = container_spec(pipe.container, pipeline_name=pipe.name, require_license=False,
                         choice=ContainerChoice(runtime=container, image_cache=image_cache),
                         warn=lambda text: err_console.print(f"warning: {text}",
                                                             highlight=False))
    info = ensure(pipe.image, how, pull=True)
    print(describe(info, how.runtime))

"""`modelfleet`: run the operator, generate CRDs, manage local weights, drive a dev cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelfleet import crdgen
from modelfleet.cli.dev import dev_app
from modelfleet.cli.finetune import finetune_app
from modelfleet.cli.model import model_app
from modelfleet.settings import get_settings

app = typer.Typer(
    help="modelfleet: large language models as Kubernetes objects.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(dev_app, name="dev")
app.add_typer(model_app, name="model")
app.add_typer(finetune_app, name="finetune")


@app.callback()
def main() -> None:
    """modelfleet: large language models as Kubernetes objects."""


def _repo_root() -> Path:
    """The checkout that holds crds/ and charts/: the nearest parent with a pyproject.toml."""
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").exists() and (directory / "charts").is_dir():
            return directory
    return here


@app.command()
def crds(
    check: Annotated[bool, typer.Option(help="Fail with a diff if the files are stale.")] = False,
    stdout: Annotated[bool, typer.Option(help="Print the CRDs instead of writing them.")] = False,
    root: Annotated[
        Path | None, typer.Option(help="Repository root; found from the working directory.")
    ] = None,
) -> None:
    """Generate crds/ and charts/modelfleet/crds/ from the pydantic API types."""
    repo_root = root or _repo_root()
    if stdout:
        typer.echo("---\n".join(crdgen.render_crd(kind) for kind in crdgen.KINDS), nl=False)
        return
    if check:
        diffs = crdgen.stale_crds(repo_root)
        if diffs:
            typer.echo("".join(diffs), err=True)
            typer.echo("CRDs are stale: run `modelfleet crds` and commit the result.", err=True)
            raise typer.Exit(1)
        typer.echo("CRDs are up to date.")
        return
    for path in crdgen.write_crds(repo_root):
        typer.echo(f"wrote {path.relative_to(repo_root)}")


@app.command()
def run(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch only these namespaces (repeatable)."),
    ] = None,
    log_format: Annotated[str, typer.Option(help="plain or json.")] = "plain",
    verbose: Annotated[bool, typer.Option(help="Debug logging.")] = False,
) -> None:
    """Run the operator (the same as `kopf run -m modelfleet.handlers`)."""
    import kopf  # noqa: PLC0415 - the operator's dependencies load only for `run`

    import modelfleet.handlers  # noqa: F401, PLC0415 - registers the handlers

    settings = get_settings()
    namespaces = list(namespace or settings.namespaces)
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.PLAIN,
    )
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=settings.standalone,
        peering_name=settings.peering_name,
        priority=settings.priority,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz",
    )


if __name__ == "__main__":
    app()

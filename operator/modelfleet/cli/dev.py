"""`modelfleet dev`: the local cluster with simulated GPU nodes."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from kubernetes import config

from modelfleet.dev.agent import run_agent
from modelfleet.dev.client import complete_through_service
from modelfleet.dev.cluster import DEFAULT_NAME, Binaries, DevCluster

dev_app = typer.Typer(help="A local control plane with simulated GPU nodes.", no_args_is_help=True)

Name = Annotated[str, typer.Option(help="Cluster name.")]


@dev_app.command()
def up(
    name: Name = DEFAULT_NAME,
    gpu_nodes: Annotated[int, typer.Option(help="Simulated nodes with 8 GPUs each.")] = 4,
    cpu_nodes: Annotated[int, typer.Option(help="Simulated CPU-only nodes.")] = 2,
) -> None:
    """Start the cluster (binaries from hack/build-tools.sh; see hack/cluster.sh)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cluster = DevCluster(name)
    cluster.up(Binaries.from_env(), gpu_nodes=gpu_nodes, cpu_nodes=cpu_nodes)
    typer.echo(f"export KUBECONFIG={cluster.kubeconfig}")


@dev_app.command()
def down(name: Name = DEFAULT_NAME) -> None:
    """Stop every process of the cluster and remove its state."""
    DevCluster(name).down(Binaries.from_env())


@dev_app.command()
def env(name: Name = DEFAULT_NAME) -> None:
    """Print the shell line that points kubectl at the cluster."""
    typer.echo(f"export KUBECONFIG={DevCluster(name).kubeconfig}")


@dev_app.command()
def agent(name: Name = DEFAULT_NAME) -> None:
    """Run the volume provisioner and pod runner in the foreground (started by `up`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cluster = DevCluster(name)
    run_agent(cluster.state_dir, cluster.kubeconfig)


@dev_app.command()
def ask(  # noqa: PLR0917 (typer options)
    model: Annotated[str, typer.Argument(help="The Model (its Service has the same name).")],
    prompt: Annotated[str, typer.Option(help="The prompt.")] = "Hello",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Its namespace.")] = "default",
    served_name: Annotated[
        str | None, typer.Option(help="The served model name, if not the Model's name.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens to generate.")] = 16,
    name: Name = DEFAULT_NAME,
) -> None:
    """Ask a Model of the local cluster for a completion, through its Service's endpoints."""
    api = config.new_client_from_config(config_file=str(DevCluster(name).kubeconfig))
    try:
        answer = complete_through_service(
            api, namespace, model, served_name or model, prompt, max_tokens=max_tokens
        )
    except (LookupError, OSError) as error:
        typer.echo(f"no answer: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"{answer.endpoint} answered in {answer.seconds:.2f}s: {prompt}{answer.text}")

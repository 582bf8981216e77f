"""`modelfleet dev`: the local cluster with simulated GPU nodes."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from modelfleet.dev.agent import run_agent
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

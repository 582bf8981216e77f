"""How every modelfleet process finds its cluster: in-cluster credentials, else KUBECONFIG."""

from __future__ import annotations

import os


def load_kube_credentials() -> None:
    """Configure the kubernetes client: in-cluster, else the KUBECONFIG of this moment (the
    client's own default froze KUBECONFIG when it was first imported)."""
    from kubernetes import config  # noqa: PLC0415 - Jobs without a status target never need it

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))

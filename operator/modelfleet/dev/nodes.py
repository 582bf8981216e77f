"""The simulated nodes of the local cluster: GPU nodes and CPU-only nodes."""

from __future__ import annotations

from typing import Any

GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"


def node_manifest(name: str, *, gpus: int) -> dict[str, Any]:
    """A Node managed by kwok; GPU nodes carry the labels NVIDIA's GPU feature discovery sets."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "sim.gpu-8x" if gpus else "sim.cpu",
        "type": "kwok",
    }
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    if gpus:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": GPU_PRODUCT,
            "nvidia.com/gpu.count": str(gpus),
            "nvidia.com/gpu.memory": "81559",
        }
        capacity["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"allocatable": dict(capacity), "capacity": capacity},
    }


def default_nodes(
    gpu_nodes: int = 4, cpu_nodes: int = 2, gpus_per_node: int = 8
) -> list[dict[str, Any]]:
    """The dev cluster's nodes: ``gpu_nodes`` with ``gpus_per_node`` GPUs, and CPU-only ones."""
    nodes = [node_manifest(f"gpu-node-{i}", gpus=gpus_per_node) for i in range(gpu_nodes)]
    nodes += [node_manifest(f"cpu-node-{i}", gpus=0) for i in range(cpu_nodes)]
    return nodes

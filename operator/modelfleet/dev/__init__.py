"""The local development cluster: a real control plane with simulated nodes (kwok), a volume
provisioner and a runner that executes modelfleet's Job pods as local processes."""

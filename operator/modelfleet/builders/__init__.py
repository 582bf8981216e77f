"""Pure functions from a validated spec (and observed state) to Kubernetes manifests."""

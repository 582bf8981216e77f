"""modelfleet: a Kubernetes operator that makes a large language model a declarative object."""

"""modelfleet.io/v1alpha1: the API's single source of truth."""

from modelfleet.api.v1alpha1.common import API_VERSION, GROUP, VERSION, Condition
from modelfleet.api.v1alpha1.finetunejob import FinetuneJob, FinetuneJobSpec, FinetuneJobStatus
from modelfleet.api.v1alpha1.model import Model, ModelSpec, ModelStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "FinetuneJob",
    "FinetuneJobSpec",
    "FinetuneJobStatus",
    "Model",
    "ModelSpec",
    "ModelStatus",
]

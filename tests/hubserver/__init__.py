"""A local server speaking the subset of the Hugging Face Hub protocol huggingface_hub uses."""

from tests.hubserver.repos import LazyBlob, sharded_model_files, tiny_model_files
from tests.hubserver.server import Fault, HubServer

__all__ = ["Fault", "HubServer", "LazyBlob", "sharded_model_files", "tiny_model_files"]

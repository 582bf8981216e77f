"""Names of a Model's children and paths of its weights: one place, so handlers and builders agree.

A Model's name is a DNS-1035 label of at most 48 characters (enforced by the CRD), so every name
built here stays a DNS-1035 label of at most 63 characters, also valid as a label value.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re

from modelfleet.api.v1alpha1 import Model
from modelfleet.builders.common import model_name
from modelfleet.settings import OperatorSettings

MAX_NAME_LENGTH = 63
# fullmatch, not ^...$: "$" also matches before a trailing newline.
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
# Enough of a refused value to recognise it in a message.
_SHOWN = 80


def weights_claim_name(model: Model) -> str:
    """The claim holding the weights: ``source.pvc``'s claim, ``storage.existingClaim``, or
    ``<name>-weights`` (the one the operator creates)."""
    if model.spec.source.pvc is not None:
        return model.spec.source.pvc.claim_name
    if model.spec.storage.existing_claim:
        return model.spec.storage.existing_claim
    return f"{model_name(model)}-weights"


def serving_name(model: Model) -> str:
    """Name of the serving Deployment and its Service."""
    return model_name(model)


def _job_name(model: Model, infix: str, revision_key: str, retry_token: str) -> str:
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    digest = hashlib.sha256(f"{revision_key}\x00{retry_token}".encode()).hexdigest()[:8]
    name = f"{model_name(model)}-{infix}-{digest}"
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"Job name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    return name


def download_job_name(model: Model, revision_key: str, retry_token: str) -> str:
    """``<name>-dl-<8 hex>``: one Job per downloaded content and retry token.

    A Job's pod template is immutable, so anything that changes what is downloaded must change
    the name (pass :func:`download_revision_key`); a new retry token starts a fresh Job.
    """
    return _job_name(model, "dl", revision_key, retry_token)


def resolve_job_name(model: Model, revision_key: str, retry_token: str) -> str:
    """``<name>-rs-<8 hex>``: one Job that sizes the claim per content and retry token."""
    return _job_name(model, "rs", revision_key, retry_token)


def verify_job_name(model: Model, revision_key: str, retry_token: str) -> str:
    """``<name>-vf-<8 hex>``: one verify Job per checked directory and retry token."""
    return _job_name(model, "vf", revision_key, retry_token)


def download_revision_key(model: Model, revision: str) -> str:
    """What determines the files a download Job writes: source, repo, revision, filters, check.

    Retries, images and resources are left out on purpose: changing them does not change the
    weights, so an already finished Job for the same content still counts.
    """
    source = model.spec.source
    key: dict[str, object]
    if source.huggingface is not None:
        hf = source.huggingface
        key = {
            "source": "huggingface",
            "repo": hf.repo,
            "revision": revision,
            "endpoint": hf.endpoint,
            "allow": hf.allow_patterns,
            "ignore": hf.ignore_patterns,
        }
    elif source.modelscope is not None:
        key = {"source": "modelscope", "repo": source.modelscope.repo, "revision": revision}
    else:
        raise ValueError("only huggingface and modelscope sources are downloaded")
    key["verify"] = model.spec.download.verify
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def verify_revision_key(model: Model) -> str:
    """What determines a verify Job of a ``source.pvc`` Model: claim, path and check."""
    pvc = model.spec.source.pvc
    if pvc is None:
        raise ValueError("only pvc sources are verified in place")
    key = {"claim": pvc.claim_name, "path": pvc.path, "verify": model.spec.download.verify}
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def _root(settings: OperatorSettings) -> str:
    return settings.model_root.rstrip("/") or "/"


def is_commit_id(value: object) -> bool:
    """True for exactly 40 lowercase hex digits: the only revision that becomes a path."""
    return isinstance(value, str) and _COMMIT_ID.fullmatch(value) is not None


def _under_root(settings: OperatorSettings, *components: str) -> str:
    """``<model_root>/<components...>``, each a plain name (no separator, not ``.`` or ``..``),
    checked to end strictly below the root; ValueError otherwise."""
    for component in components:
        if component in ("", ".", "..") or any(c in component for c in "/\\\x00"):
            raise ValueError(f"refusing path component {component[:_SHOWN]!r}")
    root = posixpath.normpath(_root(settings))
    path = posixpath.normpath(posixpath.join(root, *components))
    if path == root or posixpath.commonpath([root, path]) != root:
        raise ValueError(f"refusing {path[:_SHOWN]!r}: not below {root}")
    return path


def model_path(settings: OperatorSettings, repo: str, sha: str) -> str:
    """``<model_root>/<repo>/<sha>``: the content-addressed directory of one revision.

    ValueError unless ``sha`` is a 40-hex commit id and the path stays below the root: both
    come from outside (a spec, a Job's result), and an absolute or ``..`` one must not be used.
    """
    if not is_commit_id(sha):
        raise ValueError(f"refusing revision {sha[:_SHOWN]!r}: expected 40 lowercase hex digits")
    return _under_root(settings, *repo.split("/"), sha)


def volume_path(settings: OperatorSettings, path: str) -> str:
    """``<model_root><path>`` for a path within the weights volume, which cannot climb out."""
    # Normalising against "/" first turns "/../x" into "/x": the result stays under the root.
    inside = posixpath.normpath("/" + path.lstrip("/"))
    return posixpath.normpath(_root(settings) + inside)


def pvc_model_path(settings: OperatorSettings, model: Model) -> str:
    """Where a ``source.pvc`` Model's weights appear in pods that mount its claim."""
    pvc = model.spec.source.pvc
    if pvc is None:
        raise ValueError("the Model's source is not pvc")
    return volume_path(settings, pvc.path)


def finetune_output_dir(settings: OperatorSettings, namespace: str, job: str) -> str:
    """``<model_root>/finetunes/<namespace>/<job>``: everything a FinetuneJob produced;
    ValueError when a name would put it anywhere else."""
    return _under_root(settings, "finetunes", namespace, job)


def finetune_model_path(settings: OperatorSettings, namespace: str, job: str) -> str:
    """The merged weights of a FinetuneJob (what serving prefers)."""
    return posixpath.join(finetune_output_dir(settings, namespace, job), "merged_model")


def finetune_lora_path(settings: OperatorSettings, namespace: str, job: str) -> str:
    """The LoRA adapter of a FinetuneJob."""
    return posixpath.join(finetune_output_dir(settings, namespace, job), "lora")

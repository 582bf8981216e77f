"""What every reconcile runs with: the API client, the settings, the Event recorder, and the
process's memory of when each status was written and which namespaces have the Job identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelfleet.kube.client import Kube, Manifest
from modelfleet.kube.identity import JobIdentities
from modelfleet.reconcile.common import StatusClock
from modelfleet.settings import OperatorSettings

Emit = Callable[[Manifest, str, str, str], None]
"""Record an Event: (object, type, reason, message)."""


@dataclass
class Context:
    """One per operator process (the handlers' runtime holds it); tests make their own."""

    kube: Kube
    settings: OperatorSettings
    emit: Emit
    status_clock: StatusClock = field(default_factory=StatusClock)
    identities: JobIdentities = field(default_factory=JobIdentities)

"""The environment a Job's program is configured by: one pydantic model per kind of Job, which
the operator's builders write as container ``env`` and the program reads back, field for field.

A field ``some_name`` travels as ``MODELFLEET_SOME_NAME`` unless the class names other
variables for it (``HF_TOKEN`` and the like, which every hub tool reads). Values are strings as
Kubernetes wants them: lists as JSON, booleans as ``true``/``false``, enums by value. Secret
fields are never written: their variable comes from a Secret (``valueFrom``) at run time.
"""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Mapping
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, ClassVar, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, SecretStr

PREFIX = "MODELFLEET_"


def _is_list(annotation: Any) -> bool:
    """True for ``list[...]`` and ``list[...] | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_list(arm) for arm in get_args(annotation))
    return get_origin(annotation) is list


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return json.dumps(
            [_env_text(item) if isinstance(item, PurePath) else item for item in value]
        )
    return str(value)


class JobEnv(BaseModel):
    """Base of a Job's settings: :meth:`to_env` on the operator's side, :meth:`from_env` in the
    Job. Built from values only, never from the building process's own environment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    ENV_NAMES: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Fields read from other variables than ``MODELFLEET_<FIELD>``; the first is written."""

    status_target: str | None = Field(default=None, pattern=r"^[^/]+/[^/]+$")
    """``<namespace>/<name>`` of the object whose status shows live progress; unset: none."""
    progress_interval: float = Field(default=5.0, gt=0)
    """Least seconds between two status patches."""
    termination_log: Path | None = None
    """Where the result line goes; /dev/termination-log when writable and unset."""

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """The variables ``field`` is read from, in order of precedence."""
        return cls.ENV_NAMES.get(field, (PREFIX + field.upper(),))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """The settings ``environ`` holds; variables of no field are ignored. Raises pydantic's
        ValidationError naming the field of a value that does not parse."""
        values: dict[str, Any] = {}
        for field, info in cls.model_fields.items():
            for name in cls.env_names(field):
                if name not in environ:
                    continue
                raw: Any = environ[name]
                if _is_list(info.annotation):
                    # Left a string when it is not JSON: validation then names the field.
                    with contextlib.suppress(ValueError):
                        raw = json.loads(raw)
                values[field] = raw
                break
        return cls.model_validate(values)

    def to_env(self) -> list[dict[str, str]]:
        """Container ``env`` entries that :meth:`from_env` reads back as these settings: every
        field set explicitly, in the class's order; secrets left out."""
        env = []
        for field in type(self).model_fields:
            value = getattr(self, field)
            if field not in self.model_fields_set or value is None or isinstance(value, SecretStr):
                continue
            env.append({"name": self.env_names(field)[0], "value": _env_text(value)})
        return env

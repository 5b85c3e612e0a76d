"""Every key of the config file, read from the settings model: the docs are checked with it.

Paths are written as in docs/configuration.md: `upstream.base_url`, `principals[].user`,
`quotas.users.<user>[].limit`; a `<...>` segment is a key the operator chooses.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.settings.config import GatewayConfig


class Key(NamedTuple):
    """A config key: its path, whether the file must give it, and its default otherwise."""

    path: str
    required: bool
    default: Any


def _strip(annotation: Any) -> Any:
    """The type under Annotated and `| None`."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        args = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return _strip(args[0])
    return annotation


def _children(path: str, annotation: Any) -> Iterator[Key]:
    """Keys below a field of this type: a section's fields, list items', mapping values'."""
    annotation = _strip(annotation)
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from model_keys(annotation, path)
    elif origin is tuple:
        yield from _children(f"{path}[]", get_args(annotation)[0])
    elif origin is dict:
        yield from _children(f"{path}.<>", get_args(annotation)[1])


def _default(field: FieldInfo) -> Any:
    return field.get_default(call_default_factory=True)


def model_keys(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    """Every key of `model`, depth first, sections included."""
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        required = field.is_required()
        yield Key(path, required, None if required else _default(field))
        yield from _children(path, field.annotation)


def config_keys() -> list[Key]:
    """Every key a gateway config file may hold."""
    return list(model_keys(GatewayConfig))

"""A ``model:`` section (a plain dict) -> :class:`ModelConfig`, with the spec's own types and rules.

Used for dicts handed to :func:`model_zoo.build.build_model` and for the ``model_config`` of a model bundle
(JSON): :func:`model_zoo.schema.from_dict` in its exact mode, so unknown keys, wrong types, values outside
a ``Literal`` and numbers out of range fail here, with the dotted path, before any layer is sized; numbers
are taken as written (no YAML forms) and component names are checked by their registries when the network
is built. Its own module, since both :mod:`model_zoo.build` and :mod:`model_zoo.network` need it and the
first imports the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from model_zoo.config import ModelConfig
from model_zoo.schema import from_dict


def model_config_from_dict(data: Mapping[str, Any] | ModelConfig, path: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from the ``model:`` section of a spec (missing keys take their defaults);
    :class:`model_zoo.schema.SpecError` (a ``ValueError``) names the bad field."""
    if isinstance(data, ModelConfig):
        return data
    return from_dict(ModelConfig, data, path, exact=True)

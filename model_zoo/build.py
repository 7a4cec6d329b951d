"""``build_model(cfg)``: the one entry point from a ``model:`` section (dict or :class:`ModelConfig`).

A dict goes through :func:`model_zoo.convert.model_config_from_dict` (the spec's validator, errors naming
the dotted path) before any layer is sized from it; component names are checked by their registries when
the model is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from model_zoo.config import ModelConfig
from model_zoo.convert import model_config_from_dict
from model_zoo.network import JointNet

__all__ = ["build_model", "model_config_from_dict"]


def build_model(cfg: ModelConfig | Mapping[str, Any], class_names: Sequence[str] | None = None) -> JointNet:
    """Build the joint network named by ``cfg``; ``class_names`` (label order) resolve named latent-aug
    targets."""
    return JointNet(model_config_from_dict(cfg), class_names=class_names)

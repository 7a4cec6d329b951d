"""Model zoo: registered encoders, decoders, bottlenecks, attentions, latent augmentation, heads and losses,
assembled by :func:`build_model` into one joint segmentation + classification network.

Exports load lazily (PEP 562), so ``import model_zoo.config`` (spec validation, ``launch.py audit``) does not
pay for importing torch, timm and smp; ``model_zoo.<name>`` imports the owning module, which fills its
registry.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ATTENTIONS": "attention",
    "BENCHMARK": "encoders",
    "BOTTLENECKS": "bottleneck",
    "BUNDLE_FORMAT": "bundle",
    "CLS_LOSSES": "losses",
    "DECODERS": "decoders",
    "LATENT_AUG_MODES": "latent_aug",
    "SEG_LOSSES": "losses",
    "BundleError": "bundle",
    "ClsHeadConfig": "config",
    "InputShapeError": "network",
    "JointNet": "network",
    "JointOutput": "network",
    "LatentAugConfig": "config",
    "LatentAugmentation": "latent_aug",
    "LossConfig": "config",
    "MissingWeightsError": "weights",
    "ModelConfig": "config",
    "Registry": "registry",
    "UnknownComponentError": "registry",
    "build_encoder": "encoders",
    "build_loss": "losses",
    "build_model": "build",
    "check_encoder_name": "encoders",
    "check_input_shape": "network",
    "load_bundle": "bundle",
    "model_config_from_dict": "convert",
    "save_bundle": "bundle",
}

# Eager on purpose: the submodule has the function's name, and importing it would otherwise leave the module
# object at ``model_zoo.describe``. ``model_zoo/describe.py`` imports torch only inside the function.
from model_zoo.describe import describe  # noqa: E402

__all__ = ["__version__", "describe", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"model_zoo.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""Encoders: every smp encoder, every timm backbone (``tu-<name>``), torchvision adapters (``tv-<name>``)
and nnU-Net's plain convolutional encoder for training from scratch (``plain_bn``, ``plain_in``).

All encoders follow smp's convention: ``forward(x)`` returns ``depth + 1`` feature maps, the input first,
then strides 2, 4, 8, 16, 32 (capped by ``output_stride`` when dilated); ``out_channels`` lists their
channels (index 0 = input channels) and ``output_stride`` the deepest stride.

The ``tv-`` adapter wraps torchvision classifiers that neither smp nor timm provide (ShuffleNet V2,
GoogLeNet) with ``torchvision.models.feature_extraction.create_feature_extractor``, taking one node per
stride; both families have a stride-2 stem, so no stride is missing. They cannot be dilated, so they
work with every decoder except those that need output stride 8/16 (DeepLabV3/V3+). The plain encoders
(:mod:`model_zoo.plain_encoder`) have no pretrained weights and cannot be dilated either.

``BENCHMARK`` is the original 20-backbone benchmark of the thesis, mapped to buildable names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model_zoo import weights as W
from model_zoo.plain_encoder import PLAIN_ENCODERS, PlainEncoder
from model_zoo.pyramid_encoder import PyramidEncoder
from model_zoo.registry import UnknownComponentError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TorchvisionEncoderSpec:
    """A torchvision classifier as an encoder: one graph node and its channels per stride 2..32."""

    nodes: tuple[str, ...]
    channels: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    drop_prefixes: tuple[str, ...] = ()  # pretrained keys of branches the adapter does not build


def _shufflenet(last: int, c2: int, c3: int) -> TorchvisionEncoderSpec:
    return TorchvisionEncoderSpec(("conv1", "maxpool", "stage2", "stage3", "conv5"), (24, 24, c2, c3, last))


TV_ENCODERS: dict[str, TorchvisionEncoderSpec] = {
    "shufflenet_v2_x0_5": _shufflenet(1024, 48, 96),
    "shufflenet_v2_x1_0": _shufflenet(1024, 116, 232),
    "shufflenet_v2_x1_5": _shufflenet(1024, 176, 352),
    "shufflenet_v2_x2_0": _shufflenet(2048, 244, 488),
    # The Google-trained weights expect (x - 0.5) / 0.5; torchvision's transform_input=True does that
    # conversion from ImageNet-normalised input, we normalise with 0.5/0.5 directly instead.
    "googlenet": TorchvisionEncoderSpec(
        ("conv1", "conv3", "inception3b", "inception4e", "inception5b"),
        (64, 192, 480, 832, 1024),
        {"aux_logits": False, "transform_input": False, "init_weights": True},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        drop_prefixes=("aux1.", "aux2."),
    ),
}

# (thesis label, encoder name); the order of the original benchmark.
_BENCHMARK: tuple[tuple[str, str], ...] = (
    ("ResNet-18", "resnet18"),
    ("ResNet-50", "resnet50"),
    ("ResNet-101", "resnet101"),
    *((f"EfficientNet-B{i}", f"efficientnet-b{i}") for i in range(7)),
    ("MobileNet-V2", "mobilenet_v2"),
    ("MobileNet-V3 small", "tu-mobilenetv3_small_100"),
    ("MobileNet-V3 large", "tu-mobilenetv3_large_100"),
    ("ShuffleNet V2 x0.5", "tv-shufflenet_v2_x0_5"),
    ("ShuffleNet V2 x1.0", "tv-shufflenet_v2_x1_0"),
    ("ShuffleNet V2 x1.5", "tv-shufflenet_v2_x1_5"),
    ("ShuffleNet V2 x2.0", "tv-shufflenet_v2_x2_0"),
    ("GoogLeNet", "tv-googlenet"),
    ("Inception-V3", "tu-inception_v3"),
)
BENCHMARK: list[str] = [name for _, name in _BENCHMARK]
BENCHMARK_LABELS: dict[str, str] = {name: label for label, name in _BENCHMARK}

# Smallest square input (a multiple of 32) an encoder runs at; valid-padding Inception-V3 needs >= 75 px.
MIN_INPUT_SIZE: dict[str, int] = {"tu-inception_v3": 96}


def smp_encoder_names() -> list[str]:
    """The encoder names segmentation_models_pytorch registers itself."""
    from segmentation_models_pytorch.encoders import get_encoder_names

    return sorted(get_encoder_names())


def _valid_names_message() -> str:
    return (
        f"smp encoders: {', '.join(smp_encoder_names())}; "
        "'tu-<timm model>' for any timm model with features_only (timm.list_models()), e.g. tu-resnet18, "
        "tu-efficientnet_b6, tu-convnext_tiny; "
        f"torchvision adapters: {', '.join('tv-' + n for n in TV_ENCODERS)}; "
        f"plain (nnU-Net's, from scratch): {', '.join(PLAIN_ENCODERS)}"
    )


@functools.lru_cache(maxsize=256)
def _timm_features_problem(model_name: str) -> str | None:
    """Why a timm model cannot serve as a ``tu-`` encoder (None if it can); built on the meta device."""
    import timm

    if not timm.is_model(model_name):
        return "not a timm model"
    try:
        with torch.device("meta"):
            model = timm.create_model(model_name, features_only=True, pretrained=False)
        reductions = list(model.feature_info.reduction())
    except Exception as exc:  # timm raises assorted errors for models without feature extraction
        return f"timm cannot build it with features_only=True ({type(exc).__name__}: {exc})"
    n = len(reductions)
    if reductions not in (
        [2 ** (i + 1) for i in range(n)],
        [2 ** (i + 2) for i in range(n)],
        [2**i for i in range(n)],
    ):
        return f"its feature strides {reductions} are not the 2, 4, 8, 16, 32 pattern smp supports"
    return None


def check_encoder_name(name: str) -> None:
    """Raise :class:`UnknownComponentError` (a ValueError) unless ``name`` is a buildable encoder."""
    import difflib

    name = str(name)
    if name.startswith("tu-"):
        problem = _timm_features_problem(name[3:])
        if problem is None:
            return
        import timm

        close = (
            [] if timm.is_model(name[3:]) else difflib.get_close_matches(name[3:], timm.list_models(), n=3)
        )
        hint = f" Did you mean {', '.join('tu-' + c for c in close)}?" if close else ""
        raise UnknownComponentError(f"encoder {name!r}: {problem}.{hint} Valid: {_valid_names_message()}")
    if name.startswith("tv-"):
        if name[3:] in TV_ENCODERS:
            return
    elif name in smp_encoder_names() or name in PLAIN_ENCODERS:
        return
    candidates = smp_encoder_names() + ["tv-" + n for n in TV_ENCODERS] + list(PLAIN_ENCODERS)
    close = difflib.get_close_matches(name, candidates, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownComponentError(f"unknown encoder {name!r}.{hint} Valid: {_valid_names_message()}")


class TorchvisionEncoder(PyramidEncoder):
    """A torchvision classifier cut into smp-style features by ``create_feature_extractor``."""

    def __init__(self, name: str, depth: int = 5, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__(name, (3, *TV_ENCODERS[name].channels[:depth]))
        from torchvision.models import get_model
        from torchvision.models.feature_extraction import create_feature_extractor

        spec = TV_ENCODERS[name]
        model = get_model(name, weights=None, **spec.kwargs)
        if state_dict is not None:
            kept = {k: v for k, v in state_dict.items() if not k.startswith(spec.drop_prefixes)}
            model.load_state_dict(kept, strict=True)
        nodes = spec.nodes[:depth]
        self.body = create_feature_extractor(model, return_nodes={n: str(i) for i, n in enumerate(nodes)})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, *self.body(x).values()]


def encoder_normalisation(
    name: str, weights: str | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) the encoder's pretrained weights expect on ``[0, 1]`` RGB input.

    timm and torchvision models declare it without any download; smp's hub weights state it in the
    cached ``config.json`` (read when named weights are used, else ImageNet's values).
    """
    if name.startswith("tu-"):
        from timm.models import get_pretrained_cfg

        cfg = get_pretrained_cfg(name[3:])
        if cfg is not None and cfg.mean and cfg.std and len(cfg.mean) == 3:
            return tuple(cfg.mean), tuple(cfg.std)
        return IMAGENET_MEAN, IMAGENET_STD
    if name.startswith("tv-"):
        spec = TV_ENCODERS[name[3:]]
        return spec.mean, spec.std
    if W.is_named(weights) and name not in PLAIN_ENCODERS:
        import json

        config = json.loads(W.require_cached(name, str(weights))[0].read_text())
        if "mean" in config and "std" in config:
            return tuple(config["mean"]), tuple(config["std"])
    return IMAGENET_MEAN, IMAGENET_STD


def build_encoder(
    name: str, weights: str | None = None, depth: int = 5, output_stride: int = 32
) -> nn.Module:
    """An encoder with ``.out_channels`` (input channels first) and ``.output_stride``.

    ``weights``: None (random init), a named set (``imagenet``; read from the local cache only, see
    :mod:`model_zoo.weights`) or a path to a ``.pth``/``.safetensors`` state dict.
    """
    from segmentation_models_pytorch.encoders import get_encoder

    check_encoder_name(name)
    if not 1 <= depth <= 5:
        raise ValueError(f"model.encoder_depth: expected 1..5, got {depth}")
    named = W.is_named(weights)
    if (name.startswith("tv-") or name in PLAIN_ENCODERS) and output_stride != 32:
        raise ValueError(
            f"encoder {name!r} cannot be dilated, but the decoder asks for output stride "
            f"{output_stride}: set model.decoder_options.encoder_output_stride: 32 where the decoder "
            "allows it (pan), or use an smp / tu- encoder"
        )
    if name in PLAIN_ENCODERS:
        if named:
            W.sources(name, str(weights))  # raises: no named weights exist for it
        encoder: nn.Module = PlainEncoder(name, depth)
    elif name.startswith("tv-"):
        state = None
        if named:
            (path,) = W.require_cached(name, str(weights))
            state = W.read_state_dict(path)
        encoder = TorchvisionEncoder(name[3:], depth, state)
    elif name.startswith("tu-"):
        kwargs: dict[str, Any] = {}
        if named:
            (path,) = W.require_cached(name, str(weights))
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        encoder = get_encoder(
            name,
            in_channels=3,
            depth=depth,
            weights=True if named else None,
            output_stride=output_stride,
            **kwargs,
        )
    else:
        encoder = get_encoder(name, in_channels=3, depth=depth, weights=None, output_stride=output_stride)
        if named:
            from safetensors.torch import load_file

            _, path = W.require_cached(name, str(weights))
            encoder.load_state_dict(load_file(str(path), device="cpu"))
    if weights is not None and not named:
        W.load_into(encoder, W.read_state_dict(weights), source=str(weights))
    return encoder


def min_input_size(name: str) -> int:
    """Smallest side (pixels) the encoder runs at; the stride constraint comes on top."""
    return MIN_INPUT_SIZE.get(name, 1)


def describe_families() -> dict[str, Sequence[str] | str]:
    """What ``launch.py models`` prints about encoders."""
    return {
        "benchmark": [f"{n} ({BENCHMARK_LABELS[n]})" for n in BENCHMARK],
        "smp": smp_encoder_names(),
        "timm": "tu-<name> for any timm model that supports features_only (see timm.list_models())",
        "torchvision": ["tv-" + n for n in TV_ENCODERS],
        "plain": [f"{n} ({spec.description})" for n, spec in PLAIN_ENCODERS.items()],
    }

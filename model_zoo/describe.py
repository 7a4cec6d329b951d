"""``describe(cfg)``: parameters per part, encoder channels, strides and a FLOP estimate of a model config.

Torch is imported inside the function so that ``import model_zoo`` stays light (see ``__init__``).
"""

from __future__ import annotations

import dataclasses
from typing import Any


def describe(cfg: Any, image_size: int = 256) -> dict[str, Any]:
    """Build ``cfg`` (a ``model:`` dict or ModelConfig) with random weights and summarise it.

    FLOPs are ``torch.utils.flop_counter.FlopCounterMode``'s count (2 per multiply-add) for one forward
    pass of a ``1 x 1 x image_size x image_size`` input in eval mode; it counts convolutions and matrix
    products, not elementwise ops or FFTs, so it is an estimate.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from model_zoo.build import build_model, model_config_from_dict
    from model_zoo.network import check_input_shape

    config = model_config_from_dict(cfg)
    # structure only: random weights give the same counts and need no weight cache
    config = dataclasses.replace(config, encoder_weights=None)
    check_input_shape(config, image_size, image_size)
    model = build_model(config).eval()

    def count(module: torch.nn.Module) -> dict[str, int]:
        params = list(module.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
        }

    parts = {name: count(child) for name, child in model.named_children()}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, image_size, image_size))
    flops = int(counter.get_total_flops())
    return {
        "encoder": config.encoder,
        "decoder": config.decoder,
        "bottleneck": config.bottleneck,
        "attention": config.attention,
        "latent_aug": config.latent_aug.mode,
        "params": {**count(model), "by_part": parts},
        "encoder_channels": list(model.encoder_channels),
        "output_stride": model.output_stride,
        "input_divisor": model.input_divisor,
        "min_input_size": model.min_input_size,
        "normalisation": {
            "mean": model.input_mean.flatten().tolist(),
            "std": model.input_std.flatten().tolist(),
        },
        "image_size": image_size,
        "flops": flops,
        "gflops": round(flops / 1e9, 3),
    }

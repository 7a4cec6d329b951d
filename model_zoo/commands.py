"""``launch.py models`` (list registered components, describe a spec's model) and
``launch.py fetch-weights``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any


def registered_components() -> dict[str, Any]:
    """Everything a spec's ``model:`` / ``train.loss`` section can name, with one line of help each."""
    import typing

    from model_zoo.attention import ATTENTIONS
    from model_zoo.bottleneck import BOTTLENECKS
    from model_zoo.config import LatentAugConfig
    from model_zoo.decoders import DECODER_ATTENTIONS, DECODERS
    from model_zoo.encoders import describe_families
    from model_zoo.heads import POOLINGS
    from model_zoo.losses import CLS_LOSSES, SEG_LOSSES

    return {
        "encoders": describe_families(),
        "decoders": {
            n: {"help": h, "options": DECODERS.get(n).options} for n, h in DECODERS.describe().items()
        },
        "decoder_attentions": list(DECODER_ATTENTIONS),
        "bottlenecks": BOTTLENECKS.describe(),
        "attentions": ATTENTIONS.describe(),
        "latent_aug_modes": list(typing.get_args(typing.get_type_hints(LatentAugConfig)["mode"])),
        "poolings": list(POOLINGS),
        "seg_losses": SEG_LOSSES.describe(),
        "cls_losses": CLS_LOSSES.describe(),
    }


def _print_listing(info: dict[str, Any]) -> None:
    enc = info["encoders"]
    print("encoders")
    print(f"  benchmark (the thesis' encoder benchmark, {len(enc['benchmark'])} backbones):")
    for line in enc["benchmark"]:
        print(f"    {line}")
    print(f"  timm: {enc['timm']}")
    print(f"  torchvision adapters: {', '.join(enc['torchvision'])}")
    print(
        textwrap.fill(
            "smp: " + ", ".join(enc["smp"]), width=110, initial_indent="  ", subsequent_indent="    "
        )
    )
    print("decoders (model.decoder; model.decoder_options takes the listed smp keywords)")
    for name, d in info["decoders"].items():
        print(f"  {name:14s} {d['help']}")
        print(f"  {'':14s}   options: {', '.join(f'{k}={v!r}' for k, v in d['options'].items()) or '-'}")
    print(
        "decoder attention (model.decoder_attention, unet/unetplusplus): "
        f"{', '.join(info['decoder_attentions'])}"
    )
    for title, key in (
        ("bottlenecks", "bottlenecks"),
        ("attentions", "attentions"),
        ("segmentation losses (train.loss.seg)", "seg_losses"),
        ("classification losses (train.loss.cls)", "cls_losses"),
    ):
        print(title)
        for name, help_ in info[key].items():
            print(f"  {name:14s} {help_}")
    print(f"latent augmentation modes: {', '.join(info['latent_aug_modes'])}")
    print(f"classification pooling: {', '.join(info['poolings'])}")


def _print_description(d: dict[str, Any]) -> None:
    print(
        f"{d['encoder']} + {d['bottleneck']} + {d['attention']} + {d['decoder']} "
        f"(latent aug: {d['latent_aug']})"
    )
    print(f"  parameters: {d['params']['total']:,} ({d['params']['trainable']:,} trainable)")
    for part, n in d["params"]["by_part"].items():
        if n["total"]:
            print(f"    {part:12s} {n['total']:>12,}")
    print(f"  encoder channels: {d['encoder_channels']}, output stride {d['output_stride']}")
    print(f"  input: multiples of {d['input_divisor']}, at least {d['min_input_size']} px")
    print(f"  FLOPs at {d['image_size']}x{d['image_size']}: {d['gflops']} GFLOPs")


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered components, or describe the ``model:`` section of a spec."""
    from model_zoo.registry import UnknownComponentError

    if args.describe:
        import yaml

        from model_zoo.describe import describe

        path = Path(args.describe)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            print(f"error: cannot read {path}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            print(f"error: {path}: no 'model:' mapping at the top level", file=sys.stderr)
            return 2
        try:
            info = describe(data["model"], image_size=args.size)
        except (UnknownComponentError, ValueError, FileNotFoundError) as exc:
            # the model zoo checks a config as a library does, with ValueError: said here with the file
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_description(info)
        return 0
    info = registered_components()
    if args.json:
        print(json.dumps(info, indent=2, default=list))
    else:
        _print_listing(info)
    return 0


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    """Download named encoder weights into the caches that builds read offline (needs internet)."""
    import os

    from model_zoo import weights as W
    from model_zoo.encoders import check_encoder_name

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        print(
            "note: HF_HUB_OFFLINE is set; Hugging Face downloads will fail (unset it to fetch)",
            file=sys.stderr,
        )
    failed = 0
    for name in args.encoders:
        try:
            check_encoder_name(name)
            paths = W.fetch(name, args.weights)
        except Exception as exc:  # report every encoder, then fail
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        for path in paths:
            print(f"{name}: {path}")
    return 1 if failed else 0

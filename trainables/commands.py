"""``launch.py`` verbs owned by ``trainables``: ``train``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from trainables.spec import Spec, load_spec, with_data_root


def default_out_dir(spec: Spec, wandb: bool) -> Path:
    """``runs/train/<name>``; a W&B sweep agent's run gets ``runs/train/<name>/<sweep>-<run id>``."""
    out = Path("runs") / "train" / spec.name
    sweep, run_id = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    if wandb and sweep and run_id:
        out = out / f"{sweep}-{run_id}"
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train one spec with the K-fold lockstep loop; exit 0 on success, 1 on a failed run, 2 on bad input."""
    from trainables.train import run_train

    spec = load_spec(args.spec, args.overrides)
    if args.data:
        spec = with_data_root(spec, args.data)
    out = Path(args.out) if args.out else default_out_dir(spec, args.wandb)
    run_train(spec, out, device=args.device, resume=args.resume, wandb=args.wandb)
    return 0

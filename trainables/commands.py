"""``launch.py`` verbs owned by ``trainables``: ``train``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainables.spec import Spec, load_spec, spec_from_dict, spec_to_dict


def default_out_dir(spec: Spec, wandb: bool) -> Path:
    """``runs/train/<name>``; a W&B sweep agent's run gets ``runs/train/<name>/<sweep>-<run id>``."""
    out = Path("runs") / "train" / spec.name
    sweep, run_id = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    if wandb and sweep and run_id:
        out = out / f"{sweep}-{run_id}"
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """Train one spec with the K-fold lockstep loop; exit 0 on success, 1 on a failed run, 2 on bad input."""
    from trainables.data.errors import DataError
    from trainables.device import DeviceError
    from trainables.schema import SpecError
    from trainables.train import TrainError, run_train

    try:
        spec = load_spec(args.spec, args.overrides)
        if args.data:
            d = spec_to_dict(spec)
            d["data"]["root"] = str(args.data)
            spec = spec_from_dict(d, type(spec))
        out = Path(args.out) if args.out else default_out_dir(spec, args.wandb)
        run_train(spec, out, device=args.device, resume=args.resume, wandb=args.wandb)
    except (SpecError, DataError, DeviceError, TrainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from trainables.loop import NonFiniteLossError  # already imported when the loop raised it

        if not isinstance(exc, NonFiniteLossError):
            raise
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    return 0

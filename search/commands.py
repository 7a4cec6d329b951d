"""``launch.py`` verbs of the search: ``search``, ``resume``, ``wandb-sweep``.

Arguments (argparse names): search ``spec``, ``storage``, ``name``, ``address``, ``resume``, ``overwrite``,
``overrides`` (``--set k=v``), ``data``; resume ``exp_dir``, ``address``; wandb-sweep ``spec``, ``out``,
``overrides``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.failures import FatalTrialError, WandbLoginError
from trainables.data.errors import DataError
from trainables.schema import SpecError

if TYPE_CHECKING:
    from search.config import SearchSpec


def _overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(getattr(args, "overrides", None) or [])
    data = getattr(args, "data", None)
    if data:
        overrides.append(f"data.root={Path(data).expanduser().resolve()}")
    return overrides


def _load(args: argparse.Namespace) -> SearchSpec:
    from search.config import load_search_spec
    from search.space import absolute_weight_paths

    spec = load_search_spec(args.spec, _overrides(args))
    if spec.data.root is not None and not Path(spec.data.root).is_absolute():
        # The saved spec.yaml must work from any folder (resume, analysis).
        spec.data.root = str(Path(spec.data.root).expanduser().resolve())
    absolute_weight_paths(spec)  # trials run in their own folders: weight files by absolute path
    return spec


def _fail(exc: Exception) -> int:
    source = getattr(exc, "source", None)
    print(f"error in {source}:\n{exc}" if source else f"error: {exc}", file=sys.stderr)
    return 2


def _summary(results: Any) -> int:
    """Exit status: 0 when at least one trial finished without an error."""
    errors = sum(1 for r in results if r.error)
    total = len(results)
    if errors:
        print(f"{errors} of {total} trials ended with an error (see their error.txt)", file=sys.stderr)
    return 0 if total and errors < total else 1


def cmd_search(args: argparse.Namespace) -> int:
    """Validate the spec (space included) before Ray starts, then run or continue the search."""
    from search.resources import ResourceError
    from search.tuner import ExperimentError, run_search

    try:
        spec = _load(args)
        results = run_search(
            spec,
            storage=getattr(args, "storage", None),
            name=getattr(args, "name", None),
            address=getattr(args, "address", None),
            resume=bool(getattr(args, "resume", False)),
            overwrite=bool(getattr(args, "overwrite", False)),
        )
    except (SpecError, DataError, ExperimentError, ResourceError, FatalTrialError, WandbLoginError) as exc:
        return _fail(exc)
    return _summary(results)


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted experiment from its folder."""
    from search.resources import ResourceError
    from search.tuner import ExperimentError, restore_search

    try:
        results = restore_search(args.exp_dir, address=getattr(args, "address", None))
    except (SpecError, DataError, ExperimentError, ResourceError, FatalTrialError, WandbLoginError) as exc:
        return _fail(exc)
    return _summary(results)


def cmd_wandb_sweep(args: argparse.Namespace) -> int:
    """Write the spec's space as a W&B sweep config."""
    from search.sweep import write_sweep

    try:
        spec = _load(args)
    except SpecError as exc:
        return _fail(exc)
    out = write_sweep(spec, args.spec, args.out)
    print(f"wrote {out}; start it with: wandb sweep {out}", file=sys.stderr)
    return 0

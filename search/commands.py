"""``launch.py`` verbs of the search: ``search``, ``resume``, ``wandb-sweep``.

Arguments (argparse names): search ``spec``, ``storage``, ``name``, ``address``, ``resume``, ``overwrite``,
``overrides`` (``--set k=v``), ``data``; resume ``exp_dir``, ``address``; wandb-sweep ``spec``, ``out``,
``overrides``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.config import SearchSpec


def _load(args: argparse.Namespace) -> SearchSpec:
    from search.config import load_search_spec
    from search.space import absolute_weight_paths
    from trainables.spec import with_data_root

    spec = load_search_spec(args.spec, list(getattr(args, "overrides", None) or []))
    root = getattr(args, "data", None) or spec.data.root
    if root is not None:
        spec = with_data_root(spec, root)  # absolute: the saved spec.yaml works from any folder
    absolute_weight_paths(spec)  # trials run in their own folders: weight files by absolute path
    return spec


def _verbose(args: argparse.Namespace) -> bool | None:
    """``--verbose``: True; else None (``BUS_VERBOSE`` decides, quiet when unset)."""
    return True if getattr(args, "verbose", False) else None


def _summary(results: Any) -> int:
    """Exit status: 0 when at least one trial finished without an error."""
    errors = sum(1 for r in results if r.error)
    total = len(results)
    if errors:
        print(f"{errors} of {total} trials ended with an error (see their error.txt)", file=sys.stderr)
    return 0 if total and errors < total else 1


def cmd_search(args: argparse.Namespace) -> int:
    """Validate the spec (space included) before Ray starts, then run or continue the search."""
    from search.tuner import run_search

    results = run_search(
        _load(args),
        storage=getattr(args, "storage", None),
        name=getattr(args, "name", None),
        address=getattr(args, "address", None),
        resume=bool(getattr(args, "resume", False)),
        overwrite=bool(getattr(args, "overwrite", False)),
        verbose=_verbose(args),
    )
    return _summary(results)


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted experiment from its folder."""
    from search.tuner import restore_search

    return _summary(
        restore_search(args.exp_dir, address=getattr(args, "address", None), verbose=_verbose(args))
    )


def cmd_wandb_sweep(args: argparse.Namespace) -> int:
    """Write the spec's space as a W&B sweep config."""
    from search.sweep import write_sweep

    out = write_sweep(_load(args), args.spec, args.out)
    print(f"wrote {out}; start it with: wandb sweep {out}", file=sys.stderr)
    return 0

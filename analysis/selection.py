"""From a leaderboard to one chosen trial and its complete, validated spec (``best_config.yaml``).

The spec is the experiment's ``name``/``data``/``model``/``train`` sections (the resolved ``spec.yaml``
the trials ran with) with the trial's flat dotted parameters written over them; the search sections are
left out, so ``train`` (a plain :class:`~trainables.spec.Spec`) and ``refit`` accept it unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from analysis.results import ExperimentResults
from search.errors import ExperimentError
from trainables.schema import SpecError
from trainables.spec import Spec, dump_spec, spec_from_dict, spec_sections, trial_spec_dict

if TYPE_CHECKING:
    from search.space import Space


def choose_trial(board: pd.DataFrame, trial_id: str | None = None) -> pd.Series:
    """The leaderboard row of ``trial_id``, or of the best trial that has a score and did not fail."""
    if board.empty:
        raise ExperimentError("the leaderboard is empty: no trial to choose")
    if trial_id is not None:
        match = board[board["trial_id"] == str(trial_id)]
        if match.empty:
            ids = ", ".join(board["trial_id"].astype(str).head(20))
            raise ExperimentError(f"--trial {trial_id}: no such trial; trials (best first): {ids}")
        return match.iloc[0]
    ok = board[board["score"].notna() & (board["status"] != "error")]
    if ok.empty:
        raise ExperimentError(
            "no trial reported a score without failing; see the leaderboard's status column "
            "(pass --trial ID to use a failed trial's partial result anyway)"
        )
    return ok.iloc[0]


def experiment_space(results: ExperimentResults) -> Space | None:
    """The experiment's parsed ``search.space`` (None when the spec has none)."""
    from search.config import SearchSpec
    from search.space import is_integer_field, parse_space

    raw = results.space
    if not raw:
        return None
    return parse_space(raw, lambda key: is_integer_field(SearchSpec, key))


def trial_overrides(results: ExperimentResults, trial_id: str) -> dict[str, Any]:
    """The spec fields a trial changed, exactly as its trainable applied them: the active parameters
    of the space (:meth:`search.space.Space.resolve`); without a space, every dotted spec key."""
    if trial_id not in results.params:
        raise ExperimentError(f"trial {trial_id}: not in {results.exp_dir}")
    params = results.params[trial_id]
    space = experiment_space(results)
    if space is not None:
        return space.resolve(params)
    sections = spec_sections(Spec)
    return {k: v for k, v in params.items() if k.split(".", 1)[0] in sections and v is not None}


def trial_spec(results: ExperimentResults, trial_id: str) -> Spec:
    """The spec one trial trained with: :func:`trainables.spec.trial_spec_dict` (the trainable's own
    function) over ``spec.yaml`` and the trial's parameters, named after the trial; errors name the trial."""
    d = trial_spec_dict(results.spec, trial_overrides(results, trial_id))
    d["name"] = safe_name(f"{results.name}-{trial_id}")
    try:
        return spec_from_dict(d, Spec)
    except SpecError as exc:
        raise SpecError(
            [f"trial {trial_id} of {results.exp_dir}: its config is not a valid spec:", *exc.errors]
        ) from None


def safe_name(text: str) -> str:
    """``text`` with characters a spec name does not allow replaced by ``-``."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return cleaned or "best"


def refit_epochs(row: Mapping[str, Any]) -> int:
    """``refit --epochs auto``: the mean over folds of each fold's best epoch, rounded, at least 1.

    Falls back to the epoch of the best CV mean, then to the epochs the trial ran, when the folds'
    best epochs were not reported.
    """
    folds = [float(e) for e in row.get("fold_best_epochs") or [] if _finite(e) and float(e) > 0]
    if folds:
        return max(1, math.floor(sum(folds) / len(folds) + 0.5))
    for key in ("best_epoch", "epochs_run"):
        if _finite(row.get(key)) and float(row[key]) > 0:
            return int(row[key])
    raise ExperimentError(f"trial {row.get('trial_id')}: no epoch was reported, cannot choose refit epochs")


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def write_best_config(spec: Spec, path: str | Path, provenance: Mapping[str, Any]) -> Path:
    """Write ``spec`` as YAML with ``provenance`` (experiment, trial, score...) as header comments."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "".join(f"# {k}: {v}\n" for k, v in provenance.items())
    path.write_text(header + dump_spec(spec), encoding="utf-8")
    return path

"""``--smoke``: shrink one stage spec so the whole pipeline checks its mechanics in minutes on a CPU.

The shrink keeps each stage a real search of the same kind (same algorithm, scheduler, space keys and
conditions); it only makes it small:

1. ``smoke.set``: dotted keys set in every stage (image size, epochs, folds, resources, W&B...); an
   early-stopping scheduler's grace period is cut to the shrunk ``train.epochs``;
2. encoder stand-ins: every encoder the stage names (its fixed ``model.encoder``, the values of a searched
   ``model.encoder``, ``when`` conditions and ``points_to_evaluate``) that the map lists is replaced by its
   stand-in; values that collapse onto one stand-in are kept once;
3. a grid stage keeps the first ``grid_values`` values of each parameter (a conditional parameter whose
   condition can no longer hold is dropped) and no ``points_to_evaluate`` (they would repeat grid points);
   an Optuna / random stage runs ``num_samples`` trials, keeping the points that still fit the space.

:class:`ShrinkInfo` records what changed, for the pipeline report.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.pipeline_config import SmokeConfig
from trainables.spec import set_dotted

DISCRETE = ("choice", "grid")


@dataclass
class ShrinkInfo:
    """What the shrink did to one stage."""

    stand_ins: dict[str, str] = field(default_factory=dict)
    dropped_values: dict[str, list[Any]] = field(default_factory=dict)
    dropped_params: list[str] = field(default_factory=list)
    num_samples: tuple[int, int] | None = None
    points_dropped: int = 0

    def grouped_stand_ins(self) -> dict[str, list[str]]:
        """stand-in -> the encoders it replaces."""
        out: dict[str, list[str]] = {}
        for original, stand_in in self.stand_ins.items():
            out.setdefault(stand_in, []).append(original)
        return out

    def lines(self) -> list[str]:
        """One human-readable line per change."""
        out = [f"stand-in {s} for {', '.join(o)}" for s, o in self.grouped_stand_ins().items()]
        out += [f"{k}: left out {', '.join(map(str, v))}" for k, v in self.dropped_values.items()]
        out += [f"{k}: dropped (its condition can no longer hold)" for k in self.dropped_params]
        if self.num_samples and self.num_samples[0] != self.num_samples[1]:
            out.append(f"num_samples {self.num_samples[0]} -> {self.num_samples[1]}")
        if self.points_dropped:
            out.append(f"{self.points_dropped} of points_to_evaluate left out")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "stand_ins": dict(self.stand_ins),
            "dropped_values": {k: list(v) for k, v in self.dropped_values.items()},
            "dropped_params": list(self.dropped_params),
            "num_samples": list(self.num_samples) if self.num_samples else None,
            "points_dropped": self.points_dropped,
        }


def _label(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _dedupe(values: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in values:
        if _label(v) not in seen:
            seen.add(_label(v))
            out.append(v)
    return out


class _StandIns:
    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        self.used: dict[str, str] = {}

    def __call__(self, name: Any) -> Any:
        if isinstance(name, str) and name in self.mapping:
            self.used[name] = self.mapping[name]
            return self.mapping[name]
        return name


def _default(section: str, key: str) -> Any:
    """Default of a search / model field when the spec leaves it out."""
    from model_zoo.config import ModelConfig
    from search.config import SearchConfig

    cls = {"search": SearchConfig, "model": ModelConfig}[section]
    return getattr(cls(), key)


def shrink_stage(raw: Mapping[str, Any], smoke: SmokeConfig) -> tuple[dict[str, Any], ShrinkInfo]:
    """The smoke version of one stage spec (plain dict, not yet validated) and what changed."""
    d = copy.deepcopy(dict(raw))
    for key, value in smoke.set.items():
        set_dotted(d, key, copy.deepcopy(value))
    info = ShrinkInfo()
    sub = _StandIns(smoke.encoder_stand_ins)
    model = d.setdefault("model", {})
    model["encoder"] = sub(model.get("encoder", _default("model", "encoder")))
    search = d.setdefault("search", {})
    space: dict[str, dict[str, Any]] = search.setdefault("space", {})
    for key, entry in space.items():
        if key == "model.encoder":
            for dist in DISCRETE:
                if isinstance(entry.get(dist), list):
                    entry[dist] = _dedupe([sub(v) for v in entry[dist]])
        when = entry.get("when")
        if isinstance(when, dict) and isinstance(when.get("model.encoder"), list):
            when["model.encoder"] = _dedupe([sub(v) for v in when["model.encoder"]])
    points = [dict(p) for p in search.get("points_to_evaluate") or []]
    for p in points:
        if "model.encoder" in p:
            p["model.encoder"] = sub(p["model.encoder"])

    _fit_grace_period(d)
    if search.get("algorithm", _default("search", "algorithm")) == "grid":
        _cap_grid(space, smoke.grid_values, info)
        info.points_dropped = len(points)
        search["points_to_evaluate"] = []
    else:
        before = int(search.get("num_samples", _default("search", "num_samples")))
        after = min(before, smoke.num_samples)
        search["num_samples"] = after
        info.num_samples = (before, after)
        kept = _dedupe([p for p in points if _fits(space, p)])[:after]
        info.points_dropped = len(points) - len(kept)
        search["points_to_evaluate"] = kept
    present = {model["encoder"], *(p.get("model.encoder") for p in search["points_to_evaluate"])}
    enc = space.get("model.encoder") or {}
    present |= {v for dist in DISCRETE for v in enc.get(dist) or [] if isinstance(v, str)}
    info.stand_ins = {a: b for a, b in sub.used.items() if b in present}
    return d, info


def _fit_grace_period(d: dict[str, Any]) -> None:
    """An early-stopping scheduler's grace period cut to the (shrunk) ``train.epochs``."""
    from search.config import SchedulerConfig
    from trainables.config import TrainConfig

    scheduler = d["search"].get("scheduler") or {}
    epochs = int((d.get("train") or {}).get("epochs", TrainConfig().epochs))
    grace = int(scheduler.get("grace_period", SchedulerConfig().grace_period))
    if scheduler.get("type", SchedulerConfig().type) != "fifo" and grace > epochs:
        d["search"]["scheduler"] = {**scheduler, "grace_period": epochs}


def _cap_grid(space: dict[str, dict[str, Any]], n: int, info: ShrinkInfo) -> None:
    for key, entry in space.items():
        for dist in DISCRETE:
            values = entry.get(dist)
            if isinstance(values, list) and len(values) > n:
                info.dropped_values[key] = values[n:]
                entry[dist] = values[:n]
    changed = True
    while changed:  # dropping a parameter can make its children's conditions impossible in turn
        changed = False
        for key in list(space):
            when = space[key].get("when")
            if not isinstance(when, dict):
                continue
            for parent, values in when.items():
                if parent not in space or not isinstance(values, list):
                    continue
                kept = {_label(v) for dist in DISCRETE for v in space[parent].get(dist) or []}
                still = [v for v in values if _label(v) in kept]
                if not still:
                    del space[key]
                    info.dropped_params.append(key)
                    changed = True
                    break
                when[parent] = still


def _fits(space: Mapping[str, Mapping[str, Any]], point: Mapping[str, Any]) -> bool:
    """Whether every value of ``point`` is one the (shrunk) space can take."""
    from search.config import SearchSpec
    from search.space import is_integer_field, parse_space
    from trainables.schema import SpecError

    try:
        parsed = parse_space(dict(space), lambda key: is_integer_field(SearchSpec, key))
    except SpecError:
        return True  # a malformed space is reported by the spec's own validation
    for key, value in point.items():
        if key not in parsed.keys:
            return False
        if value is not None and not parsed[key].contains(value):
            return False
    return True

"""``--smoke``: shrink one stage spec so the whole pipeline checks its mechanics in minutes on a CPU.

The shrink keeps each stage a real search of the same kind (same algorithm, scheduler, space keys and
conditions); it only makes it small:

1. ``smoke.set``: dotted keys set in every stage (image size, epochs, folds, resources, W&B...); an
   early-stopping scheduler's grace period is cut to the shrunk ``train.epochs``;
2. encoder stand-ins: every encoder the stage names (its fixed ``model.encoder``, the values of a searched
   ``model.encoder``, ``when`` conditions and ``points_to_evaluate``) that the map lists is replaced by its
   stand-in; values that collapse onto one stand-in are kept once;
3. a grid stage keeps the first ``grid_values`` values of each parameter (a conditional parameter whose
   condition can no longer hold is dropped, and so are those that depend on it) and no
   ``points_to_evaluate`` (they would repeat grid points); an Optuna / random stage runs ``num_samples``
   trials, keeping the points that still fit the space.

The space is the one a search parses (:func:`search.space.parse_space`); only the values and conditions
that change are written back into the stage's entries. :class:`ShrinkInfo` records what changed, for the
pipeline report.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from model_zoo.config import ModelConfig
from pipeline.config import SmokeConfig
from search.config import SchedulerConfig, SearchConfig, SearchSpec
from search.space import ENCODER_KEY, Param, Space, is_integer_field, parse_space
from trainables.config import TrainConfig
from trainables.schema import SpecError
from trainables.spec import set_dotted


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
        """Plain JSON, as ``pipeline.json`` records it."""
        return {
            "stand_ins": dict(self.stand_ins),
            "dropped_values": {k: list(v) for k, v in self.dropped_values.items()},
            "dropped_params": list(self.dropped_params),
            "num_samples": list(self.num_samples) if self.num_samples else None,
            "points_dropped": self.points_dropped,
        }


def _dedupe(values: Iterable[Any]) -> list[Any]:
    """``values`` without repeats, compared as the space compares choice values (by their JSON text)."""
    out: list[Any] = []
    for v in values:
        if not Param("", "choice", tuple(out)).contains(v):
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


def shrink_stage(raw: Mapping[str, Any], smoke: SmokeConfig) -> tuple[dict[str, Any], ShrinkInfo]:
    """The smoke version of one stage spec (plain dict, not yet validated) and what changed.

    The space is read with :func:`search.space.parse_space`, shrunk as parsed parameters and written back
    into the stage's own ``search.space`` entries (only the values and conditions that changed), so the
    rest of each entry stays as written.
    """
    d = copy.deepcopy(dict(raw))
    for key, value in smoke.set.items():
        set_dotted(d, key, copy.deepcopy(value))
    info = ShrinkInfo()
    sub = _StandIns(smoke.encoder_stand_ins)
    model = d.setdefault("model", {})
    model["encoder"] = sub(model.get("encoder", ModelConfig().encoder))
    search = d.setdefault("search", {})
    written = search.setdefault("space", {})
    space = _parse(written)
    if space is not None:
        space = _with_stand_ins(space, sub)
    points = [dict(p) for p in search.get("points_to_evaluate") or []]
    for p in points:
        if ENCODER_KEY in p:
            p[ENCODER_KEY] = sub(p[ENCODER_KEY])

    _fit_grace_period(d)
    if search.get("algorithm", SearchConfig().algorithm) == "grid":
        if space is not None:
            space = _cap_grid(space, smoke.grid_values, info)
        info.points_dropped = len(points)
        search["points_to_evaluate"] = []
    else:
        before = int(search.get("num_samples", SearchConfig().num_samples))
        after = min(before, smoke.num_samples)
        search["num_samples"] = after
        info.num_samples = (before, after)
        kept = _dedupe(p for p in points if _fits(space, p))[:after]
        info.points_dropped = len(points) - len(kept)
        search["points_to_evaluate"] = kept
    present = {model["encoder"], *(p.get(ENCODER_KEY) for p in search["points_to_evaluate"])}
    if space is not None:
        _write_back(written, space)
        if ENCODER_KEY in space.keys and space[ENCODER_KEY].discrete:
            present |= {v for v in space[ENCODER_KEY].values if isinstance(v, str)}
    info.stand_ins = {a: b for a, b in sub.used.items() if b in present}
    return d, info


def _parse(written: Any) -> Space | None:
    """The stage's space as a search parses it; None when it is malformed (left as written, so that the
    spec's own validation reports it)."""
    if not isinstance(written, Mapping):
        return None
    try:
        return parse_space(written, lambda key: is_integer_field(SearchSpec, key))
    except SpecError:
        return None


def _with_stand_ins(space: Space, sub: _StandIns) -> Space:
    """``model.encoder``'s values and every condition on it with the stand-ins (repeats kept once)."""
    params = []
    for p in space.params:
        if p.key == ENCODER_KEY and p.discrete:
            p = dataclasses.replace(p, values=tuple(_dedupe(map(sub, p.values))))
        when = tuple(
            (parent, tuple(_dedupe(map(sub, values))) if parent == ENCODER_KEY else values)
            for parent, values in p.when
        )
        params.append(dataclasses.replace(p, when=when))
    return Space(tuple(params))


def _fit_grace_period(d: dict[str, Any]) -> None:
    """An early-stopping scheduler's grace period cut to the (shrunk) ``train.epochs``."""
    scheduler = d["search"].get("scheduler") or {}
    epochs = int((d.get("train") or {}).get("epochs", TrainConfig().epochs))
    grace = int(scheduler.get("grace_period", SchedulerConfig().grace_period))
    if scheduler.get("type", SchedulerConfig().type) != "fifo" and grace > epochs:
        d["search"]["scheduler"] = {**scheduler, "grace_period": epochs}


def _cap_grid(space: Space, n: int, info: ShrinkInfo) -> Space:
    """The first ``n`` values of each discrete parameter; a parameter whose condition can no longer hold
    (none of its values left in the parent, or the parent itself dropped) is dropped too."""
    kept: dict[str, Param] = {}
    for p in space.params:  # parents come first, so a dropped parent is known before its children
        if p.discrete and len(p.values) > n:
            info.dropped_values[p.key] = list(p.values[n:])
            p = dataclasses.replace(p, values=p.values[:n])
        when = []
        for parent, values in p.when:
            still = tuple(v for v in values if parent in kept and kept[parent].contains(v))
            if not still:
                break
            when.append((parent, still))
        else:
            kept[p.key] = dataclasses.replace(p, when=tuple(when))
            continue
        info.dropped_params.append(p.key)
    return Space(tuple(kept.values()))


def _write_back(written: dict[Any, Any], space: Space) -> None:
    """Set the shrunk values and conditions in the written space entries; remove dropped parameters. A
    condition written as one value (not a list) stays one value."""
    for key in list(written):
        if str(key) not in space.keys:
            del written[key]
            continue
        p, entry = space[str(key)], written[key]
        if p.discrete:
            entry[p.dist] = list(p.values)
        if p.when:
            before = entry["when"]
            entry["when"] = {
                parent: list(values) if isinstance(before[parent], list) else values[0]
                for parent, values in p.when
            }


def _fits(space: Space | None, point: Mapping[str, Any]) -> bool:
    """Whether every value of ``point`` is one the (shrunk) space can take (True for a malformed space:
    the spec's own validation reports it)."""
    if space is None:
        return True
    return all(
        key in space.keys and (value is None or space[key].contains(value)) for key, value in point.items()
    )

"""YAML search spaces: parsing, validation against the spec, and translation for Optuna and Tune.

A space maps a dotted spec key to one distribution, optionally conditional::

    model.encoder: {choice: [resnet18, tu-test_efficientnet]}
    train.lr: {loguniform: [1.0e-5, 1.0e-3]}
    train.batch_size: {quniform: [4, 16, 4]}
    model.latent_aug.sigma: {uniform: [0.01, 0.2], when: {model.latent_aug.mode: [noise, noise+mixup]}}

Distributions (bounds inclusive): ``choice`` / ``grid`` (a list of values), ``uniform`` / ``loguniform``
``[low, high]``, ``randint`` ``[low, high]`` (integers, both ends included), ``quniform`` /
``qloguniform`` ``[low, high, q]`` (multiples of ``q``). On an integer field (``train.batch_size``) the
continuous ones draw integers. ``when`` names other *discrete* parameters of the space and the values
that switch this one on.

How ``when`` is treated:

- optuna: define-by-run; a parameter is only suggested when its conditions hold, so Optuna's model never
  sees values that had no effect and the trial config holds only active keys.
- random: Tune's generator samples the unconditional parameters; a conditional one is drawn (seeded)
  only when active and is ``None`` otherwise.
- grid: the product of the values is enumerated with inactive parameters set to ``None``, so no
  duplicate trials are run for values that would have no effect.

Everywhere, an inactive (or missing) parameter is dropped from the trial's overrides: the trial runs
with the spec's own value for that field (:meth:`Space.resolve`).
"""

from __future__ import annotations

import difflib
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np

from trainables.schema import SpecError, dataclass_of, field_types, from_dict
from trainables.spec import Spec, flatten, set_dotted, spec_to_dict

DISTRIBUTIONS: dict[str, str] = {
    "choice": "[value, ...]",
    "grid": "[value, ...]",
    "uniform": "[low, high]",
    "loguniform": "[low, high]",
    "randint": "[low, high]",
    "quniform": "[low, high, q]",
    "qloguniform": "[low, high, q]",
}
DISCRETE = ("choice", "grid")
SEARCHABLE_SECTIONS = ("model", "train")
PATH = "search.space"


def _label(value: Any) -> str:
    """Stable text of a choice value (Optuna categoricals must be scalars; lists/dicts go by label)."""
    return json.dumps(value, sort_keys=True)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def to_native(value: Any) -> Any:
    """NumPy scalars (Tune's samplers return them) -> Python values, recursively."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: to_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_native(v) for v in value]
    return value


@dataclass(frozen=True)
class Param:
    """One searched field: its distribution, bounds and the conditions that make it active."""

    key: str
    dist: str
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    q: float | None = None
    integer: bool = False
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def discrete(self) -> bool:
        return self.dist in DISCRETE

    @property
    def log(self) -> bool:
        return self.dist in ("loguniform", "qloguniform")

    def candidates(self) -> list[Any]:
        """The values to check against the spec: every choice, or both bounds."""
        if self.discrete:
            return list(self.values)
        return [self._cast(self.low), self._cast(self.high)]

    def _cast(self, x: float) -> Any:
        return round(x) if self.integer else float(x)

    def _quantize(self, x: float) -> Any:
        if self.q is not None:
            x = min(max(round(x / self.q) * self.q, self.low), self.high)
            x = round(x, 12)
        return self._cast(x)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take (for points_to_evaluate)."""
        if self.discrete:
            return any(_label(value) == _label(v) for v in self.values)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        return self.low <= value <= self.high

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn with ``rng`` (the random algorithm's conditional parameters)."""
        if self.discrete:
            return self.values[int(rng.integers(len(self.values)))]
        if self.dist == "randint":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return self._quantize(x)

    @property
    def by_label(self) -> bool:
        """Whether Optuna sees this parameter's values as labels (a list or mapping among the choices)."""
        return self.discrete and not all(_is_scalar(v) for v in self.values)

    def optuna_value(self, value: Any) -> Any:
        """``value`` as Optuna stores it for this parameter (its label when :attr:`by_label`): what an
        enqueued point (``points_to_evaluate``) must hold so that :meth:`suggest` decodes it back."""
        return _label(value) if self.by_label and value is not None else value

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this parameter (define-by-run)."""
        if self.discrete:
            if not self.by_label:
                return trial.suggest_categorical(self.key, list(self.values))
            by_label = {_label(v): v for v in self.values}
            return by_label[trial.suggest_categorical(self.key, list(by_label))]
        if self.integer:
            step = int(self.q) if self.q is not None and not self.log else 1
            value = trial.suggest_int(self.key, int(self.low), int(self.high), step=step, log=self.log)
            return self._quantize(value)
        if self.q is not None and not self.log:
            return self._quantize(trial.suggest_float(self.key, self.low, self.high, step=self.q))
        # Optuna has no log-scale step: qloguniform samples on the log scale and rounds to q.
        return self._quantize(trial.suggest_float(self.key, self.low, self.high, log=self.log))

    def tune_domain(self) -> Any:
        """The Ray Tune domain of an unconditional parameter (random / grid algorithms)."""
        from ray import tune

        if self.dist == "grid":
            return tune.grid_search(list(self.values))
        if self.dist == "choice":
            return tune.choice(list(self.values))
        lo, hi = self.low, self.high
        if self.integer or self.dist == "randint":
            lo, hi = int(lo), int(hi)
            q = int(self.q) if self.q is not None else None
            if self.log:
                return tune.qlograndint(lo, hi, q) if q else tune.lograndint(lo, hi + 1)
            return tune.qrandint(lo, hi, q) if q else tune.randint(lo, hi + 1)
        if self.dist == "uniform":
            return tune.uniform(lo, hi)
        if self.dist == "loguniform":
            return tune.loguniform(lo, hi)
        if self.dist == "quniform":
            return tune.quniform(lo, hi, self.q)
        return tune.qloguniform(lo, hi, self.q)

    def describe(self) -> str:
        if self.discrete:
            body = f"{self.dist} {list(self.values)}"
        else:
            bounds = [self.low, self.high] + ([self.q] if self.q is not None else [])
            body = f"{self.dist} {bounds}" + (" (integers)" if self.integer else "")
        if self.when:
            body += " when " + ", ".join(f"{k} in {list(v)}" for k, v in self.when)
        return body


@dataclass(frozen=True)
class Space:
    """The parsed space; ``params`` are ordered so that every condition's parent comes first."""

    params: tuple[Param, ...] = ()

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def __getitem__(self, key: str) -> Param:
        for p in self.params:
            if p.key == key:
                return p
        raise KeyError(key)

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params)

    def is_active(self, key: str, config: Mapping[str, Any]) -> bool:
        """A parameter is active when each of its parents is active and holds one of the listed values."""
        for parent, values in self[key].when:
            if not self.is_active(parent, config) or parent not in config:
                return False
            if not any(_label(config[parent]) == _label(v) for v in values):
                return False
        return True

    def resolve(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Trial config -> spec overrides (dotted keys): active parameters only, as Python values.

        A missing value, or ``None`` where ``None`` is not one of the parameter's values, is left out, so
        the spec's own value is used.
        """
        out: dict[str, Any] = {}
        for p in self.params:
            if p.key not in config or not self.is_active(p.key, config):
                continue
            value = to_native(config[p.key])
            if value is None and not (p.discrete and None in p.values):
                continue
            out[p.key] = value
        return out

    # ---------------------------------------------------------------------------- translation

    def define_by_run(self) -> DefineByRun:
        return DefineByRun(self)

    def tune_param_space(self, seed: int = 0) -> dict[str, Any]:
        """Ray Tune ``param_space`` for the random algorithm (conditional ones drawn only when active)."""
        from ray import tune

        token = uuid.uuid4().hex  # a fresh seeded generator per search, however many run in one process
        out: dict[str, Any] = {}
        for p in self.params:
            out[p.key] = (
                tune.sample_from(ConditionalSample(self, p.key, seed, token)) if p.when else p.tune_domain()
            )
        return out

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the (discrete) values; inactive parameters are ``None``, no duplicates."""
        points: list[dict[str, Any]] = [{}]
        for p in self.params:
            if not p.discrete:
                raise ValueError(f"{p.key}: the grid algorithm needs choice or grid values, not {p.dist}")
            grown: list[dict[str, Any]] = []
            for point in points:
                if self.is_active(p.key, point):
                    grown.extend({**point, p.key: v} for v in p.values)
                else:
                    grown.append({**point, p.key: None})
            points = grown
        return points


class DefineByRun:
    """Optuna define-by-run space (a picklable callable: Ray saves the searcher with pickle)."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any]:
        chosen: dict[str, Any] = {}
        for p in self.space.params:
            if self.space.is_active(p.key, chosen):
                chosen[p.key] = p.suggest(trial)
        # Returned values override Optuna's raw suggestions (decoded labels, q-rounded log values).
        return chosen


_RNGS: dict[tuple[str, str], np.random.Generator] = {}


class ConditionalSample:
    """``tune.sample_from`` body for a conditional parameter of the random algorithm.

    Tune deep-copies the space for every trial, so the generator lives at module level in the driver
    (where Tune samples), keyed by the search's ``token`` and the parameter, seeded by ``seed``.
    """

    def __init__(self, space: Space, key: str, seed: int, token: str) -> None:
        self.space, self.key, self.seed, self.token = space, key, seed, token

    def __call__(self, config: Mapping[str, Any]) -> Any:
        from ray.tune.search.sample import Domain
        from ray.tune.search.variant_generator import RecursiveDependencyError

        values: dict[str, Any] = {}
        for parent in _ancestors(self.space, self.key):
            value = config[parent]
            if isinstance(value, Domain):  # Tune resolves in passes: ask again after the parent
                raise RecursiveDependencyError(f"{self.key} waits for {parent}")
            values[parent] = value
        if not self.space.is_active(self.key, values):
            return None
        rng = _RNGS.get((self.token, self.key))
        if rng is None:
            rng = _RNGS[self.token, self.key] = np.random.default_rng([self.seed, *self.key.encode()])
        return self.space[self.key].sample(rng)


def _ancestors(space: Space, key: str) -> list[str]:
    out: list[str] = []
    for parent, _ in space[key].when:
        out.extend([*_ancestors(space, parent), parent])
    return list(dict.fromkeys(out))


# ------------------------------------------------------------------------------------- parsing


def parse_space(
    raw: Mapping[str, Any],
    is_integer: Callable[[str], bool] = lambda key: False,
    path: str = PATH,
) -> Space:
    """Parse the YAML ``search.space`` mapping; raise :class:`SpecError` listing every problem."""
    errors: list[str] = []
    params: dict[str, Param] = {}
    for key, entry in raw.items():
        param = _parse_entry(str(key), entry, is_integer(str(key)), f"{path}.{key}", errors)
        if param is not None:
            params[param.key] = param
    errors.extend(_condition_errors(params, path))
    if errors:
        raise SpecError(errors)
    return Space(tuple(_topological(params)))


def _parse_entry(key: str, entry: Any, integer: bool, where: str, errors: list[str]) -> Param | None:
    example = "{choice: [a, b]} or {uniform: [0.1, 0.5]}"
    if not isinstance(entry, Mapping):
        errors.append(f"{where}: expected a distribution such as {example}, got {entry!r}")
        return None
    names = [k for k in entry if k != "when"]
    unknown = [k for k in names if k not in DISTRIBUTIONS]
    for name in unknown:
        close = difflib.get_close_matches(str(name), list(DISTRIBUTIONS), n=1)
        hint = f" did you mean {close[0]!r}?" if close else ""
        errors.append(
            f"{where}: unknown distribution {name!r};{hint} valid: {', '.join(DISTRIBUTIONS)}, when"
        )
    known = [k for k in names if k in DISTRIBUTIONS]
    if unknown:
        return None
    if len(known) != 1:
        errors.append(f"{where}: expected exactly one distribution ({', '.join(DISTRIBUTIONS)}), got {known}")
        return None
    dist, args = known[0], entry[known[0]]
    when = _parse_when(entry.get("when"), f"{where}.when", errors)
    if when is None:
        return None
    if dist in DISCRETE:
        if not isinstance(args, list) or not args:
            errors.append(f"{where}.{dist}: expected a non-empty list of values, got {args!r}")
            return None
        labels = [_label(v) for v in args]
        if len(set(labels)) != len(labels):
            errors.append(f"{where}.{dist}: duplicate values in {args}")
            return None
        return Param(key, dist, values=tuple(args), when=when)
    return _parse_numeric(key, dist, args, integer, when, where, errors)


def _parse_numeric(
    key: str, dist: str, args: Any, integer: bool, when: tuple, where: str, errors: list[str]
) -> Param | None:
    n = 3 if dist.startswith("q") else 2
    form = f"{dist}: {DISTRIBUTIONS[dist]}"
    if (
        not isinstance(args, list)
        or len(args) != n
        or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in args)
    ):
        errors.append(f"{where}: expected {{{form}}} with numbers, got {{{dist}: {args!r}}}")
        return None
    low, high = float(args[0]), float(args[1])
    q = float(args[2]) if n == 3 else None
    integer = integer or dist == "randint"
    problems = []
    if not low < high:
        problems.append(f"low ({args[0]}) must be below high ({args[1]})")
    if dist in ("loguniform", "qloguniform") and low <= 0:
        problems.append(f"a log scale needs low > 0, got {args[0]}")
    if integer and not (low.is_integer() and high.is_integer()):
        problems.append(f"{key} takes integers: bounds must be whole numbers, got {args[:2]}")
    if q is not None:
        if q <= 0:
            problems.append(f"q must be positive, got {args[2]}")
        elif integer and not q.is_integer():
            problems.append(f"{key} takes integers: q must be a whole number, got {args[2]}")
        elif dist == "quniform" and not _is_multiple(high - low, q):
            problems.append(f"high - low ({high - low:g}) must be a multiple of q ({q:g})")
    if problems:
        errors.append(f"{where}.{dist}: " + "; ".join(problems))
        return None
    return Param(key, dist, low=low, high=high, q=q, integer=integer, when=when)


def _is_multiple(x: float, q: float) -> bool:
    ratio = x / q
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio))


def _parse_when(raw: Any, where: str, errors: list[str]) -> tuple[tuple[str, tuple[Any, ...]], ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        errors.append(f"{where}: expected {{dotted.key: [values]}}, got {raw!r}")
        return None
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in raw.items())


def _condition_errors(params: Mapping[str, Param], path: str) -> list[str]:
    errors = []
    for p in params.values():
        for parent, values in p.when:
            where = f"{path}.{p.key}.when.{parent}"
            if parent == p.key:
                errors.append(f"{where}: a parameter cannot depend on itself")
            elif parent not in params:
                discrete = [k for k, q in params.items() if q.discrete and k != p.key]
                errors.append(
                    f"{where}: not a parameter of the space; conditions name a choice/grid parameter "
                    f"({', '.join(discrete) or 'there is none'})"
                )
            elif not params[parent].discrete:
                errors.append(
                    f"{where}: {parent} is {params[parent].dist}; conditions need a choice or grid parameter"
                )
            else:
                allowed = {_label(v) for v in params[parent].values}
                bad = [v for v in values if _label(v) not in allowed]
                if bad:
                    errors.append(
                        f"{where}: {bad} not among the values of {parent} ({list(params[parent].values)})"
                    )
    if not errors:
        try:
            _topological(params)
        except ValueError as exc:
            errors.append(f"{path}: {exc}")
    return errors


def _topological(params: Mapping[str, Param]) -> list[Param]:
    """Parents before children, otherwise in the written order; raise ValueError on a cycle."""
    done: dict[str, Param] = {}
    visiting: list[str] = []

    def visit(key: str) -> None:
        if key in done:
            return
        if key in visiting:
            cycle = [*visiting[visiting.index(key) :], key]
            raise ValueError(f"conditions form a cycle: {' -> '.join(cycle)}")
        visiting.append(key)
        for parent, _ in params[key].when:
            visit(parent)
        visiting.pop()
        done[key] = params[key]

    for key in params:
        visit(key)
    return list(done.values())


# -------------------------------------------------------------------------- against the spec


def _leaf_type(spec_cls: type, key: str) -> Any:
    """The annotated type of dotted ``key`` in ``spec_cls`` (None when no such field)."""
    cls: type | None = spec_cls
    tp: Any = None
    for part in key.split("."):
        if cls is None:
            return None
        types = field_types(cls)
        if part not in types:
            return None
        tp = types[part]
        cls = dataclass_of(tp)
    return tp


def is_integer_field(spec_cls: type, key: str) -> bool:
    """Whether the field takes integers (``int`` or ``int | None``), so that ranges draw integers."""
    tp = _leaf_type(spec_cls, key)
    return tp is int or (int in get_args(tp) and float not in get_args(tp))


def searchable_keys(spec: Spec) -> list[str]:
    """Dotted keys a space may name: every field of the model and train sections, and the sections."""
    flat = [k for k in flatten(spec) if k.split(".")[0] in SEARCHABLE_SECTIONS]
    sections = {".".join(k.split(".")[:i]) for k in flat for i in range(2, k.count(".") + 1)}
    return [*flat, *sorted(sections)]


def key_error(key: str, valid: Sequence[str], path: str = PATH) -> str | None:
    """Why ``key`` cannot be searched (None when it can)."""
    if key in valid:
        return None
    where = f"{path}.{key}"
    section = key.split(".")[0]
    if section == "data":
        return (
            f"{where}: the data section cannot be searched: all trials share one dataset, put once in "
            f"Ray's object store; run one search per data setting"
        )
    if section not in SEARCHABLE_SECTIONS:
        return f"{where}: only model.* and train.* fields can be searched"
    for prefix in valid:
        if key.startswith(prefix + "."):
            return (
                f"{where}: {prefix} is one value (a mapping); search it whole, e.g. "
                f"{prefix}: {{choice: [{{...}}, {{...}}]}}"
            )
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" did you mean {' or '.join(close)}?" if close else ""
    same = [k for k in valid if k.startswith(section + ".") and k.count(".") == key.count(".")]
    return f"{where}: not a field of the spec;{hint} valid keys here: {', '.join(same)}"


def space_from_spec(spec: Any) -> Space:
    """Parse ``spec.search.space`` (integer fields known from the spec's types); raise SpecError."""
    return parse_space(spec.search.space, lambda key: is_integer_field(type(spec), key))


def space_errors(spec: Any) -> list[str]:
    """Every problem of ``spec.search.space`` against the spec: unknown keys, invalid values, syntax."""
    valid = searchable_keys(spec)
    errors = [e for e in (key_error(k, valid) for k in spec.search.space) if e]
    if errors:
        return errors
    try:
        space = space_from_spec(spec)
    except SpecError as exc:
        return exc.errors
    base = {k: v for k, v in spec_to_dict(spec).items() if k in ("name", "data", "model", "train")}
    for p in space.params:
        for value in p.candidates():
            problem = value_error(base, p.key, value)
            if problem:
                errors.append(f"{PATH}.{p.key}: value {value!r} is not valid: {problem}")
    return errors


def value_error(base: Mapping[str, Any], key: str, value: Any) -> str | None:
    """Build a base :class:`Spec` with ``key = value`` through the schema; its message, or None if valid.

    This reuses every name check of the schema (encoders, decoders, attention, ...) for space values.
    """
    d = json.loads(json.dumps(base))
    set_dotted(d, key, value)
    try:
        from_dict(Spec, d)
    except SpecError as exc:
        return "; ".join(exc.errors)
    return None


def point_errors(
    space: Space, points: Sequence[Mapping[str, Any]], path: str = "search.points_to_evaluate"
) -> list[str]:
    """Each point may set parameters of the space only, to values the parameter can take."""
    errors = []
    for i, point in enumerate(points):
        for key, value in point.items():
            where = f"{path}[{i}].{key}"
            if key not in space.keys:
                errors.append(f"{where}: not a parameter of the space ({', '.join(space.keys)})")
            elif value is not None and not space[key].contains(value):
                errors.append(f"{where}: {value!r} is outside {space[key].describe()}")
    return errors


# ------------------------------------------------------------------------------- encoder weights

WEIGHTS_KEY = "model.encoder_weights"
ENCODER_KEY = "model.encoder"


def absolute_weight_paths(spec: Any, base: str | None = None) -> None:
    """Make every ``model.encoder_weights`` path the spec can use absolute (the spec's own value, the
    space's ``choice``/``grid`` values and ``points_to_evaluate``), in place, against ``base`` (default:
    the current folder): trials run in their own folders, where a relative path names nothing."""
    from model_zoo.weights import absolute_path

    spec.model.encoder_weights = absolute_path(spec.model.encoder_weights, base)
    entry = spec.search.space.get(WEIGHTS_KEY)
    if isinstance(entry, dict):
        for dist in DISCRETE:
            if isinstance(entry.get(dist), list):
                entry[dist] = [absolute_path(v, base) if isinstance(v, str) else v for v in entry[dist]]
    for point in spec.search.points_to_evaluate:
        if isinstance(point.get(WEIGHTS_KEY), str):
            point[WEIGHTS_KEY] = absolute_path(point[WEIGHTS_KEY], base)


def weight_pairs(spec: Any, space: Space) -> list[tuple[str, str | None]]:
    """Every ``(model.encoder, model.encoder_weights)`` a trial can run with, conditions respected: the
    grid of the two parameters and the parameters they depend on, each point resolved as a trial's is."""
    keys = [k for k in (ENCODER_KEY, WEIGHTS_KEY) if k in space.keys]
    needed = {a for k in keys for a in _ancestors(space, k)} | set(keys)
    sub = Space(tuple(p for p in space.params if p.key in needed))
    pairs: dict[tuple[str, str | None], None] = {}
    for point in sub.grid_points() if sub.params else [{}]:
        overrides = sub.resolve(point)
        encoder = overrides.get(ENCODER_KEY, spec.model.encoder)
        weights = overrides.get(WEIGHTS_KEY, spec.model.encoder_weights)
        pairs[(encoder, weights)] = None
    return list(pairs)


def weights_errors(spec: Any, space: Space) -> list[str]:
    """Why some encoder the space can draw cannot get its ``encoder_weights`` on this machine (empty
    when all can): checked on the driver before Ray starts, since every such trial would fail (and be
    retried) the same way. Missing named weights end with the commands that fetch them."""
    from model_zoo.weights import MissingWeightsError, file_problem, is_named, require_cached

    errors: list[str] = []
    missing: dict[str, list[str]] = {}  # weight-set name -> encoders without it in the cache
    for encoder, weights in weight_pairs(spec, space):
        if weights is None:
            continue
        problem = None
        if is_named(weights):
            try:
                require_cached(encoder, weights)
            except MissingWeightsError as exc:
                missing.setdefault(weights, []).append(encoder)
                problem = str(exc)
            except ValueError as exc:  # no weight set of that name for this encoder
                problem = str(exc)
        elif (problem := file_problem(weights)) is not None:
            problem += (
                "; the file must exist at this absolute path on every node (`ray job submit --working-dir` "
                "does not carry *.pth / *.safetensors, see .rayignore and docs/cluster.md)"
            )
        if problem is not None:
            errors.append(f"{WEIGHTS_KEY}: model.encoder={encoder}: {problem}")
    for weights, encoders in missing.items():
        flag = "" if weights == "imagenet" else f" --weights {weights}"
        errors.append(
            f"{WEIGHTS_KEY}: fetch every missing one at once where there is internet: "
            f"python launch.py fetch-weights {' '.join(encoders)}{flag}"
        )
    return errors


def check_weights(spec: Any, space: Space) -> None:
    """Raise :class:`SpecError` listing :func:`weights_errors` (nothing when every weight is here)."""
    errors = weights_errors(spec, space)
    if errors:
        raise SpecError(errors)

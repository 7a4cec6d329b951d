"""The shipped search specs (every spaces/*.yaml with a ``search:`` section) validate and draw registered
components only; the two real-BUSI searches of issue 13 keep their budgets (spaces/busi_search_cpu.yaml on
2 CPU cores, spaces/busi_gpu.yaml packed on one GPU) and their architectures build."""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from search.config import SearchSpec, load_search_spec, max_epochs_of, scheduler_milestones
from search.space import Space, space_from_spec
from trainables.spec import Spec, flatten, load_spec, set_dotted, spec_from_dict, spec_to_dict

ROOT = Path(__file__).resolve().parents[2]
SEARCH_SPECS = sorted(
    p for p in (ROOT / "spaces").glob("*.yaml") if "search" in (yaml.safe_load(p.read_text("utf-8")) or {})
)
BUSI_SEARCH_CPU = ROOT / "spaces" / "busi_search_cpu.yaml"
BUSI_GPU = ROOT / "spaces" / "busi_gpu.yaml"
RECIPE = ROOT / "spaces" / "busi_cpu.yaml"

# CPU time of one bf16 training step (1 thread, batch 8, 128 px) relative to the recipe model (resnet18 +
# slim UNet), measured on the 2-core machine busi_search_cpu.yaml is sized for (its header has the table).
RELATIVE_COST = {
    ("resnet18", "unet"): 1.00,
    ("resnet18", "unetplusplus"): 2.98,
    ("resnet18", "deeplabv3plus"): 1.12,
    ("resnet18", "fpn"): 1.01,
    ("mobilenet_v2", "unet"): 0.82,
    ("mobilenet_v2", "unetplusplus"): 1.10,
    ("mobilenet_v2", "deeplabv3plus"): 1.34,
    ("mobilenet_v2", "fpn"): 0.92,
    ("efficientnet-b0", "unet"): 1.26,
    ("efficientnet-b0", "unetplusplus"): 1.80,
    ("efficientnet-b0", "deeplabv3plus"): 1.62,
    ("efficientnet-b0", "fpn"): 1.39,
}
# Machine seconds per unit: a recipe-model epoch (3 folds) takes ~53 s on 1 core, with 2 trials at once.
UNIT_S = 27.0
START_S = 180.0  # Ray, the data cache, the workers (generous)
CPU_BUDGET_S = 75 * 60
CPU_TRIAL_EPOCHS = 140  # issue 13: units of the recipe model's epoch, stopped trials included


def _registered() -> dict[str, Callable[[Any], bool]]:
    """Searchable keys that name a component -> whether a value is registered (``launch.py models``)."""
    from model_zoo.commands import registered_components
    from model_zoo.encoders import check_encoder_name

    names = registered_components()

    def encoder(name: Any) -> bool:
        try:
            check_encoder_name(name)
        except ValueError:  # UnknownComponentError
            return False
        return True

    return {
        "model.encoder": encoder,
        "model.decoder": names["decoders"].__contains__,
        "model.bottleneck": names["bottlenecks"].__contains__,
        "model.attention": names["attentions"].__contains__,
        "model.latent_aug.mode": names["latent_aug_modes"].__contains__,
        "train.loss.seg": names["seg_losses"].__contains__,
        "train.loss.cls": names["cls_losses"].__contains__,
    }


def _load(path: Path) -> tuple[SearchSpec, Space]:
    spec = load_search_spec(path)  # every key, value and point of the space is validated here
    return spec, space_from_spec(spec)


def test_the_issue_13_searches_are_shipped() -> None:
    assert {BUSI_SEARCH_CPU, BUSI_GPU} <= set(SEARCH_SPECS)


# stage4_imbalance crosses the balanced sampler with weighted_ce on purpose, and says so
@pytest.mark.filterwarnings("ignore::trainables.config.DoubleImbalanceCorrectionWarning")
@pytest.mark.parametrize("path", SEARCH_SPECS, ids=lambda p: p.stem)
def test_shipped_search_draws_registered_components_only(path: Path) -> None:
    spec, space = _load(path)
    flat = flatten(spec)
    for key, registered in _registered().items():
        values = {flat[key]} | {p[key] for p in spec.search.points_to_evaluate if key in p}
        if key in space.keys:
            assert space[key].discrete, f"{path.name}: {key} names components; search it with choice/grid"
            values |= set(space[key].values)
        unknown = sorted(str(v) for v in values if not registered(v))
        assert not unknown, f"{path.name}: {key} draws unregistered {unknown}"


# ------------------------------------------------------------------------------ busi_search_cpu


def sha_trial_epochs(n: int, rungs: tuple[int, ...], max_t: int, eta: float) -> int:
    """Trial-epochs of synchronous successive halving: all ``n`` trials run to the first rung, then
    ``ceil(n / eta**k)`` of them from rung ``k`` on to the next one (the last to ``max_t``)."""
    stops = [r for r in rungs if r < max_t] + [max_t]
    return n * stops[0] + sum(math.ceil(n / eta**k) * (stops[k] - stops[k - 1]) for k in range(1, len(stops)))


def ray_asha_trial_epochs(spec: SearchSpec, space: Space, orders: int = 300, seed: int = 0) -> float:
    """Mean trial-epochs of the search's own scheduler (Ray's ASHAScheduler as ``build_scheduler`` makes it)
    over ``orders`` random orders of trial quality, trials reaching each rung in the order they started.

    Asynchronous ASHA promotes more than successive halving in a small search: the first trial at a
    rung always goes on, and each later one is cut against the few recorded before it.
    """
    from ray.tune.schedulers import TrialScheduler

    from search.algorithms import build_scheduler

    rng = np.random.default_rng(seed)
    metric, max_t = spec.search.metrics[0], max_epochs_of(spec, space)
    total = 0
    for _ in range(orders):
        scheduler = build_scheduler(spec, space)
        scheduler.set_search_properties(metric, spec.search.modes[0])
        for i, score in enumerate(rng.normal(size=spec.search.num_samples)):
            trial = types.SimpleNamespace(trial_id=f"t{i}")
            scheduler.on_trial_add(None, trial)
            for epoch in range(1, max_t + 1):
                result = {"training_iteration": epoch, metric: float(score)}
                if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                    break
            total += epoch
    return total / orders


def test_sha_trial_epochs() -> None:
    assert sha_trial_epochs(12, (6, 18), 30, 3) == 12 * 6 + 4 * 12 + 2 * 12
    assert sha_trial_epochs(8, (2, 4, 8), 8, 2) == 8 * 2 + 4 * 2 + 2 * 4


def test_busi_search_cpu_fits_75_minutes_on_2_cores() -> None:
    spec, space = _load(BUSI_SEARCH_CPU)
    s = spec.search
    assert (s.algorithm, s.sampler, s.scheduler.type, s.metric, s.mode) == (
        "optuna",
        "tpe",
        "asha",
        "val/score_best",
        "max",
    )
    # two 1-core trials at once (the trainable sets torch threads = the trial's CPUs)
    assert (spec.resources.cpu, spec.resources.gpu, s.max_concurrent) == (1, 0, 2)

    max_t = max_epochs_of(spec, space)
    rungs = scheduler_milestones(spec, space)
    assert (max_t, rungs) == (18, (4, 12))
    nominal = sha_trial_epochs(s.num_samples, rungs, max_t, s.scheduler.reduction_factor)
    assert nominal == 84 <= CPU_TRIAL_EPOCHS

    pairs = {(e, d) for e in space["model.encoder"].values for d in space["model.decoder"].values}
    assert pairs <= set(RELATIVE_COST), f"measure the cost of {sorted(pairs - set(RELATIVE_COST))}"
    mean_cost = float(np.mean([RELATIVE_COST[p] for p in pairs]))
    expected = ray_asha_trial_epochs(spec, space)
    assert nominal < expected < 105  # the header says ~99
    units = expected * mean_cost
    assert units <= CPU_TRIAL_EPOCHS
    assert START_S + units * UNIT_S <= CPU_BUDGET_S
    # whatever ASHA promotes, the time budget stops the search inside the 75 minutes
    assert s.time_budget_s is not None and START_S + s.time_budget_s <= CPU_BUDGET_S


def test_busi_search_cpu_starts_from_the_hand_recipe() -> None:
    """The first point, resolved as a trial resolves it, is spaces/busi_cpu.yaml at the search's epochs."""
    import optuna

    spec, space = _load(BUSI_SEARCH_CPU)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(spec.search.points_to_evaluate[0])
    config = space.define_by_run()(study.ask())
    d = {k: v for k, v in spec_to_dict(spec).items() if k in ("name", "data", "model", "train")}
    for key, value in space.resolve(config).items():
        set_dotted(d, key, value)
    trial = spec_to_dict(spec_from_dict(d, Spec))
    recipe = spec_to_dict(load_spec(RECIPE))
    assert trial["model"]["decoder_options"] == {"decoder_channels": [128, 64, 32, 32, 16]}
    assert trial["data"] == recipe["data"] and trial["model"] == recipe["model"]
    assert {**trial["train"], "epochs": None} == {**recipe["train"], "epochs": None}


CYCLED = ("model.bottleneck", "model.attention", "model.latent_aug.mode")


def _architectures(space: Space) -> list[dict[str, Any]]:
    """Every encoder x decoder pair of the space, bottleneck / attention / latent augmentation cycled so
    that each of their values is built at least once."""
    pairs = [(e, d) for e in space["model.encoder"].values for d in space["model.decoder"].values]
    out = []
    for i, (encoder, decoder) in enumerate(pairs):
        point = {"model.encoder": encoder, "model.decoder": decoder}
        for key in CYCLED:
            values = space[key].values
            point[key] = values[i % len(values)]
        out.append(point)
    return out


def test_every_busi_search_cpu_architecture_builds_and_runs_at_128_px() -> None:
    import torch

    from model_zoo.build import build_model

    spec, space = _load(BUSI_SEARCH_CPU)
    base = {k: v for k, v in spec_to_dict(spec).items() if k in ("name", "data", "model", "train")}
    slim = space["model.decoder_options"].values[0]
    points = _architectures(space)
    for key in CYCLED:
        assert {p[key] for p in points} == set(space[key].values)
    size = spec.data.image_size
    torch.manual_seed(0)
    x = torch.rand(2, 1, size, size)
    labels = torch.tensor([1, 2])
    for point in points:
        if space.is_active("model.decoder_options", point):
            point["model.decoder_options"] = slim
        d = copy.deepcopy(base)
        for key, value in space.resolve(point).items():
            set_dotted(d, key, value)
        trial = spec_from_dict(d, Spec)  # validates the pair (decoder options, input size) as a trial does
        model = build_model(trial.model, class_names=trial.data.classes).train()
        model.set_class_counts([10, 20, 5])
        with torch.no_grad():
            out = model(x, labels)
        assert out.seg_logits.shape == (2, 1, size, size), point
        assert out.cls_logits.shape == (2, 3) and torch.isfinite(out.seg_logits).all(), point


# ------------------------------------------------------------------------------------ busi_gpu


def test_busi_gpu_packs_8_trials_on_one_gpu_at_the_thesis_scale() -> None:
    spec, space = _load(BUSI_GPU)
    s = spec.search
    per_gpu = math.floor(1 / spec.resources.gpu + 1e-9)
    assert per_gpu >= 8 and (s.max_concurrent or per_gpu) >= 8 and s.num_samples >= 8
    assert spec.data.image_size == 256 and spec.model.encoder_weights is None
    assert spec.model.decoder == "unetplusplus" and "model.decoder" not in space.keys
    assert {"identity", "dual_domain"} <= set(space["model.bottleneck"].values)
    assert {"none", "cbam"} <= set(space["model.attention"].values)
    assert spec.train.cudnn_benchmark is False  # set on purpose: see the spec's comment
    assert s.scheduler.type == "asha" and max_epochs_of(spec, space) <= 10
    assert s.time_budget_s is not None and s.time_budget_s + 2 * 60 <= 8 * 60


def test_every_busi_gpu_encoder_builds_on_cpu() -> None:
    """Structure only (no forward at 256 px on a CPU): the heaviest options with each encoder."""
    from model_zoo.build import build_model
    from model_zoo.network import check_input_shape

    spec, space = _load(BUSI_GPU)
    for encoder in space["model.encoder"].values:
        heaviest = {"bottleneck": "dual_domain", "attention": "cbam", "latent_aug": {"mode": "noise+mixup"}}
        model = build_model(
            {**spec_to_dict(spec)["model"], "encoder": encoder, **heaviest}, spec.data.classes
        )
        check_input_shape(model, spec.data.image_size, spec.data.image_size)

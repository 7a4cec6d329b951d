"""The lockstep K-fold loop: results, summary, early stopping, failures, and exact resume."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model_zoo.losses import class_weights_from_counts
from trainables.config import TrainConfig
from trainables.data.cache import BUSDataset, load_dataset
from trainables.data.splits import SplitIndices, make_splits, split_indices
from trainables.device import DeviceError
from trainables.loop import CrossValLoop, NonFiniteLossError, build_scheduler
from trainables.metrics import lesion_mask
from trainables.spec import Spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[2]


def tiny_spec_dict(**train: Any) -> dict[str, Any]:
    """A spec small enough for CPU tests: 32 synthetic images at 32 px, a timm test encoder, 2 folds."""
    return {
        "name": "tiny",
        "data": {"image_size": 32, "folds": 2, "synthetic": {"n_per_class": [10, 12, 10], "size": 64}},
        "model": {
            "encoder": "tu-test_efficientnet",
            "encoder_weights": None,
            "latent_aug": {"mode": "noise+mixup"},
        },
        "train": {"epochs": 3, "batch_size": 8, "deterministic": True, **train},
    }


def tiny_spec(**train: Any) -> Spec:
    return spec_from_dict(tiny_spec_dict(**train))


@pytest.fixture(scope="module")
def data() -> tuple[BUSDataset, SplitIndices, dict]:
    spec = tiny_spec()
    dataset = load_dataset(spec.data, progress=False)
    splits = make_splits(dataset, spec.data.folds, spec.data.test_fraction, spec.data.seed)
    return dataset, split_indices(splits, dataset), splits


def _lr_factors(
    schedule: str,
    epochs: int,
    warmup_epochs: int,
    steps_per_epoch: int = 1,
    schedule_epochs: int | None = None,
) -> list[float]:
    """The LR multiplier at each optimizer step of the loop's scheduler (torch's), two parameter groups."""
    cfg = dataclasses.replace(
        TrainConfig(),
        schedule=schedule,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        schedule_epochs=schedule_epochs,
    )
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0}], lr=2e-3)
    scheduler = build_scheduler(opt, cfg, steps_per_epoch)
    out = []
    for _ in range(epochs * steps_per_epoch):
        assert opt.param_groups[0]["lr"] == opt.param_groups[1]["lr"]
        out.append(opt.param_groups[0]["lr"] / 2e-3)
        opt.step()
        scheduler.step()
    return out


def test_schedules_are_the_documented_shapes() -> None:
    # constant: linear warm-up lr/w .. lr over w steps, then lr
    assert _lr_factors("constant", 10, 4) == pytest.approx([0.25, 0.5, 0.75, 1.0, *[1.0] * 6])
    # cosine: the same warm-up, then 0.5 (1 + cos(pi t)) over the remaining steps
    w, total = 2 * 3, 10 * 3
    expected = [
        (s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (total - w))) for s in range(total)
    ]
    assert _lr_factors("cosine", 10, 2, steps_per_epoch=3) == pytest.approx(expected, abs=1e-12)
    assert _lr_factors("cosine", 10, 0) == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * s / 10)) for s in range(10)]
    )
    # onecycle (torch's OneCycleLR): lr/25 -> lr at 30% of the run -> lr/1e4 at the end, cosine both ways
    one = _lr_factors("onecycle", 100, 0)
    assert (
        one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0) and one[-1] == pytest.approx(1e-4)
    )
    assert int(np.argmax(one)) == 29
    assert all(a <= b for a, b in itertools.pairwise(one[:30])) and all(
        a >= b for a, b in itertools.pairwise(one[29:])
    )
    assert _lr_factors("onecycle", 1, 0) == [1.0]  # too short to cycle: the base LR
    assert _lr_factors("onecycle", 3, 0) == pytest.approx([1 / 25, 1.0, 1e-4])  # up one step, down one
    unknown = dataclasses.replace(TrainConfig(), schedule="step")  # replace does not validate
    with pytest.raises(ValueError, match=r"expected cosine \| onecycle \| constant"):
        build_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), unknown, 1)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_schedule_epochs_stops_inside_a_longer_schedule(schedule: str) -> None:
    """A refit of the CV's epoch 6 of 10: its learning rates are the CV's first 6 epochs', not a schedule
    annealed over 6 epochs."""
    cv = _lr_factors(schedule, 10, 2, steps_per_epoch=3)
    truncated = _lr_factors(schedule, 6, 2, steps_per_epoch=3, schedule_epochs=10)
    assert truncated == pytest.approx(cv[:18], abs=1e-12)
    if schedule != "constant":
        assert truncated[-1] > _lr_factors(schedule, 6, 2, steps_per_epoch=3)[-1] * 10
    with pytest.raises(ValueError, match="schedule_epochs: 5 is less than epochs: 6"):
        spec_from_dict(tiny_spec_dict(epochs=6, schedule_epochs=5))
    assert spec_from_dict(tiny_spec_dict(epochs=6, schedule_epochs=6)).train.schedule_epochs == 6


def test_step_reports_every_fold_and_the_cv_mean(data: tuple) -> None:
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")
    assert loop.images is dataset.images and loop.masks is dataset.masks  # shared, not copied
    results = []
    while not loop.done:
        results.append(loop.step())
    assert len(results) == 2 and loop.epoch == 2
    r = results[-1]
    for metric in (
        "dice",
        "iou",
        "hd95",
        "nsd",
        "auc",
        "macro_f1",
        "acc",
        "balanced_acc",
        "recall_malignant",
        "dice_benign",
        "dice_malignant",
        "loss",
        "score",
    ):
        per_fold = [r[f"fold{k}/val/{metric}"] for k in range(2)]
        assert r[f"val/{metric}"] == pytest.approx(np.mean(per_fold))
        assert r[f"val/{metric}_std"] == pytest.approx(np.std(per_fold, ddof=1))
    for key in (
        "fold0/train/loss",
        "fold1/train/seg",
        "fold1/train/cls",
        "train/loss",
        "lr",
        "samples_per_s",
        "time_this_epoch_s",
        "val/score_best",
    ):
        assert math.isfinite(r[key]), key
    assert r["epoch"] == 2.0
    assert r["val/score_best"] == max(x["val/score"] for x in results)
    assert 0 < r["lr"] < loop.cfg.lr
    with pytest.raises(RuntimeError, match="done"):
        loop.step()

    s = loop.summary()
    best = int(np.argmax([x["val/score"] for x in results]))
    assert s["best_epoch"] == best + 1
    assert s["cv"]["dice"]["mean"] == results[best]["val/dice"]
    assert s["cv"]["macro_f1"]["std"] == results[best]["val/macro_f1_std"]
    for k, fold in enumerate(s["folds"]):
        own = [x[f"fold{k}/val/score"] for x in results]
        assert fold["best_epoch"] == int(np.argmax(own)) + 1
        assert fold["metrics"]["score"] == max(own)
    assert s["folds_best"]["score"]["mean"] == pytest.approx(
        np.mean([f["metrics"]["score"] for f in s["folds"]])
    )


def test_each_fold_gets_its_training_counts(data: tuple) -> None:
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=1), dataset, split, device="cpu")
    for fold, (train_idx, _) in zip(loop.folds, split.folds):
        counts = np.bincount(dataset.labels[train_idx], minlength=3)
        weights = fold.loss_fn.cls.class_weights
        assert torch.allclose(weights, class_weights_from_counts(counts))
        assert fold.model.latent_aug.target_mask.tolist() == (counts < counts.max()).tolist()


def test_a_single_train_only_fold_trains_without_validating(data: tuple) -> None:
    dataset, split, _ = data
    dev = np.asarray(split.dev)
    single = SplitIndices(test=split.test, dev=dev, folds=[(dev, dev[:0])])
    loop = CrossValLoop(tiny_spec(epochs=2), dataset, single, device="cpu")
    before = [p.detach().clone() for p in loop.folds[0].model.parameters()]
    result = loop.step()
    assert math.isfinite(result["fold0/train/loss"]) and math.isnan(result["val/score"])
    assert not any(k.startswith("fold0/val/") for k in result)
    after = list(loop.folds[0].model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    loop.step()
    assert loop.done
    with pytest.raises(ValueError, match="only allowed for a single train-only fold"):
        CrossValLoop(
            tiny_spec(epochs=1),
            dataset,
            SplitIndices(test=split.test, dev=dev, folds=[(dev, dev[:0])] * 2),
            "cpu",
        )


@pytest.mark.parametrize(
    "train",
    [
        {
            "sampler": "balanced",
            "loss": {"cls": "ce"},
            "schedule": "onecycle",
            "optimizer": "sgd",
            "grad_clip": None,
        },
        {
            "amp": "bf16",
            "schedule": "constant",
            "warmup_epochs": 0,
            "loss": {"cls": "focal", "seg": "tversky"},
            "augment": {"lesion_paste": 1.0, "blur": 0.5, "lowres": 0.5},  # the loop hands labels over
        },
    ],
)
def test_options_run(data: tuple, train: dict) -> None:
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=1, **train), dataset, split, device="cpu")
    r = loop.step()
    assert math.isfinite(r["val/score"]) and math.isfinite(r["train/loss"])


def test_ema_is_validated_and_leaves_training_alone(data: tuple) -> None:
    dataset, split, _ = data
    averaged = CrossValLoop(tiny_spec(epochs=2, ema=0.9), dataset, split, device="cpu")
    with_ema = averaged.step()
    plain = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")  # seeds the same streams again
    without = plain.step()
    assert with_ema["train/loss"] == without["train/loss"]  # the average never feeds back into training
    fold = averaged.folds[0]
    assert fold.eval_module is fold.ema.module
    trained, mean = fold.model.state_dict(), fold.ema.module.state_dict()
    same = plain.folds[0].model.state_dict()
    assert trained.keys() == mean.keys() == same.keys()
    assert all(torch.equal(trained[k], same[k]) for k in trained)
    assert any(not torch.equal(trained[k], mean[k]) for k in trained if trained[k].is_floating_point())

    validated = averaged.validate(fold)  # the moving average's figures ...
    assert validated["loss"] == pytest.approx(with_ema["fold0/val/loss"])
    fold.ema = None
    assert averaged.validate(fold)["loss"] != pytest.approx(validated["loss"])  # ... not the trained weights'
    fold.model.load_state_dict(mean)
    assert averaged.validate(fold)["loss"] == pytest.approx(validated["loss"])


def test_ema_decay_must_be_between_0_and_1() -> None:
    for decay in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"train\.ema"):
            tiny_spec(ema=decay)


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_on_cpu_trains_bf16_with_fp32_master_weights(
    data: tuple, monkeypatch: pytest.MonkeyPatch, precision_probe: Callable, native: bool
) -> None:
    """``amp: auto`` on a CPU with bf16 hardware where bf16 measures faster: the forward runs in bf16
    (training and validation), while weights, gradients' destination and AdamW moments stay float32;
    without bf16 hardware, all float32 (and nothing is measured)."""
    from trainables import device as device_module

    precision_probe(1.0, 0.5)
    monkeypatch.setattr(device_module, "cpu_bf16_native", lambda: native)
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=1), dataset, split, device="cpu")
    model = loop.folds[0].model
    before = [p.detach().clone() for p in model.parameters()]
    seen: list[tuple[bool, torch.dtype]] = []
    model.register_forward_hook(lambda mod, args, out: seen.append((mod.training, out.seg_logits.dtype)))
    r = loop.step()
    assert math.isfinite(r["train/loss"]) and math.isfinite(r["val/score"])
    expected = torch.bfloat16 if native else torch.float32
    assert {dtype for _, dtype in seen} == {expected}
    assert {training for training, _ in seen} == {True, False}  # training and validation forwards
    assert all(p.dtype == torch.float32 for p in model.parameters())
    moments = [s["exp_avg"] for s in loop.folds[0].optimizer.state.values()]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert loop.amp.name == ("bf16" if native else "off") and not loop.amp.use_scaler
    assert loop.summary()["amp"] == loop.amp.name
    assert ("amp_probe" in loop.summary()) is native


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_weights_on_the_cpu(data: tuple, channels_last: bool) -> None:
    """The loop's layout follows ``train.channels_last``; predict puts a model in channels_last and it
    still trains afterwards (the conversion never happens inside inference mode)."""
    from analysis.predict import predict_arrays

    def convs(model: torch.nn.Module) -> list[torch.Tensor]:
        return [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[-1] > 1]

    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=2, channels_last=channels_last), dataset, split, device="cpu")
    model = loop.folds[0].model
    assert convs(model)
    assert all(p.is_contiguous(memory_format=torch.channels_last) is channels_last for p in convs(model))
    assert math.isfinite(loop.step()["train/loss"])
    predict_arrays([model], np.array(dataset.images[:4]), torch.device("cpu"))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs(model))
    assert not any(p.is_inference() for p in model.parameters())
    assert math.isfinite(loop.step()["train/loss"])


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_cpu_optimizer_is_fused_and_steps_like_the_default(name: str) -> None:
    from trainables.config import TrainConfig
    from trainables.loop import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4))
    twin = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4))
    twin.load_state_dict(net.state_dict())
    start = [p.detach().clone() for p in net.parameters()]
    cfg = TrainConfig(optimizer=name, lr=1e-2, weight_decay=1e-2)
    fused = build_optimizer(net, cfg)
    assert fused.defaults["fused"] is True
    decay = [p for p in twin.parameters() if p.ndim > 1]
    no_decay = [p for p in twin.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": 1e-2}, {"params": no_decay, "weight_decay": 0.0}]
    plain = (
        torch.optim.AdamW(groups, lr=1e-2)
        if name == "adamw"
        else torch.optim.SGD(groups, lr=1e-2, momentum=cfg.momentum, nesterov=True)
    )
    assert not plain.defaults["fused"]
    for _ in range(5):
        grads = [torch.randn_like(p) for p in net.parameters()]
        for model, opt in ((net, fused), (twin, plain)):
            for p, g in zip(model.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    for a, b, s0 in zip(net.parameters(), twin.parameters(), start):
        assert torch.allclose(a, b, atol=1e-6) and not torch.allclose(a, s0, atol=1e-4)


def test_non_finite_loss_names_fold_epoch_and_last_loss(data: tuple) -> None:
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")
    real = loop.folds[1].loss_fn
    calls = {"n": 0}

    def broken(out: Any, masks: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        calls["n"] += 1
        loss, parts = real(out, masks, labels)
        return (loss * float("nan") if calls["n"] == 2 else loss), parts

    loop.folds[1].loss_fn = broken
    with pytest.raises(NonFiniteLossError) as err:
        loop.step()
    e = err.value
    assert (e.fold, e.epoch, e.batch) == (1, 1, 2)
    assert e.last_finite is not None and math.isfinite(e.last_finite)
    assert "fold 1, epoch 1, batch 2" in str(e) and f"{e.last_finite:.6g}" in str(e)


def test_patience_freezes_a_stopped_fold_and_reports_its_own_weights(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fold 0 peaks at epoch 1 (0.9) and stops at epoch 3 (0.55); fold 1 climbs to 0.8 at epoch 5. The
    CV mean at epoch 5 is (0.55 + 0.8) / 2 = 0.675, a figure of the weights each fold holds then, not the
    mean of per-fold peaks (0.9 + 0.8) / 2 = 0.85 that reporting a stopped fold's best epoch gave."""
    dataset, split, _ = data
    spec = tiny_spec(epochs=5, patience=2)
    scripted = {0: [0.9, 0.6, 0.55, 0.5, 0.45], 1: [0.3, 0.5, 0.6, 0.7, 0.8]}

    def scripted_loop() -> CrossValLoop:
        loop = CrossValLoop(spec, dataset, split, device="cpu")
        real_validate = loop.validate

        def validate(fold: Any) -> dict[str, float]:
            metrics = real_validate(fold)
            metrics["score"] = scripted[fold.index][loop.epoch]
            metrics["dice"] = metrics["score"] + 0.01
            return metrics

        monkeypatch.setattr(loop, "validate", validate)
        return loop

    loop = scripted_loop()
    results, states = [], []
    while not loop.done:
        results.append(loop.step())
        states.append(loop.state_dict())
    assert len(results) == 5
    assert [r["fold0/stopped"] for r in results] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert [r["fold0/val/score"] for r in results] == [0.9, 0.6, 0.55, 0.55, 0.55]
    assert results[4]["fold0/val/dice"] == pytest.approx(0.56)
    assert math.isnan(results[3]["fold0/train/loss"]) and math.isfinite(results[3]["train/loss"])
    assert [r["val/score"] for r in results] == pytest.approx([0.6, 0.55, 0.575, 0.625, 0.675])
    s = loop.summary()
    assert s["best_epoch"] == 5 and s["score"] == pytest.approx(0.675)
    assert s["cv"]["dice"]["mean"] == pytest.approx(0.685)
    assert [f["best_epoch"] for f in s["folds"]] == [1, 5]
    assert [f["weights_epoch"] for f in s["folds"]] == [3, 5]
    assert s["folds_best"]["score"]["mean"] == pytest.approx(0.85)  # the optimistic per-fold figure

    # a resumed loop reports the stopped fold's frozen weights too (read back from the saved history)
    resumed = scripted_loop()
    resumed.load_state_dict(states[3])
    assert resumed.step()["fold0/val/score"] == 0.55 and resumed.summary()["score"] == pytest.approx(0.675)


def test_validation_and_test_decide_lesion_pixels_by_one_rule(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's validation masks (bf16 logits, as under AMP) and the test evaluation's and predict's
    masks (float32 probabilities from analysis.predict) are one function of the same logits, also for
    logits so close to 0 that ``logit > 0`` and ``sigmoid > 0.5`` disagree."""
    from analysis.evaluate import HeldOutSet, evaluate
    from analysis.predict import predict_arrays

    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(), dataset, split, device="cpu")
    fold = loop.folds[0]
    idx = fold.val_idx
    size = int(dataset.images.shape[-1])
    values = torch.tensor([-1e-2, -1e-8, 0.0, 1e-8, 5e-8, 1e-7, 2e-7, 1e-6, 4e-3, 1.0])
    seg = values.repeat(size * size // len(values) + 1)[: size * size].view(1, 1, size, size)

    class Scripted(torch.nn.Module):
        def forward(self, x: torch.Tensor, labels: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
            n = x.shape[0]
            return seg.expand(n, 1, size, size).to(torch.bfloat16), torch.zeros(n, 3)

    scripted = Scripted()
    monkeypatch.setattr(fold, "forward", scripted)
    val_masks, _, _ = loop.predict(fold, idx)
    assert 0 < val_masks.sum() < val_masks.size

    images = np.asarray(dataset.images[idx])
    seg_prob, probs = predict_arrays([scripted], images, torch.device("cpu"))
    assert np.array_equal(lesion_mask(seg_prob), val_masks)
    test = HeldOutSet(
        images=images,
        masks=np.asarray(dataset.masks[idx]) > 0,
        labels=np.asarray(dataset.labels[idx], dtype=np.int64),
        paths=[str(i) for i in idx],
        class_names=tuple(dataset.class_names),
    )
    report = evaluate(test, seg_prob, probs, n_boot=0)
    assert [r["lesion_area_px"] for r in report["per_image"]] == val_masks.sum((1, 2)).tolist()


def test_classifier_gate_decides_validation_and_keeps_the_ungated_figures(
    data: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``train.lesion_gate: classifier`` a model that draws a lesion everywhere but calls every image
    normal scores normal specificity 1 and Dice 0 (the gated maps); ``ungated_*`` keep what it drew. The
    test evaluation's maps (``predict_arrays``) follow the same rule."""
    from analysis.predict import predict_arrays

    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(lesion_gate="classifier"), dataset, split, device="cpu")
    fold = loop.folds[0]

    class AllNormal(torch.nn.Module):
        class_names = tuple(dataset.class_names)

        def forward(self, x: torch.Tensor, labels: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
            n, size = x.shape[0], x.shape[-1]
            return torch.full((n, 1, size, size), 5.0), torch.tensor([[3.0, 0.0, 0.0]]).expand(n, 3)

    monkeypatch.setattr(fold, "forward", AllNormal())
    metrics = loop.validate(fold)
    assert metrics["normal_specificity"] == 1.0 and metrics["dice"] == 0.0
    assert metrics["ungated_normal_specificity"] == 0.0 and metrics["ungated_dice"] > 0.0
    seg_prob, _ = predict_arrays(
        [AllNormal()], np.array(dataset.images[:4]), torch.device("cpu"), lesion_gate="classifier"
    )
    assert not seg_prob.any()
    assert "ungated_dice" not in CrossValLoop(tiny_spec(), dataset, split, device="cpu").validate(fold)


def test_predict_runs_with_the_validations_precision(data: tuple, precision_probe: Callable) -> None:
    """On a CPU where bf16 measures faster, predict (``amp`` auto) decides exactly like the loop's bf16
    validation; ``amp="off"`` gives the float32 figures, close to the bf16 ones."""
    from analysis.predict import predict_arrays

    precision_probe(1.0, 0.5)
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=1), dataset, split, device="cpu")
    loop.step()
    fold = loop.folds[0]
    idx = fold.val_idx
    images = np.asarray(dataset.images[idx])
    cpu = torch.device("cpu")
    val_masks, val_probs, _ = loop.predict(fold, idx)
    seg, probs = predict_arrays([fold.model], images, cpu, batch_size=2 * loop.cfg.batch_size)
    assert np.array_equal(lesion_mask(seg), val_masks) and np.array_equal(probs, val_probs)
    seg32, probs32 = predict_arrays([fold.model], images, cpu, amp="off")
    assert not np.array_equal(seg32, seg)  # bf16 really ran
    assert np.abs(seg32 - seg).max() < 0.05 and np.abs(probs32 - probs).max() < 0.05


def test_cuda_request_without_cuda_fails(data: tuple) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    dataset, split, _ = data
    with pytest.raises(DeviceError, match="CUDA is not available"):
        CrossValLoop(tiny_spec(), dataset, split, device="cuda")


def test_state_of_another_split_is_refused(data: tuple) -> None:
    dataset, split, _ = data
    loop = CrossValLoop(tiny_spec(epochs=1), dataset, split, device="cpu")
    swapped = SplitIndices(test=split.test, folds=list(reversed(split.folds)), dev=split.dev)
    other = CrossValLoop(tiny_spec(epochs=1), dataset, swapped, device="cpu")
    with pytest.raises(ValueError, match="different split"):
        other.load_state_dict(loop.state_dict())


RESUME_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from trainables.data.cache import load_dataset
from trainables.data.splits import split_indices
from trainables.loop import CrossValLoop
from trainables.spec import spec_from_dict
spec = spec_from_dict(json.loads(sys.argv[1]))
dataset = load_dataset(spec.data, progress=False)
splits = json.loads(open(sys.argv[2]).read())
loop = CrossValLoop(spec, dataset, split_indices(splits, dataset), device="cpu")
loop.load_state_dict(torch.load(sys.argv[3], map_location="cpu", weights_only=True))
while not loop.done:
    loop.step()
print(json.dumps(loop.history))
"""


def test_resume_in_a_fresh_process_matches_a_straight_run(data: tuple, tmp_path: Path) -> None:
    dataset, split, splits = data
    spec_dict = tiny_spec_dict(
        epochs=4, sampler="balanced", loss={"cls": "ce"}, augment={"speckle": 0.2, "rotate": 20.0}, ema=0.9
    )  # the moving average's state too: validation reads it
    loop = CrossValLoop(spec_from_dict(spec_dict), dataset, split, device="cpu")
    for _ in range(2):
        loop.step()
    torch.save(loop.state_dict(), tmp_path / "state.pt")
    while not loop.done:
        loop.step()
    straight = loop.history

    (tmp_path / "splits.json").write_text(json.dumps(splits))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            json.dumps(spec_dict),
            str(tmp_path / "splits.json"),
            str(tmp_path / "state.pt"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(resumed) == len(straight) == 4
    for a, b in zip(straight, resumed):
        assert a.keys() == b.keys()
        for key in a:
            if key.startswith("time") or key in ("samples_per_s",):
                continue
            va, vb = a[key], b[key]
            assert (math.isnan(va) and math.isnan(vb)) or va == pytest.approx(vb, abs=1e-6, rel=0), key
    assert straight[3]["fold0/train/loss"] != straight[2]["fold0/train/loss"]

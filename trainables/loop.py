"""The fold-aware lockstep training loop: one object trains all K folds of one config, epoch by epoch.

``step()`` trains every fold for one epoch, validates it, and returns one flat dict of metrics: per fold
(``fold0/val/dice``, ``fold0/train/loss``, ...), the cross-validation mean and sample std over folds
(``val/dice``, ``val/dice_std``), ``val/score`` (the CV mean of each fold's ``selection_score`` under
``train.select``) and ``val/score_best`` (its best value so far). A search judges a config by that CV
mean, not by one lucky fold.

Data: the dataset's uint8 arrays are shared read-only by all folds (on CUDA they are copied to the
device once); each batch is sliced by index, turned to float on the device and augmented there.
Validation runs at the working resolution: masks by the one lesion rule of :mod:`trainables.metrics`
(float32 sigmoid > 0.5, also under AMP), classes the softmax arg-max.

Optimisation per fold: AdamW or SGD, weight decay on weights only, a per-step LR schedule (linear
warm-up, then cosine / one-cycle / constant; see :func:`build_scheduler`; fused kernels on the CPU), AMP per
:mod:`trainables.device` (``auto``: bf16 on CUDA; on a CPU with bf16 hardware the faster of bf16 and
fp32, timed on the first step by :mod:`trainables.cpu_precision` and kept on resume; in training and
validation), gradient clipping, ``channels_last`` weights (CPU and CUDA), optional ``torch.compile``, an
optional exponential moving average of the weights (``train.ema``: timm's ``ModelEmaV3``, buffers included,
its decay warmed up over the first steps; validation, checkpoints' best weights and bundles then use the
average), optional per-fold early stopping:
a fold whose score has not improved for ``train.patience`` epochs stops training; the loop is ``done``
when the epochs are reached or every fold has stopped.

A stopped fold keeps its weights frozen at its last trained epoch (its stop epoch; no best-epoch
restore), and every later epoch reports the validation metrics of those frozen weights, i.e. of its stop
epoch (recorded once: the weights no longer change, so validating them again would repeat the figures).
Why: the CV mean at epoch ``e`` must stay the mean of one model state per fold, each fold's state being
the model it actually has at epoch ``e``; that is what ``summary()``'s common epoch and the search's
``val/score`` compare. Reporting a stopped fold's *best* epoch instead would make every later CV mean a
mean of per-fold maxima (one fold at its epoch-1 peak, another at epoch 5), an optimistic figure of no
single epoch. Dropping the CV mean once any fold stops would also be well defined, but would leave the
still-training folds' epochs without a CV figure at all. The loop's state (``state_dict``) and the
checkpoints therefore hold exactly the weights whose metrics were reported.

A split with one fold whose validation part is empty trains that one model without validating (the
refit on all development images): its epochs report training figures only and ``val/score`` is NaN.

``summary()`` gives each fold's best epoch (optimistic: chosen on the fold it is scored on) and the CV
mean +- std at the single common epoch with the best mean score, the figure to compare configs by (still
a maximum over epochs; the hold-out test evaluation is the unbiased figure).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.utils import ModelEmaV3
from torch import nn

from model_zoo import build_model, check_input_shape
from model_zoo.errors import RunFailedError
from model_zoo.files import save_torch_atomic
from model_zoo.losses import build_loss, class_weights_from_counts
from trainables.augment import BatchAugment
from trainables.config import TrainConfig
from trainables.cpu_precision import PrecisionChoice, choose_cpu_amp, choose_inference_amp, needs_probe
from trainables.device import (
    amp_settings,
    autocast,
    make_scaler,
    resolve_device,
    seed_everything,
    to_channels_last,
)
from trainables.metrics import (
    check_lesion_gate,
    classification_metrics,
    gate_lesion,
    masks_from_logits,
    mean_std,
    per_class_dice,
    segmentation_metrics,
    selection_score,
)
from trainables.sampler import epoch_batches, n_batches

STATE_VERSION = 2  # 2: torch's schedulers (SequentialLR / OneCycleLR state), was LambdaLR
# The loop state's file name inside a Tune checkpoint (written by trainables.trainable, read by refit's
# --ensemble-folds); a ``launch.py train`` run folder keeps it as trainables.train.TRAIN_STATE_FILE.
CHECKPOINT_STATE_FILE = "loop.pt"
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 400.0  # start at lr / 25, end at (lr / 25) / 400 = lr / 1e4
ONECYCLE_WARMUP = 0.3

BatchCallback = Callable[[int, int, int, float], None]


class NonFiniteLossError(RunFailedError, RuntimeError):
    """A training loss became NaN or infinite; the config has failed (never a score)."""

    def __init__(self, fold: int, epoch: int, batch: int, value: float, last_finite: float | None) -> None:
        self.fold, self.epoch, self.batch, self.value, self.last_finite = (
            fold,
            epoch,
            batch,
            value,
            last_finite,
        )
        last = "none yet" if last_finite is None else f"{last_finite:.6g}"
        super().__init__(
            f"non-finite training loss ({value}) in fold {fold}, epoch {epoch}, batch {batch}; "
            f"last finite loss: {last}. Try a lower train.lr, train.grad_clip, or train.amp=off."
        )


# ------------------------------------------------------------------------- optimizer and schedule


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum); weight decay on weights, not on biases and norm parameters.

    On the CPU the fused kernels: torch's default there is a Python loop over the parameters. One AdamW
    step of UNet + ResNet-18 (14.3 M parameters) took 36 ms looped, 36 ms foreach and 14 ms fused with 2
    threads (52 / 56 / 9.6 ms with 1), saving 5% of a bf16 training step (``benchmarks/cpu_speed.py``);
    the weights agree to 2e-7 after 50 steps. CUDA keeps torch's default (foreach).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.device.type == "cpu" for p in decay + no_decay) or None
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
    if cfg.optimizer == "sgd":
        nesterov = cfg.momentum > 0
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov, fused=fused)
    raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}; expected adamw | sgd")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Torch's per-step schedule of ``cfg.schedule`` over ``cfg.schedule_epochs`` (default ``cfg.epochs``)
    epochs of ``steps_per_epoch``; training may stop before its end (a refit of the CV's chosen epoch).

    ``constant``: linear warm-up from ``lr / warmup`` to ``lr`` over ``warmup_epochs`` (``LinearLR``), then
    ``lr``. ``cosine``: the same warm-up, then cosine decay to 0 (``CosineAnnealingLR``; ``SequentialLR``
    joins them). ``onecycle``: ``OneCycleLR`` from ``lr / 25`` up to ``lr`` over the warm-up (30% of the
    run when ``warmup_epochs`` is 0) and down to ``lr / 1e4``, cosine both ways, momentum not cycled.
    """
    from torch.optim import lr_scheduler

    total = max(1, cfg.schedule_span * steps_per_epoch)
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total)
    if cfg.schedule == "onecycle":
        if total < 3:  # OneCycleLR needs a step up and a step down (phase ends at peak - 1 and total - 1)
            return lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
        peak = min(max(2, warmup or round(ONECYCLE_WARMUP * total)), total - 1)
        return lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total,
            pct_start=min(1.0, peak / total),
            anneal_strategy="cos",
            cycle_momentum=False,
            div_factor=ONECYCLE_DIV,
            final_div_factor=ONECYCLE_FINAL_DIV,
        )
    if cfg.schedule == "cosine":
        main: lr_scheduler.LRScheduler = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, total - warmup)
        )
    elif cfg.schedule == "constant":
        main = lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(
            f"train.schedule: unknown schedule {cfg.schedule!r}; expected cosine | onecycle | constant"
        )
    if warmup == 0:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, total_iters=warmup - 1)
    return lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])


# ------------------------------------------------------------------------------------- the loop


Source = np.ndarray | torch.Tensor


def _batch_source(
    images: np.ndarray, masks: np.ndarray, labels: np.ndarray, device: torch.device
) -> tuple[Source, Source, Source]:
    """Where batches are sliced from: the dataset's own NumPy arrays on the CPU (shared, never copied;
    NumPy's ``take`` on a memory map is much faster than torch indexing), one uint8 copy on a GPU."""
    if device.type != "cuda":
        return images, masks, labels
    with warnings.catch_warnings():  # read-only arrays (a memory map) are only read here
        warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
        return tuple(  # type: ignore[return-value]
            torch.from_numpy(a).to(device) for a in (images, masks, labels)
        )


def load_batch(
    images: Source, masks: Source, labels: Source, idx: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slice uint8 ``images``/``masks`` ``[N,S,S]`` and ``labels`` (NumPy arrays, or tensors already on
    ``device``) by ``idx``; return on ``device`` images float ``[B,1,S,S]`` in [0, 1], masks float
    ``[B,1,S,S]`` (0/1) and int64 labels. Only the batch is copied, never the sources."""
    idx = np.asarray(idx, dtype=np.int64)
    if isinstance(images, np.ndarray):
        x, m, y = (torch.from_numpy(np.take(a, idx, axis=0)) for a in (images, masks, labels))
        x, m, y = (t.to(device, non_blocking=True) for t in (x, m, y))
    else:
        index = torch.from_numpy(idx).to(images.device)
        x, m, y = (t.index_select(0, index) for t in (images, masks, labels))
    return x.unsqueeze(1).float().div_(255.0), m.unsqueeze(1).float(), y.long()


@dataclass
class _Fold:
    """Everything one fold owns; the dataset itself is shared."""

    index: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    model: nn.Module
    forward: Callable[..., Any]
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    ema: ModelEmaV3 | None = None
    best_score: float = -math.inf
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)  # of its weights as they are now
    stopped: bool = False
    last_finite_loss: float | None = None
    last_lr: float = math.nan

    @property
    def eval_module(self) -> nn.Module:
        """The weights that are validated, saved as the fold's bundle and refit: the moving average
        under ``train.ema``, else the model as trained."""
        return self.ema.module if self.ema is not None else self.model


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict, as Python floats (drops per_image, confusion, ...)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float | np.integer | np.floating)}


def _digest(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


class CrossValLoop:
    """Train the K folds of ``split`` for ``spec`` in lockstep on ``device`` (see the module docstring).

    ``dataset`` is a :class:`trainables.data.cache.BUSDataset` (``images``/``masks`` uint8 ``[N, S, S]``,
    ``labels``, ``class_names``); ``split`` a :class:`trainables.data.splits.SplitIndices` (its ``folds``
    are ``(train_idx, val_idx)`` pairs of dataset indices).
    """

    def __init__(self, spec: Any, dataset: Any, split: Any, device: str | torch.device = "auto") -> None:
        self.spec = spec
        self.cfg: TrainConfig = spec.train
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.amp = amp_settings(self.device, self.cfg.amp)  # training
        self.val_amp = self.amp  # validation
        # auto on a CPU with bf16 hardware: both measured on the first step() unless a resumed state
        # says which precisions the run used (trainables.cpu_precision)
        self.amp_choice: PrecisionChoice | None = None
        self.val_amp_choice: PrecisionChoice | None = None
        self._probe_amp = needs_probe(self.device, self.cfg.amp)
        self.class_names = tuple(dataset.class_names)
        if spec.model.num_classes != len(self.class_names):
            raise ValueError(
                f"model.num_classes is {spec.model.num_classes} but the dataset has {len(self.class_names)} "
                f"classes ({', '.join(self.class_names)})"
            )
        check_lesion_gate(self.cfg.lesion_gate, self.class_names)
        folds = list(split.folds)
        if not folds:
            raise ValueError("the split has no folds")
        seed_everything(self.cfg.seed, self.cfg.deterministic, self.cfg.cudnn_benchmark)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.score_best = -math.inf
        self.improved: list[int] = []
        self.np_rng = np.random.default_rng(self.cfg.seed)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 1)
        self.augment = BatchAugment(self.cfg.augment, self.aug_gen)
        self.channels_last = self.cfg.channels_last  # faster on the CPU too (trainables.device)

        self.labels = np.asarray(dataset.labels, dtype=np.int64)
        images, masks = dataset.images, dataset.masks
        if images.dtype != np.uint8 or images.ndim != 3 or masks.shape != images.shape:
            raise ValueError(
                f"dataset: expected uint8 images and masks [N, S, S], got {images.dtype} "
                f"{list(images.shape)} and {masks.dtype} {list(masks.shape)}"
            )
        self.masks_np = masks
        self.images, self.masks, self.labels_src = _batch_source(images, masks, self.labels, self.device)
        check_input_shape(spec.model, int(images.shape[-2]), int(images.shape[-1]))

        self._n_folds = len(folds)
        self.folds = [self._build_fold(k, tr, va) for k, (tr, va) in enumerate(folds)]
        self._split_digest = _digest([a for f in self.folds for a in (f.train_idx, f.val_idx)])

    # ------------------------------------------------------------------------------ construction

    def _build_fold(self, k: int, train_idx: np.ndarray, val_idx: np.ndarray) -> _Fold:
        train_idx = np.asarray(train_idx, dtype=np.int64)
        val_idx = np.asarray(val_idx, dtype=np.int64)
        if len(train_idx) < 2:
            raise ValueError(f"fold {k}: needs at least 2 training images, got {len(train_idx)}")
        if len(val_idx) == 0 and self._n_folds > 1:
            raise ValueError(
                f"fold {k}: an empty validation part is only allowed for a single train-only fold"
            )
        counts = np.bincount(self.labels[train_idx], minlength=len(self.class_names))
        torch.manual_seed(self.cfg.seed * 1000 + k)  # each fold's init does not depend on the others
        model = build_model(self.spec.model, class_names=self.class_names)
        model.set_class_counts(torch.as_tensor(counts))
        model = model.to(self.device)
        if self.channels_last:
            model = to_channels_last(model)
        weights = class_weights_from_counts(counts) if self.cfg.loss.cls == "weighted_ce" else None
        loss_fn = build_loss(self.cfg.loss, weights).to(self.device)
        optimizer = build_optimizer(model, self.cfg)
        steps = n_batches(len(train_idx), self.cfg.batch_size)
        scheduler = build_scheduler(optimizer, self.cfg, steps)
        forward = torch.compile(model) if self.cfg.compile else model
        # decay warmed up as 1 - (1 + step)^-3/4 (timm's value for short runs), capped at train.ema: the
        # average does not drag the random initialisation along for hundreds of steps
        ema = (
            None
            if self.cfg.ema is None
            else ModelEmaV3(model, self.cfg.ema, use_warmup=True, warmup_power=0.75)
        )
        return _Fold(
            k,
            train_idx,
            val_idx,
            model,
            forward,
            loss_fn,
            optimizer,
            scheduler,
            make_scaler(self.device, self.amp),
            ema,
        )

    # ----------------------------------------------------------------------------------- running

    @property
    def done(self) -> bool:
        """All epochs run, or every fold stopped early."""
        return self.epoch >= self.cfg.epochs or all(f.stopped for f in self.folds)

    def choose_amp(self) -> PrecisionChoice | None:
        """Decide ``train.amp: auto`` on a CPU with bf16 hardware by timing a training step and a
        validation forward of the first active fold's model in both precisions
        (:mod:`trainables.cpu_precision`; on copies: weights and random streams are left as they were);
        returns the training choice. ``step()`` calls it once; a no-op after that, after a resume that
        recorded the precisions, and wherever ``amp_settings`` decides alone."""
        if not self._probe_amp or self.done:
            return self.amp_choice
        fold = next((f for f in self.folds if not f.stopped), self.folds[0])
        height, width = (int(s) for s in self.images.shape[-2:])
        batch = min(self.cfg.batch_size, len(fold.train_idx))
        model_id = fold.model.config_dict()
        self.amp_choice = choose_cpu_amp(
            fold.model,
            (batch, 1, height, width),
            model_id=model_id,
            loss_fn=fold.loss_fn,
            num_classes=len(self.class_names),
            channels_last=self.channels_last,
        )
        self.val_amp_choice = choose_inference_amp(
            fold.model, (height, width), model_id=model_id, channels_last=self.channels_last
        )
        self.amp = amp_settings(self.device, self.amp_choice.amp)
        self.val_amp = amp_settings(self.device, self.val_amp_choice.amp)
        self._probe_amp = False
        return self.amp_choice

    def batches_per_epoch(self) -> int:
        """Training batches the next ``step()`` runs over all active folds (for progress bars)."""
        return sum(n_batches(len(f.train_idx), self.cfg.batch_size) for f in self.folds if not f.stopped)

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return load_batch(self.images, self.masks, self.labels_src, idx, self.device)

    def _train_fold(self, fold: _Fold, on_batch: BatchCallback | None) -> tuple[dict[str, float], int]:
        cfg = self.cfg
        fold.model.train()
        batches = epoch_batches(
            fold.train_idx, self.labels[fold.train_idx], cfg.batch_size, cfg.sampler, self.np_rng
        )
        sums: dict[str, float] = {}
        seen = 0
        for b, idx in enumerate(batches):
            x, m, y = self._batch(idx)
            x, m = self.augment(x, m, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.amp):
                out = fold.forward(x, labels=y)
            loss, parts = fold.loss_fn(out, m, y)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(fold.index, self.epoch + 1, b + 1, value, fold.last_finite_loss)
            fold.last_finite_loss = value
            fold.scaler.scale(loss).backward()
            if cfg.grad_clip is not None:
                fold.scaler.unscale_(fold.optimizer)
                nn.utils.clip_grad_norm_(fold.model.parameters(), cfg.grad_clip)
            fold.scaler.step(fold.optimizer)
            fold.last_lr = float(fold.optimizer.param_groups[0]["lr"])
            fold.scaler.update()
            fold.optimizer.zero_grad(set_to_none=True)
            fold.scheduler.step()
            if fold.ema is not None:
                fold.ema.update(fold.model, step=fold.scheduler.last_epoch)  # the fold's optimizer steps
            n = len(idx)
            seen += n
            sums["loss"] = sums.get("loss", 0.0) + value * n
            for key, part in parts.items():
                if key != "total":
                    sums[key] = sums.get(key, 0.0) + float(part) * n
            if on_batch is not None:
                on_batch(fold.index, b + 1, len(batches), value)
        return {k: v / max(seen, 1) for k, v in sums.items()}, seen

    @torch.no_grad()
    def predict(self, fold: _Fold, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Masks bool ``[N,S,S]`` (:func:`~trainables.metrics.masks_from_logits`), softmax probabilities
        ``[N,K]`` and the mean loss."""
        fold.model.eval()
        forward = fold.forward if fold.ema is None else fold.ema.module
        preds, probs = [], []
        loss_sum = 0.0
        step = max(1, 2 * self.cfg.batch_size)
        for start in range(0, len(idx), step):
            x, m, y = self._batch(idx[start : start + step])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.val_amp):
                out = forward(x)
            seg_logits, cls_logits = out
            loss, _ = fold.loss_fn(out, m, y)
            loss_sum += float(loss) * len(y)
            preds.append(masks_from_logits(seg_logits))
            probs.append(torch.softmax(cls_logits.float(), dim=1).cpu().numpy())
        return np.concatenate(preds), np.concatenate(probs).astype(np.float64), loss_sum / len(idx)

    def validate(self, fold: _Fold) -> dict[str, float]:
        """Validation metrics of ``fold``'s current model on its validation images, plus ``score``."""
        pred, probs, loss = self.predict(fold, fold.val_idx)
        gt = np.asarray(self.masks_np[fold.val_idx]) > 0
        labels = self.labels[fold.val_idx]
        gated = gate_lesion(pred, probs, self.cfg.lesion_gate, self.class_names)
        seg = segmentation_metrics(gated, gt, tau=self.cfg.tau, min_area=self.cfg.min_area)
        cls = classification_metrics(probs, labels, self.class_names)
        metrics = {**_scalars(seg), **_scalars(cls), "loss": loss}
        if gated is not pred:  # what the gate changed, epoch by epoch
            raw = segmentation_metrics(pred, gt, tau=self.cfg.tau, min_area=self.cfg.min_area)
            metrics |= {f"ungated_{k}": raw[k] for k in ("dice", "normal_specificity")}
        for name, values in per_class_dice(seg["per_image"]["dice"], labels, self.class_names).items():
            metrics[name] = float(np.nanmean(values))  # e.g. dice_benign, dice_malignant
        metrics["score"] = selection_score(metrics, self.cfg.select)
        return metrics

    def step(self, on_batch: BatchCallback | None = None) -> dict[str, float]:
        """Train every active fold for one epoch, validate, and return the flat result of this epoch.

        ``on_batch(fold, batch, n_batches, loss)`` is called after each training batch (progress bars).
        Raises :class:`NonFiniteLossError` when a loss is NaN or infinite.
        """
        if self.done:
            raise RuntimeError(f"the loop is done (epoch {self.epoch} of {self.cfg.epochs}); nothing to step")
        self.choose_amp()
        start = time.perf_counter()
        result: dict[str, float] = {}
        per_fold: list[dict[str, float]] = []
        train_time, samples = 0.0, 0
        self.improved = []
        epoch = self.epoch + 1
        for fold in self.folds:
            prefix = f"fold{fold.index}/"
            if fold.stopped:  # frozen weights: the metrics of its stop epoch (see the module docstring)
                train = {"loss": math.nan}
                val = dict(fold.last_metrics)
            else:
                t0 = time.perf_counter()
                train, seen = self._train_fold(fold, on_batch)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                train_time += time.perf_counter() - t0
                samples += seen
                val = self.validate(fold) if len(fold.val_idx) else {}
                fold.last_metrics = dict(val)
                if not val:  # train-only fold (refit): nothing to select on
                    fold.best_epoch = epoch
                elif val["score"] > fold.best_score:
                    fold.best_score, fold.best_epoch, fold.best_metrics = val["score"], epoch, dict(val)
                    self.improved.append(fold.index)
                elif self.cfg.patience is not None and epoch - fold.best_epoch >= self.cfg.patience:
                    fold.stopped = True
            result.update({f"{prefix}train/{k}": v for k, v in train.items()})
            result.update({f"{prefix}val/{k}": v for k, v in val.items()})
            result[f"{prefix}best_epoch"] = float(fold.best_epoch)
            result[f"{prefix}stopped"] = float(fold.stopped)
            per_fold.append(
                {**{f"train/{k}": v for k, v in train.items()}, **{f"val/{k}": v for k, v in val.items()}}
            )
        keys = list(dict.fromkeys(k for p in per_fold for k in p))
        for key in keys:
            mean, std = mean_std([p.get(key, math.nan) for p in per_fold])
            result[key], result[f"{key}_std"] = mean, std
        self.epoch = epoch
        result.setdefault("val/score", math.nan)
        if math.isfinite(result["val/score"]):
            self.score_best = max(self.score_best, result["val/score"])
        result["val/score_best"] = self.score_best
        result["epoch"] = float(epoch)
        active = [f for f in self.folds if not f.stopped] or self.folds
        result["lr"] = active[0].last_lr  # of the epoch's last optimizer step
        result["samples_per_s"] = samples / train_time if train_time > 0 else math.nan
        result["time_this_epoch_s"] = time.perf_counter() - start
        self.history.append(result)
        return result

    # ----------------------------------------------------------------------------------- summary

    def summary(self) -> dict[str, Any]:
        """Per-fold best epochs and the CV mean +- std at the common epoch with the best mean score.

        ``best_epoch`` / ``cv`` (``{metric: {"mean", "std"}}``) are the figures to compare configs by;
        ``folds[k]`` holds fold k's own best epoch and metrics (optimistic: selected on that fold) and
        ``weights_epoch``, the epoch of the weights it holds now (its stop epoch once stopped);
        ``folds_best`` their mean +- std over folds.
        """
        out: dict[str, Any] = {
            "epochs_run": self.epoch,
            "epochs": self.cfg.epochs,
            "n_folds": len(self.folds),
            "class_names": list(self.class_names),
            "device": str(self.device),
            "amp": self.amp.name,
            "val_amp": self.val_amp.name,
        }
        if self.amp_choice is not None:
            out["amp_probe"] = self.amp_choice.as_dict()
        if self.val_amp_choice is not None:
            out["val_amp_probe"] = self.val_amp_choice.as_dict()
        if not self.history:
            return out
        scores = [h["val/score"] for h in self.history]
        best = int(np.nanargmax(scores)) if not all(math.isnan(s) for s in scores) else len(scores) - 1
        row = self.history[best]
        names = sorted(k[len("val/") :] for k in row if k.startswith("val/") and not k.endswith("_std"))
        names = [n for n in names if n != "score_best"]
        out["best_epoch"] = best + 1
        out["score"] = row["val/score"]
        out["cv"] = {n: {"mean": row[f"val/{n}"], "std": row.get(f"val/{n}_std", math.nan)} for n in names}
        out["folds"] = [
            {
                "fold": f.index,
                "best_epoch": f.best_epoch,
                "stopped": f.stopped,
                "weights_epoch": fold_weights_epoch(self.history, f.index, self.epoch),
                "metrics": dict(f.best_metrics),
            }
            for f in self.folds
        ]
        keys = sorted(set().union(*(f.best_metrics for f in self.folds)))
        out["folds_best"] = {}
        for k in keys:
            mean, std = mean_std([f.best_metrics.get(k, math.nan) for f in self.folds])
            out["folds_best"][k] = {"mean": mean, "std": std}
        return out

    # ------------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: tensors and plain containers only (``weights_only``
        loads)."""
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": self.np_rng.bit_generator.state,
            "numpy_global": _np_global_state(),
            "python": random.getstate(),
            "augment": self.aug_gen.get_state(),
            "augment_device": self.aug_gen.device.type,
        }
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "amp": None if self._probe_amp else self.amp.name,  # None: not measured yet
            "val_amp": None if self._probe_amp else self.val_amp.name,
            "amp_probe": None if self.amp_choice is None else self.amp_choice.as_dict(),
            "val_amp_probe": None if self.val_amp_choice is None else self.val_amp_choice.as_dict(),
            "score_best": self.score_best,
            "split": self._split_digest,
            "history": [dict(h) for h in self.history],
            "rng": rng,
            "folds": [
                {
                    "model": f.model.state_dict(),
                    "optimizer": f.optimizer.state_dict(),
                    "scheduler": f.scheduler.state_dict(),
                    "scaler": f.scaler.state_dict(),
                    "ema": None if f.ema is None else f.ema.state_dict(),
                    "best_score": f.best_score,
                    "best_epoch": f.best_epoch,
                    "best_metrics": dict(f.best_metrics),
                    "stopped": f.stopped,
                    "last_finite_loss": f.last_finite_loss,
                    "last_lr": f.last_lr,
                }
                for f in self.folds
            ],
        }

    def _resume_precision(self, state: Mapping[str, Any]) -> None:
        """A resumed run keeps the precisions it trained and validated in (when ``amp`` is auto on a CPU
        with bf16 hardware; elsewhere the detection is deterministic). A state written before the probe
        existed has no ``amp`` key: its run used the detection (bf16), so that stays. A state saved
        before the first measurement (``amp`` None) or on CUDA leaves the choice to the probe."""
        if not self._probe_amp:
            return
        if "amp" not in state:
            self._probe_amp = False
            return
        saved_on = state.get("rng", {}).get("augment_device", "cpu")
        if state["amp"] not in ("bf16", "off") or saved_on != "cpu":
            return
        self.amp = amp_settings(self.device, state["amp"])
        self.val_amp = amp_settings(self.device, state.get("val_amp") or state["amp"])
        self.amp_choice = _recorded_choice(state.get("amp_probe"))
        self.val_amp_choice = _recorded_choice(state.get("val_amp_probe"))
        self._probe_amp = False

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (same spec and split; checked)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r} is not {STATE_VERSION}")
        if len(state["folds"]) != len(self.folds) or state["split"] != self._split_digest:
            raise ValueError(
                "the saved state was trained on a different split (fold count or fold indices differ); "
                "resume with the splits.json it was trained with"
            )
        for fold, saved in zip(self.folds, state["folds"]):
            fold.model.load_state_dict(saved["model"])
            fold.optimizer.load_state_dict(saved["optimizer"])
            fold.scheduler.load_state_dict(saved["scheduler"])
            fold.scaler.load_state_dict(saved["scaler"])
            if fold.ema is not None:
                if saved.get("ema") is None:
                    raise ValueError("the saved state has no moving average of the weights (train.ema)")
                fold.ema.load_state_dict(saved["ema"])
            fold.best_score = float(saved["best_score"])
            fold.best_epoch = int(saved["best_epoch"])
            fold.best_metrics = dict(saved["best_metrics"])
            fold.stopped = bool(saved["stopped"])
            fold.last_metrics = _fold_val_metrics(state["history"], fold.index, int(state["epoch"]))
            fold.last_finite_loss = saved["last_finite_loss"]
            fold.last_lr = float(saved["last_lr"])
        self._resume_precision(state)
        self.epoch = int(state["epoch"])
        self.score_best = float(state["score_best"])
        self.history = [dict(h) for h in state["history"]]
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.np_rng.bit_generator.state = rng["numpy"]
        np.random.set_state(_np_global_restore(rng["numpy_global"]))
        random.setstate(_tuples(rng["python"]))
        saved_on = rng.get("augment_device", self.aug_gen.device.type)
        if saved_on == self.aug_gen.device.type:
            self.aug_gen.set_state(rng["augment"])
        else:  # CPU and CUDA generators have different state formats: continue on a new, seeded stream
            self.aug_gen.manual_seed(self.cfg.seed + 1 + 7919 * self.epoch)
            warnings.warn(
                f"resuming a state saved on {saved_on} on {self.aug_gen.device.type}: the augmentation "
                "random stream restarts from a seed, so later epochs will not repeat the original run "
                "exactly",
                RuntimeWarning,
                stacklevel=2,
            )


def _recorded_choice(data: Any) -> PrecisionChoice | None:
    return PrecisionChoice.from_dict(data, "state") if isinstance(data, Mapping) else None


def fold_weights_epoch(history: Sequence[Mapping[str, float]], fold: int, epoch: int) -> int:
    """The epoch whose weights fold ``fold`` holds after loop epoch ``epoch`` of ``history`` (the loop's
    per-epoch results): ``epoch`` itself, or the fold's stop epoch when it stopped earlier."""
    for row in history:
        e = int(row["epoch"])
        if e > epoch:
            break
        if row.get(f"fold{fold}/stopped", 0.0) == 1.0:
            return e
    return epoch


def _fold_val_metrics(history: Sequence[Mapping[str, float]], fold: int, epoch: int) -> dict[str, float]:
    """Fold ``fold``'s validation metrics of the weights it holds after ``epoch``, read from ``history``."""
    if epoch < 1:
        return {}
    trained = fold_weights_epoch(history, fold, epoch)
    row = next((h for h in history if int(h["epoch"]) == trained), {})
    prefix = f"fold{fold}/val/"
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


def _np_global_state() -> dict[str, Any]:
    """NumPy's legacy global RNG state as plain types (its key array becomes a tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _np_global_restore(d: Mapping[str, Any]) -> tuple:
    keys = d["keys"].numpy().astype(np.uint32)
    return (d["name"], keys, d["pos"], d["has_gauss"], d["gauss"])


def _tuples(x: Any) -> Any:
    """Lists back to tuples (``random.setstate`` needs tuples)."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x


def save_loop_state(loop: CrossValLoop, path: str | Path) -> Path:
    """:meth:`CrossValLoop.state_dict` saved to ``path`` atomically (a crash never leaves half a state)."""
    return save_torch_atomic(loop.state_dict(), path)


def read_loop_state(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A state written by :func:`save_loop_state`, on the CPU, tensors and plain containers only
    (``weights_only``: a state file cannot run code); ``mmap`` reads only the tensors used."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)

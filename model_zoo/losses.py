"""Joint loss: ``seg_weight * segmentation + cls_weight * classification`` (thesis default 0.7 / 0.3).

Segmentation (binary lesion mask, per image then averaged over the batch):

- ``dice_bce``: soft Dice + BCE; ``dice_focal``: soft Dice + focal (Lin et al., ICCV 2017,
  arXiv:1708.02002); ``tversky``: Tversky (Salehi et al., MLMI 2017, arXiv:1706.05721; ``alpha``
  weighs false positives, ``beta`` false negatives); ``focal``: focal only.
- Dice and Tversky are MONAI's (``DiceLoss`` / ``TverskyLoss`` with ``sigmoid=True``, ``batch=False``,
  ``smooth_nr = smooth_dr = 1``, mean reduction), per image, averaged over the images that hold a lesion
  only, exactly as the Dice metric is defined. On a normal image (empty mask) a soft-overlap term cannot
  tell a clean prediction from a faint one (``P / (P + 1)`` for the soft predicted area ``P`` stays near
  1 until every logit is extreme), so there the pixel-wise term (BCE or focal, over every image) is what
  penalises false positives; ``tversky`` therefore carries a BCE term too. A batch without lesion images
  has a region term of 0.
- ``batch_dice: true`` (nnU-Net's 2D default, Isensee et al. 2021) takes the Dice / Tversky sums over the
  whole batch instead (MONAI's ``batch=True``), normal images included: one region value per batch, in
  which a lesion weighs by its area and every pixel drawn on a normal image is a false positive.
- :class:`SoftDiceLoss` and :class:`SoftTverskyLoss` are a dependency-free re-implementation of those
  two MONAI classes (same operations in the same order), checked against MONAI in
  ``tests/model_zoo/test_losses.py``. Importing MONAI costs ~1.7 s, which would delay every new trial
  actor's first optimizer step; building or using a loss never imports it.

- ``presence_weight > 0`` adds an image-level lesion-presence term to any of them (:class:`PresenceLoss`):
  BCE of a presence logit, the mean of the ``presence_top_k`` largest pixel logits, against "the mask
  holds a lesion". The pixel-wise term weighs a false-positive blob on a normal image by its share of the
  pixels (a 100 px blob at p = 0.9 costs ~0.014 of BCE at 128 px), so a from-scratch model draws lesions
  on about half of the normal images (docs/results.md); the presence term weighs the same blob as a
  wrong image-level decision. With ``k`` equal to ``train.min_area`` the term pushes exactly the pixels
  that decide normal specificity (a lesion of >= ``min_area`` px on a normal image) below 0.5.

- Deep supervision (``model.deep_supervision``; nnU-Net, Isensee et al. 2021): the segmentation loss is
  also taken on each coarser stage's logits (``out.aux_seg_logits``) against the mask area-downsampled to
  that stage (soft targets at the boundary), weighted ``1, 1/2, 1/4, ...`` from the output stage down and
  normalised to sum 1, so the loss keeps its scale. The presence term stays on the output only.

Classification (``ce``, ``weighted_ce``, ``focal``; label smoothing applies to all three):

- ``weighted_ce`` needs class weights (:func:`class_weights_from_counts` of the training fold);
  ``ce`` and ``focal`` are unweighted (focal down-weights easy samples instead: ``(1 - p_t)^gamma * CE``).
- The latent-augmentation samples (``out.aug_cls_logits`` / ``out.aug_labels``) join the real ones in
  one weighted mean, each with sample weight ``aug_weight`` (real samples: 1), times its class weight:
  ``sum(s_i w_{y_i} l_i) / sum(s_i w_{y_i})``. Without aug samples this equals ``F.cross_entropy``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import FocalLoss, SoftBCEWithLogitsLoss
from torch import nn

from model_zoo.config import LossConfig
from model_zoo.registry import Registry

SEG_LOSSES: Registry[Callable[[LossConfig], nn.Module]] = Registry("segmentation loss")
CLS_LOSSES: Registry[Callable[[LossConfig, torch.Tensor | None], nn.Module]] = Registry("classification loss")


def class_weights_from_counts(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Inverse-frequency class weights ``1 / n_c``, scaled to mean 1 (float32 ``[K]``)."""
    n = torch.as_tensor(counts, dtype=torch.float64).flatten()
    if n.numel() == 0 or bool((n <= 0).any()):
        raise ValueError(
            f"class counts must all be positive (a class missing from the training fold?), got {n.tolist()}"
        )
    w = 1.0 / n
    return (w / w.mean()).float()


class _SumLoss(nn.Module):
    """Unweighted sum of segmentation terms, each ``(logits [B,1,H,W], target [B,1,H,W]) -> scalar``."""

    def __init__(self, **terms: nn.Module) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum((term(logits, target) for term in self.terms.values()), logits.new_zeros(()))


class LesionImagesOnly(nn.Module):
    """Apply a per-image region loss to the images whose mask holds a lesion; 0 when there are none."""

    def __init__(self, region: nn.Module) -> None:
        super().__init__()
        self.region = region

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        has_lesion = target.flatten(1).amax(dim=1) > 0
        if not bool(has_lesion.any()):
            return logits.sum() * 0.0  # keeps the graph (and DDP/AMP bookkeeping) intact
        return self.region(logits[has_lesion], target[has_lesion])


def _check_same_shape(logits: torch.Tensor, target: torch.Tensor) -> None:
    if target.shape != logits.shape:
        raise ValueError(f"target of shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")


def _probs_and_sum_axes(
    logits: torch.Tensor, target: torch.Tensor, batch: bool
) -> tuple[torch.Tensor, list[int]]:
    """``sigmoid(logits)`` and the axes to sum over: per image and channel, or per channel over the whole
    batch when ``batch`` (MONAI's ``batch=True``); shapes must match."""
    _check_same_shape(logits, target)
    return torch.sigmoid(logits), ([0] if batch else []) + list(range(2, logits.dim()))


class SoftDiceLoss(nn.Module):
    """MONAI's ``DiceLoss(sigmoid=True, batch, smooth_nr, smooth_dr)`` (mean reduction) in plain torch.

    Per image and channel, with ``p = sigmoid(logits)`` and target ``g``, summed over the spatial axes:
    ``1 - (2 sum(p g) + smooth_nr) / (sum(p) + sum(g) + smooth_dr)``, then the mean over images and channels.
    With ``batch=True`` the sums also run over the images: one Dice per channel for the whole batch.
    """

    def __init__(self, smooth_nr: float = 1.0, smooth_dr: float = 1.0, batch: bool = False) -> None:
        super().__init__()
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, axes = _probs_and_sum_axes(logits, target, self.batch)
        # MONAI's compute_tp_fp_fn (ord 1, hard labels, decoupled) and the Dice halving of fp / fn
        tp = torch.sum(p * target, dim=axes)
        fp = (torch.sum(p, dim=axes) - tp) * 0.5
        fn = (torch.sum(target, dim=axes) - tp) * 0.5
        numerator = 2 * tp + self.smooth_nr
        denominator = 2 * (tp + fp + fn) + self.smooth_dr
        return torch.mean(1 - numerator / denominator)


class SoftTverskyLoss(nn.Module):
    """MONAI's ``TverskyLoss(sigmoid=True, batch, alpha, beta, smooth_nr, smooth_dr)`` in plain torch.

    Per image and channel, with ``p = sigmoid(logits)``: ``TP = sum(p g)``, ``FP = sum(p (1 - g))``,
    ``FN = sum((1 - p) g)``, loss ``1 - (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr)``, then
    the mean over images and channels (``batch=True``: sums over the whole batch, one value per channel).
    """

    def __init__(
        self, alpha: float, beta: float, smooth_nr: float = 1.0, smooth_dr: float = 1.0, batch: bool = False
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p, axes = _probs_and_sum_axes(logits, target, self.batch)
        # MONAI's compute_tp_fp_fn (ord 1, hard labels, not decoupled)
        tp = torch.sum(p * target, dim=axes)
        fp = torch.sum(p * (1 - target), dim=axes) * self.alpha
        fn = torch.sum((1 - p) * target, dim=axes) * self.beta
        numerator = tp + self.smooth_nr
        denominator = tp + fp + fn + self.smooth_dr
        return torch.mean(1.0 - numerator / denominator)


def presence_logits(seg_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Per-image lesion-presence logit ``[B]``: the mean of the ``k`` largest pixel logits (all pixels when
    an image has fewer than ``k``)."""
    flat = seg_logits.flatten(1)
    return flat.topk(min(int(k), flat.shape[1]), dim=1).values.mean(dim=1)


class PresenceLoss(nn.Module):
    """BCE of :func:`presence_logits` against "the mask holds a lesion", averaged over the batch."""

    def __init__(self, top_k: int) -> None:
        super().__init__()
        if int(top_k) != top_k or top_k < 1:
            raise ValueError(f"presence_top_k: expected an integer >= 1 (pixels), got {top_k!r}")
        self.top_k = int(top_k)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_same_shape(logits, target)
        has_lesion = (target.flatten(1).amax(dim=1) > 0).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(presence_logits(logits, self.top_k), has_lesion)


def _region_term(
    region: type[SoftDiceLoss] | type[SoftTverskyLoss], cfg: LossConfig, **kw: float
) -> nn.Module:
    """The region term as ``cfg.batch_dice`` asks: per lesion image, or one value over the whole batch."""
    if cfg.batch_dice:
        return region(smooth_nr=1.0, smooth_dr=1.0, batch=True, **kw)
    return LesionImagesOnly(region(smooth_nr=1.0, smooth_dr=1.0, **kw))


def _dice(cfg: LossConfig) -> nn.Module:
    return _region_term(SoftDiceLoss, cfg)


def _focal(cfg: LossConfig) -> nn.Module:
    return FocalLoss(mode="binary", gamma=cfg.focal_gamma)


@SEG_LOSSES.register("dice_bce")
def dice_bce(cfg: LossConfig) -> nn.Module:
    """Soft Dice (per image) + binary cross-entropy."""
    return _SumLoss(dice=_dice(cfg), bce=SoftBCEWithLogitsLoss())


@SEG_LOSSES.register("dice_focal")
def dice_focal(cfg: LossConfig) -> nn.Module:
    """Soft Dice (per image) + binary focal loss (gamma = focal_gamma)."""
    return _SumLoss(dice=_dice(cfg), focal=_focal(cfg))


@SEG_LOSSES.register("tversky")
def tversky(cfg: LossConfig) -> nn.Module:
    """Tversky (per lesion image; alpha on false positives, beta on false negatives) + BCE."""
    region = _region_term(SoftTverskyLoss, cfg, alpha=cfg.tversky_alpha, beta=cfg.tversky_beta)
    return _SumLoss(tversky=region, bce=SoftBCEWithLogitsLoss())


@SEG_LOSSES.register("focal")
def focal_seg(cfg: LossConfig) -> nn.Module:
    """Binary focal loss only (gamma = focal_gamma)."""
    return _SumLoss(focal=_focal(cfg))


class ClassificationLoss(nn.Module):
    """Per-sample CE (optionally class-weighted, label-smoothed, focal), reduced as a weighted mean.

    ``forward(logits [N,K], labels [N], sample_weight [N] | None) -> scalar``:
    ``sum(s_i w_{y_i} l_i) / sum(s_i w_{y_i})`` where ``l_i`` is the (focal-modulated) CE of sample i.
    """

    def __init__(
        self, class_weights: torch.Tensor | None, label_smoothing: float, gamma: float = 0.0
    ) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)
        self.gamma = float(gamma)
        self.register_buffer(
            "class_weights", None if class_weights is None else class_weights.float().clone()
        )

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, sample_weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = logits.float()
        cw = None if self.class_weights is None else self.class_weights.to(logits.device)
        # with reduction="none" torch already multiplies each sample by w_{y_i}
        loss = F.cross_entropy(
            logits, labels, weight=cw, label_smoothing=self.label_smoothing, reduction="none"
        )
        if self.gamma > 0:
            p_t = logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)
            loss = (1.0 - p_t).pow(self.gamma) * loss
        denom = torch.ones_like(loss) if cw is None else cw[labels]
        if sample_weight is not None:
            loss, denom = loss * sample_weight, denom * sample_weight
        return loss.sum() / denom.sum().clamp_min(torch.finfo(loss.dtype).tiny)


@CLS_LOSSES.register("ce")
def ce(cfg: LossConfig, class_weights: torch.Tensor | None) -> nn.Module:
    """Cross-entropy (unweighted), optional label smoothing."""
    return ClassificationLoss(None, cfg.label_smoothing)


@CLS_LOSSES.register("weighted_ce")
def weighted_ce(cfg: LossConfig, class_weights: torch.Tensor | None) -> nn.Module:
    """Class-weighted cross-entropy (weights from the training fold), optional label smoothing."""
    if class_weights is None:
        raise ValueError(
            "train.loss.cls='weighted_ce' needs class weights: pass "
            "class_weights_from_counts(<training fold counts>)"
        )
    return ClassificationLoss(class_weights, cfg.label_smoothing)


@CLS_LOSSES.register("focal")
def focal_cls(cfg: LossConfig, class_weights: torch.Tensor | None) -> nn.Module:
    """Softmax focal loss ``(1 - p_t)^gamma * CE`` (unweighted), optional label smoothing."""
    return ClassificationLoss(None, cfg.label_smoothing, gamma=cfg.focal_gamma)


class JointLoss(nn.Module):
    """``forward(out, masks, labels) -> (total, {"seg", "cls", "total"})`` for the joint network's output
    (``"presence"`` too with a presence term; ``"seg"`` includes it, weighted)."""

    def __init__(self, cfg: LossConfig, seg: nn.Module, cls: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.seg = seg
        self.cls = cls
        self.presence = PresenceLoss(cfg.presence_top_k) if cfg.presence_weight > 0 else None

    def forward(
        self, out: Any, masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        seg_logits, cls_logits = out
        seg_logits = seg_logits.float()
        if masks.dim() == 3:
            masks = masks[:, None]
        if masks.shape != seg_logits.shape:
            raise ValueError(
                f"masks of shape {tuple(masks.shape)} do not match seg logits {tuple(seg_logits.shape)}"
            )
        target = masks.to(seg_logits.dtype)
        seg = self.seg(seg_logits, target)
        aux = getattr(out, "aux_seg_logits", None)
        if aux:
            weights = [0.5**k for k in range(1, len(aux) + 1)]  # the output stage weighs 1
            for weight, logits in zip(weights, aux, strict=True):
                logits = logits.float()
                seg = seg + weight * self.seg(logits, F.adaptive_avg_pool2d(target, logits.shape[-2:]))
            seg = seg / (1 + sum(weights))
        parts: dict[str, float] = {}
        if self.presence is not None:
            presence = self.presence(seg_logits, target)
            parts["presence"] = float(presence.detach())
            seg = seg + self.cfg.presence_weight * presence

        aug_logits = getattr(out, "aug_cls_logits", None)
        aug_labels = getattr(out, "aug_labels", None)
        if aug_logits is not None and aug_labels is not None and aug_labels.numel() > 0:
            weight = torch.cat(
                [
                    cls_logits.new_ones(labels.shape[0]),
                    cls_logits.new_full((aug_labels.shape[0],), self.cfg.aug_weight),
                ]
            ).float()
            cls = self.cls(torch.cat([cls_logits, aug_logits]), torch.cat([labels, aug_labels]), weight)
        else:
            cls = self.cls(cls_logits, labels)

        total = self.cfg.seg_weight * seg + self.cfg.cls_weight * cls
        parts |= {"seg": float(seg.detach()), "cls": float(cls.detach()), "total": float(total.detach())}
        return total, parts


def build_loss(cfg: LossConfig, class_weights: Sequence[float] | torch.Tensor | None = None) -> JointLoss:
    """The joint loss named by ``cfg`` (``train.loss``); ``class_weights`` are used by ``weighted_ce``."""
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32).flatten()
    return JointLoss(cfg, SEG_LOSSES.get(cfg.seg)(cfg), CLS_LOSSES.get(cfg.cls)(cfg, weights))

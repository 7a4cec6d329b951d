"""Joint loss: hand-checked values, weights, aug samples, empty masks, registry errors."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
import torch.nn.functional as F

from model_zoo.config import LossConfig
from model_zoo.losses import CLS_LOSSES, SEG_LOSSES, build_loss, class_weights_from_counts
from model_zoo.registry import UnknownComponentError


@dataclass
class Out:
    """Stand-in for the network's output structure: unpacks to (seg, cls), carries aug samples."""

    seg_logits: torch.Tensor
    cls_logits: torch.Tensor
    aug_cls_logits: torch.Tensor | None = None
    aug_labels: torch.Tensor | None = None

    def __iter__(self):
        return iter((self.seg_logits, self.cls_logits))


def square_masks(b: int = 2, size: int = 16) -> torch.Tensor:
    masks = torch.zeros(b, 1, size, size)
    masks[:, :, 4:10, 5:12] = 1
    return masks


def seg_only(name: str, logits: torch.Tensor, masks: torch.Tensor) -> float:
    loss = build_loss(LossConfig(seg=name, cls="ce", seg_weight=1.0, cls_weight=0.0))
    total, _ = loss((logits, torch.zeros(len(logits), 3)), masks, torch.zeros(len(logits), dtype=torch.long))
    return float(total)


@pytest.mark.parametrize("name", SEG_LOSSES.names())
def test_perfect_prediction_is_near_zero_and_wrong_is_high(name: str) -> None:
    masks = square_masks()
    good = seg_only(name, (masks * 2 - 1) * 30, masks)
    bad = seg_only(name, (1 - masks * 2) * 30, masks)
    assert good < 1e-3 and bad > 0.5


@pytest.mark.parametrize("name", SEG_LOSSES.names())
def test_empty_masks_no_nan_and_empty_prediction_is_cheap(name: str) -> None:
    masks = torch.zeros(3, 1, 16, 16)
    assert seg_only(name, torch.full_like(masks, -30.0), masks) < 1e-3
    fp = torch.full_like(masks, -30.0)
    fp[:, :, :4, :4] = 30.0  # a false-positive blob on a normal image
    value = seg_only(name, fp, masks)
    assert torch.isfinite(torch.tensor(value)) and value > 0.01


def test_dice_term_is_per_image_soft_dice_over_lesion_images() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 8, 8)
    masks = square_masks(3, 8)
    masks[1] = 0  # a normal image: no Dice term, BCE only
    masks[2, :, :2, :2] = 1
    p = torch.sigmoid(logits).flatten(1)
    g = masks.flatten(1)
    dice = 1 - (2 * (p * g).sum(1) + 1) / (p.sum(1) + g.sum(1) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    expected = dice[[0, 2]].mean() + bce
    torch.testing.assert_close(torch.tensor(seg_only("dice_bce", logits, masks)), expected)


def test_faint_background_on_normal_images_costs_little() -> None:
    masks = torch.zeros(2, 1, 64, 64)
    faint = torch.full_like(masks, -8.0)  # sigmoid ~3e-4 everywhere: no lesion predicted
    for name in SEG_LOSSES.names():
        assert seg_only(name, faint, masks) < 0.01, name


def test_tversky_weights_false_negatives_by_beta() -> None:
    masks = square_masks(1)
    logits = torch.full_like(masks, -30.0)
    # predict nothing: all errors are false negatives -> 1 - 1 / (beta * |G| + 1), plus the BCE term
    bce = F.binary_cross_entropy_with_logits(logits, masks).item()
    value = seg_only("tversky", logits, masks)
    assert value == pytest.approx(1 - 1 / (0.7 * masks.sum().item() + 1) + bce, abs=1e-4)


def test_ce_equals_torch_cross_entropy_with_smoothing_and_weights() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 1])
    masks = torch.zeros(6, 1, 4, 4)
    seg = torch.zeros(6, 1, 4, 4)
    weights = class_weights_from_counts([10, 30, 5])
    for cls, w, ls in [
        ("ce", None, 0.0),
        ("ce", None, 0.1),
        ("weighted_ce", weights, 0.0),
        ("weighted_ce", weights, 0.2),
    ]:
        loss = build_loss(LossConfig(cls=cls, label_smoothing=ls, seg_weight=0.0, cls_weight=1.0), weights)
        total, parts = loss((seg, logits), masks, labels)
        expected = F.cross_entropy(logits, labels, weight=w, label_smoothing=ls)
        torch.testing.assert_close(total, expected)
        assert parts["cls"] == pytest.approx(float(expected), rel=1e-6)


def test_focal_matches_formula_and_reduces_to_ce() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    focal = CLS_LOSSES.get("focal")(LossConfig(focal_gamma=2.0), None)
    ce = F.cross_entropy(logits, labels, reduction="none")
    p_t = torch.exp(-ce)
    torch.testing.assert_close(focal(logits, labels), ((1 - p_t) ** 2 * ce).mean())
    plain = CLS_LOSSES.get("focal")(LossConfig(focal_gamma=0.0), None)
    torch.testing.assert_close(plain(logits, labels), ce.mean())


def test_class_weights_from_counts() -> None:
    w = class_weights_from_counts([100, 50, 25])
    torch.testing.assert_close(w.mean(), torch.tensor(1.0))
    torch.testing.assert_close(w / w[0], torch.tensor([1.0, 2.0, 4.0]))
    with pytest.raises(ValueError, match="positive"):
        class_weights_from_counts([3, 0, 2])


def test_weighted_ce_requires_weights_and_weights_change_loss() -> None:
    with pytest.raises(ValueError, match="class_weights_from_counts"):
        build_loss(LossConfig(cls="weighted_ce"))
    logits, labels = torch.randn(4, 3), torch.tensor([0, 0, 0, 2])
    out = (torch.zeros(4, 1, 4, 4), logits)
    masks = torch.zeros(4, 1, 4, 4)
    a = build_loss(LossConfig(cls="weighted_ce"), [1.0, 1.0, 1.0])(out, masks, labels)[1]["cls"]
    b = build_loss(LossConfig(cls="weighted_ce"), [1.0, 1.0, 5.0])(out, masks, labels)[1]["cls"]
    assert a != pytest.approx(b)


def test_joint_weights_and_aug_samples() -> None:
    torch.manual_seed(0)
    seg, masks = torch.randn(2, 1, 8, 8), square_masks(2, 8)
    logits, labels = torch.randn(2, 3), torch.tensor([0, 2])
    aug_logits, aug_labels = torch.randn(3, 3), torch.tensor([2, 2, 2])
    cfg = LossConfig(seg="dice_bce", cls="ce", seg_weight=0.7, cls_weight=0.3, aug_weight=0.5)
    loss = build_loss(cfg)
    total, parts = loss(Out(seg, logits), masks, labels)
    assert float(total) == pytest.approx(0.7 * parts["seg"] + 0.3 * parts["cls"], rel=1e-6)
    _, with_aug = loss(Out(seg, logits, aug_logits, aug_labels), masks, labels)
    per = F.cross_entropy(torch.cat([logits, aug_logits]), torch.cat([labels, aug_labels]), reduction="none")
    s = torch.tensor([1, 1, 0.5, 0.5, 0.5])
    assert with_aug["cls"] == pytest.approx(float((s * per).sum() / s.sum()), rel=1e-6)
    assert with_aug["seg"] == parts["seg"]  # aug samples never touch segmentation
    _, empty_aug = loss(Out(seg, logits, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), masks, labels)
    assert empty_aug == parts
    _, no_weight = build_loss(replace(cfg, aug_weight=0.0))(
        Out(seg, logits, aug_logits, aug_labels), masks, labels
    )
    assert no_weight["cls"] == pytest.approx(parts["cls"], rel=1e-6)


@pytest.mark.parametrize("seg_name", SEG_LOSSES.names())
@pytest.mark.parametrize("cls_name", CLS_LOSSES.names())
def test_backward_all_combinations(seg_name: str, cls_name: str) -> None:
    seg = torch.randn(3, 1, 8, 8, requires_grad=True)
    logits = torch.randn(3, 3, requires_grad=True)
    aug = torch.randn(2, 3, requires_grad=True)
    masks = square_masks(3, 8).to(torch.uint8)
    masks[0] = 0
    loss = build_loss(LossConfig(seg=seg_name, cls=cls_name, label_smoothing=0.1), [1.0, 2.0, 3.0])
    total, parts = loss(Out(seg, logits, aug, torch.tensor([1, 2])), masks, torch.tensor([0, 1, 2]))
    total.backward()
    for t in (seg, logits, aug):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert set(parts) == {"seg", "cls", "total"}


def test_mask_shape_mismatch_is_clear() -> None:
    loss = build_loss(LossConfig(cls="ce"))
    with pytest.raises(ValueError, match="do not match"):
        loss(
            (torch.zeros(2, 1, 8, 8), torch.zeros(2, 3)),
            torch.zeros(2, 1, 4, 4),
            torch.zeros(2, dtype=torch.long),
        )


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(UnknownComponentError, match="dice_bce, dice_focal, focal, tversky"):
        build_loss(LossConfig(seg="dice"))  # type: ignore[arg-type]
    with pytest.raises(UnknownComponentError, match="ce, focal, weighted_ce"):
        build_loss(LossConfig(cls="bce"))  # type: ignore[arg-type]

"""Joint loss: hand-checked values, weights, aug samples, empty masks, registry errors; the plain-torch
Dice / Tversky against MONAI's classes; building and using a loss never imports MONAI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model_zoo.config import LossConfig
from model_zoo.losses import (
    CLS_LOSSES,
    SEG_LOSSES,
    LesionImagesOnly,
    PresenceLoss,
    SoftDiceLoss,
    SoftTverskyLoss,
    build_loss,
    class_weights_from_counts,
    presence_logits,
)
from model_zoo.registry import UnknownComponentError


@dataclass
class Out:
    """Stand-in for the network's output structure: unpacks to (seg, cls), carries aug samples."""

    seg_logits: torch.Tensor
    cls_logits: torch.Tensor
    aug_cls_logits: torch.Tensor | None = None
    aug_labels: torch.Tensor | None = None
    aux_seg_logits: tuple[torch.Tensor, ...] | None = None

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


def test_presence_logit_is_the_mean_of_the_k_largest_pixel_logits() -> None:
    logits = torch.full((2, 1, 4, 4), -3.0)
    logits[0, 0, 0, :3] = torch.tensor([5.0, 4.0, 3.0])
    assert presence_logits(logits, 2).tolist() == [4.5, -3.0]
    assert presence_logits(logits, 100).tolist() == pytest.approx([(12.0 - 3 * 13) / 16, -3.0])
    with pytest.raises(ValueError, match="presence_top_k"):
        PresenceLoss(0)


def test_presence_term_charges_a_small_blob_on_a_normal_image_as_an_image_level_error() -> None:
    """A 20 px confident blob on a normal 128 px image costs little BCE (its share of the pixels) but a
    full image-level error in the presence term; the term's gradient reaches the top-k pixels only."""
    masks = torch.zeros(1, 1, 128, 128)
    clean = torch.full_like(masks, -6.0)
    blob = clean.clone()
    blob[0, 0, :4, :5] = 4.0
    plain = LossConfig(seg="dice_bce", cls="ce")
    with_term = LossConfig(seg="dice_bce", cls="ce", presence_weight=1.0, presence_top_k=10)
    labels, cls_logits = torch.tensor([0]), torch.zeros(1, 3)
    _, p_plain = build_loss(plain)(Out(blob, cls_logits), masks, labels)
    _, p_clean = build_loss(plain)(Out(clean, cls_logits), masks, labels)
    assert p_plain["seg"] - p_clean["seg"] < 0.01  # why the term exists
    assert "presence" not in p_plain
    blob.requires_grad_(True)
    total, parts = build_loss(with_term)(Out(blob, cls_logits), masks, labels)
    assert parts["presence"] == pytest.approx(float(F.softplus(torch.tensor(4.0))), rel=1e-5)
    assert parts["seg"] == pytest.approx(p_plain["seg"] + parts["presence"], rel=1e-5)
    total.backward()
    grad = blob.grad.abs()[0, 0]
    assert (grad[:4, :5] > grad.max() * 0.5).sum() == 10  # 10 of the 20 blob pixels carry the term


def test_presence_term_wants_a_lesion_drawn_on_lesion_images() -> None:
    masks = square_masks(2, 16)
    cfg = LossConfig(seg="dice_bce", cls="ce", presence_weight=0.5, presence_top_k=4)
    labels, cls_logits = torch.tensor([1, 2]), torch.zeros(2, 3)
    _, silent = build_loss(cfg)(Out(torch.full_like(masks, -5.0), cls_logits), masks, labels)
    _, drawn = build_loss(cfg)(Out(torch.where(masks > 0, 5.0, -5.0), cls_logits), masks, labels)
    assert silent["presence"] > 4.9 and drawn["presence"] < 0.01


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


# ---------- the plain-torch Dice / Tversky against MONAI's classes ----------

ROOT = Path(__file__).resolve().parents[2]
TVERSKY_WEIGHTS = [(0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (0.0, 1.0), (1.0, 0.0), (0.1, 0.9)]


def random_case(
    seed: int, b: int = 4, c: int = 1, size: int = 24, empty: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits (a different scale per image) and hard masks (a blob plus speckle noise per image);
    the images listed in ``empty`` get an empty mask."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.5, 2.0, 6.0, 12.0])[torch.arange(b) % 4].view(b, 1, 1, 1)
    logits = torch.randn(b, c, size, size, generator=g) * scale
    masks = (torch.rand(b, c, size, size, generator=g) > 0.85).float()
    for i in range(b):
        y, x = torch.randint(0, size // 2, (2,), generator=g).tolist()
        masks[i, :, y : y + size // 3, x : x + size // 4] = 1
    for i in empty:
        masks[i] = 0
    return logits, masks


def monai_dice(batch: bool = False) -> torch.nn.Module:
    monai_losses = pytest.importorskip("monai.losses")
    return monai_losses.DiceLoss(sigmoid=True, batch=batch, smooth_nr=1.0, smooth_dr=1.0)


def monai_tversky(alpha: float, beta: float, batch: bool = False) -> torch.nn.Module:
    monai_losses = pytest.importorskip("monai.losses")
    return monai_losses.TverskyLoss(
        sigmoid=True, batch=batch, alpha=alpha, beta=beta, smooth_nr=1.0, smooth_dr=1.0
    )


def assert_same_value_and_grad(
    ours: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    theirs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    masks: torch.Tensor,
) -> None:
    """Equal scalar values and equal gradients w.r.t. the logits, both within 1e-6."""
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    va, vb = ours(a, masks), theirs(b, masks)
    assert va.shape == vb.shape == ()
    torch.testing.assert_close(va, vb, rtol=0, atol=1e-6)
    va.backward()
    vb.backward()
    assert b.grad is not None and b.grad.abs().sum() > 0  # the gradient comparison is not vacuous
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("channels", [1, 2])
def test_soft_dice_equals_monai_dice(seed: int, channels: int) -> None:
    logits, masks = random_case(seed, c=channels)
    assert_same_value_and_grad(SoftDiceLoss(1.0, 1.0), monai_dice(), logits, masks)


@pytest.mark.parametrize("alpha,beta", TVERSKY_WEIGHTS)
@pytest.mark.parametrize("seed", range(3))
def test_soft_tversky_equals_monai_tversky(alpha: float, beta: float, seed: int) -> None:
    logits, masks = random_case(seed)
    ours, theirs = SoftTverskyLoss(alpha, beta, 1.0, 1.0), monai_tversky(alpha, beta)
    assert_same_value_and_grad(ours, theirs, logits, masks)


@pytest.mark.parametrize("empty", [(), (1,), (0, 1, 2), (0, 1, 2, 3)])
@pytest.mark.parametrize("channels", [1, 2])
def test_batch_region_losses_equal_monai_batch_mode(empty: tuple[int, ...], channels: int) -> None:
    """``batch=True``: one Dice / Tversky per channel over the whole batch, empty masks included, as MONAI."""
    logits, masks = random_case(5, c=channels, empty=empty)
    assert_same_value_and_grad(SoftDiceLoss(1.0, 1.0, batch=True), monai_dice(batch=True), logits, masks)
    for alpha, beta in TVERSKY_WEIGHTS[:3]:
        ours = SoftTverskyLoss(alpha, beta, 1.0, 1.0, batch=True)
        assert_same_value_and_grad(ours, monai_tversky(alpha, beta, batch=True), logits, masks)
    # and it is not the per-image value (else a loss that ignored ``batch`` would pass too)
    if len(empty) < len(masks):
        per_image = float(SoftDiceLoss()(logits, masks))
        assert float(SoftDiceLoss(batch=True)(logits, masks)) != pytest.approx(per_image, abs=1e-5)


def test_batch_dice_counts_a_blob_on_a_normal_image_per_image_dice_does_not() -> None:
    """A lesion drawn on a normal image of a mixed batch raises the batch Dice term; per-image Dice (lesion
    images only) is blind to it, which is why it needs the pixel-wise term beside it."""
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, :, 8:20, 8:20] = 1  # image 0 holds a lesion, image 1 is normal
    clean = torch.where(masks > 0, 8.0, -8.0)
    blob = clean.clone()
    blob[1, :, 4:14, 4:14] = 8.0  # a confident 100 px lesion on the normal image
    per_image, batch = _dice_term(batch_dice=False), _dice_term(batch_dice=True)
    assert float(per_image(blob, masks)) == pytest.approx(float(per_image(clean, masks)), abs=1e-6)
    assert float(batch(blob, masks)) > float(batch(clean, masks)) + 0.2


def _dice_term(batch_dice: bool) -> torch.nn.Module:
    """The region term ``dice_bce`` builds under ``batch_dice``."""
    return SEG_LOSSES.get("dice_bce")(LossConfig(batch_dice=batch_dice)).terms["dice"]


@pytest.mark.parametrize("seed", range(3))
def test_region_losses_equal_monai_on_empty_masks(seed: int) -> None:
    """Called directly (no lesion filter), an all-empty batch still gives MONAI's value and gradient."""
    logits, masks = random_case(seed, empty=(0, 1, 2, 3))
    assert masks.sum() == 0
    assert_same_value_and_grad(SoftDiceLoss(1.0, 1.0), monai_dice(), logits, masks)
    for alpha, beta in TVERSKY_WEIGHTS[:3]:
        ours, theirs = SoftTverskyLoss(alpha, beta, 1.0, 1.0), monai_tversky(alpha, beta)
        assert_same_value_and_grad(ours, theirs, logits, masks)


@pytest.mark.parametrize("empty", [(0,), (1, 3), (0, 1, 2), (0, 1, 2, 3)])
def test_lesion_filter_over_mixed_batches_equals_monai(empty: tuple[int, ...]) -> None:
    logits, masks = random_case(7, empty=empty)
    pairs = [(SoftDiceLoss(1.0, 1.0), monai_dice())] + [
        (SoftTverskyLoss(a, b, 1.0, 1.0), monai_tversky(a, b)) for a, b in TVERSKY_WEIGHTS[:3]
    ]
    for ours, theirs in pairs:
        if len(empty) == len(masks):  # no lesion image: 0 with a zero gradient on both sides
            for region in (ours, theirs):
                x = logits.clone().requires_grad_(True)
                value = LesionImagesOnly(region)(x, masks)
                value.backward()
                assert float(value.detach()) == 0.0 and x.grad is not None and x.grad.abs().sum() == 0
        else:
            assert_same_value_and_grad(LesionImagesOnly(ours), LesionImagesOnly(theirs), logits, masks)


@pytest.mark.parametrize("batch_dice", [False, True])
@pytest.mark.parametrize(
    "name,alpha,beta",
    [("dice_bce", 0.3, 0.7), ("dice_focal", 0.3, 0.7)] + [("tversky", a, b) for a, b in TVERSKY_WEIGHTS[:3]],
)
def test_built_seg_losses_equal_the_monai_composition(
    name: str, alpha: float, beta: float, batch_dice: bool
) -> None:
    """``build_loss`` wires the same terms, smoothing and alpha/beta as the former MONAI-based version;
    ``batch_dice`` is MONAI's ``batch=True`` over every image of the batch (no lesion filter)."""
    from segmentation_models_pytorch.losses import FocalLoss, SoftBCEWithLogitsLoss

    cfg = LossConfig(
        seg=name,
        cls="ce",
        seg_weight=1.0,
        cls_weight=0.0,
        tversky_alpha=alpha,
        tversky_beta=beta,
        batch_dice=batch_dice,
    )
    monai_region = monai_tversky(alpha, beta, batch_dice) if name == "tversky" else monai_dice(batch_dice)
    region = monai_region if batch_dice else LesionImagesOnly(monai_region)
    pixel = (
        FocalLoss(mode="binary", gamma=cfg.focal_gamma) if name == "dice_focal" else SoftBCEWithLogitsLoss()
    )
    loss = build_loss(cfg)

    def ours(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return loss((x, torch.zeros(len(x), 3)), m, torch.zeros(len(x), dtype=torch.long))[0]

    def reference(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return region(x, m) + pixel(x, m)

    logits, masks = random_case(3, empty=(1,))
    assert_same_value_and_grad(ours, reference, logits, masks)


def test_building_and_using_every_loss_does_not_import_monai() -> None:
    """In a fresh interpreter (other tests import MONAI): build every loss, forward and backward."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        from model_zoo.config import LossConfig
        from model_zoo.losses import CLS_LOSSES, SEG_LOSSES, build_loss

        masks = torch.zeros(3, 1, 8, 8)
        masks[0, :, 2:5, 2:6] = 1
        for seg in SEG_LOSSES.names():
            for cls in CLS_LOSSES.names():
                loss = build_loss(LossConfig(seg=seg, cls=cls), [1.0, 2.0, 3.0])
                logits = torch.randn(3, 1, 8, 8, requires_grad=True)
                out = (logits, torch.randn(3, 3, requires_grad=True))
                total, _ = loss(out, masks, torch.tensor([0, 1, 2]))
                total.backward()
                assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
        loaded = sorted(m for m in sys.modules if m == "monai" or m.startswith("monai."))
        assert not loaded, loaded
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_deep_supervision_weighs_each_stage_against_its_downsampled_mask() -> None:
    torch.manual_seed(0)
    masks = square_masks(3, 16)
    masks[1] = 0
    seg, cls, labels = torch.randn(3, 1, 16, 16), torch.randn(3, 3), torch.tensor([1, 0, 2])
    aux = (torch.randn(3, 1, 8, 8), torch.randn(3, 1, 4, 4))
    loss = build_loss(LossConfig(seg="dice_bce", cls="ce", presence_weight=0.5, presence_top_k=3))
    total, parts = loss(Out(seg, cls, aux_seg_logits=aux), masks, labels)
    seg_term = SEG_LOSSES.get("dice_bce")(loss.cfg)
    presence = PresenceLoss(3)(seg, masks)  # on the output stage only
    expected = (
        seg_term(seg, masks)
        + 0.5 * seg_term(aux[0], F.avg_pool2d(masks, 2))  # soft targets: the share of lesion per cell
        + 0.25 * seg_term(aux[1], F.avg_pool2d(masks, 4))
    ) / 1.75 + 0.5 * presence
    assert parts["seg"] == pytest.approx(float(expected), rel=1e-6)
    assert float(total) == pytest.approx(0.7 * parts["seg"] + 0.3 * parts["cls"], rel=1e-6)
    _, plain = loss(Out(seg, cls), masks, labels)  # without aux logits: the output stage alone
    assert plain["seg"] == pytest.approx(float(seg_term(seg, masks) + 0.5 * presence), rel=1e-6)

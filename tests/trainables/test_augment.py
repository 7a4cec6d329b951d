"""On-device batch augmentation: image and mask move together, masks stay binary, runs repeat."""

from __future__ import annotations

import torch

from trainables.augment import BatchAugment
from trainables.config import AugmentConfig

OFF = {
    "hflip": False,
    "rotate": 0.0,
    "scale": (1.0, 1.0),
    "translate": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "gamma": (1.0, 1.0),
    "speckle": 0.0,
}


def _aug(seed: int = 0, **kw: object) -> BatchAugment:
    return BatchAugment(AugmentConfig(**{**OFF, **kw}), torch.Generator().manual_seed(seed))


def _batch(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):  # an off-centre rectangle per sample, so flips and rotations show
        y, x = torch.randint(2, size // 2, (2,), generator=g).tolist()
        masks[i, 0, y : y + size // 3, x : x + size // 4] = 1.0
    images = 0.2 + 0.6 * masks + 0.05 * torch.rand(n, 1, size, size, generator=g)
    return images, masks


def test_all_off_is_identity_and_does_not_touch_input() -> None:
    images, masks = _batch()
    before = images.clone()
    out_i, out_m = _aug()(images, masks)
    assert torch.equal(out_i, images) and torch.equal(out_m, masks)
    out_i.add_(1.0)
    assert torch.equal(images, before)


def test_hflip_flips_image_and_mask_together() -> None:
    images, masks = _batch(n=32)
    out_i, out_m = _aug(hflip=True)(images, masks)
    flipped = 0
    for i in range(len(images)):
        if torch.allclose(out_i[i], images[i], atol=1e-5):
            assert torch.equal(out_m[i], masks[i])
        else:
            assert torch.allclose(out_i[i], images[i].flip(-1), atol=1e-5)
            assert torch.equal(out_m[i], masks[i].flip(-1))
            flipped += 1
    assert 4 <= flipped <= 28


def test_rotation_and_scale_share_one_grid() -> None:
    images, masks = _batch(n=16, size=64)
    out_i, out_m = _aug(seed=1, hflip=True, rotate=30.0, scale=(0.8, 1.2))(images, masks)
    assert set(out_m.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out_m, masks)
    # the image's bright lesion lands where the mask went: threshold the image, compare with the mask
    from_image = (out_i > 0.5).float()
    inter = (from_image * out_m).sum((1, 2, 3))
    union = ((from_image + out_m) > 0).float().sum((1, 2, 3))
    assert bool((inter / union > 0.9).all()), (inter / union).tolist()


def test_scale_two_zooms_in_about_the_centre() -> None:
    masks = torch.zeros(1, 1, 32, 32)
    masks[..., 12:20, 12:20] = 1.0
    _, out_m = _aug(scale=(2.0, 2.0))(masks.clone(), masks)
    assert out_m.sum() == 256  # 8 x 8 square -> 16 x 16
    assert out_m[0, 0, 8:24, 8:24].sum() == 256


def test_translate_shifts_image_and_mask_by_whole_pixels_within_the_bound() -> None:
    masks = torch.zeros(64, 1, 40, 40)
    masks[..., 16:24, 16:24] = 1.0
    images = 0.1 + 0.8 * masks
    out_i, out_m = _aug(seed=3, translate=0.25)(images, masks)
    assert bool((out_m.sum((1, 2, 3)) == 64).all())  # an 8 x 8 square moved whole (it cannot leave)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    cy = (out_m[:, 0] * ys).sum((1, 2)) / 64 - 19.5
    cx = (out_m[:, 0] * xs).sum((1, 2)) / 64 - 19.5
    assert bool((cy.abs() <= 10.5).all() and (cx.abs() <= 10.5).all())  # <= 0.25 x 40 px (+ rounding)
    assert cy.std() > 3 and cx.std() > 3  # both axes move, independently of each other
    assert abs(float(torch.corrcoef(torch.stack([cx, cy]))[0, 1])) < 0.5
    bright = (out_i > 0.5).float()  # the image moved with its mask (bilinear edges: up to a pixel off)
    inter, union = (bright * out_m).sum((1, 2, 3)), ((bright + out_m) > 0).float().sum((1, 2, 3))
    assert bool((inter / union > 0.75).all()), (inter / union).min()


def test_translate_off_keeps_the_random_stream_of_earlier_runs() -> None:
    aug = _aug(seed=5, hflip=True, rotate=20.0, scale=(0.8, 1.2))
    theta = aug.affine(8, torch.device("cpu"))
    assert torch.equal(theta[:, :, 2], torch.zeros(8, 2))
    before = torch.Generator().manual_seed(5)
    torch.rand(8, generator=before), torch.rand(8, generator=before), torch.rand(8, generator=before)
    assert torch.equal(aug.generator.get_state(), before.get_state())  # angle, scale, flip: no more
    shifted = _aug(seed=5, hflip=True, rotate=20.0, scale=(0.8, 1.2), translate=0.1)
    theta_t = shifted.affine(8, torch.device("cpu"))
    assert torch.equal(theta_t[:, :, :2], theta[:, :, :2])  # the same rotations, scales and flips
    assert bool((theta_t[:, :, 2].abs() <= 0.2).all()) and bool(theta_t[:, :, 2].abs().sum() > 0)


def test_intensity_changes_stay_in_range_and_leave_masks() -> None:
    images, masks = _batch()
    aug = _aug(brightness=0.3, contrast=0.3, gamma=(0.5, 2.0), speckle=0.3)
    out_i, out_m = aug(images, masks)
    assert torch.equal(out_m, masks)
    assert float(out_i.min()) >= 0.0 and float(out_i.max()) <= 1.0
    assert (out_i - images).abs().mean() > 0.01
    # per-sample parameters: the mean shift differs between samples
    shifts = (out_i - images).mean((1, 2, 3))
    assert shifts.std() > 0.005


def test_same_seed_same_result_different_seed_different() -> None:
    images, masks = _batch()
    cfg = {"hflip": True, "rotate": 15.0, "scale": (0.9, 1.1), "brightness": 0.1, "speckle": 0.1}
    a = _aug(seed=5, **cfg)(images, masks)
    b = _aug(seed=5, **cfg)(images, masks)
    c = _aug(seed=6, **cfg)(images, masks)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_generator_state_restores_the_stream() -> None:
    images, masks = _batch()
    aug = _aug(seed=9, rotate=20.0, speckle=0.2)
    aug(images, masks)
    state = aug.generator.get_state()
    first = aug(images, masks)
    aug.generator.set_state(state)
    again = aug(images, masks)
    assert torch.equal(first[0], again[0])


def test_grid_equals_affine_grid() -> None:
    import torch.nn.functional as F

    theta = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))
    for h, w in ((16, 16), (12, 20)):
        expected = F.affine_grid(theta, [4, 1, h, w], align_corners=False)
        assert torch.allclose(BatchAugment.grid(theta, h, w), expected, atol=1e-5)


def test_blur_matches_torchvision_and_leaves_masks() -> None:
    from torchvision.transforms.functional import gaussian_blur

    images, masks = _batch(n=4)
    out_i, out_m = _aug(blur=1.0, blur_sigma=(1.0, 1.0))(images, masks)
    assert torch.equal(out_m, masks)
    expected = gaussian_blur(images, kernel_size=[7, 7], sigma=[1.0, 1.0])  # radius ceil(3 sigma)
    assert torch.allclose(out_i, expected, atol=1e-5)


def test_blur_and_lowres_reach_their_share_of_images_and_spare_the_rest() -> None:
    images, masks = _batch(n=64)
    for kw in ({"blur": 0.5, "blur_sigma": (0.5, 1.5)}, {"lowres": 0.5, "lowres_zoom": (0.3, 0.6)}):
        out_i, out_m = _aug(seed=3, **kw)(images, masks)
        changed = (out_i - images).abs().amax(dim=(1, 2, 3)) > 1e-6
        assert torch.equal(out_m, masks)
        assert 20 <= int(changed.sum()) <= 44  # about half of 64
        assert torch.equal(out_i[~changed], images[~changed])  # the others bit for bit


def test_lowres_is_nearest_down_then_bilinear_up() -> None:
    import torch.nn.functional as F

    images, masks = _batch(n=3)
    out_i, _ = _aug(lowres=1.0, lowres_zoom=(0.5, 0.5))(images, masks)
    small = F.interpolate(images, size=(16, 16), mode="nearest")
    assert torch.allclose(out_i, F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False))


def test_blur_on_an_image_smaller_than_the_kernel_and_of_a_constant_image() -> None:
    flat = torch.full((2, 1, 4, 4), 0.5)
    out_i, _ = _aug(blur=1.0, blur_sigma=(2.0, 2.0))(flat, torch.zeros_like(flat))
    assert torch.allclose(out_i, flat)  # radius 6 > side 4: replicate padding, weights sum to one


def test_new_augmentations_off_keep_the_random_stream() -> None:
    images, masks = _batch()
    cfg = {"hflip": True, "rotate": 15.0, "brightness": 0.1, "speckle": 0.1}
    a = _aug(seed=5, **cfg)(images, masks)
    b = _aug(seed=5, blur_sigma=(1.0, 2.0), lowres_zoom=(0.3, 0.9), **cfg)(images, masks)
    assert torch.equal(a[0], b[0])


def test_ranges_must_run_low_to_high() -> None:
    import pytest

    from model_zoo.schema import SpecError, from_dict
    from trainables.config import TrainConfig

    for bad, word in (
        ({"blur_sigma": [1.5, 0.5]}, "blur_sigma"),
        ({"scale": [1.2, 0.8]}, "scale"),
        ({"lowres_zoom": [0.5, 1.5]}, "lowres_zoom"),
        ({"blur_sigma": [0.0, 1.0]}, "blur_sigma"),
        ({"lesion_paste": 1.5}, "lesion_paste"),
        ({"lesion_paste_margin": 0.5}, "lesion_paste_margin"),
    ):
        with pytest.raises(SpecError, match=word):
            from_dict(TrainConfig, {"augment": bad})


def _lesion_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four 32 px images: two benign (label 1) with lesions apart, one malignant (2), one normal (0)."""
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(7)) * 0.3
    masks = torch.zeros(4, 1, 32, 32)
    masks[0, 0, 4:10, 4:10] = 1.0
    masks[1, 0, 20:27, 18:26] = 1.0
    masks[2, 0, 12:18, 12:18] = 1.0
    images = images + 0.6 * masks
    return images, masks, torch.tensor([1, 1, 2, 0])


def test_lesion_paste_carves_a_same_class_lesion_and_its_mask_in() -> None:
    images, masks, labels = _lesion_batch()
    out, out_m = _aug(lesion_paste=1.0, lesion_paste_margin=0.1)(images, masks, labels)
    # The two benign images swap lesions in: each keeps its own and gains the other's, pixel for pixel.
    for target, donor in ((0, 1), (1, 0)):
        lesion = masks[donor, 0] > 0
        assert torch.equal(out[target, 0][lesion], images[donor, 0][lesion])
        assert torch.equal(out_m[target, 0], torch.maximum(masks[0, 0], masks[1, 0]))
    # No same-class partner (malignant) or no lesion (normal): unchanged.
    assert torch.equal(out[2:], images[2:]) and torch.equal(out_m[2:], masks[2:])
    assert set(out_m.unique().tolist()) <= {0.0, 1.0}


def test_lesion_paste_feathers_the_margin_and_leaves_far_tissue() -> None:
    images, masks, labels = _lesion_batch()
    # A margin of 3 px, feathered over 1 px.
    out, _ = _aug(lesion_paste=1.0, lesion_paste_margin=0.1)(images, masks, labels)
    far = torch.ones(32, 32, dtype=torch.bool)
    far[20 - 5 : 27 + 5, 18 - 5 : 26 + 5] = False  # image 1's lesion, grown by margin + feather + 1
    assert torch.equal(out[0, 0][far], images[0, 0][far])
    ring = out[0, 0, 20 - 4, 18:26]  # inside the feather: a blend of both images, neither one
    assert not torch.equal(ring, images[0, 0, 16, 18:26]) and not torch.equal(ring, images[1, 0, 16, 18:26])


def test_lesion_paste_margin_zero_carves_the_lesion_alone() -> None:
    images, masks, labels = _lesion_batch()
    out, _ = _aug(lesion_paste=1.0, lesion_paste_margin=0.0)(images, masks, labels)
    expected = torch.where(masks[1] > 0, images[1], images[0])
    assert torch.equal(out[0], expected)


def test_lesion_paste_reaches_its_share_and_needs_labels() -> None:
    import pytest

    images, masks = _batch(n=64)
    labels = torch.ones(64, dtype=torch.long)
    out, _ = _aug(lesion_paste=0.5)(images, masks, labels)
    changed = (out != images).flatten(1).any(dim=1).float().mean().item()
    assert 0.3 < changed < 0.7
    with pytest.raises(ValueError, match="labels"):
        _aug(lesion_paste=0.5)(images, masks)


def test_lesion_paste_inside_a_lesion_leaves_a_ring_by_the_half_threshold() -> None:
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 10:20, 10:20] = 1.0  # the target's large lesion
    masks[1, 0, 14:17, 14:17] = 1.0  # a small donor lesion inside it
    out, out_m = _aug(lesion_paste=1.0, lesion_paste_margin=0.1)(images, masks, torch.tensor([1, 1]))
    m = out_m[0, 0]
    assert m[14:17, 14:17].eq(1).all()  # the donor's lesion
    assert m[12, 12] == 0 and m[11, 15] == 0  # the target's lesion inside the carved region (weight >= 0.5)
    assert m[10, 15] == 1  # ... and outside it (weight 1/3): a ring around the donor's
    core = torch.zeros(32, 32, dtype=torch.bool)
    core[12:19, 12:19] = True  # weight 1: the donor's image as it is
    assert torch.equal(out[0, 0][core], images[1, 0][core])


def test_lesion_paste_draws_the_same_numbers_whatever_the_batch_holds() -> None:
    images, masks = _batch()
    one_class, two_classes = torch.ones(16, dtype=torch.long), torch.arange(16) % 2
    first, second = _aug(seed=3, lesion_paste=0.5, speckle=0.1), _aug(seed=3, lesion_paste=0.5, speckle=0.1)
    first(images, masks, one_class)
    second(images, masks, two_classes)  # other pairs, other images carved
    assert torch.equal(first(images, masks, one_class)[0], second(images, masks, one_class)[0])

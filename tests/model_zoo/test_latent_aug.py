"""Latent augmentation: targets, counts, labels, eval no-op, edge cases, determinism, gradients."""

from __future__ import annotations

import pytest
import torch

from model_zoo.config import LatentAugConfig
from model_zoo.latent_aug import LATENT_AUG_MODES, LatentAugmentation

# normal=0 (most frequent), benign=1, malignant=2
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])


def make(mode: str, targets: str | list[str] = "auto", k: int = 1, **kw: float) -> LatentAugmentation:
    aug = LatentAugmentation(LatentAugConfig(mode=mode, target_classes=targets, multiplier=k, **kw), 3)
    aug.set_class_counts([133, 437, 210] if targets == "auto" else [1, 1, 1])
    return aug.train()


def test_auto_targets_are_classes_rarer_than_the_largest() -> None:
    aug = LatentAugmentation(LatentAugConfig(mode="noise"), 3)
    aug.set_class_counts([133, 437, 210])
    assert aug.targets() == ["normal", "malignant"]
    aug.set_class_counts(torch.tensor([5, 5, 5]))
    assert aug.targets() == []


def test_explicit_targets_and_unknown_name() -> None:
    aug = LatentAugmentation(LatentAugConfig(mode="noise", target_classes=["malignant"]), 3)
    assert aug.targets() == ["malignant"]
    aug.set_class_counts([10, 1, 1])  # explicit lists are not overridden
    assert aug.targets() == ["malignant"]
    with pytest.raises(ValueError, match="valid: 'auto' or names from normal, benign, malignant"):
        LatentAugmentation(LatentAugConfig(mode="noise", target_classes=["cancer"]), 3)
    names = LatentAugmentation(LatentAugConfig(mode="noise", target_classes=["b"]), 2, ["a", "b"]).targets()
    assert names == ["b"]


@pytest.mark.parametrize("k", [1, 3])
def test_noise_only_target_classes_labels_kept(k: int) -> None:
    torch.manual_seed(0)
    aug = make("noise", ["benign", "malignant"], k=k, sigma=0.1)
    feats = torch.randn(8, 16)
    f, y = aug(feats, LABELS)
    assert f.shape == (5 * k, 16) and y.tolist() == [1, 1, 1, 2, 2] * k
    src = feats[3:].repeat(k, 1)
    rel = (f - src).std(dim=1) / src.std(dim=1, correction=0)
    assert torch.all((rel > 0.02) & (rel < 0.3))  # noise scaled by sigma relative to feature std


def test_mixup_stays_within_class() -> None:
    torch.manual_seed(0)
    aug = make("mixup", ["benign", "malignant"], k=2)
    # one-hot-ish features identify the source sample, so a mix reveals its two parents
    feats = torch.eye(8)
    f, y = aug(feats, LABELS)
    assert f.shape == (10, 8) and sorted(y.tolist()) == [1] * 6 + [2] * 4
    for row, label in zip(f, y):
        parents = torch.nonzero(row > 1e-6).flatten()
        assert set(LABELS[parents].tolist()) == {int(label)}
        assert torch.isclose(row.sum(), torch.tensor(1.0))  # a convex combination


def test_noise_plus_mixup_gives_both_sets() -> None:
    aug = make("noise+mixup", ["benign"], k=2)
    f, y = aug(torch.randn(8, 4), LABELS)
    assert f.shape == (12, 4) and (y == 1).all()  # 3 benign x k=2 x 2 modes


def test_single_sample_class_and_no_targets() -> None:
    aug = make("noise+mixup", ["malignant"])
    labels = torch.tensor([0, 0, 2])
    f, y = aug(torch.randn(3, 4), labels)
    assert y.tolist() == [2]  # noise only: mixup has no partner for a lone sample
    f, y = aug(torch.randn(2, 4), torch.tensor([0, 1]))
    assert f.shape == (0, 4) and y.shape == (0,) and y.dtype == torch.long
    f, y = aug(torch.randn(1, 4), torch.tensor([2]))
    assert y.tolist() == [2]


@pytest.mark.parametrize("mode", LATENT_AUG_MODES)
def test_eval_returns_empty(mode: str) -> None:
    aug = make(mode).eval()
    f, y = aug(torch.randn(8, 5, dtype=torch.float64), LABELS)
    assert f.shape == (0, 5) and f.dtype == torch.float64 and y.shape == (0,) and y.dtype == torch.long


def test_same_seed_same_output() -> None:
    aug = make("noise+mixup", k=2)
    feats = torch.randn(8, 6)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        outs.append(aug(feats, LABELS))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    torch.manual_seed(7)
    assert not torch.equal(aug(feats, LABELS)[0], outs[0][0])


def test_auto_without_counts_raises_in_training_only() -> None:
    aug = LatentAugmentation(LatentAugConfig(mode="mixup"), 3)
    with pytest.raises(RuntimeError, match="set_class_counts"):
        aug.train()(torch.randn(8, 4), LABELS)
    assert aug.eval()(torch.randn(8, 4), LABELS)[0].shape == (0, 4)
    with pytest.raises(ValueError, match="3 classes"):
        aug.set_class_counts([1, 2])


def test_target_mask_survives_state_dict() -> None:
    aug = make("noise")
    state = aug.state_dict()
    assert state["target_mask"].tolist() == [True, False, True] and bool(state["targets_ready"])
    fresh = LatentAugmentation(LatentAugConfig(mode="noise"), 3)
    fresh.load_state_dict(state)
    assert fresh.targets() == ["normal", "malignant"]
    fresh.train()(torch.randn(8, 4), LABELS)  # no longer needs set_class_counts


@pytest.mark.parametrize("mode", ["noise", "mixup"])
def test_gradients_flow_to_features(mode: str) -> None:
    torch.manual_seed(0)
    aug = make(mode, ["benign"])
    feats = torch.randn(8, 4, requires_grad=True)
    f, _ = aug(feats, LABELS)
    f.sum().backward()
    grad_rows = feats.grad.abs().sum(dim=1) > 0
    assert grad_rows.tolist() == [False, False, False, True, True, True, False, False]

"""Latent feature augmentation of minority classes, on the pooled features that feed the classifier.

Training-only, and only for samples of the *target* classes. Each mode returns EXTRA
``(features, labels)`` pairs, appended to the classification batch by the network; the real samples
are never replaced and the segmentation path never sees these vectors.

- ``noise``: ``f + sigma * std(f) * N(0, I)``, where ``std(f)`` is the (detached) standard deviation of
  that sample's own feature vector over its D dimensions. Per-sample rather than per-dimension over the
  batch, so the noise does not depend on the other samples in the batch and is defined for a batch of one.
- ``mixup``: intra-class MixUp (Zhang et al., ICLR 2018, arXiv:1710.09412, restricted to pairs of one
  class): ``lam * f_i + (1 - lam) * f_j`` with ``j != i`` drawn uniformly among the batch samples of
  the same class and ``lam ~ Beta(alpha, alpha)``, so the label stays exact. A class with a single
  sample in the batch has no partner and is skipped.
- ``noise+mixup``: both sets.

``multiplier`` k gives k extra samples per target sample and mode. Random draws use torch's default
generators, so ``torch.manual_seed`` makes the output reproducible.

``target_classes: auto`` means the classes rarer than the most frequent one in the training fold: the
training loop must call :meth:`LatentAugmentation.set_class_counts` with the fold's per-class counts
before the first training step (a clear ``RuntimeError`` otherwise). The resulting target mask is a
registered buffer, so it travels with ``state_dict`` and model bundles.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from model_zoo.config import LatentAugConfig

LATENT_AUG_MODES = ("none", "noise", "mixup", "noise+mixup")
DEFAULT_CLASS_NAMES = ("normal", "benign", "malignant")


class LatentAugmentation(nn.Module):
    """Extra minority-class feature vectors by Gaussian noise and/or intra-class MixUp (training only)."""

    def __init__(
        self, cfg: LatentAugConfig, num_classes: int, class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        if cfg.mode not in LATENT_AUG_MODES:
            raise ValueError(
                f"model.latent_aug.mode: unknown {cfg.mode!r}; valid: {', '.join(LATENT_AUG_MODES)}"
            )
        if class_names is None:
            class_names = (
                DEFAULT_CLASS_NAMES if num_classes == 3 else tuple(f"class{i}" for i in range(num_classes))
            )
        if len(class_names) != num_classes:
            raise ValueError(f"latent augmentation: {len(class_names)} class names for {num_classes} classes")
        self.mode = cfg.mode
        self.sigma = float(cfg.sigma)
        self.alpha = float(cfg.alpha)
        self.multiplier = int(cfg.multiplier)
        self.class_names = tuple(class_names)
        self.auto = cfg.target_classes == "auto"
        mask = torch.zeros(num_classes, dtype=torch.bool)
        if not self.auto:
            names = [cfg.target_classes] if isinstance(cfg.target_classes, str) else list(cfg.target_classes)
            for name in names:
                if name not in self.class_names:
                    raise ValueError(
                        f"model.latent_aug.target_classes: unknown class {name!r}; "
                        f"valid: 'auto' or names from {', '.join(self.class_names)}"
                    )
                mask[self.class_names.index(name)] = True
        self.register_buffer("target_mask", mask)
        self.register_buffer("targets_ready", torch.tensor(not self.auto))

    @property
    def noise(self) -> bool:
        return "noise" in self.mode

    @property
    def mixup(self) -> bool:
        return "mixup" in self.mode

    def set_class_counts(self, counts: Sequence[int] | torch.Tensor) -> None:
        """Set the targets for ``target_classes: auto`` from the training fold's per-class counts.

        Targets are the classes with fewer samples than the most frequent one; explicit target lists
        are left unchanged.
        """
        counts_t = torch.as_tensor(counts, dtype=torch.long).flatten()
        if counts_t.numel() != self.target_mask.numel():
            raise ValueError(
                f"set_class_counts: got {counts_t.numel()} counts for {self.target_mask.numel()} classes"
            )
        if not self.auto:
            return
        self.target_mask.copy_(counts_t < counts_t.max())
        self.targets_ready.fill_(True)

    def targets(self) -> list[str]:
        """Names of the current target classes."""
        return [n for n, t in zip(self.class_names, self.target_mask.tolist()) if t]

    def forward(self, feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, D]``, ``labels [B]`` -> extra ``(aug_feats [M, D], aug_labels [M])``; M = 0 in eval."""
        empty = feats.new_zeros((0, feats.shape[-1])), labels.new_zeros((0,))
        if not self.training or self.mode == "none":
            return empty
        if not bool(self.targets_ready):
            raise RuntimeError(
                "latent augmentation with target_classes='auto': call set_class_counts(...) with the "
                "training fold's class counts before training, or give target_classes explicitly"
            )
        out_f: list[torch.Tensor] = []
        out_l: list[torch.Tensor] = []
        is_target = self.target_mask.to(labels.device)[labels]
        if self.noise and bool(is_target.any()):
            f = feats[is_target].repeat(self.multiplier, 1)
            std = f.detach().std(dim=1, correction=0, keepdim=True)
            out_f.append(f + self.sigma * std * torch.randn_like(f))
            out_l.append(labels[is_target].repeat(self.multiplier))
        if self.mixup:
            for c in torch.nonzero(self.target_mask).flatten().tolist():
                members = torch.nonzero(labels == c).flatten()
                n = members.numel()
                if n < 2:
                    continue
                k = self.multiplier
                # a random offset in 1..n-1 picks a uniformly random partner other than the sample itself
                offsets = torch.randint(1, n, (k, n), device=feats.device)
                partners = members[(torch.arange(n, device=feats.device) + offsets) % n].flatten()
                anchors = members.repeat(k)
                lam = torch.distributions.Beta(
                    torch.tensor(self.alpha, device=feats.device),
                    torch.tensor(self.alpha, device=feats.device),
                ).sample((k * n, 1))
                lam = lam.to(feats.dtype)
                out_f.append(lam * feats[anchors] + (1 - lam) * feats[partners])
                out_l.append(labels[anchors])
        if not out_f:
            return empty
        return torch.cat(out_f), torch.cat(out_l)

    def extra_repr(self) -> str:
        targets = "auto" if self.auto else ",".join(self.targets())
        return (
            f"mode={self.mode}, sigma={self.sigma}, alpha={self.alpha}, k={self.multiplier}, "
            f"targets={targets}"
        )

"""The architecture the study converges to: EfficientNet-B6 + dual-domain bottleneck + CBAM + UNet++ +
latent augmentation. Builds with random weights, trains one step on CPU, round-trips through a bundle."""

from __future__ import annotations

from pathlib import Path

import torch

from model_zoo.build import build_model
from model_zoo.bundle import load_bundle, save_bundle
from model_zoo.config import LossConfig
from model_zoo.losses import build_loss, class_weights_from_counts

FINAL = {
    "encoder": "efficientnet-b6",
    "encoder_weights": None,
    "decoder": "unetplusplus",
    "bottleneck": "dual_domain",
    "attention": "cbam",
    "latent_aug": {"mode": "noise+mixup", "target_classes": "auto"},
}
CLASSES = ["normal", "benign", "malignant"]


def test_final_architecture_trains_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(FINAL, class_names=CLASSES)
    counts = [60, 30, 10]
    model.set_class_counts(counts)
    loss_fn = build_loss(LossConfig(), class_weights=class_weights_from_counts(counts))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)

    x = torch.rand(4, 1, 64, 64)
    masks = (torch.rand(4, 1, 64, 64) > 0.7).float()
    labels = torch.tensor([0, 1, 2, 2])
    model.train()
    out = model(x, labels)
    assert out.aug_labels is not None and set(out.aug_labels.tolist()) <= {1, 2}
    loss, parts = loss_fn(out, masks, labels)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss) and parts["seg"] > 0 and parts["cls"] > 0
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    for part in ("encoder.", "bottleneck.frequency.", "attention.", "decoder.", "seg_head.", "cls_head."):
        assert any(n.startswith(part) for n in changed), part

    model.eval()
    path = save_bundle(tmp_path / "final.safetensors", model, {"input_size": 64})
    loaded, meta = load_bundle(path)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.seg_logits, b.seg_logits) and torch.equal(a.cls_logits, b.cls_logits)
    assert meta["class_names"] == CLASSES and meta["model_config"]["encoder"] == "efficientnet-b6"

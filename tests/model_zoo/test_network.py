"""The joint network: every decoder x bottleneck x attention x latent-aug mode trains at square and non-square
sizes; the output contract; latent augmentation stays on the classification path."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from model_zoo.attention import ATTENTIONS
from model_zoo.bottleneck import BOTTLENECKS
from model_zoo.build import build_model
from model_zoo.config import LatentAugConfig
from model_zoo.latent_aug import LATENT_AUG_MODES, LatentAugmentation
from model_zoo.network import JointNet, JointOutput, input_requirements
from tests.model_zoo.test_decoders import TINY

COUNTS = [10, 3, 2]  # normal is the majority: benign and malignant are the 'auto' targets
# expected extra samples for a batch of two malignant images, multiplier 1
EXTRA = {"none": 0, "noise": 2, "mixup": 2, "noise+mixup": 4}


@functools.cache
def _model(decoder: str, bottleneck: str, attention: str) -> JointNet:
    torch.manual_seed(0)
    return build_model(
        {
            "encoder": "tu-test_efficientnet",
            "decoder": decoder,
            "decoder_options": TINY[decoder],
            "bottleneck": bottleneck,
            "attention": attention,
        }
    )


def _with_latent_aug(model: JointNet, mode: str) -> JointNet:
    """Share one built network across the latent-aug modes: swap the (parameter-free) augmentation block."""
    cfg = LatentAugConfig(mode=mode)
    model.config = dataclasses.replace(model.config, latent_aug=cfg)
    model.latent_aug = None if mode == "none" else LatentAugmentation(cfg, model.config.num_classes)
    model.set_class_counts(COUNTS)
    return model


@pytest.mark.parametrize("attention", ATTENTIONS.names())
@pytest.mark.parametrize("bottleneck", BOTTLENECKS.names())
@pytest.mark.parametrize("decoder", sorted(TINY))
def test_every_combination_trains(decoder: str, bottleneck: str, attention: str) -> None:
    model = _model(decoder, bottleneck, attention)
    divisor, _ = input_requirements(model)
    side = max(64, divisor)
    labels = torch.tensor([2, 2])
    for mode in LATENT_AUG_MODES:
        _with_latent_aug(model, mode).train()
        for h, w in ((side, side), (side, side + max(32, divisor))):
            torch.manual_seed(1)
            model.zero_grad(set_to_none=True)
            out = model(torch.rand(2, 1, h, w), labels)
            seg, cls = out
            assert seg.shape == (2, 1, h, w) and cls.shape == (2, 3)
            loss = seg.sigmoid().mean() + cls.logsumexp(1).mean()
            if EXTRA[mode]:
                assert out.aug_cls_logits.shape == (EXTRA[mode], 3)
                assert out.aug_labels.tolist() == [2] * EXTRA[mode]
                loss = loss + out.aug_cls_logits.logsumexp(1).mean()
            else:
                assert out.aug_cls_logits is None and out.aug_labels is None
            loss.backward()
            assert torch.isfinite(loss)
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads)
            assert all(p.grad is not None for p in model.bottleneck.parameters()), (
                "bottleneck got no gradient"
            )


def test_output_contract_and_eval() -> None:
    model = build_model(
        {"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise"}, "cls_head": {"pooling": "avgmax"}}
    )
    model.set_class_counts(COUNTS)
    x = torch.rand(2, 1, 64, 64)
    out = model.train()(x, torch.tensor([1, 2]))
    assert isinstance(out, JointOutput) and len(out) == 2
    seg, cls = out
    assert seg is out[0] is out.seg_logits and cls is out[1]
    assert out.features.shape == (2, 2 * model.encoder_channels[-1])  # avgmax doubles the pooled width
    assert out.aug_labels.tolist() == [1, 2]
    assert model(x).aug_cls_logits is None  # no labels
    model.eval()
    with torch.no_grad():
        a, b = model(x, torch.tensor([1, 2])), model(x)
    assert (
        a.aug_cls_logits is None
        and torch.equal(a.seg_logits, b.seg_logits)
        and torch.equal(a.cls_logits, b.cls_logits)
    )
    with torch.no_grad():
        single = model(x[:1])
    assert single.seg_logits.shape == (1, 1, 64, 64)


def test_latent_aug_never_reaches_the_segmentation_path() -> None:
    torch.manual_seed(0)
    model = build_model(
        {
            "encoder": "tu-test_resnet",
            "decoder": "unet",
            "latent_aug": {"mode": "noise+mixup"},
            "cls_head": {"dropout": 0.0},
        }
    ).train()
    model.set_class_counts(COUNTS)
    x, labels = torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 1, 2])
    out = model(x, labels)
    with torch.no_grad():
        plain = model(x)
    assert torch.equal(out.seg_logits, plain.seg_logits)
    out.aug_cls_logits.sum().backward()
    assert all(
        p.grad is None or not p.grad.any()
        for p in [*model.decoder.parameters(), *model.seg_head.parameters()]
    )
    assert any(p.grad is not None and p.grad.any() for p in model.encoder.parameters())
    assert model.cls_head[-1].weight.grad.abs().sum() > 0


def test_auto_targets_need_class_counts() -> None:
    model = build_model({"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise"}}).train()
    with pytest.raises(RuntimeError, match="set_class_counts"):
        model(torch.rand(2, 1, 64, 64), torch.tensor([1, 2]))
    named = build_model(
        {"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise", "target_classes": ["benign"]}},
        class_names=["normal", "benign", "malignant"],
    ).train()
    assert named(torch.rand(2, 1, 64, 64), torch.tensor([1, 2])).aug_labels.tolist() == [1]


def test_hidden_head_and_max_pooling() -> None:
    model = build_model(
        {"encoder": "tu-test_resnet", "cls_head": {"pooling": "max", "hidden": 16}, "num_classes": 4}
    )
    assert model.cls_head[1].out_features == 16
    _, cls = model.eval()(torch.rand(1, 1, 32, 32))
    assert cls.shape == (1, 4)


def test_torch_compile_traces_the_network() -> None:
    model = build_model(
        {"encoder": "tu-test_resnet", "bottleneck": "dual_domain", "attention": "cbam"}
    ).eval()
    compiled = torch.compile(model, backend="eager")
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out = compiled(x)
    assert isinstance(out, JointOutput)
    assert torch.allclose(out.seg_logits, model(x).seg_logits, atol=1e-5)


def test_deep_supervision_adds_coarser_logits_in_training_only() -> None:
    options = {"decoder_channels": [32, 24, 16, 8, 8]}
    torch.manual_seed(0)
    model = build_model({"encoder": "tu-test_resnet", "decoder_options": options, "deep_supervision": 3})
    torch.manual_seed(0)
    plain = build_model({"encoder": "tu-test_resnet", "decoder_options": options})
    x = torch.rand(2, 1, 64, 96)
    out = model.train()(x)
    assert [tuple(a.shape) for a in out.aux_seg_logits] == [(2, 1, 32, 48), (2, 1, 16, 24), (2, 1, 8, 12)]
    out.aux_seg_logits[-1].sum().backward()  # the coarsest head trains the stages below it, not above
    assert model.aux_heads[-1].weight.grad.abs().sum() > 0
    assert model.decoder.blocks[1].conv1[0].weight.grad.abs().sum() > 0
    assert model.decoder.blocks[2].conv1[0].weight.grad is None and model.seg_head.conv.weight.grad is None
    model.eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("aux_heads.")})
    with torch.no_grad():
        a, b = model(x), plain.eval()(x)
    assert a.aux_seg_logits is None  # inference is the plain network: same outputs with the same weights
    assert torch.equal(a.seg_logits, b.seg_logits) and torch.equal(a.cls_logits, b.cls_logits)


def test_lesion_pool_averages_the_features_inside_the_lesion() -> None:
    from model_zoo.heads import LesionPool

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    logits = torch.full((2, 1, 16, 16), -30.0)
    logits[0, :, 4:8, 8:12] = 30.0  # image 0: a lesion exactly on feature cell (1, 2); image 1: none
    out = LesionPool()(x, logits)
    assert out.shape == (2, LesionPool.out_features(3))
    assert torch.allclose(out[0, :3], x[0, :, 1, 2], rtol=1e-3)
    assert out[0, 3] == pytest.approx(1 / 16, rel=1e-4)  # the lesion's share of the image
    assert out[1, 3] < 1e-9 and torch.isfinite(out).all()
    # Half the probability on a second cell: the average sits between the two cells' features.
    logits[0, :, 0:4, 0:4] = 0.0
    out = LesionPool()(x, logits)
    assert torch.allclose(out[0, :3], (x[0, :, 1, 2] + 0.5 * x[0, :, 0, 0]) / 1.5, rtol=1e-3)


def test_lesion_pool_feeds_the_classifier_without_moving_the_segmentation() -> None:
    torch.manual_seed(0)
    model = build_model(
        {"encoder": "tu-test_resnet", "cls_head": {"pooling": "avgmax", "lesion_pool": True}}
    ).train()
    deep = model.encoder_channels[-1]
    assert model.cls_head[1].in_features == 2 * deep + deep + 1
    out = model(torch.rand(2, 1, 64, 64))
    assert out.features.shape == (2, 3 * deep + 1)
    out.cls_logits.sum().backward()  # the classification loss reaches the encoder, not the seg path
    assert model.seg_head.conv.weight.grad is None
    assert all(p.grad is None for p in model.decoder.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.encoder.parameters() if p.grad is not None) > 0
    # The class logits depend on where the lesion is drawn: another seg head, other class logits.
    model.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        before = model(x).cls_logits.clone()
        model.seg_head.conv.bias.fill_(5.0)
        after = model(x).cls_logits
    assert not torch.allclose(before, after)


def test_cls_norm_gives_the_classifier_a_unit_scale_input_whatever_the_feature_scale() -> None:
    torch.manual_seed(0)
    model = build_model(
        {"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise"}, "cls_head": {"norm": "layernorm"}}
    ).eval()
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        features = model(x).features
        deep = model.attention(model.bottleneck(model.encoder(model.preprocess(x))[-1]))
    assert features.shape == (3, model.encoder_channels[-1])
    assert torch.allclose(features.mean(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(features.var(dim=1, unbiased=False), torch.ones(3), atol=1e-3)
    # Scaling the deep feature (what CBAM's gates do) leaves the classifier's input unchanged.
    pooled = model.pool(deep)
    assert torch.allclose(model.cls_norm(pooled), model.cls_norm(7.0 * pooled), atol=2e-3)
    assert isinstance(build_model({"encoder": "tu-test_resnet"}).cls_norm, torch.nn.Identity)
    with pytest.raises(Exception, match="norm"):
        build_model({"encoder": "tu-test_resnet", "cls_head": {"norm": "batchnorm"}})

"""The loop on a real CUDA device: AMP (bf16, fp16 with a scaler, off), channels_last, accuracy of the
autocast forward against fp32, and a GPU checkpoint that resumes on a CPU-only machine.

Skipped where CUDA is absent (CI); run on a lent GPU machine by ``benchmarks/gpu_session.sh``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainables.data.cache import BUSDataset, load_dataset
from trainables.data.splits import SplitIndices, make_splits, split_indices
from trainables.device import amp_settings, autocast
from trainables.loop import CrossValLoop
from trainables.spec import spec_from_dict

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cuda_spec(**train: object):
    return spec_from_dict(
        {
            "name": "cuda",
            "data": {"image_size": 64, "folds": 2, "synthetic": {"n_per_class": [10, 12, 10], "size": 64}},
            "model": {
                "encoder": "tu-test_efficientnet",
                "encoder_weights": None,
                "attention": "cbam",
                "bottleneck": "dual_domain",
                "latent_aug": {"mode": "noise+mixup"},
            },
            "train": {"epochs": 2, "batch_size": 8, **train},
        }
    )


@pytest.fixture(scope="module")
def data() -> tuple[BUSDataset, SplitIndices]:
    spec = cuda_spec()
    dataset = load_dataset(spec.data, progress=False)
    splits = make_splits(dataset, spec.data.folds, spec.data.test_fraction, spec.data.seed)
    return dataset, split_indices(splits, dataset)


@pytest.mark.parametrize("amp", ["auto", "bf16", "fp16", "off"])
def test_amp_training_on_cuda(data: tuple, amp: str) -> None:
    dataset, split = data
    loop = CrossValLoop(cuda_spec(amp=amp), dataset, split, device="cuda")
    expected = amp_settings(loop.device, amp)
    assert loop.amp == expected
    rows = [loop.step() for _ in range(2)]
    for r in rows:
        assert math.isfinite(r["train/loss"]) and math.isfinite(r["val/loss"])
        assert 0.0 <= r["val/dice"] <= 1.0 and 0.0 <= r["val/balanced_acc"] <= 1.0
    fold = loop.folds[0]
    assert fold.scaler.is_enabled() == expected.use_scaler
    if expected.use_scaler:
        assert math.isfinite(fold.scaler.get_scale())
    param = next(fold.model.parameters())
    assert param.device.type == "cuda" and param.dtype == torch.float32  # AMP keeps fp32 master weights
    convs = [m.weight for m in fold.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.ndim == 4]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_forward_is_close_to_fp32(data: tuple, amp: str) -> None:
    dataset, split = data
    loop = CrossValLoop(cuda_spec(amp="off"), dataset, split, device="cuda")
    model = loop.folds[0].model.eval()
    # 96 px: a 3x3 bottleneck map, which half-precision cuFFT would refuse (powers of two only)
    x = torch.rand(4, 1, 96, 96, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.inference_mode():
        ref_seg, ref_cls = model(x)
        with autocast(loop.device, amp_settings(loop.device, amp)):
            seg, cls = model(x)
    for out, ref in ((seg, ref_seg), (cls, ref_cls)):
        assert torch.isfinite(out).all()
        rel = (out.float() - ref).norm() / ref.norm()
        assert rel < 3e-2, f"{amp}: relative error {rel:.2e} against fp32"


def test_gpu_checkpoint_resumes_on_the_cpu(data: tuple, tmp_path: Path) -> None:
    dataset, split = data
    loop = CrossValLoop(cuda_spec(amp="auto"), dataset, split, device="cuda")
    loop.step()
    torch.save(loop.state_dict(), tmp_path / "loop.pt")
    cpu = CrossValLoop(cuda_spec(amp="auto"), dataset, split, device="cpu")
    with pytest.warns(RuntimeWarning, match="saved on cuda on cpu"):
        cpu.load_state_dict(torch.load(tmp_path / "loop.pt", map_location="cpu", weights_only=True))
    assert cpu.epoch == 1
    a = dict(loop.folds[0].model.state_dict())
    for name, value in cpu.folds[0].model.state_dict().items():
        assert value.device.type == "cpu"
        assert torch.equal(value, a[name].cpu()), name
    row = cpu.step()
    assert row["epoch"] == 2.0 and math.isfinite(row["train/loss"])

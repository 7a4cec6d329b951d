"""``train.amp: auto`` on a CPU with bf16 hardware: the measured choice, its cache and its place in runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import build_model
from model_zoo.config import LossConfig
from model_zoo.losses import build_loss
from tests.trainables.test_loop import data, tiny_spec  # noqa: F401 (the module-scoped fixture)
from trainables import cpu_precision
from trainables.cpu_precision import BF16_MARGIN, PrecisionChoice, choose_cpu_amp, needs_probe, time_steps
from trainables.loop import CrossValLoop

SHAPE = (4, 1, 32, 32)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise"}, "cls_head": {}})
    model.set_class_counts([10, 5, 3])  # the latent augmentation draws noise: the probe must not move RNG
    return model


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty memory cache and a disk cache in ``tmp_path``."""
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})
    return tmp_path / "precision"


def test_a_training_probe_leaves_weights_statistics_and_random_streams_as_they_were(fresh: Path) -> None:
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    choice = choose_cpu_amp(
        model, SHAPE, model_id=model.config_dict(), loss_fn=build_loss(LossConfig(cls="ce")), cache=fresh
    )
    assert choice.amp in ("bf16", "off") and choice.source == "measured"
    assert choice.fp32_s > 0 and choice.bf16_s > 0
    assert torch.equal(torch.get_rng_state(), rng)  # a seeded run draws the same numbers afterwards
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch-norm running stats included
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_an_inference_probe_keeps_the_models_mode(fresh: Path) -> None:
    model = tiny_model().train()
    choice = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert choice.amp in ("bf16", "off") and model.training


@pytest.mark.parametrize(
    ("bf16_s", "expected"),
    [(0.5, "bf16"), (1.0 - BF16_MARGIN, "bf16"), (0.97, "off"), (1.0, "off"), (1.4, "off")],
)
def test_bf16_is_chosen_only_when_clearly_faster(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, bf16_s: float, expected: str
) -> None:
    monkeypatch.setattr(cpu_precision, "time_steps", lambda run, **kw: (1.0, bf16_s))
    choice = choose_cpu_amp(tiny_model(), SHAPE, model_id="tiny", cache=False)
    assert choice.amp == expected and choice.speedup == pytest.approx(1.0 / bf16_s)


def test_the_measurement_is_cached_on_disk_per_architecture_shape_and_mode(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def timed(run: Callable, **kw: object) -> tuple[float, float]:
        calls.append(1)
        return 1.0, 0.6

    monkeypatch.setattr(cpu_precision, "time_steps", timed)
    model = tiny_model()
    first = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert first == PrecisionChoice("bf16", 1.0, 0.6, "measured") and len(calls) == 1
    files = list(fresh.glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["amp"] == "bf16"
    assert choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh) == first  # memory
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})  # another process on the same machine
    again = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert again == PrecisionChoice("bf16", 1.0, 0.6, "cache") and len(calls) == 1
    # Another shape, another architecture or a training probe is another measurement.
    choose_cpu_amp(model, (8, 1, 32, 32), model_id="tiny", cache=fresh)
    choose_cpu_amp(model, SHAPE, model_id="other", cache=fresh)
    choose_cpu_amp(model, SHAPE, model_id="tiny", loss_fn=build_loss(LossConfig(cls="ce")), cache=fresh)
    assert len(calls) == 4 and len(list(fresh.glob("*.json"))) == 4


def test_a_damaged_cache_file_is_measured_again(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_precision, "time_steps", lambda run, **kw: (1.0, 2.0))
    model = tiny_model()
    choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    (path,) = fresh.glob("*.json")
    path.write_text('{"amp": "fp8"')
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})
    choice = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert choice.amp == "off" and choice.source == "measured"
    assert json.loads(path.read_text())["amp"] == "off"


def test_time_steps_warms_up_then_interleaves_and_takes_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    clock = iter(np.arange(0.0, 100.0, 1.0))
    monkeypatch.setattr(cpu_precision.time, "perf_counter", lambda: float(next(clock)))
    fp32_s, bf16_s = time_steps(lambda amp: order.append(amp.name), repeats=3, warmup=1)
    assert order == ["bf16", "off"] + ["off", "bf16"] * 3
    assert fp32_s == 1.0 and bf16_s == 1.0


def test_only_auto_on_a_cpu_with_bf16_hardware_is_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables import device

    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: True)
    assert needs_probe(cpu, "auto")
    assert not needs_probe(cpu, "off") and not needs_probe(cpu, "bf16")
    assert not needs_probe(torch.device("cuda"), "auto")
    monkeypatch.setattr(device, "cpu_bf16_native", lambda: False)
    assert not needs_probe(cpu, "auto")


def test_the_loop_trains_in_the_measured_precision_and_a_resume_keeps_it(
    data: tuple,  # noqa: F811
    precision_probe: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, split, _ = data
    precision_probe(1.0, 1.5)  # bf16 hardware, but bf16 slower
    loop = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")
    assert loop.state_dict()["amp"] is None  # a state saved before the probe leaves the choice open
    seen: list[torch.dtype] = []
    loop.folds[0].model.register_forward_hook(lambda mod, args, out: seen.append(out.seg_logits.dtype))
    loop.step()
    assert loop.amp.name == "off" and set(seen) == {torch.float32}
    probe = loop.summary()["amp_probe"]
    assert probe == {"amp": "off", "fp32_s": 1.0, "bf16_s": 1.5, "source": "measured"}
    state = loop.state_dict()
    assert state["amp"] == "off"

    # The same machine now times bf16 faster: a resumed run still trains as it started, unmeasured.
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run must not measure again")

    monkeypatch.setattr("trainables.loop.choose_cpu_amp", fail)
    resumed = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")
    resumed.load_state_dict(state)
    resumed.step()
    assert resumed.amp.name == "off" and resumed.summary()["amp_probe"]["source"] == "state"


def test_predict_measures_inference_once_per_shape(
    data: tuple,  # noqa: F811
    precision_probe: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analysis.predict import inference_amp, predict_arrays

    dataset, _, _ = data
    precision_probe(1.0, 1.5)
    model = tiny_model().eval()
    images = np.array(dataset.images[:6])
    cpu = torch.device("cpu")
    assert inference_amp(model, images, cpu, batch_size=4) == "off"
    assert inference_amp(model, images, cpu, batch_size=4, amp="bf16") == "bf16"  # explicit: no probe
    keys = list(cpu_precision._MEMORY)
    assert len(keys) == 1
    seg, probs = predict_arrays([model], images, cpu, batch_size=4)
    seg32, probs32 = predict_arrays([model], images, cpu, batch_size=4, amp="off")
    assert np.array_equal(seg, seg32) and np.array_equal(probs, probs32)  # auto ran float32 here
    assert list(cpu_precision._MEMORY) == keys

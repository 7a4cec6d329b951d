"""``train.amp: auto`` on a CPU with bf16 hardware: the measured choice, its cache and its place in runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model_zoo import build_model
from model_zoo.config import LossConfig
from model_zoo.losses import build_loss
from tests.trainables.test_loop import tiny_spec
from trainables import cpu_precision
from trainables.cpu_precision import (
    BF16_MARGIN,
    PrecisionChoice,
    choose_cpu_amp,
    choose_inference_amp,
    needs_probe,
    time_steps,
)
from trainables.data.cache import load_dataset
from trainables.data.splits import make_splits, split_indices
from trainables.loop import CrossValLoop

SHAPE = (4, 1, 32, 32)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model({"encoder": "tu-test_resnet", "latent_aug": {"mode": "noise"}, "cls_head": {}})
    model.set_class_counts([10, 5, 3])  # the latent augmentation draws noise: the probe must not move RNG
    return model


@pytest.fixture(scope="module")
def data() -> tuple:
    """The loop tests' tiny synthetic set and its folds."""
    spec = tiny_spec()
    dataset = load_dataset(spec.data, progress=False)
    splits = make_splits(dataset, spec.data.folds, spec.data.test_fraction, spec.data.seed)
    return dataset, split_indices(splits, dataset), splits


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


def test_an_inference_probe_leaves_the_model_as_it_was(fresh: Path) -> None:
    model = tiny_model().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layouts = [p.is_contiguous() for p in model.parameters()]
    calls: list[int] = []
    model.register_forward_hook(lambda *args: calls.append(1))
    choice = choose_inference_amp(model, SHAPE[-2:], model_id="tiny", cache=fresh)
    assert choice.amp in ("bf16", "off") and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [p.is_contiguous() for p in model.parameters()] == layouts  # not converted to channels_last
    assert calls == []  # the caller's hooks do not see the probe's forwards


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
    assert len(files) == 1 and json.loads(files[0].read_text())["bf16_s"] == 0.6
    cached = PrecisionChoice("bf16", 1.0, 0.6, "cache")
    assert choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh) == cached  # from memory
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})  # another process on the same machine
    again = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert again == cached and len(calls) == 1
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
    path.write_text('{"fp32_s": 1.0, "bf16_s"')
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})
    choice = choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh)
    assert choice.amp == "off" and choice.source == "measured"
    assert json.loads(path.read_text())["bf16_s"] == 2.0


def test_an_unusable_cache_folder_costs_a_warning_not_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})
    monkeypatch.setattr(cpu_precision, "time_steps", lambda run, **kw: (1.0, 0.5))
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.warns(RuntimeWarning, match="precision probe"):
        choice = choose_cpu_amp(tiny_model(), SHAPE, model_id="tiny", cache=not_a_folder)
    assert choice == PrecisionChoice("bf16", 1.0, 0.5, "measured")


def test_cached_times_are_decided_with_the_current_margin(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_precision, "time_steps", lambda run, **kw: (1.0, 0.9))
    model = tiny_model()
    assert choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh).amp == "bf16"
    monkeypatch.setattr(cpu_precision, "BF16_MARGIN", 0.2)
    assert choose_cpu_amp(model, SHAPE, model_id="tiny", cache=fresh) == PrecisionChoice(
        "off", 1.0, 0.9, "cache"
    )


def test_a_process_that_waited_for_the_lock_reads_the_other_ones_measurement(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    from trainables.data import cache as data_cache

    key = cpu_precision.probe_key("tiny", SHAPE, False, True)

    @contextlib.contextmanager
    def lock_held_by_another_process(path: Path) -> Iterator[None]:
        fresh.mkdir(parents=True, exist_ok=True)
        (fresh / f"{key}.json").write_text(json.dumps({"fp32_s": 1.0, "bf16_s": 0.5}))  # it measured
        yield

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured although another process had")

    monkeypatch.setattr(data_cache, "file_lock", lock_held_by_another_process)
    monkeypatch.setattr(cpu_precision, "time_steps", fail)
    choice = choose_cpu_amp(tiny_model(), SHAPE, model_id="tiny", cache=fresh)
    assert choice == PrecisionChoice("bf16", 1.0, 0.5, "cache")


def test_the_key_ignores_what_does_not_change_the_work() -> None:
    def key(**changes: object) -> str:
        config = tiny_model().config_dict()
        for dotted, value in changes.items():
            section, _, name = dotted.partition("__")
            if name:
                config[section] = {**config[section], name: value}
            else:
                config[section] = value
        return cpu_precision.probe_key(config, SHAPE, True, True)

    base = key()
    assert key(cls_head__dropout=0.5) == base and key(latent_aug__sigma=0.3) == base
    assert key(encoder_weights="imagenet") == base
    assert key(encoder="tu-test_efficientnet") != base and key(cls_head__pooling="avgmax") != base
    assert cpu_precision.probe_key("tiny", SHAPE, True, True) != cpu_precision.probe_key(
        "tiny", SHAPE, False, True
    )
    assert cpu_precision.probe_key("tiny", SHAPE, True, True) != cpu_precision.probe_key(
        "tiny", SHAPE, True, False
    )


def test_time_steps_warms_up_then_interleaves_and_takes_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    clock = [0.0]
    durations = {"off": iter([50.0, 5.0, 1.0, 2.0]), "bf16": iter([70.0, 3.0, 9.0, 4.0])}  # warm-up first

    def run(amp: object) -> None:
        order.append(amp.name)
        clock[0] += next(durations[amp.name])

    monkeypatch.setattr(cpu_precision.time, "perf_counter", lambda: clock[0])
    fp32_s, bf16_s = time_steps(run, repeats=3, warmup=1)
    assert order == ["bf16", "off"] + ["off", "bf16"] * 3
    assert (fp32_s, bf16_s) == (2.0, 4.0)  # medians of the timed steps, warm-ups left out


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
    data: tuple,
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
    assert state["amp"] == "off" and state["val_amp"] == "off"

    # The same machine now times bf16 faster: a resumed run still trains as it started, unmeasured.
    resumed = resume_without_measuring(state, data, monkeypatch)
    assert resumed.amp.name == "off" and resumed.summary()["amp_probe"]["source"] == "state"


def resume_without_measuring(state: dict, data: tuple, monkeypatch: pytest.MonkeyPatch) -> CrossValLoop:
    """A new loop resumed from ``state`` and stepped once, failing if it measures either precision."""

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run must not measure")

    monkeypatch.setattr("trainables.loop.choose_cpu_amp", fail)
    monkeypatch.setattr("trainables.loop.choose_inference_amp", fail)
    dataset, split, _ = data
    resumed = CrossValLoop(tiny_spec(epochs=2), dataset, split, device="cpu")
    resumed.load_state_dict(state)
    resumed.step()
    return resumed


def test_predict_measures_inference_once_per_shape(
    data: tuple,
    precision_probe: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from analysis.predict import inference_amp, predict_arrays

    dataset, _, _ = data
    precision_probe(1.0, 1.5)
    model = tiny_model().eval()
    images = np.array(dataset.images[:6])
    cpu = torch.device("cpu")
    assert inference_amp(model, images, cpu) == "off"
    assert inference_amp(model, images[:1], cpu) == "off"  # one image: the same (canonical) measurement
    assert inference_amp(model, images, cpu, amp="bf16") == "bf16"  # explicit: no probe
    keys = list(cpu_precision._MEMORY)
    assert len(keys) == 1
    seg, probs = predict_arrays([model], images, cpu, batch_size=4)
    seg32, probs32 = predict_arrays([model], images, cpu, batch_size=4, amp="off")
    assert np.array_equal(seg, seg32) and np.array_equal(probs, probs32)  # auto ran float32 here
    assert list(cpu_precision._MEMORY) == keys


def test_a_state_from_before_the_probe_keeps_the_detected_precision(
    data: tuple,
    precision_probe: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A state written by the version without the probe (no ``amp`` key) trained in bf16 by the detection:
    resumed, it goes on in bf16 and measures nothing."""
    dataset, split, _ = data
    precision_probe(1.0, 1.5)
    loop = CrossValLoop(tiny_spec(epochs=2, amp="bf16"), dataset, split, device="cpu")
    loop.step()
    state = {k: v for k, v in loop.state_dict().items() if "amp" not in k}
    resumed = resume_without_measuring(state, data, monkeypatch)
    assert resumed.amp.name == "bf16" and resumed.val_amp.name == "bf16"


def test_measuring_changes_nothing_the_run_computes(
    data: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real probe (timing real steps) against the same choice read from the cache: identical runs."""
    from trainables import device

    monkeypatch.setattr(device, "cpu_bf16_native", lambda: True)
    monkeypatch.setattr(cpu_precision, "_MEMORY", {})
    monkeypatch.setenv("BUS_CACHE_DIR", str(tmp_path))
    dataset, split, _ = data
    runs = []
    for _ in range(2):
        loop = CrossValLoop(tiny_spec(epochs=2, deterministic=True), dataset, split, device="cpu")
        rows = [loop.step() for _ in range(2)]
        runs.append(
            ([{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rows], loop)
        )
    (first, a), (second, b) = runs
    assert a.amp_choice.source == "measured" and b.amp_choice.source == "cache"
    assert (a.amp, a.val_amp) == (b.amp, b.val_amp)
    assert first == second
    assert all(
        torch.equal(p, q) for p, q in zip(a.folds[0].model.parameters(), b.folds[0].model.parameters())
    )

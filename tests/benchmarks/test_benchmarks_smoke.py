"""Smoke tests of benchmarks/: every module imports, the helpers compute what they say, and the cheapest
benchmarks run end to end at tiny sizes (so the scripts do not rot). No timing is asserted."""

from __future__ import annotations

import importlib
import json
import math
import os
import types
from pathlib import Path

import pytest

MODULES = (
    "common",
    "run_all",
    "trial_overhead",
    "data_path",
    "early_stopping",
    "optuna_vs_random",
    "packing",
    "inference",
    "gpu",
    "dedup_busi",
    "cpu_speed",
    "anchor_protocol",
    "grad_balance",
)
TINY_MODEL = '{"encoder": "tu-test_efficientnet", "encoder_weights": null, "decoder": "unet"}'


@pytest.fixture
def clean_env():
    """Benchmarks set quiet defaults in os.environ; restore it afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_and_has_main(name: str) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    if name != "common":
        assert callable(module.main)
    if name not in ("common", "run_all"):
        assert name == module.NAME and module.COMPARED


def test_run_all_lists_every_benchmark() -> None:
    from benchmarks.run_all import BENCHMARKS

    assert set(BENCHMARKS) == set(MODULES) - {"common", "run_all"}


def test_record_writes_figures_machine_and_date(tmp_path: Path) -> None:
    from benchmarks import common

    path = common.record("demo", "a vs b", {"x": 1.5, "bad": math.nan}, "a is 2x b", out_dir=tmp_path)
    doc = json.loads(path.read_text())
    assert path == tmp_path / "demo.json"
    assert doc["figures"] == {"x": 1.5, "bad": None}  # NaN is not JSON: stored as null
    assert doc["ratio"] == "a is 2x b" and doc["compared"] == "a vs b"
    assert {"platform", "cpu_count", "torch", "gpus", "load_average"} <= set(doc["machine"])
    assert doc["date"][:2] == "20"
    assert "cores" in common.machine_line(doc["machine"])


def test_median_ratio_and_stopwatch() -> None:
    from benchmarks import common

    assert common.median([3, 1, 2]) == 2 and common.median([4, 1, 2, 3]) == 2.5
    assert math.isnan(common.median([])) and common.median([1.0, math.nan, 3.0]) == 2.0
    assert common.ratio(6, 3) == 2 and math.isnan(common.ratio(1, 0))
    with common.stopwatch() as t:
        pass
    assert 0 <= t["s"] < 1


def test_result_line_prefers_the_result_line() -> None:
    from benchmarks.run_all import result_line

    assert result_line("x", "a\nRESULT x: 2x\ntrailing\n") == "RESULT x: 2x"
    assert result_line("x", "ratio: 1.5x\n\n").endswith("ratio: 1.5x")
    assert "no output" in result_line("x", "")


def test_curve_and_best_at_follow_arrival_order() -> None:
    from benchmarks.optuna_vs_random import best_at, curve

    collector = types.SimpleNamespace(
        rows={
            "a": [{"received_at": 1.0, "val/score_best": 0.2}, {"received_at": 4.0, "val/score_best": 0.5}],
            "b": [{"received_at": 2.0, "val/score_best": 0.3}, {"received_at": 3.0, "val/score_best": 0.3}],
        }
    )
    points = curve(collector)
    assert points == [(1, 0.2), (2, 0.3), (3, 0.3), (4, 0.5)]
    assert best_at(points, 3) == 0.3 and best_at(points, 10) == 0.5 and math.isnan(best_at(points, 0))


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from benchmarks.optuna_vs_random import plot

    path = plot({"0": {"optuna": [(1, 0.1), (2, 0.4)], "random": [(1, 0.2), (2, 0.3)]}}, tmp_path / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_step_hook_notes_only_the_first_step() -> None:
    import torch

    from benchmarks.trial_overhead import FirstStep

    clock = FirstStep()
    assert clock.at is None
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=0.1)
    p.sum().backward()
    opt.step()
    first = clock.at
    assert first is not None
    opt.step()
    assert clock.at == first


def test_gpu_fits_per_card() -> None:
    from benchmarks.gpu import fits

    assert fits(5.0) == {"24GB": 4, "40GB": 7, "80GB": 14}
    assert fits(math.nan) == {"24GB": 0, "40GB": 0, "80GB": 0}


def test_gpu_skips_cleanly_without_cuda(
    tmp_path: Path, capsys: pytest.CaptureFixture, clean_env: None
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the benchmark would run, not skip")
    from benchmarks import gpu

    assert gpu.main(["--out", str(tmp_path)]) == 0
    assert "RESULT gpu: skipped" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_inference_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture, clean_env: None) -> None:
    from benchmarks import inference

    argv = ["--images", "1", "--reloads", "1", "--png-size", "96", "--size", "64", "--no-compile"]
    assert inference.main([*argv, "--threads", "1", "--model", TINY_MODEL, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "inference.json").read_text())
    fig = doc["figures"]
    assert len(fig["eager_latency_s"]) == 1 and len(fig["reload_latency_s"]) == 1
    assert fig["folder_images_per_s"] > 0 and fig["loaded_once_speedup"] > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT inference:")


def test_data_path_records_its_ratios(tmp_path: Path, capsys: pytest.CaptureFixture, clean_env: None) -> None:
    from benchmarks import data_path

    argv = [
        "--steps",
        "1",
        "--rounds",
        "1",
        "--n-per-class",
        "3",
        "3",
        "3",
        "--png-size",
        "96",
        "--size",
        "64",
    ]
    argv += ["--encoder", "tu-test_efficientnet", "--workers", "0", "--threads", "1", "--out", str(tmp_path)]
    assert data_path.main(argv) == 0
    fig = json.loads((tmp_path / "data_path.json").read_text())["figures"]
    assert fig["images"] == 9 and set(fig["data_samples_per_s"]) == {"ours", "pil_0_workers", "pil_n_workers"}
    assert all(v > 0 for v in fig["data_samples_per_s"].values()) and 0 < fig["data_share_of_step"] < 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT data_path: data path alone")


@pytest.mark.slow
def test_gpu_code_path_on_cpu(tmp_path: Path, clean_env: None) -> None:
    from benchmarks import gpu

    assert gpu.main(["--cpu-smoke", "--fractions", "1", "--epochs", "1", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "gpu_cpu_smoke.json").read_text())
    (row,) = doc["figures"]["fractions"]
    assert row["trials"] == 1 and row["per_trial_images_per_s"][0] > 0


@pytest.mark.slow
def test_trial_overhead_tiny(tmp_path: Path, no_ray: None, clean_env: None) -> None:
    from benchmarks import trial_overhead

    argv = [
        "--epochs",
        "2",
        "--n-per-class",
        "6",
        "10",
        "8",
        "--size",
        "32",
        "--encoder",
        "tu-test_efficientnet",
    ]
    assert trial_overhead.main([*argv, "--out", str(tmp_path)]) == 0
    fig = json.loads((tmp_path / "trial_overhead.json").read_text())["figures"]
    cold, warm = fig["trials"]
    assert cold["pid"] == warm["pid"]  # the second trial reused the first one's actor
    assert all(t["start_to_first_step_s"] > 0 and len(t["epochs"]) == 2 for t in (cold, warm))
    assert fig["trial_samples_per_s"] > 0 and fig["bare_samples_per_s"] > 0


@pytest.mark.slow
def test_early_stopping_tiny(tmp_path: Path, no_ray: None, clean_env: None) -> None:
    from benchmarks import early_stopping

    argv = ["--seeds", "0", "--samples", "3", "--epochs", "3", "--extra", "train.batch_size=16"]
    assert early_stopping.main([*argv, "--out", str(tmp_path)]) == 0
    pair = json.loads((tmp_path / "early_stopping.json").read_text())["figures"]["per_seed"]["0"]
    assert pair["fifo"]["trial_epochs"] == 9  # FIFO runs every trial to the end
    assert pair["asha"]["trials"] == 3 and 3 <= pair["asha"]["trial_epochs"] <= 9


def test_dedup_busi_skips_cleanly_without_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    from benchmarks import dedup_busi

    monkeypatch.delenv("BUS_REAL_DATA", raising=False)
    assert dedup_busi.main(["--data", str(tmp_path)]) == 0
    assert "RESULT dedup_busi: skipped" in capsys.readouterr().out


def test_cpu_speed_variant_names() -> None:
    from benchmarks.cpu_speed import Variant, parse_variant

    assert parse_variant("fp32") == Variant("fp32", "off", False, False)
    assert parse_variant("bf16+cl+compile") == Variant("bf16+cl+compile", "bf16", True, True)
    for bad in ("fp16", "bf16+cl+cl", "fp32+nhwc", ""):
        with pytest.raises(ValueError, match="variant"):
            parse_variant(bad)


def test_cpu_speed_tiny(tmp_path: Path, capsys: pytest.CaptureFixture, clean_env: None) -> None:
    from benchmarks import cpu_speed
    from benchmarks.run_all import BENCHMARKS

    _, quick = BENCHMARKS["cpu_speed"]
    assert cpu_speed.main([*quick, "--threads", "1", "--out", str(tmp_path)]) == 0
    fig = json.loads((tmp_path / "cpu_speed.json").read_text())["figures"]
    one = fig["threads_1"]
    assert set(one["train"]) == {*cpu_speed.DEFAULT_VARIANTS, fig["product"]}
    assert all(v > 0 for v in one["train"].values()) and one["loop_over_fastest_bare"] > 0
    assert fig["product"].startswith(f"loop ({fig['amp_auto']}") and one["validation_ratio"] > 0
    assert set(fig["adamw_step_ms"]) == {"default", "foreach", "loop (fused)"}
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("RESULT cpu_speed: 1 thread(s): loop")


def test_grad_norm_is_the_l2_norm_of_the_gradient() -> None:
    import torch

    from benchmarks.grad_balance import grad_norm

    w, unused = torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True)
    assert grad_norm((2 * w).sum(), [w, unused]) == pytest.approx(2 * math.sqrt(3))


def test_grad_balance_tiny(tmp_path: Path, capsys: pytest.CaptureFixture, clean_env: None) -> None:
    """Two variants, a variant without the classification term (its gradient must be zero) and a saved
    bundle, on a tiny synthetic set; every norm finite, the ratio line per variant."""
    from benchmarks import grad_balance
    from benchmarks.run_all import BENCHMARKS
    from model_zoo.build import build_model
    from model_zoo.bundle import save_bundle
    from trainables.spec import load_spec

    _, quick = BENCHMARKS["grad_balance"]
    spec = load_spec(grad_balance.DEFAULT_SPEC, ["model.encoder=tu-test_efficientnet"])
    names = ["normal", "benign", "malignant"]
    bundle = save_bundle(
        tmp_path / "run" / "fold0_best.safetensors",
        build_model(spec.model, names),
        {
            "class_names": names,
            "epoch": 3,
        },
    )
    argv = [*quick, "--variant", "no-cls", "train.loss.cls_weight=0", "--bundles", str(bundle)]
    assert grad_balance.main([*argv, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "grad_balance.json").read_text())["figures"]["rows"]
    assert [r["variant"] for r in rows] == ["cbam", "none", "no-cls", "trained"]
    assert rows[-1]["network"] == "run/fold0_best.safetensors, epoch 3"
    for r in rows:
        assert r["encoder_seg"] > 0 and r["all_seg"] >= r["encoder_seg"] and r["logit_std"] > 0
    no_cls = rows[2]
    assert no_cls["encoder_cls"] == 0 and no_cls["all_cls"] == 0 and no_cls["encoder_ratio"] == 0
    assert all(r["encoder_cls"] > 0 for r in rows if r["variant"] != "no-cls")
    out = capsys.readouterr().out
    assert "RESULT grad_balance: cbam: cls/seg gradient on the encoder" in out and "| no-cls |" in out

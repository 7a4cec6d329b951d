"""Model bundles: one safetensors file, exact round trip, no pickle, clear errors for bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model_zoo.build import build_model
from model_zoo.bundle import BUNDLE_FORMAT, BundleError, load_bundle, read_bundle_header, save_bundle

CFG = {
    "encoder": "tu-test_efficientnet",
    "decoder": "unetplusplus",
    "decoder_options": {"decoder_channels": [8] * 5},
    "bottleneck": "dual_domain",
    "attention": "cbam",
    "latent_aug": {"mode": "noise+mixup"},
}
META = {
    "class_names": ["normal", "benign", "malignant"],
    "input_size": 64,
    "preprocessing": {"resize_mode": "letterbox"},
}


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(CFG)
    model.set_class_counts([10, 3, 2])
    model.train()
    for _ in range(2):  # move the BatchNorm statistics away from their initial values
        model(torch.rand(2, 1, 64, 64), torch.tensor([1, 1]))
    path = save_bundle(tmp_path / "sub" / "model.safetensors", model.eval(), META)
    return path, model


def test_round_trip_gives_identical_outputs(trained: tuple[Path, torch.nn.Module]) -> None:
    path, model = trained
    loaded, meta = load_bundle(path)
    assert not loaded.training
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.seg_logits, b.seg_logits) and torch.equal(a.cls_logits, b.cls_logits)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.latent_aug.targets() == [
        "benign",
        "malignant",
    ]  # the fold's targets travel with the weights
    assert meta["class_names"] == META["class_names"] and meta["preprocessing"] == {
        "resize_mode": "letterbox"
    }
    assert meta["model_config"]["decoder"] == "unetplusplus" and meta["format_version"] == BUNDLE_FORMAT
    assert meta["normalisation"]["mean"] == pytest.approx(model.input_mean.flatten().tolist())
    assert meta["project_version"] and meta["created"]


def test_no_pickle_in_the_file(trained: tuple[Path, torch.nn.Module]) -> None:
    path, _ = trained
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "bus-search/joint-net"
    assert b"\x80\x04" not in raw[: 8 + header_len]  # no pickle protocol marker in the header
    with safe_open(str(path), "pt") as f:
        assert all(
            f.get_tensor(k).dtype in (torch.float32, torch.int64, torch.bool) for k in sorted(f.keys())
        )
    assert not list(path.parent.glob("*.tmp"))


def test_truncated_file(trained: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = trained
    short = tmp_path / "short.safetensors"
    short.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(short)


def test_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(BundleError, match="not a readable safetensors file"):
        load_bundle(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(plain)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        load_bundle(tmp_path / "missing.safetensors")


def _rewrite(path: Path, out: Path, **changes: str) -> None:
    with safe_open(str(path), "pt") as f:
        header = {**f.metadata(), **changes}
        tensors = {k: f.get_tensor(k) for k in sorted(f.keys())}
    save_file(tensors, str(out), metadata=header)


def test_incompatible_version_and_mismatched_weights(
    trained: tuple[Path, torch.nn.Module], tmp_path: Path
) -> None:
    path, _ = trained
    future = tmp_path / "future.safetensors"
    _rewrite(path, future, format_version="99", project_version="9.0.0")
    with pytest.raises(BundleError, match=r"format 99 .*9\.0\.0.* incompatible"):
        read_bundle_header(future)
    other = tmp_path / "other.safetensors"
    config = json.dumps({**CFG, "decoder": "unet"})
    _rewrite(path, other, model_config=config)
    with pytest.raises(BundleError, match=r"do not (match|fit) the network"):
        load_bundle(other)


def test_meta_is_checked(tmp_path: Path) -> None:
    model = build_model({"encoder": "tu-test_resnet"})
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        save_bundle(tmp_path / "m.safetensors", model, {"class_names": ["a", "b"]})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_bundle(tmp_path / "m.safetensors", model, {"when": object()})


def test_compiled_model_saves_its_network(tmp_path: Path) -> None:
    model = build_model({"encoder": "tu-test_resnet"}).eval()
    path = save_bundle(tmp_path / "c.safetensors", torch.compile(model, backend="eager"))
    loaded, _ = load_bundle(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(TypeError, match="expects a JointNet"):
        save_bundle(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))

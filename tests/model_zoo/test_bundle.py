"""Model bundles: one safetensors file, exact round trip, no pickle, clear errors for bad files."""

from __future__ import annotations

import json
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model_zoo.build import build_model
from model_zoo.bundle import BUNDLE_FORMAT, BundleError, load_bundle, read_bundle_header, save_bundle
from model_zoo.network import JointNet

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
    with pytest.raises(BundleError, match=r"meta\.class_names: expected a list"):  # not three classes a, b, c
        save_bundle(tmp_path / "m.safetensors", model, {"class_names": "abc"})
    with pytest.raises(BundleError, match=r"meta\.input_size: 50 does not fit the network.*multiples of 32"):
        save_bundle(tmp_path / "m.safetensors", model, {"input_size": 50})
    assert not (tmp_path / "m.safetensors").exists()


TINY = {"encoder": "tu-test_resnet", "decoder_options": {"decoder_channels": [8] * 5}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small bundle whose header the tests below rewrite."""
    model = build_model(TINY, class_names=META["class_names"]).eval()
    meta = {**META, "preprocessing": {"image_size": 64, "resize": "letterbox"}, "min_area": 10, "tau": 2.0}
    return save_bundle(tmp_path_factory.mktemp("tiny") / "tiny.safetensors", model, meta)


def _meta_of(path: Path) -> dict[str, Any]:
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["meta"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("meta", "null", r"'meta': expected a JSON object, got null"),
        ("meta", "[1]", r"'meta': expected a JSON object, got a list"),
        ("model_config", "[]", r"'model_config': expected a JSON object, got a list"),
        ("libraries", '"x"', r"'libraries': expected a JSON object"),
        ("class_names", 5, r"meta\.class_names: expected a list of non-empty strings, got a number 5"),
        ("class_names", "abc", r"meta\.class_names: expected a list of non-empty strings, got a string"),
        ("class_names", ["a", "a", "b"], r"meta\.class_names: names must differ"),
        ("class_names", ["a", "b"], r"meta\.class_names has 2 names for 3 classes"),
        ("image_size", -5, r"meta\.image_size: expected an integer in \[1, 8192\], got a number -5"),
        ("input_size", True, r"meta\.input_size: expected an integer"),
        ("input_size", 70, r"meta\.input_size: 70 does not fit the network"),
        (
            "preprocessing",
            {"image_size": 64, "resize": "crop"},
            r"meta\.preprocessing\.resize: expected one of",
        ),
        ("preprocessing", "letterbox", r"meta\.preprocessing: expected a JSON object"),
        ("spec", {"data": {"image_size": "64"}}, r"meta\.spec\.data\.image_size: expected an integer"),
        ("spec", {"train": []}, r"meta\.spec\.train: expected a JSON object"),
        ("min_area", -1, r"meta\.min_area: expected an integer >= 0"),
        ("tau", 0, r"meta\.tau: expected a positive number"),
        ("source", "refit", r"meta\.source: expected a JSON object"),
        ("num_classes", 0, r"model_config\.num_classes: expected an integer >= 2, got 0"),
        ("encoder_depth", "5", r"model_config\.encoder_depth: expected an integer"),
        ("encoder", "no-such-encoder", r"model_config: .*unknown encoder 'no-such-encoder'"),
        ("decoder_options", {"decoder_channels": -3}, r"model_config: \w+Error: "),
    ],
)
def test_crafted_metadata_is_a_bundle_error_naming_the_field(
    tiny: Path, tmp_path: Path, field: str, value: Any, message: str
) -> None:
    if field in ("meta", "model_config", "libraries"):
        changes = {field: value}
    elif field in ("num_classes", "encoder_depth", "encoder", "decoder_options"):
        changes = {"model_config": json.dumps({**TINY, field: value})}
    else:
        changes = {"meta": json.dumps({**_meta_of(tiny), field: value})}
    bad = tmp_path / "bad.safetensors"
    _rewrite(tiny, bad, **changes)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(bad)
    assert str(bad) in str(info.value)


def test_shapes_are_compared_before_the_network_is_built(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decoder_channels 60000 would need about 130 GB: the header's shapes refuse it on the meta device."""
    built: list[str] = []
    original = JointNet.__init__

    def only_on_meta(self: JointNet, *args: Any, **kwargs: Any) -> None:
        built.append(torch.get_default_device().type)
        if built[-1] != "meta":
            raise AssertionError("a real network was built before the tensor shapes were checked")
        original(self, *args, **kwargs)

    monkeypatch.setattr(JointNet, "__init__", only_on_meta)
    huge = tmp_path / "huge.safetensors"
    _rewrite(
        tiny, huge, model_config=json.dumps({**TINY, "decoder_options": {"decoder_channels": [60000] * 5}})
    )
    with pytest.raises(
        BundleError,
        match=r"'decoder\.blocks\.0\.conv1\.0\.weight' is \[8, \d+, 3, 3\] in the file "
        r"but \[60000, \d+, 3, 3\] in the network",
    ) as info:
        load_bundle(huge)
    assert "model_config" in str(info.value) and built == ["meta"]


def test_bundles_are_readable_by_others_unless_asked(tiny: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(tiny.stat().st_mode) == 0o644  # safetensors alone writes 0600
    model = build_model(TINY).eval()
    private = save_bundle(tmp_path / "private.safetensors", model, mode=0o600)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_bundle(private)[0].config.decoder_options == TINY["decoder_options"]


def test_compiled_model_saves_its_network(tmp_path: Path) -> None:
    model = build_model({"encoder": "tu-test_resnet"}).eval()
    path = save_bundle(tmp_path / "c.safetensors", torch.compile(model, backend="eager"))
    loaded, _ = load_bundle(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(TypeError, match="expects a JointNet"):
        save_bundle(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))

"""Pretrained weights: offline cache only (no download is ever attempted), exact loads, clear errors."""

from __future__ import annotations

import json
import socket
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model_zoo import weights as W
from model_zoo.build import build_model
from model_zoo.encoders import build_encoder


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty private HF and torch hub caches, and a network that fails loudly if anything dials out."""
    import huggingface_hub.constants

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    return tmp_path


def _put_hf(cache: Path, repo: str, revision: str | None, files: dict[str, bytes]) -> None:
    """Lay files out the way huggingface_hub caches them (refs/main -> snapshots/<sha>/...)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    sha = revision or "0123456789abcdef0123456789abcdef01234567"
    if revision is None:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def _safetensors_bytes(state: dict[str, torch.Tensor], tmp: Path) -> bytes:
    path = tmp / "tmp.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path.read_bytes()


@pytest.mark.parametrize(
    ("encoder", "names"),
    [
        ("mobilenet_v2", ["smp-hub/mobilenet_v2.imagenet", "model.safetensors"]),
        (
            "tu-test_efficientnet",
            ["timm/test_efficientnet.r160_in1k", "model.safetensors or pytorch_model.bin"],
        ),
        ("tv-shufflenet_v2_x0_5", ["shufflenetv2_x0.5-f707e7126e.pth"]),
    ],
)
def test_missing_imagenet_names_file_and_fetch_command(offline: Path, encoder: str, names: list[str]) -> None:
    with pytest.raises(W.MissingWeightsError) as info:
        build_model({"encoder": encoder, "encoder_weights": "imagenet"})
    msg = str(info.value)
    for text in [*names, f"python launch.py fetch-weights {encoder}", "encoder_weights: null"]:
        assert text in msg
    assert isinstance(info.value, FileNotFoundError)


def test_imagenet_from_hf_cache_timm(offline: Path) -> None:
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("test_efficientnet").state_dict()
    _put_hf(
        offline / "hf",
        "timm/test_efficientnet.r160_in1k",
        None,
        {"model.safetensors": _safetensors_bytes(reference, offline)},
    )
    enc = build_encoder("tu-test_efficientnet", "imagenet")
    own = enc.model.state_dict()
    assert len(own) > 20 and set(own) <= set(reference)  # timm drops the head for features_only
    assert all(torch.equal(v, reference[k]) for k, v in own.items())


def test_imagenet_from_hf_cache_smp_with_its_normalisation(offline: Path) -> None:
    from segmentation_models_pytorch.encoders import encoders, get_encoder

    torch.manual_seed(2)
    state = get_encoder("mobilenet_v2", weights=None).state_dict()
    reference = {k: v + 0.5 if v.is_floating_point() else v for k, v in state.items()}
    settings = encoders["mobilenet_v2"]["pretrained_settings"]["imagenet"]
    config = json.dumps({"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}).encode()
    _put_hf(
        offline / "hf",
        settings["repo_id"],
        settings["revision"],
        {"config.json": config, "model.safetensors": _safetensors_bytes(reference, offline)},
    )
    model = build_model({"encoder": "mobilenet_v2", "encoder_weights": "imagenet"})
    own = model.encoder.state_dict()
    assert all(torch.equal(own[k], v) for k, v in reference.items())
    assert model.input_mean.flatten().tolist() == pytest.approx([0.4] * 3)


def test_imagenet_from_torch_hub_cache_torchvision(offline: Path) -> None:
    from torchvision.models import shufflenet_v2_x0_5

    torch.manual_seed(3)
    reference = shufflenet_v2_x0_5().state_dict()
    (cached,) = W.sources("tv-shufflenet_v2_x0_5")
    path = cached.url_path()
    assert path.parent == offline / "torch" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.save(reference, path)
    enc = build_encoder("tv-shufflenet_v2_x0_5", "imagenet")
    own = {k.removeprefix("body."): v for k, v in enc.state_dict().items()}
    assert len(own) > 100 and all(torch.equal(v, reference[k]) for k, v in own.items())
    assert W.fetch("tv-shufflenet_v2_x0_5") == [path]  # already cached: fetch returns it, no network


def test_fetch_writes_where_the_libraries_read() -> None:
    from timm.models._hub import get_cache_dir

    (cached,) = W.sources("tu-inception_v3")  # hf-hub id in timm's config
    assert cached.kind == "hf" and cached.repo_id == "timm/inception_v3.tv_in1k"
    (tv,) = W.sources("tv-googlenet")
    assert tv.url_path().parent == Path(
        get_cache_dir()
    )  # timm and torchvision share torch hub's checkpoints/


def test_named_weights_must_exist() -> None:
    with pytest.raises(ValueError, match="no weights named 'imagenett'; valid: imagenet, ssl, swsl"):
        W.sources("resnet18", "imagenett")
    with pytest.raises(ValueError, match="tag in the name"):
        W.sources("tu-resnet18", "ssl")


def test_path_pth_with_plain_timm_keys(tmp_path: Path) -> None:
    import timm

    torch.manual_seed(4)
    reference = timm.create_model("test_resnet").state_dict()  # classifier keys too, no "model." prefix
    path = tmp_path / "w.pth"
    torch.save({"state_dict": reference, "epoch": 3}, path)
    with pytest.warns(UserWarning, match=r"unexpected \(fc\.weight, fc\.bias\)"):
        enc = build_encoder("tu-test_resnet", str(path))
    assert torch.equal(enc.model.conv1[0].weight, reference["conv1.0.weight"])


def test_path_safetensors_from_a_whole_model_loads_exactly(tmp_path: Path) -> None:
    torch.manual_seed(5)
    donor = build_model({"encoder": "tu-test_resnet"})
    path = tmp_path / "donor.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every key matches: nothing to report
        model = build_model({"encoder": "tu-test_resnet", "encoder_weights": str(path)})
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, donor.encoder.state_dict()[key]), key


def test_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_encoder("tu-test_resnet", str(tmp_path / "nope.pth"))
    unrelated = tmp_path / "unrelated.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, str(unrelated))
    with pytest.raises(ValueError, match="no tensor matches the encoder"):
        build_encoder("tu-test_resnet", str(unrelated))
    pickled = tmp_path / "code.pth"
    torch.save({"obj": W.LoadReport("x")}, pickled)  # an arbitrary object needs unpickling code
    with pytest.raises(ValueError, match="weights-only"):
        build_encoder("tu-test_resnet", str(pickled))


def test_fetch_warms_the_cache_that_builds_read(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`launch.py fetch-weights` then an offline build: the downloaders are faked, the cache layout is
    real."""
    import huggingface_hub
    import timm
    from torchvision.models import shufflenet_v2_x0_5

    torch.manual_seed(6)
    timm_state = timm.create_model("test_efficientnet").state_dict()
    tv_state = shufflenet_v2_x0_5().state_dict()
    calls: list[str] = []

    def fake_hf(
        repo_id: str, filename: str, revision: str | None = None, cache_dir: str | None = None
    ) -> str:
        calls.append(f"{repo_id}/{filename}")
        assert cache_dir == huggingface_hub.constants.HF_HUB_CACHE
        _put_hf(Path(cache_dir), repo_id, revision, {filename: _safetensors_bytes(timm_state, offline)})
        return str(W.CachedFile("hf", repo_id, (filename,), revision).find())

    def fake_url(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        torch.save(tv_state, dst)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_hf)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_url)
    with pytest.raises(W.MissingWeightsError):
        build_encoder("tu-test_efficientnet", "imagenet")
    W.fetch("tu-test_efficientnet")
    W.fetch("tv-shufflenet_v2_x0_5")
    assert calls == [
        "timm/test_efficientnet.r160_in1k/model.safetensors",
        W.sources("tv-shufflenet_v2_x0_5")[0].url,
    ]
    enc = build_encoder("tu-test_efficientnet", "imagenet")
    assert all(torch.equal(v, timm_state[k]) for k, v in enc.model.state_dict().items())
    tv = build_encoder("tv-shufflenet_v2_x0_5", "imagenet")
    assert torch.equal(tv.state_dict()["body.conv1.0.weight"], tv_state["conv1.0.weight"])
    W.fetch("tu-test_efficientnet")  # already cached: no second download
    assert len(calls) == 2


def test_missing_weight_file_is_a_missing_weights_error(tmp_path: Path) -> None:
    """A search stops (instead of retrying) on MissingWeightsError: a missing file must be one too."""
    with pytest.raises(W.MissingWeightsError, match=r"nope\.pth"):
        W.read_state_dict(tmp_path / "nope.pth")


def test_absolute_path_keeps_names_and_anchors_relative_files(tmp_path: Path) -> None:
    assert W.absolute_path(None) is None
    assert W.absolute_path("imagenet", tmp_path) == "imagenet"
    assert W.absolute_path("w/enc.pth", tmp_path) == str(tmp_path / "w" / "enc.pth")
    assert W.absolute_path("./enc.safetensors", tmp_path) == str(tmp_path / "enc.safetensors")
    assert W.absolute_path(str(tmp_path / "a" / ".." / "b.pth"), "/elsewhere") == str(tmp_path / "b.pth")
    assert W.absolute_path("~/enc.pth") == str(Path.home() / "enc.pth")


def test_file_problem_names_what_is_wrong_without_reading(tmp_path: Path) -> None:
    good = tmp_path / "enc.safetensors"
    save_file({"x": torch.zeros(1)}, str(good))
    assert W.file_problem(str(good)) is None
    assert "relative path" in str(W.file_problem("enc.pth"))
    assert "does not exist" in str(W.file_problem(str(tmp_path / "nope.pth")))
    (tmp_path / "enc.npz").write_bytes(b"x")
    assert "expected one of" in str(W.file_problem(str(tmp_path / "enc.npz")))

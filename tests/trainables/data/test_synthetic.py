"""The built-in synthetic set: BUSI layout, determinism, ultrasound-like lesion traits, planted
duplicates the audit finds, and learnability by a small CNN."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import ConvexHull

from trainables.data.synthetic import CLASSES, DUPLICATE_PLAN, MANIFEST_NAME, make_synthetic, read_manifest

DEFAULT_COUNTS = (27, 87, 42)
NAME = re.compile(r"^(normal|benign|malignant) \((\d+)\)(_mask(_\d+)?)?\.png$")


GENERATION_SECONDS: dict[str, float] = {}


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default set (27 / 87 / 42 images at 128 px, seed 0), written once for the module."""
    start = time.perf_counter()
    root = make_synthetic(tmp_path_factory.mktemp("synthetic") / "set")
    GENERATION_SECONDS["default"] = time.perf_counter() - start
    return root


def _gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _masks(root: Path, cls: str) -> list[tuple[Path, np.ndarray]]:
    return [(p, _gray(p) > 0) for p in sorted((root / cls).glob("* (*)_mask.png"))]


def _copies(root: Path) -> set[str]:
    return {d["copy"] for d in read_manifest(root)["duplicates"]}


def test_layout_names_and_counts(default_set: Path) -> None:
    assert sorted(p.name for p in default_set.iterdir()) == sorted([*CLASSES, MANIFEST_NAME])
    for cls, n in zip(CLASSES, DEFAULT_COUNTS):
        files = sorted(p.name for p in (default_set / cls).iterdir())
        assert all(NAME.match(f) and NAME.match(f).group(1) == cls for f in files), files
        images = [f for f in files if "_mask" not in f]
        assert sorted(int(NAME.match(f).group(2)) for f in images) == list(range(1, n + 1))
        for image in images:
            assert image.replace(".png", "_mask.png") in files
            with Image.open(default_set / cls / image) as im:
                assert im.mode == "L"
        for extra in (f for f in files if NAME.match(f).group(4)):
            assert NAME.match(extra).group(4) == "_1"  # at most two lesions
            assert f"{extra.split('_mask')[0]}.png" in files


def test_masks_are_binary_and_empty_for_normal(default_set: Path) -> None:
    for cls in CLASSES:
        for path in sorted((default_set / cls).glob("*_mask*.png")):
            with Image.open(path) as im:
                assert im.mode == "L"
                mask = np.asarray(im)
            assert set(np.unique(mask)) <= {0, 255}, path
            assert mask.shape == _gray(path.with_name(path.name.split("_mask")[0] + ".png")).shape
            assert mask.any() if cls != "normal" else not mask.any(), path


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    kwargs = {"n_per_class": (4, 5, 4), "size": 48}
    a = make_synthetic(tmp_path / "a", seed=3, **kwargs)
    b = make_synthetic(tmp_path / "b", seed=3, **kwargs)
    c = make_synthetic(tmp_path / "c", seed=4, **kwargs)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / MANIFEST_NAME).read_text() == (b / MANIFEST_NAME).read_text()
    image = Path("benign/benign (1).png")
    assert (a / image).read_bytes() != (c / image).read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_per_class": (3, 0, 3)}, "benign count"),
        ({"n_per_class": (3, -1, 3)}, "benign count"),
        ({"n_per_class": (3, 3)}, "expected 3 counts"),
        ({"n_per_class": (1, 2, 3, 4)}, "expected 3 counts"),
        ({"n_per_class": (2, 2.5, 2)}, "positive integer"),
        ({"size": 31}, "size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_synthetic(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_never_overwrites_a_foreign_folder_but_replaces_its_own(tmp_path: Path) -> None:
    user = tmp_path / "user"
    (user / "benign").mkdir(parents=True)
    (user / "benign" / "mine.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a synthetic set"):
        make_synthetic(user, n_per_class=(2, 2, 2), size=32)
    assert (user / "benign" / "mine.png").read_bytes() == b"x"
    with pytest.raises(ValueError, match="no synthetic manifest"):
        read_manifest(user)

    own = make_synthetic(tmp_path / "own", n_per_class=np.array([3, 3, 3]), size=np.int64(32))
    make_synthetic(own, n_per_class=(2, 2, 2), size=32)
    assert not (own / "benign" / "benign (3).png").exists()  # no stale files from the larger set
    assert read_manifest(own)["params"]["n_per_class"] == [2, 2, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left


def _shape(mask: np.ndarray) -> tuple[float, float]:
    """(bounding-box width / height, solidity = area / convex hull area) of one lesion mask."""
    ys, xs = np.nonzero(mask)
    aspect = (np.ptp(xs) + 1) / (np.ptp(ys) + 1)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    return aspect, mask.sum() / ConvexHull(corners).volume


def test_lesion_shapes_benign_oval_wide_malignant_tall_irregular(default_set: Path) -> None:
    stats = {
        cls: np.array([_shape(m) for _, m in _masks(default_set, cls)]) for cls in ("benign", "malignant")
    }
    benign, malignant = stats["benign"], stats["malignant"]
    assert benign[:, 0].mean() > 1.25 and np.mean(benign[:, 0] > 1) > 0.7
    assert malignant[:, 0].mean() < 0.95 and np.mean(malignant[:, 0] < 1) > 0.7
    assert benign[:, 1].mean() > 0.9
    assert malignant[:, 1].mean() < benign[:, 1].mean() - 0.08
    # the classes overlap a little: some benign lesions are not wider than tall, some malignant are
    assert np.mean(benign[:, 0] <= 1.2) > 0.03 and np.mean(malignant[:, 0] >= 0.95) > 0.03


def _posterior_contrast(image: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean gray below the lesion minus beside it at the same depth; None if no room below."""
    ys, xs = np.nonzero(mask)
    x0, x1, bottom = xs.min(), xs.max() + 1, ys.max() + 1
    depth = max(4, (bottom - ys.min()) // 2)
    rows = slice(bottom + 2, bottom + 2 + depth)
    if rows.stop > image.shape[0]:
        return None
    width = x1 - x0
    beside = np.concatenate(
        [image[rows, max(0, x0 - width) : x0].ravel(), image[rows, x1 : x1 + width].ravel()]
    )
    return float(image[rows, x0:x1].mean() - beside.mean())


def test_malignant_lesions_cast_posterior_shadows(default_set: Path) -> None:
    contrast = {}
    for cls in ("benign", "malignant"):
        values = []
        for path, mask in _masks(default_set, cls):
            image = _gray(path.with_name(path.name.replace("_mask", "")))
            value = _posterior_contrast(image.astype(np.float64), mask)
            if value is not None:
                values.append(value)
        contrast[cls] = np.array(values)
    assert len(contrast["malignant"]) > 30
    assert contrast["malignant"].mean() < -15 and np.mean(contrast["malignant"] < 0) > 0.85
    assert contrast["benign"].mean() > 0  # posterior enhancement on average


def test_lesions_are_hypoechoic(default_set: Path) -> None:
    for cls in ("benign", "malignant"):
        darker = []
        for path, mask in _masks(default_set, cls):
            image = _gray(path.with_name(path.name.replace("_mask", ""))).astype(np.float64)
            ys, xs = np.nonzero(mask)
            ring = np.zeros_like(mask)
            ring[max(0, ys.min() - 6) : ys.max() + 7, max(0, xs.min() - 6) : xs.max() + 7] = True
            darker.append(image[mask].mean() < image[ring & ~mask].mean() - 15)
        assert np.mean(darker) > 0.85, cls


def test_two_lesion_images_have_separate_second_masks(default_set: Path) -> None:
    manifest = read_manifest(default_set)
    second = sorted(p for p in default_set.rglob("*_mask_1.png"))
    listed = sorted(f"{p.parent.name}/{p.name.replace('_mask_1', '')}" for p in second)
    assert listed == sorted(manifest["multi_lesion"])
    assert 2 <= len(second) <= 8
    assert not any(p.parent.name == "normal" for p in second)
    for path in second:
        first, other = _gray(path.with_name(path.name.replace("_mask_1", "_mask"))) > 0, _gray(path) > 0
        assert first.any() and other.any() and not (first & other).any()


def test_planted_duplicates_are_in_the_manifest_and_near_identical(default_set: Path) -> None:
    from trainables.data.dedup import DUPLICATE_THRESHOLD, hamming, image_hash

    manifest = read_manifest(default_set)
    assert manifest["params"] == {
        "n_per_class": list(DEFAULT_COUNTS),
        "size": 128,
        "seed": 0,
        "duplicates": True,
    }
    planted = manifest["duplicates"]
    assert sorted((d["class"], d["kind"]) for d in planted) == sorted(DUPLICATE_PLAN)
    for dup in planted:
        source, copy = default_set / dup["source"], default_set / dup["copy"]
        assert source.parent.name == copy.parent.name == dup["class"]  # never across classes
        a, b = _gray(source), _gray(copy)
        if dup["kind"] == "exact":
            assert source.read_bytes() == copy.read_bytes()
        else:
            assert source.read_bytes() != copy.read_bytes()
        resized = np.asarray(Image.fromarray(b).resize(a.shape[::-1], Image.Resampling.BILINEAR), np.float64)
        assert np.corrcoef(a.ravel(), resized.ravel())[0, 1] > 0.8, dup
        assert hamming(image_hash(a), image_hash(b)) <= DUPLICATE_THRESHOLD * 3 // 4, dup
        src_mask = _gray(source.with_name(source.stem + "_mask.png"))
        copy_mask = _gray(copy.with_name(copy.stem + "_mask.png"))
        assert copy_mask.shape == b.shape and copy_mask.any() == src_mask.any()


def test_no_duplicates_when_disabled_or_classes_too_small(tmp_path: Path) -> None:
    assert (
        read_manifest(make_synthetic(tmp_path / "off", (5, 5, 5), 32, duplicates=False))["duplicates"] == []
    )
    assert read_manifest(make_synthetic(tmp_path / "tiny", (2, 3, 3), 32))["duplicates"] == []


def test_audit_finds_exactly_the_planted_duplicates(default_set: Path) -> None:
    from trainables.data.audit import audit_folder

    report = audit_folder(default_set, workers=1)
    manifest = read_manifest(default_set)
    assert report["images"] == sum(DEFAULT_COUNTS)
    assert report["classes"] == dict(zip(CLASSES, DEFAULT_COUNTS))
    assert sorted(map(sorted, report["duplicate_groups"])) == sorted(
        sorted([d["source"], d["copy"]]) for d in manifest["duplicates"]
    )
    assert report["cross_class_duplicates"] == []
    assert report["multi_mask_images"] == sorted(manifest["multi_lesion"])
    assert report["orphan_masks"] == report["missing_masks"] == report["unreadable"] == []
    assert report["ignored_files"] == [MANIFEST_NAME]


def test_default_set_is_fast(default_set: Path) -> None:
    # about 2-3 s on 2 idle cores; the bound is generous for a loaded CI machine
    assert GENERATION_SECONDS["default"] < 30


@pytest.mark.slow
def test_small_cnn_learns_it_but_not_trivially(default_set: Path) -> None:
    """A 4-block CNN at 64 px, 25 epochs on ~106 images, clearly beats chance on ~46 held-out images."""
    import torch
    from sklearn.metrics import balanced_accuracy_score
    from torch import nn

    copies = _copies(default_set)
    images, labels = [], []
    for label, cls in enumerate(CLASSES):
        for path in sorted((default_set / cls).glob("* (*).png")):
            if f"{cls}/{path.name}" not in copies:  # keep planted duplicates out of the held-out part
                images.append(np.asarray(Image.open(path).resize((64, 64), Image.Resampling.BILINEAR)))
                labels.append(label)
    x = torch.tensor(np.stack(images), dtype=torch.float32)[:, None] / 255
    y = torch.tensor(labels)
    gen = torch.Generator().manual_seed(0)
    train, test = [], []
    for c in range(len(CLASSES)):
        idx = torch.nonzero(y == c).ravel()
        idx = idx[torch.randperm(len(idx), generator=gen)].tolist()
        k = round(0.3 * len(idx))
        test, train = test + idx[:k], train + idx[k:]

    torch.manual_seed(0)

    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]

    net = nn.Sequential(
        *block(1, 16),
        *block(16, 32),
        *block(32, 48),
        *block(48, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, len(CLASSES)),
    )
    epochs, batch = 25, 16
    counts = torch.bincount(y[train], minlength=len(CLASSES)).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(CLASSES) * counts))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * -(-len(train) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    train_idx = torch.tensor(train)
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for b in range(0, len(order), batch):
            xb, yb = x[order[b : b + batch]], y[order[b : b + batch]]
            flip = torch.rand(len(xb), generator=gen) < 0.5  # left-right only: depth has a direction
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(x[test]).argmax(1)
    score = balanced_accuracy_score(y[test].numpy(), pred.numpy())
    print(
        f"held-out balanced accuracy {score:.3f} ({len(train)} train, {len(test)} test, "
        f"{time.perf_counter() - start:.1f} s)"
    )
    assert score > 0.6

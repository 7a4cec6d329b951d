"""Segment and classify new images with a model bundle: one image, or a folder with a progress bar.

The bundle is loaded once (safetensors, no pickle) and carries its preprocessing: the working size and
resize mode (``letterbox`` pads, ``stretch`` scales); the network normalises its input itself. Each image
is read as gray, resized like the training data, run in float32 (with ``tta``: averaged with its
horizontal flip), and the lesion probability map is mapped back to the original size
(:func:`trainables.data.resize.undo_resize`) and thresholded by :func:`trainables.metrics.lesion_mask`
(the validation's rule). The same image always gives the same output: eval mode, no sampling,
deterministic kernels on the CPU.

Per image: class probabilities in the bundle's class order, the predicted class (arg-max), the lesion
area in pixels at the original size, and a consistency flag: ``normal_with_lesion`` (the classifier says
normal but at least ``min_area`` pixels are segmented) or ``lesion_class_without_lesion`` (a lesion class
but fewer pixels than that).
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainables.data.errors import DataError
from trainables.data.imageio import read_gray
from trainables.data.resize import resize_image, undo_resize
from trainables.metrics import lesion_mask, lesion_probs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MASK_STEM = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
DEFAULT_MIN_AREA = 10


class PredictError(ValueError):
    """Bad input to predict (a missing path, a file that is not a bundle, an unusable device)."""


def forward_probs(
    models: Sequence[torch.nn.Module], x: torch.Tensor, tta: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean lesion probability ``[B,1,H,W]`` and class probabilities ``[B,K]`` over ``models`` (and the
    horizontal flip of ``x`` with ``tta``); probabilities are averaged, not logits."""
    seg_sum = cls_sum = None
    n = 0
    views = [False, True] if tta else [False]
    with torch.inference_mode():
        for model in models:
            for flip in views:
                inp = torch.flip(x, dims=[-1]) if flip else x
                seg_logits, cls_logits = model(inp)
                seg = lesion_probs(seg_logits)
                if flip:
                    seg = torch.flip(seg, dims=[-1])
                cls = torch.softmax(cls_logits.float(), dim=1)
                seg_sum = seg if seg_sum is None else seg_sum + seg
                cls_sum = cls if cls_sum is None else cls_sum + cls
                n += 1
    return seg_sum / n, cls_sum / n


def predict_arrays(
    models: Sequence[torch.nn.Module],
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 16,
    tta: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Working-size ``uint8[N,S,S]`` images -> lesion probabilities ``float32[N,S,S]`` and class
    probabilities ``float64[N,K]`` (``progress``: a bar per batch on stderr)."""
    from tqdm import tqdm

    segs, clss = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(
        starts, desc="predict", unit="batch", disable=not progress, file=sys.stderr, leave=False
    ):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        x = batch.to(device).unsqueeze(1).float().div_(255.0)
        seg, cls = forward_probs(models, x, tta)
        segs.append(seg[:, 0].cpu().numpy().astype(np.float32))
        clss.append(cls.cpu().numpy().astype(np.float64))
    return np.concatenate(segs), np.concatenate(clss)


# ------------------------------------------------------------------------------------------ bundle


@dataclass
class Prediction:
    """One image's result, at its original size."""

    path: str
    probs: np.ndarray
    class_names: tuple[str, ...]
    prob_map: np.ndarray
    mask: np.ndarray
    flag: str

    @property
    def predicted(self) -> str:
        return self.class_names[int(np.argmax(self.probs))]

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())


def bundle_preprocessing(meta: dict[str, Any], path: str | Path) -> tuple[int, str]:
    """``(image_size, resize mode)`` from a bundle's meta (refit's ``preprocessing`` or a spec's ``data``)."""
    pre = meta.get("preprocessing") or {}
    data = (meta.get("spec") or {}).get("data") or {}
    size = pre.get("image_size") or meta.get("input_size") or meta.get("image_size") or data.get("image_size")
    mode = pre.get("resize") or data.get("resize")
    if not size or mode not in ("letterbox", "stretch"):
        raise PredictError(
            f"{path}: the bundle does not record its preprocessing (image size {size!r}, resize {mode!r}); "
            "write bundles with launch.py refit"
        )
    return int(size), str(mode)


def consistency_flag(predicted: str, area_px: int, min_area: int, class_names: Sequence[str]) -> str:
    """``normal_with_lesion``, ``lesion_class_without_lesion`` or '' (see the module docstring)."""
    if "normal" not in class_names:
        return ""
    lesion = area_px >= max(1, min_area)
    if predicted == "normal" and lesion:
        return "normal_with_lesion"
    if predicted != "normal" and not lesion:
        return "lesion_class_without_lesion"
    return ""


class Predictor:
    """A bundle loaded once on ``device``; :meth:`predict_file` / :meth:`predict_gray` per image."""

    def __init__(self, bundle: str | Path, device: str = "cpu", tta: bool = False) -> None:
        from model_zoo.bundle import BundleError, load_bundle
        from trainables.device import DeviceError, resolve_device

        path = Path(bundle)
        if not path.is_file():
            raise PredictError(
                f"--model {path}: no such file (expected a .safetensors bundle written by refit)"
            )
        try:
            self.device = resolve_device(device)
        except DeviceError as exc:
            raise PredictError(str(exc)) from None
        try:
            self.model, self.meta = load_bundle(path, self.device)
        except (BundleError, FileNotFoundError) as exc:
            raise PredictError(f"--model: {exc}") from None
        self.model.eval()
        names = self.meta.get("class_names") or list(getattr(self.model, "class_names", None) or [])
        if not names:
            raise PredictError(f"{path}: the bundle has no class names")
        self.class_names = tuple(str(n) for n in names)
        self.image_size, self.resize = bundle_preprocessing(self.meta, path)
        train = (self.meta.get("spec") or {}).get("train") or {}
        self.min_area = int(self.meta.get("min_area", train.get("min_area", DEFAULT_MIN_AREA)))
        self.tta = tta
        self.path = path

    def predict_gray(self, gray: np.ndarray, path: str = "") -> Prediction:
        """Predict one gray ``uint8[H,W]`` image."""
        work, info = resize_image(gray, self.image_size, self.resize)
        seg, cls = predict_arrays([self.model], work[None], self.device, tta=self.tta)
        prob_map = undo_resize(seg[0], info).astype(np.float32)
        mask = lesion_mask(prob_map)
        probs = cls[0]
        predicted = self.class_names[int(np.argmax(probs))]
        flag = consistency_flag(predicted, int(mask.sum()), self.min_area, self.class_names)
        return Prediction(path, probs, self.class_names, prob_map, mask, flag)

    def predict_file(self, path: str | Path) -> tuple[Prediction, np.ndarray]:
        """Read and predict one file; :class:`DataError` naming the file when it cannot be read."""
        gray = read_gray(path)
        return self.predict_gray(gray, str(path)), gray


# ---------------------------------------------------------------------------------------- pictures


def _contour(mask: np.ndarray, width: int) -> np.ndarray:
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask, iterations=1, border_value=0)
    return ndimage.binary_dilation(edge, iterations=width - 1) if width > 1 and edge.any() else edge


def line_width(shape: tuple[int, ...]) -> int:
    """Contour width in pixels for an image of ``shape`` (1 px per 256 px of the longer side)."""
    return max(1, round(max(shape[:2]) / 256))


def overlay(
    gray: np.ndarray,
    prob_map: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    gt: np.ndarray | None = None,
) -> np.ndarray:
    """RGB ``uint8[H,W,3]``: the image, the lesion probability as a heat map (transparent where 0),
    the predicted contour in red and the ground-truth contour in green."""
    import matplotlib

    rgb = np.repeat(gray[..., None].astype(np.float32) / 255.0, 3, axis=-1)
    if prob_map is not None:
        heat = matplotlib.colormaps["inferno"](np.clip(prob_map, 0, 1))[..., :3]
        alpha = (0.5 * np.clip(prob_map, 0, 1))[..., None]
        rgb = rgb * (1 - alpha) + heat * alpha
    width = line_width(gray.shape)
    if gt is not None:
        rgb[_contour(gt.astype(bool), width)] = (0.1, 0.9, 0.1)
    if mask is not None:
        rgb[_contour(mask.astype(bool), width)] = (1.0, 0.15, 0.15)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def save_mask(mask: np.ndarray, path: str | Path) -> Path:
    """The mask as a 0/255 gray PNG at its own (original) size."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)
    return path


def save_overlay(pred: Prediction, gray: np.ndarray, path: str | Path) -> Path:
    """:func:`overlay` of a prediction as PNG at the original size."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(gray, pred.prob_map, pred.mask)).save(path)
    return path


def save_visualization(pred: Prediction, gray: np.ndarray, path: str | Path) -> Path:
    """A figure: the image with heat map and contour, and the class probabilities as bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(11, 5), width_ratios=[1.4, 1], layout="constrained")
    ax_img.imshow(overlay(gray, pred.prob_map, pred.mask))
    ax_img.set_axis_off()
    ax_img.set_title(
        f"{Path(pred.path).name}: lesion {pred.area_px} px (red contour, heat = probability)", fontsize=10
    )
    colors = ["#d62728" if n == pred.predicted else "#9ecae1" for n in pred.class_names]
    bars = ax_bar.bar(pred.class_names, pred.probs, color=colors, edgecolor="black")
    for bar, p in zip(bars, pred.probs):
        ax_bar.annotate(
            f"{p:.2f}",
            (bar.get_x() + bar.get_width() / 2, p),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
        )
    ax_bar.set_ylim(0, 1.1)
    ax_bar.set_ylabel("probability")
    title = f"predicted: {pred.predicted}"
    if pred.flag:
        title += f"\n(warning: {pred.flag.replace('_', ' ')})"
    ax_bar.set_title(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ folder


def list_images(folder: str | Path) -> tuple[list[Path], list[Path]]:
    """Image files under ``folder`` (recursive, sorted) and the ``*_mask*`` files left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"--input-dir {folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    masks = [p for p in files if _MASK_STEM.search(p.stem)]
    return [p for p in files if not _MASK_STEM.search(p.stem)], masks


@dataclass
class FolderResult:
    """What a folder run produced: predictions, failures (path, reason), the CSV paths."""

    predictions: list[Prediction]
    failures: list[tuple[str, str]]
    csv_path: Path
    skipped_masks: int


def predict_folder(
    predictor: Predictor,
    input_dir: str | Path,
    out_dir: str | Path,
    progress: bool = True,
    on_error: Callable[[str, str], None] | None = None,
) -> FolderResult:
    """Every image of ``input_dir``: masks and overlays mirrored under ``out_dir``, ``predictions.csv``;
    an unreadable file is reported (``failures.csv``, ``on_error``) and skipped."""
    from tqdm import tqdm

    input_dir, out_dir = Path(input_dir), Path(out_dir)
    files, masks = list_images(input_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds: list[Prediction] = []
    failures: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    for file in tqdm(files, desc="predict", unit="img", disable=not progress):
        rel = file.relative_to(input_dir)
        try:
            pred, gray = predictor.predict_file(file)
        except DataError as exc:
            failures.append((str(file), exc.reason if getattr(exc, "reason", None) else str(exc)))
            if on_error is not None:
                on_error(str(file), str(exc))
            continue
        stem = rel.with_suffix("")
        mask_path = save_mask(pred.mask, out_dir / "masks" / f"{stem}_mask.png")
        overlay_path = save_overlay(pred, gray, out_dir / "overlays" / f"{stem}_overlay.png")
        preds.append(pred)
        rows.append(_csv_row(pred, rel.as_posix(), mask_path, overlay_path, out_dir))
    csv_path = out_dir / "predictions.csv"
    _write_csv(csv_path, rows, predictor.class_names)
    if failures:
        with (out_dir / "failures.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "error"])
            writer.writerows(failures)
    return FolderResult(preds, failures, csv_path, len(masks))


def _csv_row(
    pred: Prediction, rel: str, mask_path: Path, overlay_path: Path, out_dir: Path
) -> dict[str, Any]:
    row: dict[str, Any] = {"path": rel}
    row.update({f"prob_{n}": f"{p:.6f}" for n, p in zip(pred.class_names, pred.probs)})
    row.update(
        predicted_class=pred.predicted,
        lesion_area_px=pred.area_px,
        flag=pred.flag,
        mask=mask_path.relative_to(out_dir).as_posix(),
        overlay=overlay_path.relative_to(out_dir).as_posix(),
    )
    return row


def _write_csv(path: Path, rows: Iterable[dict[str, Any]], class_names: Sequence[str]) -> None:
    fields = [
        "path",
        *(f"prob_{n}" for n in class_names),
        "predicted_class",
        "lesion_area_px",
        "flag",
        "mask",
        "overlay",
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def format_probs(pred: Prediction) -> str:
    """``normal 0.10  benign 0.75  malignant 0.15 -> benign`` for the terminal."""
    parts = "  ".join(f"{n} {p:.4f}" for n, p in zip(pred.class_names, pred.probs))
    flag = f"  [{pred.flag}]" if pred.flag else ""
    return f"{parts}  -> {pred.predicted} (lesion {pred.area_px} px){flag}"

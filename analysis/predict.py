"""Segment and classify new images with a model bundle: one image, or a folder with a progress bar.

The bundle is loaded once (safetensors, no pickle) and carries its preprocessing: the working size and
resize mode (``letterbox`` pads, ``stretch`` scales); the network normalises its input itself. Each image
is read as gray, resized like the training data, run with the validation's precision (``train.amp:
auto``: bf16 autocast on CUDA; on a CPU with bf16 hardware whichever of bf16 and float32 a timed forward
finds faster (:func:`inference_amp`, once per machine, architecture and size), elsewhere float32;
``amp="off"`` forces float32) and ``channels_last`` weights (together 3x the fp32 NCHW images/s on the
AMD CPU; with ``tta``: averaged with its horizontal flip), and the lesion probability map is mapped back
to the original size (:func:`trainables.data.resize.undo_resize`) and thresholded by
:func:`trainables.metrics.lesion_mask` (the validation's rule). The same image always gives the same
output on a machine: eval mode, no sampling, deterministic kernels on the CPU, one cached precision.

Per image: class probabilities in the bundle's class order, the predicted class (arg-max), the lesion
area in pixels at the original size, and a consistency flag: ``normal_with_lesion`` (the classifier says
normal but at least ``min_area`` pixels are segmented) or ``lesion_class_without_lesion`` (a lesion class
but fewer pixels than that).

Outputs never destroy inputs (:func:`check_outputs`): an output that is an input file is refused, and so,
unless forced, is one inside the input folder tree or over an existing mask that predict did not write
(ground truth); predict's own PNGs carry a ``Software`` text chunk that tells them apart. Masks are
written at the original size; overlays and figures are drawn at most :data:`OVERLAY_MAX_SIDE` pixels
on their longest side, so a huge image does not cost its size in float64 RGB.
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

from model_zoo.errors import UserError
from trainables.data.errors import DataError, listing
from trainables.data.imageio import read_gray
from trainables.data.resize import resize_image, undo_resize
from trainables.metrics import gate_lesion, lesion_mask, lesion_probs

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MASK_STEM = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
DEFAULT_MIN_AREA = 10
OVERLAY_MAX_SIDE = 1024  # longest side of overlays and figures, px (masks stay at full size)
OUTPUT_TAG = "bus-search predict"  # PNG "Software" text of every file predict writes


class PredictError(UserError, ValueError):
    """Bad input to predict (a missing path, a file that is not a bundle, an unusable device)."""


def forward_probs(
    models: Sequence[torch.nn.Module], x: torch.Tensor, tta: bool = False, amp: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean lesion probability ``[B,1,H,W]`` and class probabilities ``[B,K]`` over ``models`` (and the
    horizontal flip of ``x`` with ``tta``); probabilities are averaged, not logits. ``amp`` as
    ``train.amp`` (:func:`trainables.device.amp_settings`); the models are put in ``channels_last``
    (in place, the values unchanged; they stay trainable)."""
    from trainables.device import amp_settings, autocast, to_channels_last

    seg_sum = cls_sum = None
    n = 0
    views = [False, True] if tta else [False]
    models = [to_channels_last(model) for model in models]
    with torch.inference_mode(), autocast(x.device, amp_settings(x.device, amp)):
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


def inference_amp(model: torch.nn.Module, images: np.ndarray, device: torch.device, amp: str = "auto") -> str:
    """``amp``, with ``auto`` on a CPU with bf16 hardware decided by timing ``model``'s forward on images
    of this size in both precisions (:func:`trainables.cpu_precision.choose_inference_amp`: one answer per
    architecture, image size and machine, shared with the loop's validation): bf16 is slower than float32
    on some of those CPUs."""
    from trainables.cpu_precision import choose_inference_amp, needs_probe

    if not needs_probe(device, amp):
        return amp
    config = getattr(model, "config_dict", None)
    size = sum(p.numel() for p in model.parameters())
    model_id = config() if callable(config) else f"{type(model).__name__}:{size}"
    return choose_inference_amp(model, tuple(images.shape[-2:]), model_id=model_id).amp


def predict_arrays(
    models: Sequence[torch.nn.Module],
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 16,
    tta: bool = False,
    progress: bool = False,
    amp: str = "auto",
    lesion_gate: str = "none",
) -> tuple[np.ndarray, np.ndarray]:
    """Working-size ``uint8[N,S,S]`` images -> lesion probabilities ``float32[N,S,S]`` and class
    probabilities ``float64[N,K]`` (``progress``: a bar per batch on stderr; ``amp``: see
    :func:`forward_probs`; ``lesion_gate``: ``train.lesion_gate``, applied to the averaged
    probabilities by :func:`trainables.metrics.gate_lesion` with the first model's class names)."""
    from tqdm import tqdm

    amp = inference_amp(models[0], images, device, amp) if len(images) else amp
    segs, clss = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(
        starts, desc="predict", unit="batch", disable=not progress, file=sys.stderr, leave=False
    ):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
        x = batch.to(device).unsqueeze(1).float().div_(255.0)
        seg, cls = forward_probs(models, x, tta, amp)
        segs.append(seg[:, 0].cpu().numpy().astype(np.float32))
        clss.append(cls.cpu().numpy().astype(np.float64))
    seg_prob, probs = np.concatenate(segs), np.concatenate(clss)
    if lesion_gate != "none":
        names = getattr(models[0], "class_names", None) or ()
        seg_prob = gate_lesion(seg_prob, probs, lesion_gate, names)
    return seg_prob, probs


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
        self.lesion_gate = str(train.get("lesion_gate", "none"))
        self.tta = tta
        self.path = path

    def predict_gray(self, gray: np.ndarray, path: str = "") -> Prediction:
        """Predict one gray ``uint8[H,W]`` image."""
        work, info = resize_image(gray, self.image_size, self.resize)
        seg, cls = predict_arrays(
            [self.model], work[None], self.device, tta=self.tta, lesion_gate=self.lesion_gate
        )
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


def _pnginfo() -> Any:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", OUTPUT_TAG)
    return info


def is_own_output(path: str | Path) -> bool:
    """Whether ``path`` is a PNG that predict wrote (its ``Software`` text chunk), e.g. an earlier
    prediction that may be replaced, as opposed to a ground-truth mask."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get("Software") == OUTPUT_TAG
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def fit_for_display(
    gray: np.ndarray, prob_map: np.ndarray | None, mask: np.ndarray | None, max_side: int = OVERLAY_MAX_SIDE
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``gray``, ``prob_map`` and ``mask`` shrunk (area averaging) so that the longest side is at most
    ``max_side`` (0: unchanged), for drawing; a lesion pixel anywhere in a shrunk pixel keeps it lesion."""
    from PIL import Image

    h, w = gray.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return gray, prob_map, mask
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    box = Image.Resampling.BOX
    small = np.asarray(Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).resize(size, box))
    probs = None
    if prob_map is not None:
        probs = np.asarray(Image.fromarray(prob_map.astype(np.float32), mode="F").resize(size, box))
    lesion = None
    if mask is not None:
        lesion = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, box)) > 0
    return small, probs, lesion


def save_mask(mask: np.ndarray, path: str | Path) -> Path:
    """The mask as a 0/255 gray PNG at its own (original) size, tagged as predict's output."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, pnginfo=_pnginfo())
    return path


def save_overlay(
    pred: Prediction, gray: np.ndarray, path: str | Path, max_side: int = OVERLAY_MAX_SIDE
) -> Path:
    """:func:`overlay` of a prediction as PNG, at most ``max_side`` px on its longest side."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(*fit_for_display(gray, pred.prob_map, pred.mask, max_side))).save(
        path, pnginfo=_pnginfo()
    )
    return path


def save_visualization(
    pred: Prediction, gray: np.ndarray, path: str | Path, max_side: int = OVERLAY_MAX_SIDE
) -> Path:
    """A figure: the image with heat map and contour (drawn at most ``max_side`` px on its longest
    side), and the class probabilities as bars."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(11, 5), width_ratios=[1.4, 1], layout="constrained")
    ax_img.imshow(overlay(*fit_for_display(gray, pred.prob_map, pred.mask, max_side)))
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
    metadata = {"Software": OUTPUT_TAG} if path.suffix.lower() == ".png" else None
    fig.savefig(path, dpi=100, metadata=metadata)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ outputs


def check_outputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path], input_tree: str | Path, force: bool = False
) -> None:
    """Raise :class:`PredictError` for outputs that would destroy or pollute the inputs: one that is an
    input file (always), and, unless ``force``, one inside ``input_tree`` or over an existing mask that
    predict did not write (a ground truth mask)."""
    tree = Path(input_tree).resolve()
    taken = {Path(p).resolve() for p in inputs}
    inputs_hit, in_tree, masks = [], [], []
    for out in outputs:
        path = Path(out).resolve()
        if path in taken:
            inputs_hit.append(str(out))
        elif force:
            continue
        elif path.is_relative_to(tree):
            in_tree.append(str(out))
        elif path.exists() and _MASK_STEM.search(path.stem) and not is_own_output(path):
            masks.append(str(out))
    problems = []
    if inputs_hit:
        problems.append(f"would overwrite input file(s) {listing(inputs_hit)}; choose another output path")
    if in_tree:
        problems.append(
            f"would write {listing(in_tree)} into the input folder {input_tree} (beside the images and their "
            "masks); pass --out-dir (and --out) outside it, or --force"
        )
    if masks:
        problems.append(
            f"would overwrite existing mask(s) that predict did not write (ground truth?): {listing(masks)}; "
            "choose another --out-dir, or pass --force"
        )
    if problems:
        raise PredictError("refusing to write: " + "\n".join(problems))


def output_stems(rels: Sequence[Path]) -> list[Path]:
    """The relative stem that names each input's outputs: its own stem, or, where inputs of one folder
    share a stem (``x.png`` and ``x.jpg``, or ``X.png`` and ``x.png``), stem + ``_`` + extension, and a
    ``-2``, ``-3``... where that is taken too; so no two inputs write one file, on any file system."""
    from collections import Counter

    def key(p: Path) -> str:
        return p.with_suffix("").as_posix().casefold()

    shared = Counter(key(r) for r in rels)
    taken: set[str] = set()
    stems = []
    for rel in rels:
        stem = rel.with_suffix("")
        if shared[key(rel)] > 1:
            stem = rel.parent / f"{rel.stem}_{rel.suffix.lstrip('.').lower()}"
        candidate, n = stem, 2
        while candidate.as_posix().casefold() in taken:
            candidate, n = stem.parent / f"{stem.name}-{n}", n + 1
        taken.add(candidate.as_posix().casefold())
        stems.append(candidate)
    return stems


# ------------------------------------------------------------------------------------------ folder


def list_images(folder: str | Path, exclude: Sequence[str | Path] = ()) -> tuple[list[Path], list[Path]]:
    """Image files under ``folder`` (recursive, sorted) and the ``*_mask*`` files left out; files under
    an ``exclude`` folder (predict's own output folder) are not listed at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictError(f"--input-dir {folder}: not a folder")
    skip = [Path(p).resolve() for p in exclude]
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(p.resolve().is_relative_to(s) for s in skip)
    )
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
    force: bool = False,
    max_side: int = OVERLAY_MAX_SIDE,
) -> FolderResult:
    """Every image of ``input_dir``: masks and overlays mirrored under ``out_dir`` (one name per input,
    :func:`output_stems`), ``predictions.csv`` with a row appended as each image is done (an
    interrupted run keeps what it did); an unreadable file is reported (``failures.csv``,
    ``on_error``) and skipped. ``out_dir`` inside ``input_dir`` is refused unless ``force``, and is
    then never read as input; see :func:`check_outputs` for the files it will not overwrite."""
    from tqdm import tqdm

    input_dir, out_dir = Path(input_dir), Path(out_dir)
    inside = out_dir.resolve().is_relative_to(input_dir.resolve())
    if inside and not force:
        raise PredictError(
            f"--out-dir {out_dir} is inside --input-dir {input_dir}: its masks and overlays would land "
            "beside the images (and be read as input by the next run); choose an --out-dir outside it, "
            "or pass --force (the output folders are then left out of the input)"
        )
    own = [out_dir / "masks", out_dir / "overlays"] if out_dir.resolve() == input_dir.resolve() else [out_dir]
    files, masks = list_images(input_dir, exclude=own if inside else ())
    stems = output_stems([f.relative_to(input_dir) for f in files])
    planned = [
        (out_dir / "masks" / f"{s}_mask.png", out_dir / "overlays" / f"{s}_overlay.png") for s in stems
    ]
    check_outputs([p for pair in planned for p in pair], [*files, *masks], input_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "failures.csv").unlink(missing_ok=True)  # an earlier run's list; this run writes its own
    preds: list[Prediction] = []
    failures: list[tuple[str, str]] = []
    csv_path = out_dir / "predictions.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as csv_file:
        writer = csv.DictWriter(csv_file, fieldnames=_csv_fields(predictor.class_names))
        writer.writeheader()
        csv_file.flush()
        for file, (mask_out, overlay_out) in zip(
            tqdm(files, desc="predict", unit="img", disable=not progress), planned
        ):
            rel = file.relative_to(input_dir)
            try:
                pred, gray = predictor.predict_file(file)
            except DataError as exc:
                failures.append((str(file), exc.reason if getattr(exc, "reason", None) else str(exc)))
                _append_failure(out_dir / "failures.csv", failures[-1])
                if on_error is not None:
                    on_error(str(file), str(exc))
                continue
            mask_path = save_mask(pred.mask, mask_out)
            overlay_path = save_overlay(pred, gray, overlay_out, max_side)
            preds.append(pred)
            writer.writerow(_csv_row(pred, rel.as_posix(), mask_path, overlay_path, out_dir))
            csv_file.flush()
    return FolderResult(preds, failures, csv_path, len(masks))


def _append_failure(path: Path, failure: tuple[str, str]) -> None:
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["path", "error"])
        writer.writerow(failure)


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


def _csv_fields(class_names: Sequence[str]) -> list[str]:
    return [
        "path",
        *(f"prob_{n}" for n in class_names),
        "predicted_class",
        "lesion_area_px",
        "flag",
        "mask",
        "overlay",
    ]


def format_probs(pred: Prediction) -> str:
    """``normal 0.10  benign 0.75  malignant 0.15 -> benign`` for the terminal."""
    parts = "  ".join(f"{n} {p:.4f}" for n, p in zip(pred.class_names, pred.probs))
    flag = f"  [{pred.flag}]" if pred.flag else ""
    return f"{parts}  -> {pred.predicted} (lesion {pred.area_px} px){flag}"

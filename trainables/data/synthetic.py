"""The built-in synthetic breast-ultrasound set, written in the BUSI folder layout.

Each image is a small phantom built the way a B-mode image forms, all in decibels: layered tissue
echogenicity (skin line, subcutaneous fat with Cooper's ligaments, streaky glandular layer, striated
pectoral muscle), lesions drawn into it, depth attenuation integrated down each column (so lesions cast
posterior shadows or enhancement by themselves), a time-gain compensation profile, then multiplicative
speckle (the log of a compounded Rayleigh envelope, i.e. gamma-distributed intensity) and log compression
to 8 bits. Benign lesions are oval, smooth, wider than tall, homogeneous and hypoechoic, often with
posterior enhancement; malignant ones are irregular or spiculated, taller than wide, heterogeneous and
shadowing. A minority of each class borrows the other's traits so that the task is learnable, not trivial.

The set goes through the same scanner as real data: ``<class>/<class> (i).png`` with
``<class> (i)_mask.png`` (0/255) and ``_mask_1.png`` for a second lesion. A few exact and near
duplicates (re-saved brighter, resized, cropped) are planted inside one class, and ``synthetic.json``
records them with the generation parameters. Same arguments, byte-identical files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from trainables.data.config import DEFAULT_CLASSES
from trainables.data.errors import DataError

CLASSES: tuple[str, ...] = DEFAULT_CLASSES
MANIFEST_NAME = "synthetic.json"
MIN_SIZE = 32
FORMAT_VERSION = 1
# (class, kind) of each planted duplicate pair; a pair is planted when its class has >= 4 images.
DUPLICATE_PLAN: tuple[tuple[str, str], ...] = (
    ("benign", "exact"),
    ("benign", "brightness"),
    ("malignant", "crop"),
    ("normal", "resize"),
)
MIN_CLASS_SIZE_FOR_DUPLICATES = 4
TWO_LESION_FRACTION = 0.03  # of benign and malignant images; BUSI has about 2% multi-mask images


@dataclass(frozen=True)
class Sample:
    """One generated picture: 8-bit gray image and one boolean mask per lesion."""

    image: np.ndarray
    masks: tuple[np.ndarray, ...]


# ----------------------------------------------------------------------------------------------- noise


def _blur_periodic(noise: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian filter (periodic) over the last two axes, in the Fourier domain so wide kernels cost no
    more than narrow ones; ``sigma`` = (rows, cols) in pixels."""
    rows, cols = noise.shape[-2:]
    fy = np.fft.fftfreq(rows)[:, None]
    fx = np.fft.rfftfreq(cols)[None, :]
    transfer = np.exp(-2.0 * np.pi**2 * ((sigma[0] * fy) ** 2 + (sigma[1] * fx) ** 2))
    return np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=(rows, cols))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: tuple[float, float]) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (anisotropic ``sigma`` = (rows, cols))."""
    field = _blur_periodic(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def _wave(rng: np.random.Generator, n: int, sigma_frac: float, amplitude: float) -> np.ndarray:
    """A smooth 1-D random profile of length ``n`` (layer boundaries, gain wiggles)."""
    field = ndimage.gaussian_filter1d(rng.standard_normal(n), max(1.0, n * sigma_frac), mode="reflect")
    return amplitude * field / (field.std() + 1e-12)


def _ridges(field: np.ndarray, width: float) -> np.ndarray:
    """Thin curvy lines along the zero set of a smooth field (ligaments, fibrous strands), in [0, 1]."""
    return np.exp(-((field / width) ** 2))


# ---------------------------------------------------------------------------------------------- tissue


@dataclass(frozen=True)
class _Tissue:
    echo_db: np.ndarray  # echogenicity, glandular tissue = 0 dB
    relative_attenuation: np.ndarray
    gland_top: np.ndarray  # per column, as a fraction of the depth
    gland_bottom: np.ndarray


def _tissue(rng: np.random.Generator, s: int) -> _Tissue:
    """Echogenicity and attenuation factor per pixel of a lesion-free breast, and its glandular layer."""
    t = ((np.arange(s) + 0.5) / s)[:, None]
    x = ((np.arange(s) + 0.5) / s)[None, :]
    px = 1.0 / s
    tilt = rng.uniform(-0.04, 0.04) * (x[0] - 0.5)
    skin = rng.uniform(0.03, 0.055) + _wave(rng, s, 0.2, 0.004) + 0.3 * tilt
    fat = skin + rng.uniform(0.1, 0.2) + _wave(rng, s, 0.15, 0.02) + tilt
    gland = fat + rng.uniform(0.35, 0.48) + _wave(rng, s, 0.15, 0.025) + tilt
    muscle = np.minimum(gland + rng.uniform(0.1, 0.18) + _wave(rng, s, 0.2, 0.012), 0.98)

    def below(boundary: np.ndarray, width_px: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(t - boundary[None, :]) / (width_px * px)))

    b_skin, b_fat = below(skin, 0.7), below(fat, 1.0)
    b_gland, b_muscle = below(gland, 2.0), below(muscle, 2.5)
    w_skin, w_fat = 1.0 - b_skin, b_skin - b_fat
    w_gland, w_muscle, w_deep = b_fat - b_gland, b_gland - b_muscle, b_muscle

    shape = (s, s)
    lobules = _smooth_noise(rng, shape, (s / 35, s / 18))
    ligaments = _smooth_noise(rng, shape, (s / 40, s / 9))
    fade = np.clip(0.6 + 0.6 * _smooth_noise(rng, shape, (s / 25, s / 25)), 0.0, 1.0)  # lines come and go
    fat_db = rng.uniform(-14, -9) + 3.0 * np.tanh(lobules) + 11.0 * fade * _ridges(ligaments, 0.15)
    streaks = _smooth_noise(rng, shape, (max(0.8, s / 90), s / 10))
    mottle = _smooth_noise(rng, shape, (s / 30, s / 10))
    fibres = _smooth_noise(rng, shape, (s / 50, s / 6))
    islands = _smooth_noise(rng, shape, (s / 30, s / 12))
    gland_db = (
        2.5 * streaks
        + 4.0 * mottle
        + 7.0 * fade * _ridges(fibres, 0.12)
        - 10.0 / (1.0 + np.exp(-(islands - 1.2) * 6.0))  # fat islands: hypoechoic confounders
    )
    slope = rng.uniform(-0.3, 0.1)
    period = s / rng.uniform(14, 24)
    phase = 2 * np.pi * (t - slope * x) * s / period + 2.5 * _smooth_noise(rng, shape, (s / 25, s / 10))
    muscle_db = (
        -6.0 + 6.0 * ((0.5 + 0.5 * np.sin(phase)) ** 3) + 1.5 * _smooth_noise(rng, shape, (1.0, s / 12))
    )
    deep_db = -14.0 + 4.0 * _smooth_noise(rng, shape, (s / 30, s / 10))
    skin_db = np.full(shape, 7.0)

    echo = w_skin * skin_db + w_fat * fat_db + w_gland * gland_db + w_muscle * muscle_db + w_deep * deep_db
    for boundary, gain in ((fat, 5.0), (gland, 6.0), (muscle, 7.0)):  # fascia: bright interfaces
        echo += rng.uniform(0.5, 1.0) * gain * np.exp(-(((t - boundary[None, :]) / (1.2 * px)) ** 2))
    echo = np.where(t < 0.012, -25.0, echo)  # coupling gel above the skin line

    relative_attenuation = 0.7 * w_fat + 1.0 * w_gland + 1.2 * w_muscle + 1.3 * w_deep + 1.0 * w_skin
    return _Tissue(echo, relative_attenuation, fat, gland)


# --------------------------------------------------------------------------------------------- lesions


@dataclass(frozen=True)
class _Lesion:
    cx: float  # centre and half axes in pixels
    cy: float
    half_w: float
    half_h: float
    rotation: float  # radians
    lobulation: float  # amplitude of low-order boundary harmonics (smooth lobes)
    jaggedness: float  # amplitude of high-order harmonics (irregular margin)
    spikes: int  # number of spicules
    spike_length: float
    echo_db: float  # mean level relative to glandular tissue
    heterogeneity_db: float
    edge_sigma: float  # pixels; larger = indistinct margin
    halo_db: float  # echogenic rim (malignant)
    calcifications: int  # bright specks inside (malignant)
    shadow_db: float  # extra attenuation across the lesion; negative = posterior enhancement


def _draw_lesion_params(rng: np.random.Generator, kind: str, s: int, scale: float = 1.0) -> _Lesion:
    """Random lesion parameters; about one in five lesions borrows traits of the other class."""
    atypical = rng.random() < 0.2
    if kind == "benign":
        half_w = s * rng.uniform(0.07, 0.2) * scale
        ratio = rng.uniform(0.85, 1.15) if atypical else rng.uniform(1.35, 2.2)  # width / height
        cyst = rng.random() < 0.3
        return _Lesion(
            cx=0.0,
            cy=0.0,
            half_w=half_w,
            half_h=half_w / ratio,
            rotation=rng.normal(0, 0.12),
            lobulation=rng.uniform(0.08, 0.16) if atypical else rng.uniform(0.0, 0.05),
            jaggedness=rng.uniform(0.02, 0.05) if atypical else 0.0,
            spikes=0,
            spike_length=0.0,
            echo_db=rng.uniform(-35, -26) if cyst else rng.uniform(-22, -14),
            heterogeneity_db=rng.uniform(0.5, 1.5) if cyst else rng.uniform(1.0, 3.0),
            edge_sigma=rng.uniform(0.5, 0.9),
            halo_db=0.0,
            calcifications=0,
            shadow_db=rng.uniform(2.0, 6.0) if atypical else rng.uniform(-9.0, -2.0),
        )
    half_w = s * rng.uniform(0.055, 0.13) * scale
    ratio = rng.uniform(0.8, 1.05) if atypical else rng.uniform(1.05, 1.6)  # height / width
    spikes = 0 if atypical else int(rng.integers(5, 13))
    return _Lesion(
        cx=0.0,
        cy=0.0,
        half_w=half_w,
        half_h=half_w * ratio,
        rotation=rng.normal(0, 0.25),
        lobulation=rng.uniform(0.06, 0.12) if atypical else rng.uniform(0.1, 0.2),
        jaggedness=rng.uniform(0.02, 0.05) if atypical else rng.uniform(0.05, 0.1),
        spikes=spikes,
        spike_length=rng.uniform(0.25, 0.6),
        echo_db=rng.uniform(-22, -13),
        heterogeneity_db=rng.uniform(3.0, 6.0),
        calcifications=int(rng.integers(2, 7)) if rng.random() < 0.4 else 0,
        edge_sigma=rng.uniform(1.0, 1.8),
        halo_db=rng.uniform(3.0, 7.0) if rng.random() < 0.5 else 0.0,
        shadow_db=rng.uniform(2.0, 6.0) if atypical else rng.uniform(8.0, 18.0),
    )


def _lesion_mask(rng: np.random.Generator, lesion: _Lesion, s: int) -> np.ndarray:
    """Boolean mask of a star-shaped lesion: ellipse * (1 + harmonics + spicules) in polar form."""
    orders = np.arange(2, 13)
    amplitudes = np.where(orders <= 4, lesion.lobulation, lesion.jaggedness) * rng.uniform(
        0.2, 1.0, orders.size
    )
    amplitudes[orders <= 4] *= 1.0 + 0.4 * rng.random(3)
    phases = rng.uniform(0, 2 * np.pi, orders.size)
    spike_angles = rng.uniform(0, 2 * np.pi, lesion.spikes)
    spike_sharpness = rng.uniform(40, 120, lesion.spikes)
    spike_lengths = lesion.spike_length * rng.uniform(0.5, 1.0, lesion.spikes)

    reach = (1.0 + amplitudes.sum() + spike_lengths.sum()) * max(lesion.half_w, lesion.half_h) + 2
    y0, y1 = max(0, int(lesion.cy - reach)), min(s, int(lesion.cy + reach) + 1)
    x0, x1 = max(0, int(lesion.cx - reach)), min(s, int(lesion.cx + reach) + 1)
    mask = np.zeros((s, s), dtype=bool)
    if y1 <= y0 or x1 <= x0:
        return mask
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    dx, dy = xx - lesion.cx, yy - lesion.cy
    cos, sin = np.cos(lesion.rotation), np.sin(lesion.rotation)
    u = (dx * cos + dy * sin) / lesion.half_w
    v = (-dx * sin + dy * cos) / lesion.half_h
    rho, theta = np.hypot(u, v), np.arctan2(v, u)
    radius = 1.0 + np.tensordot(amplitudes, np.cos(orders[:, None, None] * theta + phases[:, None, None]), 1)
    for angle, sharpness, length in zip(spike_angles, spike_sharpness, spike_lengths):
        radius += length * np.maximum(np.cos(theta - angle), 0.0) ** sharpness
    mask[y0:y1, x0:x1] = rho < np.maximum(radius, 0.3)
    return mask


def _place(
    rng: np.random.Generator, lesion: _Lesion, tissue: _Tissue, cx_range: tuple[float, float]
) -> _Lesion:
    """Put a lesion in the glandular layer, inside the picture, with room below for its shadow."""
    s = tissue.echo_db.shape[0]
    reach_w = lesion.half_w * 1.6
    lo_x, hi_x = max(reach_w, cx_range[0] * s), min(s - reach_w, cx_range[1] * s)
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else s / 2
    column = min(s - 1, int(cx))
    top = max(tissue.gland_top[column] * s + 0.4 * lesion.half_h, 1.2 * lesion.half_h + 2)
    bottom = min(tissue.gland_bottom[column] * s - 0.6 * lesion.half_h, 0.8 * s - 1.2 * lesion.half_h)
    cy = rng.uniform(top, bottom) if bottom > top else 0.5 * (top + bottom)
    return _Lesion(**{**lesion.__dict__, "cx": cx, "cy": cy})


def _insert_lesion(
    rng: np.random.Generator, echo: np.ndarray, alpha_db: np.ndarray, mask: np.ndarray, lesion: _Lesion
) -> None:
    """Darken the echo map inside ``mask`` (in place) and add its extra attenuation (shadow/enhancement)."""
    s = echo.shape[0]
    soft = ndimage.gaussian_filter(mask.astype(np.float64), lesion.edge_sigma)
    interior = lesion.echo_db + lesion.heterogeneity_db * _smooth_noise(rng, echo.shape, (s / 50, s / 40))
    if lesion.halo_db:
        rim = np.clip(
            ndimage.gaussian_filter(mask.astype(np.float64), 2.0 * lesion.edge_sigma) - soft, 0, None
        )
        echo += lesion.halo_db * rim / (rim.max() + 1e-12)
    echo[:] = echo * (1.0 - soft) + interior * soft
    inside = np.flatnonzero(mask)
    for flat in rng.choice(inside, size=min(lesion.calcifications, inside.size), replace=False):
        echo.flat[flat] += rng.uniform(18.0, 28.0)
    height = max(1, int(mask.any(axis=1).sum()))
    beam = ndimage.gaussian_filter1d(soft, max(1.0, 0.25 * lesion.half_w), axis=1)  # shadows fan out a little
    alpha_db += lesion.shadow_db * beam / height


def _lesions(
    rng: np.random.Generator, kind: str, tissue: _Tissue, two: bool
) -> tuple[list[_Lesion], list[np.ndarray]]:
    """One lesion, or two separate ones (side by side) when ``two`` and they fit without touching."""
    s = tissue.echo_db.shape[0]
    if two:
        for _ in range(20):
            left = _place(rng, _draw_lesion_params(rng, kind, s, 0.7), tissue, (0.0, 0.45))
            right = _place(rng, _draw_lesion_params(rng, kind, s, 0.6), tissue, (0.55, 1.0))
            masks = [_lesion_mask(rng, left, s), _lesion_mask(rng, right, s)]
            if not (ndimage.binary_dilation(masks[0], iterations=3) & masks[1]).any() and all(
                m.sum() >= 12 for m in masks
            ):
                return [left, right], masks
    for _ in range(20):
        lesion = _place(rng, _draw_lesion_params(rng, kind, s), tissue, (0.2, 0.8))
        mask = _lesion_mask(rng, lesion, s)
        if mask.sum() >= 12 and not (
            mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        ):
            return [lesion], [mask]
    raise RuntimeError(f"could not place a {kind} lesion in a {s} px image")  # pragma: no cover


# ---------------------------------------------------------------------------------------------- images


def render(rng: np.random.Generator, kind: str, size: int, two_lesions: bool = False) -> Sample:
    """One synthetic B-mode image of class ``kind`` (normal / benign / malignant) with its lesion masks."""
    s = size
    tissue = _tissue(rng, s)
    echo, relative_attenuation = tissue.echo_db, tissue.relative_attenuation
    lesions, masks = ([], []) if kind == "normal" else _lesions(rng, kind, tissue, two_lesions)
    total_attenuation_db = rng.uniform(25.0, 40.0)  # over the full depth, before gain compensation
    alpha_db = relative_attenuation * total_attenuation_db / s
    for lesion, mask in zip(lesions, masks):
        _insert_lesion(rng, echo, alpha_db, mask, lesion)

    t = (np.arange(s) + 0.5) / s
    attenuation = -np.cumsum(alpha_db, axis=0)
    tgc = total_attenuation_db * rng.uniform(0.7, 0.92) * t + _wave(rng, s, 0.15, 1.5)
    x = (np.arange(s) + 0.5) / s
    lateral = -4.0 * (2 * x - 1) ** 6  # a little darker at the transducer edges
    looks = int(rng.integers(3, 6))  # spatial compounding: mean of a few Rayleigh speckle intensities
    grain = (max(0.6, s / 170), max(1.0, s / 75))  # axial < lateral resolution
    # |in-phase + i quadrature|^2 of band-limited complex noise, one pair per look
    intensity = (_blur_periodic(rng.standard_normal((2 * looks, s, s)), grain) ** 2).sum(axis=0)
    intensity /= intensity.mean()
    speckle_db = 10.0 * np.log10(intensity + 1e-6)
    signal_db = echo + attenuation + tgc[:, None] + lateral[None, :] + speckle_db
    dynamic_range = rng.uniform(40.0, 50.0)
    floor = -dynamic_range * rng.uniform(0.55, 0.65)  # glandular tissue lands around 140-165
    display = ndimage.gaussian_filter((signal_db - floor) * 255.0 / dynamic_range, 0.5)  # scan conversion
    gray = np.clip(np.rint(display), 0, 255).astype(np.uint8)
    return Sample(gray, tuple(masks))


# ---------------------------------------------------------------------------------------------- writing


def _check_args(n_per_class: Sequence[int], size: int, seed: int) -> tuple[int, ...]:
    counts = tuple(n_per_class)
    if len(counts) != len(CLASSES):
        raise DataError(
            f"n_per_class: expected {len(CLASSES)} counts ({', '.join(CLASSES)}), got {len(counts)}: {counts}"
        )
    for name, n in zip(CLASSES, counts):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise DataError(f"n_per_class: the {name} count must be a positive integer, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise DataError(f"size: expected an integer >= {MIN_SIZE} pixels, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed: expected a non-negative integer, got {seed!r}")
    return tuple(int(n) for n in counts)


def _near_duplicate(sample: Sample, kind: str, size: int) -> Sample:
    """The same picture re-saved the way duplicates appear in public sets; masks follow the image."""
    if kind == "exact":
        return sample
    if kind == "brightness":
        image = np.clip(sample.image.astype(np.int16) + 12, 0, 255).astype(np.uint8)
        return Sample(image, sample.masks)
    if kind == "crop":
        k = max(1, size // 128)  # per side; more drifts the perceptual hash towards the audit threshold
        return Sample(sample.image[k:-k, k:-k].copy(), tuple(m[k:-k, k:-k].copy() for m in sample.masks))
    if kind == "resize":
        new = (round(size * 0.85), round(size * 0.8))  # (w, h): also changes the aspect ratio a little
        image = np.asarray(Image.fromarray(sample.image).resize(new, Image.Resampling.BILINEAR))
        masks = tuple(
            np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize(new, Image.Resampling.NEAREST)) > 0
            for m in sample.masks
        )
        return Sample(image, masks)
    raise ValueError(f"unknown duplicate kind {kind!r}; valid: exact, brightness, crop, resize")


def _write(folder: Path, name: str, sample: Sample) -> None:
    Image.fromarray(sample.image).save(folder / f"{name}.png")
    masks = sample.masks or (np.zeros(sample.image.shape, dtype=bool),)
    for i, mask in enumerate(masks):
        suffix = "_mask" if i == 0 else f"_mask_{i}"
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{name}{suffix}.png")


def _plan(rng: np.random.Generator, counts: tuple[int, ...], duplicates: bool) -> dict[str, dict]:
    """Per class: which indices get two lesions and which are copies of which (1-based BUSI numbers)."""
    plan: dict[str, dict] = {}
    for name, n in zip(CLASSES, counts):
        kinds = [k for c, k in DUPLICATE_PLAN if c == name] if duplicates else []
        if n < MIN_CLASS_SIZE_FOR_DUPLICATES:
            kinds = []
        order = [int(i) + 1 for i in rng.permutation(n)]
        copies = {order[2 * j + 1]: (order[2 * j], kind) for j, kind in enumerate(kinds)}
        used = {i for pair in copies.items() for i in (pair[0], pair[1][0])}
        n_two = 0 if name == "normal" else round(TWO_LESION_FRACTION * n)
        two = [i for i in order if i not in used][:n_two]
        plan[name] = {"copies": copies, "two": set(two)}
    return plan


def make_synthetic(
    out: str | Path,
    n_per_class: Sequence[int] = (27, 87, 42),
    size: int = 128,
    seed: int = 0,
    progress: bool = False,
    *,
    duplicates: bool = True,
) -> Path:
    """Write the synthetic set to ``out`` (BUSI layout plus ``synthetic.json``) and return its path.

    ``n_per_class`` counts images per class (normal, benign, malignant), planted duplicates included.
    An existing ``out`` is replaced only if it is empty or a previous synthetic set, never user data.
    """
    counts = _check_args(n_per_class, size, seed)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file())):
        raise DataError(
            f"{out}: exists and is not a synthetic set (no {MANIFEST_NAME}); refusing to overwrite"
        )
    plan = _plan(np.random.default_rng([seed, 7919]), counts, duplicates)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    manifest: dict = {
        "generator": "trainables.data.synthetic",
        "version": FORMAT_VERSION,
        "params": {
            "n_per_class": list(counts),
            "size": int(size),
            "seed": int(seed),
            "duplicates": duplicates,
        },
        "classes": list(CLASSES),
        "duplicates": [],
        "multi_lesion": [],
    }
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(counts), desc="synthetic", unit="img")
    try:
        for label, (name, n) in enumerate(zip(CLASSES, counts)):
            folder = tmp / name
            folder.mkdir(parents=True)
            copies, two = plan[name]["copies"], plan[name]["two"]
            samples: dict[int, Sample] = {}
            for i in range(1, n + 1):
                if i in copies:
                    continue
                rng = np.random.default_rng([seed, label, i])
                samples[i] = render(rng, name, size, two_lesions=i in two)
                _write(folder, f"{name} ({i})", samples[i])
                if len(samples[i].masks) > 1:
                    manifest["multi_lesion"].append(f"{name}/{name} ({i}).png")
                if bar is not None:
                    bar.update(1)
            for i, (source, kind) in sorted(copies.items()):
                _write(folder, f"{name} ({i})", _near_duplicate(samples[source], kind, size))
                manifest["duplicates"].append(
                    {
                        "class": name,
                        "kind": kind,
                        "source": f"{name}/{name} ({source}).png",
                        "copy": f"{name}/{name} ({i}).png",
                    }
                )
                if bar is not None:
                    bar.update(1)
        manifest["multi_lesion"].sort()
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if bar is not None:
            bar.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_manifest(root: str | Path) -> dict:
    """The ``synthetic.json`` of a generated set (planted duplicates, multi-lesion images, parameters)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise ValueError(f"{path}: no synthetic manifest; was {root} written by make_synthetic?")
    return json.loads(path.read_text(encoding="utf-8"))

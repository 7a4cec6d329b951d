"""What a spec's training augmentation does to its images, in one picture, before any training.

``launch.py augment-preview SPEC --data DIR`` loads the images exactly as ``train`` does (cache, size,
resize, splits), takes a few development images of every class (never the hold-out test part), and draws
each as loaded beside several draws of the loop's own :class:`trainables.augment.BatchAugment` with the
spec's ``train.augment``, the mask's outline in green. Whether ``rotate: 20`` or ``lesion_paste: 0.5``
(CarveMix, which needs two lesion images of a class in the batch) make images a radiologist would still
recognise is then seen in seconds, not inferred from an hour of training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model_zoo.errors import UserError
from trainables.spec import Spec


def preview_rows(labels: np.ndarray, candidates: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` rows of ``candidates`` for each class present, drawn with ``seed``, class by
    class in label order (fewer where a class has fewer)."""
    if per_class < 1:
        raise UserError(f"--per-class {per_class}: at least 1 image of each class")
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels[candidates]):
        rows = candidates[labels[candidates] == label]
        picked.append(np.sort(rng.choice(rows, size=min(per_class, len(rows)), replace=False)))
    return np.concatenate(picked).astype(np.int64)


def augment_preview(
    spec: Spec, out: str | Path, per_class: int = 3, draws: int = 3, seed: int = 0, progress: bool = True
) -> Path:
    """Draw ``per_class`` development images of each class (columns) as loaded and after ``draws``
    augmentations (rows), all in one batch as the loop would see them; write the PNG to ``out``."""
    import torch

    from analysis.plots import pyplot, save_figure
    from analysis.predict import overlay
    from trainables.augment import BatchAugment
    from trainables.data.run_data import load_run_data
    from trainables.data.splits import split_indices
    from trainables.loop import load_batch

    if draws < 1:  # both counts checked before the data load
        raise UserError(f"--draws {draws}: at least 1 augmented draw")
    if per_class < 1:
        raise UserError(f"--per-class {per_class}: at least 1 image of each class")
    dataset, splits = load_run_data(spec.data, progress=progress)
    rows = preview_rows(dataset.labels, split_indices(splits, dataset).dev, per_class, seed)
    images, masks, labels = load_batch(
        dataset.images, dataset.masks, dataset.labels, rows, torch.device("cpu")
    )
    augment = BatchAugment(spec.train.augment, torch.Generator().manual_seed(seed))
    shots = [(images, masks)] + [augment(images, masks, labels) for _ in range(draws)]

    plt = pyplot()
    n = len(rows)
    fig, axes = plt.subplots(
        len(shots), n, figsize=(1.9 * n, 2.0 * len(shots) + 0.5), layout="constrained", squeeze=False
    )
    for r, (x, m) in enumerate(shots):
        for c in range(n):
            gray = (x[c, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            axes[r, c].imshow(overlay(gray, gt=m[c, 0].numpy() > 0.5))
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(dataset.class_names[int(labels[c])], fontsize=9)
        label = "as loaded" if r == 0 else f"draw {r}"
        axes[r, 0].text(
            -0.08, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right"
        )
    fig.suptitle(
        f"{spec.name}: train.augment on {n} development images at {dataset.image_size} px "
        f"(green: the mask as augmented; seed {seed})",
        fontsize=10,
    )
    return save_figure(fig, out)

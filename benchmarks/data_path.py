"""Training data path: cached uint8 arrays + batched tensor augmentation vs a per-item PIL DataLoader.

The original pipeline decoded each PNG and its mask(s) with PIL in a ``Dataset.__getitem__``, flipped,
rotated and resized them and normalised the tensor, for every item of every epoch, through a
``DataLoader``. This project decodes once into the dataset cache and then, per batch, slices the uint8
arrays, converts them to float and augments the whole batch with tensor ops (:mod:`trainables.augment`).

Both paths read the same images at the same working size and feed the same model with the same batch
size. Printed: the machine, samples/s of each data path alone (the PIL path with 0 and with N worker
processes), samples/s of whole training steps with each path, their ratios, and the share of a training
step that this data path costs. Run from the repository root::

    python -m benchmarks.data_path                       # synthetic images (512 px PNGs), 256 px
    python -m benchmarks.data_path --data ../shared/data/busi_subset
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageChops, ImageOps
from torch.utils.data import DataLoader, Dataset

from benchmarks import common
from model_zoo import build_model
from model_zoo.config import ModelConfig
from model_zoo.losses import build_loss
from trainables.augment import BatchAugment
from trainables.config import AugmentConfig, TrainConfig
from trainables.data.cache import load_dataset
from trainables.data.config import DataConfig
from trainables.data.scan import scan_folder
from trainables.data.synthetic import make_synthetic
from trainables.loop import load_batch
from trainables.sampler import random_batches

MEAN, STD = 0.5, 0.5


NAME = "data_path"
COMPARED = (
    "training data path at 256 px: cached uint8 + batched tensor augmentation vs a per-item PIL "
    "DataLoader (0 and N workers), data alone and in whole training steps"
)


class PilDataset(Dataset):
    """Per-item pipeline like the original: decode, flip, rotate, resize, normalise, every time."""

    def __init__(self, root: Path, records: Sequence, size: int, rotate: float) -> None:
        self.root, self.records, self.size, self.rotate = root, list(records), size, rotate

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        rec = self.records[i]
        image = Image.open(self.root / rec.path).convert("L")
        mask = Image.new("L", image.size, 0)
        for path in rec.mask_paths:
            mask = ImageChops.lighter(mask, Image.open(self.root / path).convert("L").resize(image.size))
        if random.random() < 0.5:
            image, mask = ImageOps.mirror(image), ImageOps.mirror(mask)
        angle = random.uniform(-self.rotate, self.rotate)
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR)
        mask = mask.rotate(angle, resample=Image.Resampling.NEAREST)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        mask = mask.resize((self.size, self.size), Image.Resampling.NEAREST)
        x = (torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None] - MEAN) / STD
        m = torch.from_numpy((np.asarray(mask) > 127).astype(np.float32))[None]
        return x, m, rec.label


class OurPath:
    """This project's data path for one training set: sample, slice, to float, augment on the device."""

    def __init__(self, dataset: object, batch_size: int, seed: int = 0) -> None:
        self.images, self.masks = dataset.images, dataset.masks
        self.labels = np.asarray(dataset.labels, dtype=np.int64)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.augment = BatchAugment(AugmentConfig(), torch.Generator().manual_seed(seed))
        self.device = torch.device("cpu")

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for idx in random_batches(np.arange(len(self.labels)), self.batch_size, self.rng):
            x, m, y = load_batch(self.images, self.masks, self.labels, idx, self.device)
            x, m = self.augment(x, m)
            yield x, m, y


def pil_loader(ds: PilDataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def epoch_rate(make_epoch: Callable[[], Iterator]) -> float:
    """Samples/s of one full epoch of a data path."""
    n, start = 0, time.perf_counter()
    for x, _m, _y in make_epoch():
        n += x.shape[0]
    return n / (time.perf_counter() - start)


def forever(make_epoch: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make_epoch()


class Stepper:
    """One training step of the shared model on the next batch of a path; records data and step seconds."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.loss_fn = build_loss(TrainConfig().loss, torch.ones(3))
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def __call__(self, batches: Iterator) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        x, m, y = next(batches)
        t1 = time.perf_counter()
        self.model.train()
        loss, _ = self.loss_fn(self.model(x, labels=y), m, y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return t1 - t0, time.perf_counter() - t0, x.shape[0]


def median(values: list[float]) -> float:
    return float(np.median(values))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="BUSI-format folder (default: a synthetic set written to a temp folder)")
    p.add_argument("--n-per-class", type=int, nargs=3, default=[16, 16, 16], help="synthetic set size")
    p.add_argument("--png-size", type=int, default=512, help="side of the synthetic PNGs (BUSI is ~500 px)")
    p.add_argument("--size", type=int, default=256, help="working resolution")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--decoder", default="unet")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per path")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the PIL path")
    p.add_argument("--rounds", type=int, default=3, help="interleaved epochs of the data-only comparison")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BUS_CACHE_DIR", str(Path(tmp) / "cache"))
        if args.data:
            root = Path(args.data)
        else:
            root = make_synthetic(Path(tmp) / "synthetic", args.n_per_class, size=args.png_size, seed=0)
        cfg = DataConfig(root=str(root), image_size=args.size, resize="stretch", missing_mask="empty")
        t0 = time.perf_counter()
        dataset = load_dataset(cfg, progress=False)
        cache_s = time.perf_counter() - t0
        records = scan_folder(root, cfg.classes, missing_mask="empty").records
        n = len(records)

        info = common.banner(NAME, COMPARED)
        print(
            f"images: {n} from {'synthetic ' + str(args.png_size) + ' px PNGs' if not args.data else root}, "
            f"working size {args.size} px, batch {args.batch}"
        )
        print(f"one-time cache build (decode + resize all {n} images): {cache_s:.2f} s")

        ours = OurPath(dataset, args.batch)
        pil = PilDataset(root, records, args.size, AugmentConfig().rotate)
        loader_w = pil_loader(pil, args.batch, args.workers)
        paths = {
            "ours": ours.epoch,
            "pil0": lambda: iter(pil_loader(pil, args.batch, 0)),
            "pilw": lambda: iter(loader_w),
        }
        for make in paths.values():  # warm-up: first touches, worker start-up
            epoch_rate(make)
        rates: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(args.rounds):  # interleaved rounds, median: robust to a busy machine
            for name, make in paths.items():
                rates[name].append(epoch_rate(make))
        r = {k: median(v) for k, v in rates.items()}
        print(f"\ndata path alone, samples/s (median of {args.rounds} interleaved epochs):")
        print(f"  cached uint8 + batched tensor augmentation: {r['ours']:9.1f}")
        print(
            f"  per-item PIL DataLoader, 0 workers:         {r['pil0']:9.1f}   "
            f"(ours {r['ours'] / r['pil0']:.1f}x)"
        )
        print(
            f"  per-item PIL DataLoader, {args.workers} workers:         {r['pilw']:9.1f}   "
            f"(ours {r['ours'] / r['pilw']:.1f}x)"
        )

        model = build_model(ModelConfig(encoder=args.encoder, encoder_weights=None, decoder=args.decoder))
        step = Stepper(model)
        streams = {"ours": forever(ours.epoch), "pilw": forever(lambda: iter(loader_w))}
        for it in streams.values():
            step(it)
        times: dict[str, list[tuple[float, float, int]]] = {k: [] for k in streams}
        for _ in range(args.steps):  # alternate the two paths step by step
            for name, it in streams.items():
                times[name].append(step(it))
        ours_data = median([d for d, _, _ in times["ours"]])
        step_s = {k: median([s for _, s, _ in v]) for k, v in times.items()}
        print(
            f"\ntraining steps, {args.encoder} + {args.decoder}, samples/s (median of {args.steps} "
            "alternating steps):"
        )
        print(f"  this data path:                       {args.batch / step_s['ours']:7.2f}")
        print(f"  per-item PIL DataLoader ({args.workers} workers):  {args.batch / step_s['pilw']:7.2f}")
        print(f"  ratio: {step_s['pilw'] / step_s['ours']:.2f}x")
        print(
            f"\ndata path share of a training step: {ours_data / step_s['ours']:.1%} "
            f"({ours_data * 1000:.1f} ms of {step_s['ours'] * 1000:.0f} ms per batch of {args.batch})"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f} (other processes skew all figures)")
    data_ratio, step_ratio = r["ours"] / r["pil0"], step_s["pilw"] / step_s["ours"]
    ratio_text = (
        f"data path alone {data_ratio:.1f}x the PIL loader with 0 workers, "
        f"{r['ours'] / r['pilw']:.1f}x with {args.workers}; whole training steps {step_ratio:.2f}x; "
        f"data path = {ours_data / step_s['ours']:.1%} of a step"
    )
    figures = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "images": n,
        "cache_build_s": cache_s,
        "data_samples_per_s": {"ours": r["ours"], "pil_0_workers": r["pil0"], "pil_n_workers": r["pilw"]},
        "data_samples_per_s_rounds": rates,
        "step_samples_per_s": {
            "ours": args.batch / step_s["ours"],
            "pil_n_workers": args.batch / step_s["pilw"],
        },
        "data_share_of_step": ours_data / step_s["ours"],
    }
    return common.finish(NAME, COMPARED, figures, ratio_text, info, args.out)


if __name__ == "__main__":
    sys.exit(common.main_guard(main))

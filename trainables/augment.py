"""Batched on-device augmentation of image + mask batches (training only).

Geometry (horizontal flip, rotation, scale, translation) is one affine matrix per sample, turned into ONE
grid that moves image and mask together: ``grid_sample`` interpolates the image bilinearly and the mask
with nearest neighbour, so it stays binary. The grid is exactly ``F.affine_grid(theta, ...,
align_corners=False)`` (tested), built by broadcasting instead of a batched matrix product, which is
several times cheaper on the CPU. Where set, lesions are then carved from one image of a class into
another (CarveMix, :meth:`BatchAugment.paste_lesions`). Then, on the image only and each on a share of the
images where set, the degradations of nnU-Net's augmentation (a lower resolution simulated, a Gaussian
blur: ultrasound machines and settings differ in both), and the intensity changes: gamma, contrast around
the image mean and brightness (one fused multiply-add), multiplicative speckle noise, then a clamp to [0, 1].
Every random parameter comes from the ``torch.Generator`` passed in, so a run is repeatable and its
augmentation stream can be saved and restored with the loop's state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trainables.config import AugmentConfig


class BatchAugment:
    """Apply :class:`AugmentConfig` to ``images``/``masks`` float ``[B, 1, H, W]`` on their device."""

    def __init__(self, cfg: AugmentConfig, generator: torch.Generator) -> None:
        self.cfg = cfg
        self.generator = generator

    @property
    def geometric(self) -> bool:
        cfg = self.cfg
        return cfg.hflip or cfg.rotate > 0 or tuple(cfg.scale) != (1.0, 1.0) or cfg.translate > 0

    def _uniform(self, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
        u = torch.rand(n, generator=self.generator, device=self.generator.device)
        return (low + (high - low) * u).to(device)

    def affine(self, n: int, device: torch.device) -> torch.Tensor:
        """Per-sample ``[n, 2, 3]`` matrices mapping output to input coordinates (``F.affine_grid``)."""
        cfg = self.cfg
        angle = self._uniform(n, -cfg.rotate, cfg.rotate, device) * (math.pi / 180.0)
        scale = self._uniform(n, float(cfg.scale[0]), float(cfg.scale[1]), device)
        flip = torch.ones(n, device=device)
        if cfg.hflip:
            flip = torch.where(self._uniform(n, 0.0, 1.0, device) < 0.5, -flip, flip)
        # Output pixel p samples input R(angle) @ p / scale; a flip negates the output x first.
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = cos * flip
        theta[:, 0, 1] = -sin
        theta[:, 1, 0] = sin * flip
        theta[:, 1, 1] = cos
        if cfg.translate > 0:  # drawn last and only when set: runs without it keep their random stream
            # affine_grid's coordinates span 2 per image side, so a shift of f sides is 2f there.
            for axis in (0, 1):
                theta[:, axis, 2] = self._uniform(n, -2.0 * cfg.translate, 2.0 * cfg.translate, device)
        return theta

    @staticmethod
    def grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``F.affine_grid(theta, [B, C, h, w], align_corners=False)`` as a broadcast sum,
        ``[B, h, w, 2]``."""
        kw = {"device": theta.device, "dtype": theta.dtype}
        xs = ((torch.arange(w, **kw) * 2 + 1) / w - 1).view(1, 1, 1, w)
        ys = ((torch.arange(h, **kw) * 2 + 1) / h - 1).view(1, 1, h, 1)
        t = theta[:, :, :, None, None]  # [B, 2 (out x/y), 3, 1, 1]
        return (t[:, :, 0] * xs + (t[:, :, 1] * ys + t[:, :, 2])).permute(0, 2, 3, 1).contiguous()

    def _chosen(self, n: int, share: float, device: torch.device) -> torch.Tensor:
        return self._uniform(n, 0.0, 1.0, device) < share

    def lowres(self, images: torch.Tensor) -> torch.Tensor:
        """A share ``cfg.lowres`` of the images shown at a lower resolution (nnU-Net's simulation): nearest
        downsampling by a factor from ``cfg.lowres_zoom``, bilinear upsampling back."""
        cfg, (n, h, w) = self.cfg, (images.shape[0], *images.shape[-2:])
        chosen = self._chosen(n, cfg.lowres, images.device).tolist()
        zoom = self._uniform(n, float(cfg.lowres_zoom[0]), float(cfg.lowres_zoom[1]), images.device).tolist()
        out = images.clone()
        for i in (i for i in range(n) if chosen[i]):
            size = (max(1, round(h * zoom[i])), max(1, round(w * zoom[i])))
            small = F.interpolate(images[i : i + 1], size=size, mode="nearest")
            out[i : i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        return out

    def blur(self, images: torch.Tensor) -> torch.Tensor:
        """A share ``cfg.blur`` of the images blurred by a Gaussian of std from ``cfg.blur_sigma`` pixels:
        one separable grouped convolution for the batch (one kernel per image, reflect padding as
        torchvision's ``gaussian_blur``); the others pass unchanged."""
        cfg, n, device = self.cfg, images.shape[0], images.device
        chosen = self._chosen(n, cfg.blur, device)
        sigma = self._uniform(n, float(cfg.blur_sigma[0]), float(cfg.blur_sigma[1]), device)
        radius = math.ceil(3.0 * float(cfg.blur_sigma[1]))
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
        kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(images.dtype)) ** 2)
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, 2r + 1]
        small = radius >= min(images.shape[-2:])  # reflect needs the pad inside the image
        x = F.pad(
            images.reshape(1, n, *images.shape[-2:]), (radius,) * 4, mode="replicate" if small else "reflect"
        )
        x = F.conv2d(x, kernel.view(n, 1, 1, -1), groups=n)
        x = F.conv2d(x, kernel.view(n, 1, -1, 1), groups=n).view_as(images)
        return torch.where(chosen.view(n, 1, 1, 1), x, images)

    def paste_lesions(
        self, images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A simplified CarveMix (Zhang et al., MICCAI 2021: there the carved region's size is drawn from
        the lesion's distance map, here a fixed rim) inside the batch: a share ``cfg.lesion_paste`` of the
        lesion images each get the lesion of another lesion image of the same class, with the tissue
        within ``cfg.lesion_paste_margin`` of the image side around it, carved in where it lies (the
        geometry drawn before has already moved it). The seam is feathered over half the margin; inside the
        carved region the donor's mask replaces the target's. Labels stay true: a benign lesion only goes
        into a benign image. Images without a lesion, or without a same-class partner in the batch, pass
        unchanged. The rim is a square dilation (max pooling), its blend a box filter; black pixels the
        geometry brought in at the donor's edge are carved like any other (BUSI's lesions rarely reach
        the edge)."""
        cfg, n, device = self.cfg, images.shape[0], images.device
        chosen = self._chosen(n, cfg.lesion_paste, device).tolist()
        pick = self._uniform(n, 0.0, 1.0, device).tolist()
        lesion = (masks.flatten(1).amax(dim=1) > 0.5).tolist()
        label = labels.tolist()
        pairs = []
        for i in (i for i in range(n) if chosen[i] and lesion[i]):
            pool = [j for j in range(n) if j != i and lesion[j] and label[j] == label[i]]
            if pool:
                pairs.append((i, pool[min(int(pick[i] * len(pool)), len(pool) - 1)]))
        if not pairs:
            return images, masks
        target = torch.tensor([i for i, _ in pairs], device=device)
        donor = torch.tensor([j for _, j in pairs], device=device)
        margin = round(cfg.lesion_paste_margin * min(images.shape[-2:]))
        feather = max(1, margin // 2) if margin > 0 else 0
        region = masks[donor].to(images.dtype)
        if margin > 0:  # the lesion and its surrounding tissue
            region = F.max_pool2d(region, 2 * margin + 1, stride=1, padding=margin)
        if feather > 0:  # 1 on the lesion itself (it lies a full margin inside), 0 beyond margin + feather
            region = F.avg_pool2d(region, 2 * feather + 1, stride=1, padding=feather, count_include_pad=False)
        images, masks = images.clone(), masks.clone()
        images[target] = torch.lerp(images[target], images[donor], region)
        masks[target] = torch.where(region >= 0.5, masks[donor], masks[target])
        return images, masks

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return augmented copies of float ``[B, 1, H, W]`` batches; masks stay 0/1. ``labels`` (class
        indices ``[B]``) are needed only by ``lesion_paste``, which keeps a lesion within its class."""
        cfg = self.cfg
        n, device = images.shape[0], images.device
        if self.geometric:
            grid = self.grid(self.affine(n, device), images.shape[-2], images.shape[-1])
            images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        else:
            images = images.clone()
        # Drawn only when set, so runs without them keep their random stream.
        if cfg.lesion_paste > 0:
            if labels is None:
                raise ValueError("augment.lesion_paste needs the batch's labels to keep lesions in class")
            images, masks = self.paste_lesions(images, masks, labels)
        if cfg.lowres > 0:
            images = self.lowres(images)
        if cfg.blur > 0:
            images = self.blur(images)
        shape = (n, 1, 1, 1)
        if tuple(cfg.gamma) != (1.0, 1.0):
            gamma = self._uniform(n, float(cfg.gamma[0]), float(cfg.gamma[1]), device).view(shape)
            images = images.clamp_min_(0.0).pow_(gamma)
        if cfg.contrast > 0 or cfg.brightness > 0:
            scale = torch.ones(shape, device=device)
            shift = torch.zeros(shape, device=device)
            if cfg.contrast > 0:
                scale = self._uniform(n, 1.0 - cfg.contrast, 1.0 + cfg.contrast, device).view(shape)
                shift = images.mean(dim=(1, 2, 3), keepdim=True) * (1.0 - scale)
            if cfg.brightness > 0:
                shift = shift + self._uniform(n, -cfg.brightness, cfg.brightness, device).view(shape)
            images = torch.addcmul(shift, images, scale)
        if cfg.speckle > 0:
            noise = torch.randn(images.shape, generator=self.generator, device=self.generator.device).to(
                device
            )
            images = torch.addcmul(images, images, noise, value=cfg.speckle)
        return images.clamp_(0.0, 1.0), masks

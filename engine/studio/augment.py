"""Differentiable augmentation for tiny data sets (after Zhao et al. 2020, "Differentiable
Augmentation for Data-Efficient GAN Training"), written for this engine.

The same random transforms are applied to real and generated images before the discriminator
sees them, and every transform is differentiable in the pixels, so the generator learns through
them and never learns the augmentations themselves. All randomness comes from torch's global
generator, so a resumed run draws the same numbers.

Policies (``--augment color,translation,cutout``, the default):

* ``color``: brightness +-0.5, saturation x0..2, contrast x0.5..1.5 (per image).
* ``translation``: shift by up to 1/8 of the size (per image), zero padding.
* ``cutout``: zero one square of half the size at a random place (per image).
"""

from __future__ import annotations

import torch

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str | None) -> tuple[str, ...]:
    if not text or text == "none":
        return ()
    out = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in out if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown augmentation '{bad[0]}' (known: {', '.join(POLICIES)}, none)")
    return out


def color(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    r = torch.rand(b, 3, 1, 1, 1, device=x.device, dtype=x.dtype)
    x = x + (r[:, 0] - 0.5)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * (r[:, 1] * 2) + mean_c
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r[:, 2] + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1) + ty + 1
    gx = torch.arange(w, device=x.device).view(1, 1, w) + tx + 1
    gy, gx = gy.clamp(0, h + 1), gx.clamp(0, w + 1)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    idx = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, gy.expand(b, h, w), gx.expand(b, h, w)].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h + 1, (b, 1, 1), device=x.device) - ch // 2   # centre anywhere
    left = torch.randint(0, w + 1, (b, 1, 1), device=x.device) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_FUNCS = {"color": color, "translation": translation, "cutout": cutout}


def augment(x: torch.Tensor, policy: tuple[str, ...]) -> torch.Tensor:
    """Apply the transforms of ``policy`` in order (``()`` returns ``x``)."""
    for name in policy:
        x = _FUNCS[name](x)
    return x

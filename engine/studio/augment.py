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

Adaptive augmentation (ADA, after Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"): with a probability ``p`` each transform is applied to each image with
probability ``p`` (independently), so ``p = 0`` shows D the images as they are and ``p = 1`` is
the fixed policy above. :class:`AdaptiveP` adjusts ``p`` from the overfitting heuristic
``r_t = E[sign(D(reals))]``: above the target, D is too sure of the reals and ``p`` rises.
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


def augment(x: torch.Tensor, policy: tuple[str, ...], p: float | None = None) -> torch.Tensor:
    """Apply the transforms of ``policy`` in order (``()`` returns ``x``); with ``p``, each one
    to each image with probability ``p`` (the random numbers are drawn whatever ``p`` is, so a
    run's random stream does not depend on it)."""
    b = x.shape[0]
    for name in policy:
        y = _FUNCS[name](x)
        if p is None:
            x = y
        else:
            apply = torch.rand(b, 1, 1, 1, device=x.device) < p
            x = torch.where(apply, y, x)
    return x


class AdaptiveP:
    """ADA's augmentation probability and its update (NVlabs' rule).

    Feed it the real images' logits every step (:meth:`observe`); every ``interval`` steps
    :meth:`adjust` moves ``p`` by ``sign(r_t - target) * batch * interval / (kimg * 1000)``
    (so ``p`` can go from 0 to 1 in ``kimg`` thousand images), clamped to [0, 1], where
    ``r_t`` is the mean sign of the logits seen since the last adjustment. Plain numbers only:
    :meth:`state` / :meth:`load` round-trip it through JSON exactly.
    """

    def __init__(self, target: float = 0.6, kimg: float = 20.0, interval: int = 4, p: float = 0.0):
        self.target, self.kimg, self.interval = float(target), float(kimg), int(interval)
        self.p = float(p)
        self._signs, self.count = 0.0, 0
        self._unread: torch.Tensor | None = None  # signs summed on the device, not yet read
        self.rt: float | None = None   # r_t of the last adjustment

    def observe(self, real_logits: torch.Tensor) -> None:
        """Count the signs of this step's real logits (on their device: no host sync here)."""
        s = real_logits.detach().sign().sum()
        self._unread = s if self._unread is None else self._unread + s
        self.count += int(real_logits.numel())

    @property
    def signs(self) -> float:
        """The sum of the signs observed since the last adjustment (read back when asked)."""
        if self._unread is not None:
            self._signs += float(self._unread)
            self._unread = None
        return self._signs

    def adjust(self, batch: int) -> float:
        if self.count:
            self.rt = self.signs / self.count
            step = batch * self.interval / (self.kimg * 1000)
            sign = (self.rt > self.target) - (self.rt < self.target)
            self.p = min(1.0, max(0.0, self.p + sign * step))
        self._signs, self._unread, self.count = 0.0, None, 0
        return self.p

    def state(self) -> dict:
        return {"p": self.p, "signs": self.signs, "count": self.count, "rt": self.rt}

    def load(self, state: dict) -> None:
        self.p, self._signs, self._unread = float(state["p"]), float(state["signs"]), None
        self.count, self.rt = int(state["count"]), state.get("rt")

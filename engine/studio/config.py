"""Settings and errors of the studio commands (light: no torch, so ``lj --help`` stays quick)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.errors import LJError


class StudioError(LJError):
    """A studio command that cannot do what it was asked (one line)."""


@dataclass
class TrainConfig:
    """Everything a run needs; stored in ``checkpoint.json`` (a resumed run keeps it)."""

    mode: str = "train"                 # train | finetune | uncanny
    images: str = ""
    mix: str | None = None
    ratio: float = 0.0                  # share of each batch drawn from ``mix``
    resolution: int = 64                # R: the network's octaves (4 .. R); power of two
    init_res: list = field(default_factory=lambda: [4, 4])   # (h0, w0): images are h0*R/4 x w0*R/4
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 2
    channels: int = 128                 # channel_max of G and D; channel_base = 32 * channels
    batch: int = 8
    steps: int = 1000
    lr: float = 0.002
    r1_gamma: float = 1.0
    r1_every: int = 16
    augment: str = "color,translation,cutout"
    ada: bool = False                   # adaptive augmentation probability p (else p = 1)
    ada_target: float = 0.6             # target of r_t = E[sign(D(reals))]
    ada_kimg: float = 20.0              # p can go 0 -> 1 in this many thousand images
    ada_interval: int = 4               # adjust p every this many steps
    style_mixing: float = 0.9           # probability of mixing two z at a random layer (0 = off)
    pl_weight: float = 2.0              # path-length regularisation weight (0 = off)
    pl_every: int = 4                   # lazy: every this many steps
    pl_decay: float = 0.01              # of the running mean of path lengths
    pl_batch_shrink: int = 2            # the path-length batch is batch // this
    mirror: bool = True
    ema_kimg: float = 2.0
    sample_every: int = 100
    snapshot_every: int = 0
    checkpoint_every: int = 100
    seed: int = 0
    base_model: str | None = None       # finetune / uncanny: where G came from
    init_kwargs: dict = field(default_factory=dict)   # G's architecture (our export's form)
    d_kwargs: dict = field(default_factory=dict)
    d_kind: str = "ours"                # ours (engine.studio.discriminator) | nvlabs (a pickle's D)


def parse_size(text: str) -> tuple[int, list]:
    """``lj train --size WxH`` -> ``(resolution, [h0, w0])``: the network renders
    ``h0 * resolution / 4`` x ``w0 * resolution / 4``.

    The constant's side ``h0``/``w0`` is the image's side over the largest power of two that
    divides both sides and leaves the short side at least 4 (``64x64`` -> 64, [4, 4];
    ``128x64`` -> 64, [4, 8]; ``256x144`` -> 64, [9, 16]). Sides of at most 16 keep the first
    layers small; the resolution must be at least 8.
    """
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise StudioError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 128x64, not '{text}'") from None
    if min(w, h) < 8:
        raise StudioError(f"--size {text}: both sides must be at least 8 pixels")
    s = 1
    while w % (2 * s) == 0 and h % (2 * s) == 0 and min(w, h) // (2 * s) >= 4:
        s *= 2
    h0, w0 = h // s, w // s
    if s < 2 or max(h0, w0) > 16:
        raise StudioError(f"--size {text}: the sides need a common power-of-two factor that leaves "
                          f"at most 16 (e.g. 64x64, 128x64, 256x144, 256x192); this one leaves "
                          f"{w0}x{h0}")
    return 4 * s, [h0, w0]


def image_shape(cfg: TrainConfig) -> tuple[int, int]:
    """``(h, w)`` of the images of a run."""
    return cfg.init_res[0] * cfg.resolution // 4, cfg.init_res[1] * cfg.resolution // 4

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
    resolution: int = 64
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
    mirror: bool = True
    ema_kimg: float = 2.0
    sample_every: int = 100
    snapshot_every: int = 0
    checkpoint_every: int = 100
    seed: int = 0
    base_model: str | None = None       # finetune / uncanny: where G came from
    init_kwargs: dict = field(default_factory=dict)   # G's architecture (our export's form)
    d_kwargs: dict = field(default_factory=dict)

"""Our discriminator for training the StyleGAN2 generator: a residual network in the spirit of
StyleGAN2's (Karras et al. 2020, "resnet" D), written for this engine.

Equalized learning rate (weights stored at unit variance, scaled by ``1/sqrt(fan_in)`` when
used), a 1x1 ``fromrgb``, one residual block per octave down to 4x4 (two 3x3 convolutions,
2x average-pool down-sampling, a 1x1 skip, sum scaled by ``1/sqrt(2)``), then a minibatch
standard deviation feature, a 3x3 convolution and two dense layers to one logit per image.
``init_res=(h0, w0)`` (default ``(4, 4)``) is the epilogue's size, for rectangular images of
``(h0 * resolution // 4, w0 * resolution // 4)`` like the generator's ``init_res``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * SQRT2


def minibatch_stddev(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """``x`` ``[N, C, H, W]`` with ``num_channels`` more channels: the standard deviation of the
    features across groups of ``group_size`` images (``None``: the whole batch), averaged over
    channels (in ``num_channels`` slices) and pixels, as in StyleGAN2's minibatch-stddev layer.

    A batch that does not split into whole groups uses the largest group size below that does
    (NVlabs' layer would fail on it).
    """
    n, c, h, w = x.shape
    g = n if group_size is None else min(int(group_size), n)
    while n % g:
        g -= 1
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = (y - y.mean(0)).square().mean(0).add(1e-8).sqrt().mean(dim=(2, 3, 4))
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], 1)


class EqConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.gain = 1.0 / math.sqrt(cin * k * k)
        self.pad = k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight * self.gain, self.bias, padding=self.pad)


class EqLinear(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.gain = 1.0 / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.gain, self.bias)


class DBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = EqConv(cin, cin, 3)
        self.conv1 = EqConv(cin, cout, 3)
        self.skip = EqConv(cin, cout, 1, bias=False)

    def forward(self, x):
        y = self.skip(F.avg_pool2d(x, 2))
        x = _lrelu(self.conv0(x))
        x = F.avg_pool2d(_lrelu(self.conv1(x)), 2)
        return (x + y) / SQRT2


class Discriminator(nn.Module):
    """``D(img [B, 3, R, R] in [-1, 1]) -> [B]`` logits (high = real).

    ``channel_base / res`` channels at resolution ``res``, at most ``channel_max`` (the same rule
    as the generator's). All arguments are plain numbers: they are stored as JSON beside the
    weights (``init_kwargs``).
    """

    def __init__(self, resolution: int = 64, img_channels: int = 3, channel_base: int = 4096,
                 channel_max: int = 128, mbstd_group: int = 4, init_res=(4, 4)):
        super().__init__()
        log2 = int(round(math.log2(resolution)))
        if resolution < 8 or 2 ** log2 != resolution:
            raise ValueError(f"the discriminator needs a power-of-two resolution >= 8, not {resolution}")
        self.init_kwargs = dict(resolution=resolution, img_channels=img_channels,
                                channel_base=channel_base, channel_max=channel_max,
                                mbstd_group=mbstd_group, init_res=[int(v) for v in init_res])
        ch = {2 ** i: max(1, min(channel_base // 2 ** i, channel_max)) for i in range(2, log2 + 1)}
        self.resolution, self.mbstd_group = resolution, mbstd_group
        self.fromrgb = EqConv(img_channels, ch[resolution], 1)
        self.blocks = nn.ModuleList(DBlock(ch[2 ** i], ch[2 ** (i - 1)]) for i in range(log2, 2, -1))
        c4 = ch[4]
        self.conv = EqConv(c4 + 1, c4, 3)
        self.fc = EqLinear(c4 * int(init_res[0]) * int(init_res[1]), c4)
        self.out = EqLinear(c4, 1)

    def minibatch_std(self, x):
        return minibatch_stddev(x, self.mbstd_group)

    def forward(self, img):
        x = _lrelu(self.fromrgb(img))
        for block in self.blocks:
            x = block(x)
        x = _lrelu(self.conv(self.minibatch_std(x)))
        x = _lrelu(self.fc(x.flatten(1)))
        return self.out(x).squeeze(1)

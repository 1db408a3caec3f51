"""StyleGAN2 / StyleGAN2-ADA networks, written for this engine, weight-compatible with NVlabs.

The module tree, the ``__init__`` keyword arguments and the ``state_dict()`` keys are those of
``training.networks.Generator`` (stylegan2-ada-pytorch) and ``training.networks_stylegan2.Generator``
(stylegan3), so the state of an NVlabs pickle loads with ``load_state_dict(strict=True)``. The
arithmetic follows the paper (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", 2020) with plain torch operations: no custom CUDA kernels, nothing compiled at run time.

Pieces:

* :class:`MappingNetwork`: ``z`` (and an optional class label ``c``, embedded) -> ``w``, with the
  ``w_avg`` buffer and truncation.
* :class:`SynthesisNetwork`: a learned 4x4 constant (``init_res``, see below), then one :class:`SynthesisBlock` per octave
  (``orig``, ``skip`` or ``resnet`` architecture), each with modulated / demodulated 3x3
  convolutions (:func:`modulated_conv2d`), per-layer noise with a learned strength, a clamp on the
  activations (``conv_clamp``), and float16 blocks at the highest resolutions where the model
  was trained so (``num_fp16_res``, CUDA only).
* Up-sampling is a transposed convolution followed by the FIR low-pass filter stored in each
  layer's ``resample_filter`` buffer (:func:`fir_filter`), exactly like the training code's
  padding, so borders match too.

Rectangular output (our one extension, not in NVlabs' code): ``init_res=(h0, w0)`` (default
``(4, 4)``, NVlabs exactly) is the size of the learned constant; every block doubles it, so the
image is ``(h0 * img_resolution // 4, w0 * img_resolution // 4)`` (``img_shape``), e.g.
``init_res=(4, 8), img_resolution=64`` renders 64x128 (h x w). Only the constant's and the noise
buffers' shapes change; the module tree and the ``state_dict()`` keys stay NVlabs'.

Noise: ``noise_mode`` is ``'const'`` (the fixed ``noise_const`` buffers: deterministic),
``'random'`` (fresh noise each call) or ``'none'``. :meth:`SynthesisNetwork.forward` also takes
``noise_gain``, a tensor ``[num_ws]`` that scales each layer's learned noise strength (the engine's
per-layer noise control).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)

# name -> (function, default gain). The gains keep the activations' variance, as in the paper.
_ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, SQRT2),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), SQRT2),
    "tanh": (torch.tanh, 1.0),
    "sigmoid": (torch.sigmoid, 1.0),
    "elu": (F.elu, 1.0),
    "selu": (F.selu, 1.0),
    "softplus": (F.softplus, 1.0),
    "swish": (lambda x: x * torch.sigmoid(x), SQRT2),
}


def _activation(name: str):
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation '{name}' (known: {', '.join(_ACTIVATIONS)})") from None


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float = 1.0,
             clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """``clamp(act(x + b) * gain)``; ``b`` broadcast along ``dim``."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    fn, _ = _activation(act)
    x = fn(x)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def make_filter(taps) -> torch.Tensor:
    """The 2-D low-pass filter of a 1-D tap list, normalised to unit DC gain (float32).

    Short tap lists (fewer than 8, as in every NVlabs config) become the outer product, a
    ``[n, n]`` kernel; longer ones stay separable ``[n]``.
    """
    f = torch.as_tensor(taps if taps is not None else [1], dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def fir_filter(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
               pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Up-sample by zero insertion, pad (negative values crop), convolve with ``f``, decimate.

    ``x`` is ``[B, C, H, W]``; ``f`` a ``[fh, fw]`` or separable ``[n]`` kernel; ``pad`` is
    ``(left, right, top, bottom)``; ``gain`` scales the result (``up**2`` keeps the DC level of an
    up-sampled signal).
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    left, right, top, bottom = pad
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    x = x[:, :, max(-top, 0): x.shape[2] - max(-bottom, 0), max(-left, 0): x.shape[3] - max(-right, 0)]
    k = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip(list(range(f.ndim)))  # convolution, not correlation
    if f.ndim == 2:
        x = F.conv2d(x, k[None, None].expand(c, 1, *k.shape), groups=c)
    else:
        x = F.conv2d(x, k[None, None, :, None].expand(c, 1, -1, 1), groups=c)
        x = F.conv2d(x, k[None, None, None, :].expand(c, 1, 1, -1), groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    return (int(f.shape[-1]), int(f.shape[0]))


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """Up-sample ``x`` by ``up`` with the FIR filter ``f`` (output ``up`` times larger)."""
    fw, fh = _filter_size(f)
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return fir_filter(x, f, up=up, pad=pad, gain=up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """Low-pass ``x`` with the FIR filter ``f`` and keep every ``down``-th sample (output
    ``down`` times smaller; the padding of NVlabs' ``upfirdn2d.downsample2d``)."""
    fw, fh = _filter_size(f)
    pad = ((fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2)
    return fir_filter(x, f, down=down, pad=pad)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding: int = 0, groups: int = 1,
                    flip_weight: bool = True) -> torch.Tensor:
    """2-D convolution with optional FIR up/down-sampling, padding applied once, up front.

    ``flip_weight=True`` is correlation (``F.conv2d``); False is true convolution. The padding is
    relative to the up-sampled image, as in the training code, so borders line up with it.
    """
    oc, icg, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0 = px1 = py0 = py1 = int(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    def conv(x, w, stride=1, pad=(0, 0), transpose=False, flip=flip_weight):
        if not flip:
            w = w.flip([2, 3])
        if transpose:
            return F.conv_transpose2d(x, w, stride=stride, padding=pad, groups=groups)
        return F.conv2d(x, w, stride=stride, padding=pad, groups=groups)

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = fir_filter(x, f, down=down, pad=(px0, px1, py0, py1))
        return conv(x, w)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = conv(x, w)
        return fir_filter(x, f, up=up, pad=(px0, px1, py0, py1), gain=up * up)
    if down > 1 and up == 1:
        x = fir_filter(x, f, pad=(px0, px1, py0, py1))
        return conv(x, w, stride=down)
    if up > 1:
        # A transposed convolution does the zero insertion and the kernel in one op; the FIR
        # filter then runs on the result.
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, oc // groups, icg, kh, kw).transpose(1, 2)
            w = w.reshape(groups * icg, oc // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = conv(x, w, stride=up, pad=(pyt, pxt), transpose=True, flip=not flip_weight)
        x = fir_filter(x, f, pad=(px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), gain=up * up)
        if down > 1:
            x = fir_filter(x, f, down=down)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv(x, w, pad=(py0, px0))
    x = fir_filter(x, f if up > 1 else torch.ones(1, 1, device=x.device), up=up,
                   pad=(px0, px1, py0, py1), gain=up * up)
    x = conv(x, w)
    if down > 1:
        x = fir_filter(x, f, down=down)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused: bool = True) -> torch.Tensor:
    """The StyleGAN2 convolution: weights scaled per input channel by ``styles`` ``[B, I]``,
    then normalised per output channel (demodulation), noise added to the result.

    ``fused`` runs one grouped convolution with per-sample weights; otherwise the activations
    are scaled before and after a shared convolution (cheaper for large batches in float16).
    """
    batch = x.shape[0]
    oc, ic, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:  # keep float16 from overflowing
        weight = weight * (1 / math.sqrt(ic * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(batch, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up=up, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch, -1, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x
    if demodulate:
        w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, ic, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), resample_filter, up=up, padding=padding, groups=batch,
                        flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


# ---------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """A dense layer with equalized learning rate (weights scaled at run time, not at init)."""

    def __init__(self, in_features, out_features, bias=True, activation="linear",
                 lr_multiplier=1, bias_init=0):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        _activation(activation)
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, self.activation, gain=_activation(self.activation)[1])


class Conv2dLayer(nn.Module):
    """A plain convolution with equalized learning rate and optional FIR resampling (used by the
    ``resnet`` architecture's skip connections, and by discriminators)."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation="linear",
                 up=1, down=1, resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False,
                 trainable=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", make_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = _activation(activation)[1]
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        b = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            if b is not None:
                self.register_buffer("bias", b)
            else:
                self.bias = None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """``z`` (+ embedded class label) -> ``w``: normalise, ``num_layers`` dense layers, broadcast
    to ``num_ws`` copies, truncation towards ``w_avg``."""

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None,
                 layer_features=None, activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        sizes = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(sizes[i], sizes[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False,
                skip_w_avg_update=False):
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this model is conditional: it needs a class label c [B, {self.c_dim}]")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            w_avg = self.w_avg.to(x.dtype)
            if self.num_ws is None or truncation_cutoff is None:
                x = w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def check_init_res(init_res) -> tuple[int, int]:
    """``init_res`` as ``(h0, w0)``: two whole numbers >= 1 (a list from JSON is fine)."""
    try:
        h0, w0 = (int(v) for v in init_res)
        ok = (h0, w0) == tuple(init_res) and h0 >= 1 and w0 >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"init_res must be two whole numbers (h0, w0) >= 1, not {init_res!r}")
    return h0, w0


def block_shape(resolution: int, init_res=(4, 4)) -> tuple[int, int]:
    """``(h, w)`` of the block at ``resolution`` (4, 8, ...): ``init_res`` doubled per octave."""
    return init_res[0] * resolution // 4, init_res[1] * resolution // 4


class SynthesisLayer(nn.Module):
    """A modulated 3x3 convolution (optionally up-sampling 2x), noise, bias, activation, clamp."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1,
                 use_noise=True, activation="lrelu", resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 channels_last=False, init_res=(4, 4)):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution = resolution
        self.shape = block_shape(resolution, init_res)
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", make_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _activation(activation)[1]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(list(self.shape)))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True, gain=1, noise_gain=None):
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, not {noise_mode!r}")
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode != "none":
            strength = self.noise_strength if noise_gain is None else self.noise_strength * noise_gain
            if noise_mode == "random":
                noise = torch.randn([x.shape[0], 1, *self.shape],
                                    device=x.device, dtype=x.dtype) * strength.to(x.dtype)
            else:
                noise = self.noise_const.to(x.dtype) * strength.to(x.dtype)
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                             fused=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), self.activation, gain=self.act_gain * gain,
                        clamp=clamp)


class ToRGBLayer(nn.Module):
    """A modulated 1x1 convolution to image channels (no demodulation)."""

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None,
                 channels_last=False):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One octave: (const input | 2x up-sampling conv), a conv, and the ToRGB output."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last,
                 architecture="skip", resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, fused_modconv_default=True, init_res=(4, 4), **layer_kwargs):
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {architecture!r}")
        super().__init__()
        self.in_channels, self.w_dim = in_channels, w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", make_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, *block_shape(resolution, init_res)]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                        up=2, resample_filter=resample_filter, conv_clamp=conv_clamp,
                                        init_res=init_res, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, init_res=init_res, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, noise_gain=None,
                update_emas=False, **layer_kwargs):
        """``ws`` ``[B, num_conv + num_torgb, w_dim]``; ``noise_gain`` ``[num_conv]`` or None."""
        dtype = ws.dtype
        if self.use_fp16 and not force_fp32 and ws.device.type == "cuda":
            dtype = torch.float16
        if fused_modconv is None:
            fused_modconv = dtype == torch.float32 or ws.shape[0] == 1
        gains = iter([None] * self.num_conv if noise_gain is None else noise_gain.unbind(0))
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, noise_gain=next(gains),
                           **layer_kwargs)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, noise_gain=next(gains),
                           **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=math.sqrt(0.5),
                           noise_gain=next(gains), **layer_kwargs)
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, noise_gain=next(gains),
                           **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, noise_gain=next(gains),
                           **layer_kwargs)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(ws.dtype)
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws`` ``[B, num_ws, w_dim]`` -> image ``[B, img_channels, H, W]`` (about ``[-1, 1]``),
    ``(H, W) = img_shape``: ``(R, R)`` by default, ``init_res`` times ``R / 4`` when given."""

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 num_fp16_res=0, init_res=(4, 4), **block_kwargs):
        if not (img_resolution >= 4 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        init_res = check_init_res(init_res)
        super().__init__()
        self.init_res = init_res
        self.img_shape = block_shape(img_resolution, init_res)
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = res == img_resolution
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                                   resolution=res, img_channels=img_channels, is_last=is_last,
                                   use_fp16=res >= fp16_resolution, init_res=init_res, **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def layer_resolutions(self) -> list[int]:
        """The resolution each of the ``num_ws`` style inputs drives (a ToRGB shares its w with
        the next block's first convolution; the last one belongs to the last block)."""
        out = []
        for res in self.block_resolutions:
            out += [res] * getattr(self, f"b{res}").num_conv
        return (out + [self.img_resolution])[: self.num_ws]

    def forward(self, ws, noise_gain=None, **block_kwargs):
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], not {list(ws.shape)}")
        if not ws.is_floating_point() or ws.dtype == torch.float64:
            ws = ws.to(torch.float32)
        x = img = None
        idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur = ws.narrow(1, idx, block.num_conv + block.num_torgb)
            gain = None if noise_gain is None else noise_gain.narrow(0, idx, block.num_conv)
            x, img = block(x, img, cur, noise_gain=gain, **block_kwargs)
            idx += block.num_conv
        return img


class Generator(nn.Module):
    """The whole StyleGAN2 generator: :class:`MappingNetwork` + :class:`SynthesisNetwork`.

    Takes both NVlabs signatures: ``synthesis_kwargs={...}`` (stylegan2-ada-pytorch) and the
    synthesis arguments as plain keywords (stylegan3's ``networks_stylegan2``).
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None,
                 synthesis_kwargs=None, **more_synthesis_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        skw = dict(synthesis_kwargs or {}, **more_synthesis_kwargs)
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution,
                                          img_channels=img_channels, **skw)
        self.num_ws = self.synthesis.num_ws
        self.init_res, self.img_shape = self.synthesis.init_res, self.synthesis.img_shape
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False,
                **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

"""StyleGAN3 ("Alias-Free GAN") generator: our own implementation, plain torch ops.

This is a from-scratch implementation of the generator described in Karras et al., "Alias-Free
Generative Adversarial Networks" (NeurIPS 2021), written so that a state dict taken from one of
NVlabs' StyleGAN3 pickles loads into it with ``strict=True`` and renders the same picture (within
1e-3 in fp32, see tests/test_stylegan3.py). It needs neither NVlabs' code nor their custom CUDA
kernels: the filtered leaky ReLU is built from ``conv_transpose2d`` / ``conv2d`` / ``leaky_relu``.

Both configurations are covered by the same classes:

- **StyleGAN3-T** (translation equivariant): 3x3 convolutions, separable Kaiser low-pass filters.
- **StyleGAN3-R** (rotation equivariant): 1x1 convolutions (``conv_kernel=1``), twice the channels,
  and radially symmetric (jinc x Kaiser) downsampling filters (``use_radial_filters=True``).

Conditional models (``c_dim > 0``) embed the class label in the mapping network.

Construction takes exactly the keyword arguments NVlabs' ``training.networks_stylegan3.Generator``
takes (and that their pickles record as ``init_kwargs``)::

    G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
                  mapping_kwargs={'num_layers': 2}, channel_base=32768, channel_max=512,
                  magnitude_ema_beta=0.999)
    G.load_state_dict(state, strict=True)
    ws = G.mapping(z, c, truncation_psi=0.7)        # [B, num_ws, w_dim]
    img = G.synthesis(ws)                           # [B, img_channels, res, res], about [-1, 1]

Moving the picture (the visualizer's "equivariance" controls)
-------------------------------------------------------------
The first layer samples Fourier features on a continuous plane; ``synthesis.input.transform``
(a ``[3, 3]`` buffer) is the *inverse* of the transform applied to the resulting image, exactly as
NVlabs' visualizer uses it. :meth:`Generator.set_transform` fills it from three numbers, named as
the engine's generator parameters (:data:`TRANSFORM_PARAMS`: ``name -> (default, lo, hi)``):

- ``translate_x``, ``translate_y``: in image widths (``1 / img_resolution`` is one output pixel);
  positive moves the content right / down on screen.
- ``rotate``: degrees; positive turns the content counter-clockwise on screen.

For a StyleGAN3-T model a whole-pixel translation moves the picture by that many pixels (new
content appears at the edge); a StyleGAN3-R model also rotates cleanly. The update is an in-place
``copy_`` of tensor ops, so the three values may be device tensors (CUDA-graph safe).

fp16: as in NVlabs' code, layers flagged ``use_fp16`` (the ``num_fp16_res`` highest resolutions)
run in half precision on CUDA unless ``force_fp32=True``; on the CPU everything runs in fp32.

What NVlabs' pickles carry (``G_ema.init_kwargs``, from their train.py): ``z_dim=512, w_dim=512,
mapping_kwargs={'num_layers': 2}, channel_base, channel_max, magnitude_ema_beta, c_dim,
img_resolution, img_channels``; StyleGAN3-R adds ``conv_kernel=1, use_radial_filters=True`` (and
doubled ``channel_base``/``channel_max``); ``--fp32`` runs add ``num_fp16_res=0, conv_clamp=None``.
Pass them as they are: ``Generator(**init_kwargs)`` then ``load_state_dict(state, strict=True)``.

The layer layout (cutoffs, stopbands, sampling rates, sizes and channel counts per layer) follows
the paper's geometric progression (its Appendix F); the filters are designed here with
``scipy.signal.firwin`` (separable Kaiser) and our own jinc-Kaiser for the radial ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisInput",
    "SynthesisLayer",
    "FullyConnectedLayer",
    "TRANSFORM_PARAMS",
    "input_transform",
    "design_lowpass_filter",
    "filtered_lrelu",
    "layer_specs",
]

#: The picture-moving parameters a StyleGAN3 generator offers: ``name -> (default, lo, hi)``.
#: Units: image widths for the translations, degrees for ``rotate`` (see :meth:`Generator.set_transform`).
TRANSFORM_PARAMS: dict[str, tuple[float, float, float]] = {
    "translate_x": (0.0, -1.0, 1.0),
    "translate_y": (0.0, -1.0, 1.0),
    "rotate": (0.0, -180.0, 180.0),
}


# ----------------------------------------------------------------------------------------------
# Filters and the filtered leaky ReLU.


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> torch.Tensor | None:
    """A Kaiser-windowed low-pass FIR filter, or ``None`` for the identity (``numtaps == 1``).

    Args:
        numtaps: filter length (taps per axis).
        cutoff: cutoff frequency ``f_c`` (same units as ``fs``).
        width: transition band width (twice the half-width ``f_h``).
        fs: sampling rate the filter runs at.
        radial: ``False``: separable, returns ``[numtaps]`` (applied along x and y);
            ``True``: radially symmetric jinc x Kaiser, returns ``[numtaps, numtaps]``.

    Returns:
        float32 tensor normalised to unit DC gain, or ``None``.
    """
    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    import scipy.signal  # a declared dependency (librosa needs it too); imported late to keep `import engine` light
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)

    import scipy.special
    # Ideal circular low-pass: its impulse response is a jinc, J1(2 pi f_c r) / (pi r).
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    radius = np.hypot(pos[None, :], pos[:, None])
    arg = 2 * np.pi * cutoff * radius
    safe = np.where(radius > 0, radius, 1.0)
    taps = np.where(radius > 0, scipy.special.j1(arg) / (np.pi * safe), cutoff)  # limit at r = 0
    # Kaiser window sized for the requested transition band, applied along both axes.
    atten = scipy.signal.kaiser_atten(numtaps, width / (fs / 2))
    window = np.kaiser(numtaps, scipy.signal.kaiser_beta(atten))
    taps = taps * np.outer(window, window)
    taps = taps / taps.sum()
    return torch.as_tensor(taps, dtype=torch.float32)


def _depthwise(f: torch.Tensor, channels: int, axis: str, dtype: torch.dtype) -> torch.Tensor:
    """Filter ``f`` as a depthwise conv weight ``[C, 1, kh, kw]`` along ``axis`` ('x', 'y', 'xy')."""
    f = f.to(dtype)
    if axis == "x":
        f = f.view(1, 1, 1, -1)
    elif axis == "y":
        f = f.view(1, 1, -1, 1)
    else:
        f = f.view(1, 1, *f.shape)
    return f.expand(channels, 1, *f.shape[2:])


def _upsample(x: torch.Tensor, f: torch.Tensor | None, up: int, padding: list[int]) -> torch.Tensor:
    """Zero-stuff by ``up``, pad by ``padding`` (``[x0, x1, y0, y1]``, negative crops), then
    convolve with ``f`` at gain ``up**2`` (keeps the signal's magnitude), keeping only output
    pixels whose footprint lies inside the padded image.

    Computed per phase for separable filters (:func:`_upsample_polyphase`), else as a strided
    transposed convolution (the zeros are never multiplied), followed by the crop/pad that moves
    the full convolution onto the padded frame.
    ``[B, C, H, W] -> [B, C, H * up + y0 + y1 - (k - 1), W * up + x0 + x1 - (k - 1)]``.
    """
    x0, x1, y0, y1 = padding
    if f is None:
        if up == 1:
            return F.pad(x, [x0, x1, y0, y1])
        f = torch.ones([1, 1], device=x.device)
    channels = x.shape[1]
    if f.ndim == 1 and f.shape[0] % up == 0 and x.device.type == "cuda":  # measured: slower on CPUs
        k = kh = f.shape[0]
        x = _upsample_polyphase(x, f * up, up, dim=3)
        x = _upsample_polyphase(x, f * up, up, dim=2)
    elif f.ndim == 1:
        k = kh = f.shape[0]
        x = F.conv_transpose2d(x, _depthwise(f * up, channels, "x", x.dtype), stride=(1, up), groups=channels)
        x = F.conv_transpose2d(x, _depthwise(f * up, channels, "y", x.dtype), stride=(up, 1), groups=channels)
    else:
        kh, k = f.shape
        x = F.conv_transpose2d(x, _depthwise(f * up * up, channels, "xy", x.dtype), stride=up, groups=channels)
    # The full convolution starts k-1 samples before the zero-stuffed signal and ends k-up after it.
    return _pad_or_crop(x, [x0 - (k - 1), x1 - (k - up), y0 - (kh - 1), y1 - (kh - up)])


def _upsample_polyphase(x: torch.Tensor, f: torch.Tensor, up: int, dim: int) -> torch.Tensor:
    """Zero-stuff ``x`` by ``up`` along ``dim`` (2: rows, 3: columns) and convolve it fully with
    the 1-D filter ``f`` (length a multiple of ``up``): what a strided depthwise transposed
    convolution gives, ``n -> (n - 1) * up + len(f)`` samples along ``dim``.

    Computed per phase, at the input's rate: output sample ``up * q + r`` is ``x`` convolved with
    ``f[r::up]``, so one depthwise convolution with ``up`` outputs per channel does all phases,
    and one copy interleaves them. (Depthwise transposed convolutions have no fast kernel on
    CUDA; this form runs on the ordinary depthwise one and never touches the zeros.)
    """
    b, c, h, w = x.shape
    taps = f.shape[0] // up
    phases = f.view(taps, up).t().flip(1).to(x.dtype)  # [up, taps]: f[r::up], flipped (correlation)
    if dim == 3:
        weight = phases.reshape(up, 1, 1, taps).repeat(c, 1, 1, 1)
        y = F.conv2d(x, weight, padding=(0, taps - 1), groups=c)    # [B, C * up, H, W + taps - 1]
        n = y.shape[3]
        return y.view(b, c, up, h, n).permute(0, 1, 3, 4, 2).reshape(b, c, h, n * up)
    weight = phases.reshape(up, 1, taps, 1).repeat(c, 1, 1, 1)
    y = F.conv2d(x, weight, padding=(taps - 1, 0), groups=c)        # [B, C * up, H + taps - 1, W]
    n = y.shape[2]
    return y.view(b, c, up, n, w).permute(0, 1, 3, 2, 4).reshape(b, c, n * up, w)


def _pad_or_crop(x: torch.Tensor, pads: list[int]) -> torch.Tensor:
    """``F.pad`` that crops with a view (no copy) when all amounts are <= 0."""
    if all(p <= 0 for p in pads):
        x0, x1, y0, y1 = (-p for p in pads)
        return x[:, :, y0:x.shape[2] - y1, x0:x.shape[3] - x1]
    return F.pad(x, pads)


def _downsample(x: torch.Tensor, f: torch.Tensor | None, down: int) -> torch.Tensor:
    """Convolve with ``f`` (valid part only) and keep every ``down``-th pixel."""
    if f is None:
        return x if down == 1 else x[:, :, ::down, ::down]
    channels = x.shape[1]
    f = f.flip(list(range(f.ndim)))  # convolution, not correlation (the designed filters are symmetric)
    if f.ndim == 1:
        x = F.conv2d(x, _depthwise(f, channels, "x", x.dtype), stride=(1, down), groups=channels)
        return F.conv2d(x, _depthwise(f, channels, "y", x.dtype), stride=(down, 1), groups=channels)
    return F.conv2d(x, _depthwise(f, channels, "xy", x.dtype), stride=down, groups=channels)


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None,
                   b: torch.Tensor | None, up: int = 1, down: int = 1, padding: list[int] = (0, 0, 0, 0),
                   gain: float = math.sqrt(2), slope: float = 0.2, clamp: float | None = None) -> torch.Tensor:
    """The alias-free nonlinearity: bias, upsample, leaky ReLU, clamp, downsample.

    1. add the per-channel bias ``b`` ``[C]``;
    2. upsample by ``up`` with the low-pass ``fu`` (``[k]`` separable, ``[k, k]``, or ``None``)
       after padding by ``padding = [x0, x1, y0, y1]`` (in upsampled pixels; negative crops);
    3. ``leaky_relu(slope) * gain``, then clamp to ``[-clamp, clamp]`` when ``clamp`` is set;
    4. low-pass with ``fd`` and keep every ``down``-th pixel.

    ``x``: ``[B, C, H, W]``; returns ``[B, C, H', W']`` with
    ``H' = (H * up + y0 + y1 - (len(fu) - 1) - (len(fd) - 1) + down - 1) // down`` (same for W).
    """
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    fresh = b is not None or fu is not None or up > 1  # x is now a buffer of our own
    x = _upsample(x, fu, up, list(padding))
    x = _activate(x, gain, slope, clamp, in_place=fresh)
    return _downsample(x, fd, down)


def _activate(x: torch.Tensor, gain: float, slope: float, clamp: float | None,
              in_place: bool) -> torch.Tensor:
    """``clamp(leaky_relu(x, slope) * gain)``; in place when ``x`` is a buffer of the caller's
    own and no gradient flows (inference: the largest tensor of the layer is not copied)."""
    if in_place and not x.requires_grad:
        if slope != 1:
            F.leaky_relu_(x, slope)
        if gain != 1:
            x.mul_(gain)
        if clamp is not None:
            x.clamp_(-clamp, clamp)
        return x
    x = F.leaky_relu(x, slope) if slope != 1 else x
    x = x * gain if gain != 1 else x
    return x.clamp(-clamp, clamp) if clamp is not None else x


def resampling_matrices(fu: torch.Tensor | None, fd: torch.Tensor | None, up: int, down: int,
                        padding: list[int], size: tuple[int, int]) -> tuple | None:
    """:func:`filtered_lrelu`'s resampling of a ``size = (H, W)`` input as four matrices
    ``(Ux [W, W'], UyT [H', H], Dx [W', W''], DyT [H'', H'])`` (float64, CPU), or ``None`` when a
    filter is not separable (a radial 2-D one).

    Each is what the per-axis operation does to the identity: zero-stuff by ``up``, pad
    (``padding`` ``[x0, x1, y0, y1]``, negative crops), convolve with ``fu * up`` (valid part);
    then convolve with ``fd`` and keep every ``down``-th sample. So ``x @ Ux`` up-samples the
    rows of ``x`` exactly as the convolutions do (see :func:`filtered_lrelu_matmul`).
    """
    if (fu is not None and fu.ndim != 1) or (fd is not None and fd.ndim != 1):
        return None
    one = torch.ones(1, dtype=torch.float64)
    f_up = (fu.detach().cpu().double() if fu is not None else one) * up
    f_down = fd.detach().cpu().double() if fd is not None else one

    def up_matrix(n: int, p0: int, p1: int) -> torch.Tensor:
        stuffed = torch.zeros(n, 1, n * up, dtype=torch.float64)
        stuffed[torch.arange(n), 0, torch.arange(n) * up] = 1.0
        stuffed = F.pad(stuffed, [p0, p1])
        return F.conv1d(stuffed, f_up.flip(0).view(1, 1, -1))[:, 0]

    def down_matrix(n: int) -> torch.Tensor:
        eye = torch.eye(n, dtype=torch.float64)[:, None]
        return F.conv1d(eye, f_down.flip(0).view(1, 1, -1), stride=down)[:, 0]

    x0, x1, y0, y1 = padding
    h, w = size
    ux, uy = up_matrix(w, x0, x1), up_matrix(h, y0, y1)
    dx, dy = down_matrix(ux.shape[1]), down_matrix(uy.shape[1])
    return ux, uy.t().contiguous(), dx, dy.t().contiguous()


def filtered_lrelu_matmul(x: torch.Tensor, matrices: tuple, b: torch.Tensor | None,
                          gain: float = math.sqrt(2), slope: float = 0.2,
                          clamp: float | None = None) -> torch.Tensor:
    """:func:`filtered_lrelu` with the resampling done by :func:`resampling_matrices` (in ``x``'s
    dtype and device): four matrix products instead of depthwise convolutions.

    The matrices are mostly zeros, but on a GPU their products run on the matrix units, which
    are many times faster at this than the depthwise convolution kernels (whose per-tap loops
    left StyleGAN3 at a few frames per second); on a CPU the convolutions are the cheaper form.
    """
    ux, uy_t, dx, dy_t = matrices
    if b is not None:
        x = x + b.to(x.dtype).view(1, -1, 1, 1)
    x = torch.matmul(uy_t, torch.matmul(x, ux))     # up: columns, then rows (a fresh tensor)
    x = _activate(x, gain, slope, clamp, in_place=True)
    return torch.matmul(dy_t, torch.matmul(x, dx))  # down: columns, then rows


# ----------------------------------------------------------------------------------------------
# Layers.


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalized learning rate: ``act(x @ (weight * gain).T + bias * lr)``.

    ``x``: ``[B, in_features]`` -> ``[B, out_features]``. ``activation``: 'linear' or 'lrelu'
    (slope 0.2, gain sqrt(2)).
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 lr_multiplier: float = 1.0, weight_init: float = 1.0, bias_init=0.0):
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features]) / lr_multiplier
        self.bias = torch.nn.Parameter(torch.tensor(bias, dtype=torch.float32))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(x.dtype) * self.weight_gain
        bias = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            bias = bias * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(bias.unsqueeze(0), x, weight.t())
        return F.leaky_relu(x.matmul(weight.t()) + bias, 0.2) * math.sqrt(2)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


def _normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(1, keepdim=True) + eps).rsqrt()


class MappingNetwork(torch.nn.Module):
    """z ``[B, z_dim]`` (+ label c ``[B, c_dim]``) -> ws ``[B, num_ws, w_dim]``, with truncation.

    ``num_layers`` dense lrelu layers (2 for StyleGAN3) at learning-rate multiplier
    ``lr_multiplier``; ``w_avg`` (buffer ``[w_dim]``) is the running mean of w used for truncation.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        width_in = z_dim + (w_dim if c_dim > 0 else 0)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(width_in if idx == 0 else w_dim, w_dim,
                                                          activation="lrelu", lr_multiplier=lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi=1, truncation_cutoff=None,
                update_emas: bool = False) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [batch, {self.z_dim}], got {list(z.shape)}")
        x = _normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim or c.shape[0] != z.shape[0]:
                got = None if c is None else list(c.shape)
                raise ValueError(f"this model is conditional: c must be [batch, {self.c_dim}], got {got}")
            y = _normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        cutoff = self.num_ws if truncation_cutoff is None else int(truncation_cutoff)
        if isinstance(truncation_psi, torch.Tensor) or truncation_psi != 1:
            # A tensor psi is applied unconditionally: no host sync to decide (CUDA-graph safe).
            ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
        return ws

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


def input_transform(translate_x=0.0, translate_y=0.0, rotate=0.0) -> torch.Tensor:
    """The ``[3, 3]`` float32 value for ``synthesis.input.transform`` that moves the picture.

    ``translate_*`` in image widths (+x right, +y down), ``rotate`` in degrees (+ counter-clockwise
    on screen). The buffer holds the inverse of the image transform
    ``[[cos, sin, tx], [-sin, cos, ty], [0, 0, 1]]`` (the matrix NVlabs' visualizer builds), i.e.
    ``[[cos, -sin, -(cos tx - sin ty)], [sin, cos, -(sin tx + cos ty)], [0, 0, 1]]``.
    Accepts floats or 0-d tensors (then the result is on their device, built from tensor ops).
    """
    ref = next((v for v in (translate_x, translate_y, rotate) if isinstance(v, torch.Tensor)), None)
    device = ref.device if ref is not None else torch.device("cpu")
    tx, ty, deg = (torch.as_tensor(v, dtype=torch.float64, device=device) for v in (translate_x, translate_y, rotate))
    angle = deg * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    m = torch.stack([cos, -sin, -(cos * tx - sin * ty),
                     sin, cos, -(sin * tx + cos * ty),
                     zero, zero, one]).view(3, 3)
    return m.to(torch.float32)


class SynthesisInput(torch.nn.Module):
    """Fourier-feature input: w ``[B, w_dim]`` -> ``[B, channels, size, size]``.

    ``channels`` sinusoids with fixed random frequencies (buffer ``freqs`` ``[C, 2]``, inside a disc
    of radius ``bandwidth``) and phases (``phases`` ``[C]``) sampled on a grid of ``size`` pixels at
    ``sampling_rate`` pixels per unit, centred on the image. Each w rotates and translates the plane
    (``affine``: w -> (cos, sin, tx, ty)); then the user transform ``transform`` ``[3, 3]`` (inverse,
    wrt. the resulting image) applies; then a learned channel mix ``weight`` ``[C, C]``.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = int(size)
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth

        # Random frequencies, uniform-ish in the disc of radius `bandwidth`; random phases.
        freqs = torch.randn([channels, 2])
        radius = freqs.norm(dim=1, keepdim=True)
        freqs = freqs / (radius * radius.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5

        self.weight = torch.nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)
        # Pixel-centre coordinates of the sampling grid (not part of the state dict).
        coords = (torch.arange(self.size, dtype=torch.float64) + 0.5 - self.size / 2) / sampling_rate
        self.register_buffer("grid", coords.to(torch.float32), persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # Learned motion: rotation (cos, sin) normalised to unit length, then translation.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = t.unbind(1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        learned = torch.stack([cos, -sin, -cos * tx + sin * ty,
                               sin, cos, -sin * tx - cos * ty,
                               zero, zero, one], dim=1).view(-1, 3, 3)
        # float32 whatever the module was cast to (.float() is a no-op on float32 buffers): the
        # phases of a half-precision grid would be visibly off
        m = learned @ self.transform.float().unsqueeze(0)  # [B, 3, 3]: the image's inverse transform

        # Transform the frequencies and phases: sin(2 pi (f . (A g + b) + p)).
        base_freqs = self.freqs.float()
        phases = self.phases.float().unsqueeze(0) + (base_freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)  # [B, C]
        freqs = base_freqs.unsqueeze(0) @ m[:, :2, :2]  # [B, C, 2]
        # Fade out frequencies a user transform (scaling) pushed past the band limit.
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)

        g = self.grid.float()
        fx, fy = freqs[..., 0, None, None], freqs[..., 1, None, None]  # [B, C, 1, 1]
        x = fx * g.view(1, 1, 1, -1) + fy * g.view(1, 1, -1, 1) + phases[..., None, None]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[..., None, None]  # [B, C, H, W]

        weight = self.weight.float() / math.sqrt(self.channels)
        return torch.einsum("oc,bchw->bohw", weight, x)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


def _modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, padding: int,
                      demodulate: bool, input_gain: torch.Tensor) -> torch.Tensor:
    """Style-modulated convolution, computed by scaling activations (one conv for the batch).

    ``x`` ``[B, I, H, W]``, ``weight`` ``[O, I, k, k]``, ``styles`` ``[B, I]``, ``input_gain``
    scalar -> ``[B, O, H + 2 p - k + 1, W + 2 p - k + 1]``. Equivalent to convolving each sample
    with ``weight * styles`` (demodulated to unit norm per output channel when ``demodulate``).
    """
    weight = weight.float()  # the demodulation's sums in float32 even when the module is float16
    if demodulate:  # pre-normalise (keeps fp16 in range; cancels out in the demodulation)
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    y = F.conv2d(x * (styles * input_gain).to(x.dtype)[:, :, None, None], weight.to(x.dtype), padding=padding)
    if demodulate:
        # sum over (i, kh, kw) of (weight * style)^2, per sample and output channel.
        dcoefs = (styles.square() @ weight.square().sum([2, 3]).t() + 1e-8).rsqrt()  # [B, O]
        y = y * dcoefs.to(y.dtype)[:, :, None, None]
    return y


class SynthesisLayer(torch.nn.Module):
    """One alias-free layer: modulated conv -> filtered leaky ReLU (up, act, down).

    ``x`` ``[B, in_channels, in_size, in_size]``, ``w`` ``[B, w_dim]`` ->
    ``[B, out_channels, out_size, out_size]``. The activation runs at ``tmp_sampling_rate``
    (``lrelu_upsampling`` x the higher of the two rates); ``up_filter`` / ``down_filter`` are the
    designed low-pass filters (``None`` for the ToRGB layer, which is a 1x1 conv + bias + clamp).
    ``magnitude_ema`` normalises the input magnitude.
    """

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int, out_size: int,
                 in_sampling_rate: int, out_sampling_rate: int, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float,
                 conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Up to the activation's rate, then down to the output rate, each with its own low-pass.
        self.up_factor = _ratio(self.tmp_sampling_rate, in_sampling_rate)
        self.down_factor = _ratio(self.tmp_sampling_rate, out_sampling_rate)
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding (in upsampled pixels) that lands output samples on the symmetric grid (App. C.3).
        wanted = (self.out_size - 1) * self.down_factor + 1          # before downsampling
        have = (self.in_size + self.conv_kernel - 1) * self.up_factor  # after upsampling
        total = wanted - have + self.up_taps + self.down_taps - 2
        lo = (total + self.up_factor) // 2
        self.padding = [lo, total - lo, lo, total - lo]
        # How filtered_lrelu resamples: "matmul" (filtered_lrelu_matmul), "conv", or "auto":
        # matmul on CUDA, convolutions elsewhere. The matrices are made once per input size,
        # dtype and device (on the runner's warm-up, before any CUDA graph is captured).
        self.resample = "auto"
        self._matrices: dict = {}
        # filtered_lrelu's activation: linear for ToRGB, leaky ReLU with gain sqrt(2) elsewhere
        self.act = dict(gain=1 if is_torgb else math.sqrt(2), slope=1 if is_torgb else 0.2,
                        clamp=conv_clamp)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random",
                force_fp32: bool = False, update_emas: bool = False) -> torch.Tensor:
        # `noise_mode` is accepted for StyleGAN2 compatibility; StyleGAN3 has no noise inputs.
        if update_emas:
            magnitude = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(magnitude.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))

        half = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        x = x.to(torch.float16 if half else torch.float32)
        x = _modulated_conv2d(x, self.weight, styles, padding=self.conv_kernel - 1,
                              demodulate=not self.is_torgb, input_gain=self.magnitude_ema.rsqrt())
        matrices = self._resampling(x)
        if matrices is not None:
            return filtered_lrelu_matmul(x, matrices, self.bias, **self.act)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=self.up_factor,
                              down=self.down_factor, padding=self.padding, **self.act)

    def _resampling(self, x: torch.Tensor) -> tuple | None:
        """The resampling matrices for ``x`` (cached), or None for the convolution path."""
        mode = self.resample
        if mode == "conv" or (mode == "auto" and x.device.type != "cuda"):
            return None
        key = (tuple(x.shape[2:]), x.dtype, x.device)
        if key not in self._matrices:
            mats = resampling_matrices(self.up_filter, self.down_filter, self.up_factor,
                                       self.down_factor, self.padding, key[0])
            self._matrices[key] = None if mats is None else tuple(
                m.to(device=x.device, dtype=x.dtype) for m in mats)
        return self._matrices[key]

    def extra_repr(self) -> str:
        return (f"torgb={self.is_torgb}, critical={self.is_critically_sampled}, fp16={self.use_fp16}, "
                f"channels={self.in_channels}->{self.out_channels}, size={self.in_size}->{self.out_size}, "
                f"rate={self.in_sampling_rate}->{self.tmp_sampling_rate}->{self.out_sampling_rate}, "
                f"cutoff={self.in_cutoff:g}->{self.out_cutoff:g}")


def _ratio(a: float, b: float) -> int:
    r = int(np.rint(a / b))
    if b * r != a:
        raise ValueError(f"sampling rates {a} and {b} are not integer multiples")
    return r


def layer_specs(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
                num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                margin_size: int = 10) -> dict[str, np.ndarray]:
    """Per-layer design of the synthesis network (index 0 = the Fourier input, N = ToRGB).

    Cutoff ``f_c`` and minimum stopband ``f_t`` grow geometrically from the first layer to the
    last non-critical one (then stay at the image's Nyquist limit); each layer samples at the
    smallest power of two above ``2 f_t`` (capped at the resolution), with ``margin_size`` extra
    pixels each side except for the last two (image-sized) layers; channels scale as ``1 / f_c``.

    Returns arrays of length ``num_layers + 1``: ``cutoffs``, ``stopbands``, ``sampling_rates``,
    ``half_widths``, ``sizes``, ``channels``.
    """
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    progress = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** progress
    stopbands = first_stopband * (last_stopband / first_stopband) ** progress
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
    sizes = sampling_rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return dict(cutoffs=cutoffs, stopbands=stopbands, sampling_rates=sampling_rates,
                half_widths=half_widths, sizes=sizes, channels=channels)


class SynthesisNetwork(torch.nn.Module):
    """ws ``[B, num_ws, w_dim]`` -> image ``[B, img_channels, img_resolution, img_resolution]``.

    ``input`` (Fourier features, ws[:, 0]) then layers ``L{i}_{size}_{channels}`` for
    i = 0..num_layers (the last is ToRGB), layer i taking ws[:, i + 1]; the result is scaled by
    ``output_scale``. ``num_ws = num_layers + 2``.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2,
                 first_cutoff: float = 2, first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                 margin_size: int = 10, output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        spec = layer_specs(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                           first_cutoff, first_stopband, last_stopband_rel, margin_size)
        cut, rate, half = spec["cutoffs"], spec["sampling_rates"], spec["half_widths"]
        size, chan = spec["sizes"], spec["channels"]
        self.input = SynthesisInput(w_dim=w_dim, channels=int(chan[0]), size=int(size[0]),
                                    sampling_rate=rate[0], bandwidth=cut[0])
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(rate[idx] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(chan[prev]), out_channels=int(chan[idx]),
                in_size=int(size[prev]), out_size=int(size[idx]),
                in_sampling_rate=int(rate[prev]), out_sampling_rate=int(rate[idx]),
                in_cutoff=cut[prev], out_cutoff=cut[idx], in_half_width=half[prev], out_half_width=half[idx],
                **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, **layer_kwargs) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, **layer_kwargs)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, "
                f"num_critical={self.num_critical}, margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}")


class Generator(torch.nn.Module):
    """StyleGAN3 generator: ``mapping`` (z, c -> ws) then ``synthesis`` (ws -> image).

    Takes NVlabs' init kwargs (``mapping_kwargs`` go to :class:`MappingNetwork`, everything else
    to :class:`SynthesisNetwork` and its layers) and has their state-dict layout.
    Attributes: ``z_dim, c_dim, w_dim, num_ws, img_resolution, img_channels``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict | None = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **dict(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi=1, truncation_cutoff=None,
                update_emas: bool = False, **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    @torch.no_grad()
    def set_transform(self, translate_x=0.0, translate_y=0.0, rotate=0.0) -> None:
        """Move the picture: ``translate_x/y`` in image widths (+ = right/down), ``rotate`` in degrees
        (+ = counter-clockwise). Writes ``synthesis.input.transform`` in place (floats or 0-d tensors).
        """
        buf = self.synthesis.input.transform
        buf.copy_(input_transform(translate_x, translate_y, rotate).to(buf.device))

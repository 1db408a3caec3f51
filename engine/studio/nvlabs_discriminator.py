"""The StyleGAN2(-ADA) discriminator in NVlabs' form, written for this engine, so that the
discriminator stored in an NVlabs pickle can be fine-tuned (``lj finetune MODEL.pkl``) or frozen
(``lj uncanny MODEL.pkl``).

The module tree, the ``__init__`` keyword arguments and the ``state_dict()`` keys are those of
``training.networks.Discriminator`` (stylegan2-ada-pytorch) and
``training.networks_stylegan2.Discriminator`` (stylegan3), buffers included, so the tensors of a
pickle's ``D`` record load with ``load_state_dict(strict=True)``. The layers are the generator's
(:mod:`engine.generators.stylegan2`: equalized-learning-rate :class:`Conv2dLayer` and
:class:`FullyConnectedLayer`, FIR down-sampling, the :class:`MappingNetwork` that embeds class
labels); nothing of NVlabs' code is used or run.

Pieces:

* :class:`DiscriminatorBlock`: one octave down, ``resnet`` (NVlabs' default: two 3x3
  convolutions, the second down-sampling 2x, plus a 1x1 down-sampling skip, summed at
  ``sqrt(1/2)``), ``skip`` (every block also reads the image, down-sampled alongside) or
  ``orig`` (the two convolutions alone); the first block reads the image through ``fromrgb``.
* :class:`MinibatchStdLayer` and :class:`DiscriminatorEpilogue` (4x4: minibatch stddev, a 3x3
  convolution, two dense layers; with class labels, the logit is the projection of the output on
  the mapped label ``cmap``).
* :class:`NVlabsDiscriminator`: ``D(img [B, C, R, R], c) -> [B, 1]`` logits, high = real.
* :func:`discriminator_from_record`: builds one from a pickle's ``D`` record (read by
  :mod:`engine.generators.nvlabs_pickle`) and loads its tensors strictly.

Float16: ``num_fp16_res`` is accepted and recorded, but every layer runs in float32 here (the
weights are float32 in the pickles either way). ``conv_clamp`` clamps the convolutions'
outputs as NVlabs does. Freeze-D (``block_kwargs.freeze_layers``) keeps the first layers'
weights as buffers, as NVlabs does, so they do not train.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from engine.generators.stylegan2 import (Conv2dLayer, FullyConnectedLayer, MappingNetwork,
                                         downsample2d, make_filter)
from engine.studio.discriminator import minibatch_stddev

ARCHITECTURES = ("orig", "skip", "resnet")


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown discriminator architecture {architecture!r} "
                         f"(known: {', '.join(ARCHITECTURES)})")


class DiscriminatorBlock(nn.Module):
    """One octave: (``fromrgb`` of the image), ``conv0`` 3x3, ``conv1`` 3x3 down-sampling 2x,
    and for ``resnet`` a 1x1 down-sampling ``skip``. ``forward(x, img) -> (x, img)``; ``img`` is
    passed on (down-sampled) only by the ``skip`` architecture."""

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels,
                 first_layer_idx, architecture="resnet", activation="lrelu",
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, use_fp16=False,
                 fp16_channels_last=False, freeze_layers=0):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"a discriminator block takes 0 or {tmp_channels} input channels, "
                             f"not {in_channels}")
        _check_architecture(architecture)
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", make_filter(resample_filter))
        self.num_layers = 0

        def layer(*args, **kwargs):
            trainable = self.first_layer_idx + self.num_layers >= freeze_layers
            self.num_layers += 1
            return Conv2dLayer(*args, trainable=trainable, **kwargs)

        if in_channels == 0 or architecture == "skip":
            self.fromrgb = layer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv0 = layer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                           conv_clamp=conv_clamp)
        self.conv1 = layer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                           resample_filter=resample_filter, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = layer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                              resample_filter=resample_filter)

    def forward(self, x, img, force_fp32=False):
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(torch.float32))
            x = x + y if x is not None else y
            img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


class MinibatchStdLayer(nn.Module):
    """Appends ``num_channels`` feature maps: the features' standard deviation over groups of
    ``group_size`` images (:func:`~engine.studio.discriminator.minibatch_stddev`)."""

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        return minibatch_stddev(x, self.group_size, self.num_channels)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 end: (``fromrgb`` for ``skip``), minibatch stddev, ``conv`` 3x3, ``fc``, ``out``;
    with ``cmap_dim > 0`` the ``[B, cmap_dim]`` output is projected on the mapped label."""

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture="resnet",
                 mbstd_group_size=4, mbstd_num_channels=1, activation="lrelu", conv_clamp=None):
        _check_architecture(architecture)
        super().__init__()
        self.in_channels, self.cmap_dim = in_channels, cmap_dim
        self.resolution, self.img_channels = resolution, img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = (MinibatchStdLayer(mbstd_group_size, mbstd_num_channels)
                      if mbstd_num_channels > 0 else None)
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3,
                                activation=activation, conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        x = x.to(torch.float32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class NVlabsDiscriminator(nn.Module):
    """NVlabs' StyleGAN2(-ADA) discriminator: ``D(img, c) -> [B, 1]`` logits (high = real).

    ``img`` is ``[B, img_channels, img_resolution, img_resolution]`` in [-1, 1]; ``c`` the class
    labels ``[B, c_dim]`` (ignored when ``c_dim`` is 0). One block ``b{res}`` per octave from
    ``img_resolution`` down to 8, with ``min(channel_base // res, channel_max)`` channels, then
    the epilogue ``b4``; a conditional model maps ``c`` to ``cmap`` with ``mapping``. The keyword
    arguments are NVlabs' (``init_kwargs`` keeps them, JSON-ready, for checkpoints).
    """

    def __init__(self, c_dim, img_resolution, img_channels, architecture="resnet",
                 channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None,
                 cmap_dim=None, block_kwargs=None, mapping_kwargs=None, epilogue_kwargs=None):
        if not (img_resolution >= 8 and img_resolution & (img_resolution - 1) == 0):
            raise ValueError(f"img_resolution must be a power of two >= 8, not {img_resolution}")
        _check_architecture(architecture)
        super().__init__()
        block_kwargs, mapping_kwargs = dict(block_kwargs or {}), dict(mapping_kwargs or {})
        epilogue_kwargs = dict(epilogue_kwargs or {})
        self.init_kwargs = dict(c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels,
                                architecture=architecture, channel_base=channel_base,
                                channel_max=channel_max, num_fp16_res=num_fp16_res,
                                conv_clamp=conv_clamp, cmap_dim=cmap_dim, block_kwargs=block_kwargs,
                                mapping_kwargs=mapping_kwargs, epilogue_kwargs=epilogue_kwargs)
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res],
                                       channels[res // 2], resolution=res, first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_resolution, **block_kwargs, **common)
            setattr(self, f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None,
                                          w_avg_beta=None, **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **epilogue_kwargs, **common)

    def forward(self, img, c=None, update_emas=False, **block_kwargs):
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, self.img_resolution,
                                                     self.img_resolution):
            raise ValueError(f"the discriminator takes [B, {self.img_channels}, {self.img_resolution}, "
                             f"{self.img_resolution}] images, not {list(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = None
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this discriminator is conditional: it needs class labels c [B, {self.c_dim}]")
            cmap = self.mapping(None, c)
        return self.b4(x, img, cmap)


#: Text that only stylegan3's ``networks_stylegan2.py`` holds (its D's forward signature): its
#: Discriminator's defaults differ from stylegan2-ada-pytorch's.
_STYLEGAN3_MARK = "def forward(self, img, c, update_emas=False, **block_kwargs):"
_STYLEGAN3_DEFAULTS = {"num_fp16_res": 4, "conv_clamp": 256}


def record_kwargs(rec) -> dict:
    """The init keyword arguments of a pickle's ``D`` record, with the defaults of the NVlabs
    code that wrote it filled in (stylegan3's module defaults ``conv_clamp`` to 256 where
    stylegan2-ada-pytorch's has None; its source is read as text to tell, never run)."""
    kwargs = dict(rec.init_kwargs)
    if rec.init_args:
        names = ("c_dim", "img_resolution", "img_channels")
        kwargs.update(zip(names, rec.init_args))
    if _STYLEGAN3_MARK in (rec.module_src or ""):
        for k, v in _STYLEGAN3_DEFAULTS.items():
            kwargs.setdefault(k, v)
    return kwargs


def discriminator_from_record(rec, path) -> NVlabsDiscriminator:
    """Our :class:`NVlabsDiscriminator` for the ``D`` record of the pickle at ``path``, its
    tensors loaded with ``strict=True`` (float32, training mode). Every mismatch (an unknown
    argument, missing or unexpected tensors, wrong shapes) is a one-line
    :class:`~engine.generators.nvlabs_pickle.ModelError` naming the file."""
    from engine.generators.nvlabs_pickle import ModelError, PersistentRecord, load_state, mismatch

    if not isinstance(rec, PersistentRecord) or rec.class_name != "Discriminator":
        raise ModelError(path, "no discriminator in the pickle (D is missing)")
    try:
        state = rec.state_dict()
    except TypeError as exc:
        raise ModelError(path, f"malformed discriminator record: {exc}") from None
    try:
        net = NVlabsDiscriminator(**record_kwargs(rec))
        missing, unexpected = load_state(net, state)
    except (TypeError, ValueError, KeyError, AssertionError, ZeroDivisionError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(path, f"the discriminator's architecture arguments are not understood "
                               f"({detail})") from None
    if missing or unexpected:
        raise ModelError(path, "the discriminator's weights do not match its architecture: "
                               + mismatch(missing, unexpected))
    return net.float().train()

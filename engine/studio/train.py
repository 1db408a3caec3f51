"""``lj train``, ``lj finetune`` and ``lj uncanny``: training our StyleGAN2 generator.

One loop, three objectives:

* ``train``: a new :mod:`engine.generators.stylegan2` generator against our
  :class:`~engine.studio.discriminator.Discriminator`, from a folder of images.
* ``finetune``: the same, starting from an existing generator (our ``.safetensors`` export or an
  NVlabs StyleGAN2(-ADA) pickle, read by the restricted reader). A pickle's own discriminator
  goes on training (:class:`~engine.studio.nvlabs_discriminator.NVlabsDiscriminator`, its
  tensors loaded strictly); without one, ours starts fresh. Optionally a share ``--ratio`` of
  every batch comes from a second folder (``--mix``).
* ``uncanny``: the discriminator of a training run, or of an NVlabs pickle, is frozen and the
  generator is fine-tuned towards what it judges *fake* (the non-saturating loss with the sign
  of the logit flipped).

Losses: the non-saturating logistic loss (G: ``softplus(-D(G(z)))``; D:
``softplus(D(G(z))) + softplus(-D(x))``) with lazy R1 on the reals (every ``r1_every`` steps,
``gamma/2 * |grad D(x)|^2``, scaled by the interval). StyleGAN2's generator regularisers: style
mixing (with probability ``style_mixing`` the styles from a random layer on come from a second
z, for G's and D's fakes alike) and lazy path-length regularisation (every ``pl_every`` steps on
``batch // pl_batch_shrink`` images: ``pl_weight * (|J_w^T y| - a)^2`` with ``y`` a random image
direction and ``a`` the running mean, decay ``pl_decay``). Both networks see the same
differentiable augmentation (:mod:`engine.studio.augment`), with ``ada`` each transform applied
per image with a probability ``p`` tuned every ``ada_interval`` steps from ``r_t =
E[sign(D(reals))]`` (:class:`~engine.studio.augment.AdaptiveP`). Adam (``betas = (0, 0.99)``) as
in StyleGAN2, with NVlabs' correction for lazy regularisation; an exponential moving average of G
(``G_ema``, ramped up at the start) is what gets exported. ``w_avg`` is tracked while training
(NVlabs' rule, beta 0.995) so truncation works.

Square or rectangular: ``resolution`` (R) and ``init_res`` ``(h0, w0)`` give images of
``h0 * R/4`` x ``w0 * R/4`` (the generator's ``init_res`` extension, the discriminator's
epilogue size); the images are centre-cropped to that aspect. D is built and called only
through :func:`_make_discriminator` and :func:`_d_logits`; the checkpoint records which one a
run holds (``d_kind``: ``ours`` or ``nvlabs``, square only) and its ``d_kwargs``.

Files in the run folder (no pickle anywhere)::

    checkpoint.safetensors + checkpoint.json   the whole state: G, G_ema, D, both optimisers,
                                               the path-length mean, ADA's p, the random
                                               generator; --resume continues bit-exactly
    model.safetensors + model.json             G_ema in our export form (load_generator loads it)
    samples/step-000100.png                    a fixed-z sample grid every --sample-every steps
    stats.jsonl                                one JSON line per step: losses, ADA's p and r_t
    snapshots/step-000100.safetensors (+.json) finetune/uncanny: G_ema every --snapshot-every
                                               steps, for blend:A|B keyframes
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.studio.augment import AdaptiveP, augment, parse_policy
from engine.studio.discriminator import Discriminator
from engine.studio.nvlabs_discriminator import NVlabsDiscriminator, discriminator_from_record
from engine.studio.config import StudioError, TrainConfig, image_shape

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CHECKPOINT_FORMAT = 2   # 2: path-length mean, ADA state, init_res
EMA_RAMPUP = 0.5


# ---------------------------------------------------------------------------------------------
# data

def load_images(folder: str | Path, shape: int | tuple[int, int], mirror: bool = False) -> torch.Tensor:
    """Every image in ``folder`` (not recursive), centre-cropped to the aspect of ``shape``
    (``(h, w)``, or one number for a square) and resized (Lanczos), as float ``[N, 3, h, w]`` in
    [-1, 1] (``mirror`` adds the left-right flips)."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise StudioError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StudioError(f"{folder}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    th, tw = (shape, shape) if isinstance(shape, int) else (int(shape[0]), int(shape[1]))
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                # the largest centred box of the target's aspect
                cw, ch = (min(w, round(h * tw / th)), h) if w * th >= h * tw else (w, min(h, round(w * th / tw)))
                left, top = (w - cw) // 2, (h - ch) // 2
                im = im.crop((left, top, left + cw, top + ch))
                im = im.resize((tw, th), Image.LANCZOS)
                out.append(np.asarray(im, dtype=np.uint8))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise StudioError(f"{p}: not a readable image ({e})") from None
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return torch.cat([x, x.flip(3)]) if mirror else x


# ---------------------------------------------------------------------------------------------
# networks

def generator_kwargs(cfg: TrainConfig) -> dict:
    return {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "img_resolution": cfg.resolution,
            "img_channels": 3, "mapping_kwargs": {"num_layers": cfg.mapping_layers},
            "synthesis_kwargs": {"channel_base": 32 * cfg.channels, "channel_max": cfg.channels,
                                 "num_fp16_res": 0, "conv_clamp": 256, "architecture": "skip",
                                 "init_res": [int(v) for v in cfg.init_res]}}


def build_generator(kwargs: dict) -> torch.nn.Module:
    from engine.generators.stylegan2 import Generator

    try:
        return Generator(**kwargs)
    except (TypeError, ValueError, AssertionError) as e:
        raise StudioError(f"cannot build the generator: {e}") from None


def load_base_generator(spec: str) -> tuple[torch.nn.Module, dict]:
    """An existing StyleGAN2 generator to start from: ``(network (trainable copy), init_kwargs)``."""
    from engine.generators import load_generator
    from engine.generators.stylegan import StyleGANGenerator

    gen = load_generator(spec)
    if not isinstance(gen, StyleGANGenerator) or gen.family != "stylegan2":
        raise StudioError(f"{spec}: only StyleGAN2 models can be fine-tuned here (an NVlabs "
                          "StyleGAN2/-ADA pickle or our .safetensors export)")
    if gen.c_dim:
        raise StudioError(f"{spec}: a conditional model (c_dim {gen.c_dim}) cannot be fine-tuned "
                          "here yet: only unconditional StyleGAN2 models")
    kwargs = json.loads(json.dumps(gen.init_kwargs, default=float))
    sk = dict(kwargs.get("synthesis_kwargs") or {})
    sk["num_fp16_res"] = 0   # train in float32 (the weights are the same)
    kwargs["synthesis_kwargs"] = sk
    for k in [k for k in kwargs if k not in ("z_dim", "c_dim", "w_dim", "img_resolution",
                                             "img_channels", "mapping_kwargs", "synthesis_kwargs")]:
        sk[k] = kwargs.pop(k)   # stylegan3-style flat synthesis arguments
    net = build_generator(kwargs)
    net.load_state_dict(gen.net.state_dict(), strict=True)
    return net.float().train().requires_grad_(True), kwargs


def load_base_discriminator(spec: str, G: torch.nn.Module) -> NVlabsDiscriminator | None:
    """The discriminator that came with the base model ``spec``: an NVlabs pickle's ``D``, built
    in our NVlabs form with its tensors loaded strictly (trainable, float32), or None when there
    is none (our ``.safetensors`` export, a pickle without D). The pickle is read again, by the
    same restricted reader, for its D record. Refuses a D that cannot judge ``G``'s images."""
    from engine.generators import PICKLE_SUFFIXES, split_options
    from engine.generators.nvlabs_pickle import PersistentRecord, read_pickle

    path = Path(split_options(spec)[0]).expanduser()
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        return None
    rec = read_pickle(path).get("D")
    if not isinstance(rec, PersistentRecord):
        return None
    D = discriminator_from_record(rec, path)
    if D.c_dim:
        raise StudioError(f"{path}: a conditional discriminator (c_dim {D.c_dim}) cannot be "
                          "trained here yet: only unconditional StyleGAN2 models")
    if tuple(G.init_res) != (4, 4):
        raise StudioError(f"{path}: the pickle's discriminator is square and this generator is "
                          f"rectangular (init_res {list(G.init_res)}): they cannot train together")
    if (D.img_resolution, D.img_channels) != (G.img_resolution, G.img_channels):
        raise StudioError(f"{path}: the pickle's discriminator takes {D.img_channels}x"
                          f"{D.img_resolution}px images, its generator makes {G.img_channels}x"
                          f"{G.img_resolution}px")
    return D


def _build_discriminator(kind: str, kwargs: dict) -> torch.nn.Module:
    """A discriminator of ``kind`` (``ours`` or ``nvlabs``) from its JSON-stored ``kwargs``."""
    classes = {"ours": Discriminator, "nvlabs": NVlabsDiscriminator}
    if kind not in classes:
        raise StudioError(f"unknown discriminator kind '{kind}' (known: ours, nvlabs)")
    try:
        return classes[kind](**kwargs)
    except (TypeError, ValueError) as e:
        raise StudioError(f"cannot build the discriminator: {e}") from None


def _make_discriminator(cfg: TrainConfig) -> torch.nn.Module:
    """The discriminator of a run (``cfg.d_kind`` and ``cfg.d_kwargs``, filled in with ours for
    a new run): the one place that builds D from a config."""
    if not cfg.d_kwargs:
        cfg.d_kind = "ours"
        cfg.d_kwargs = {"resolution": cfg.resolution, "channel_base": 32 * cfg.channels,
                        "channel_max": cfg.channels, "init_res": [int(v) for v in cfg.init_res]}
    return _build_discriminator(cfg.d_kind, cfg.d_kwargs)


def _d_logits(D: torch.nn.Module, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """``D``'s logits for ``img`` as ``[B]`` (high = real); the one place that calls D.
    ``c``: class labels ``[B, c_dim]`` (None: our generators are unconditional; NVlabs' D takes
    them, ours does not)."""
    out = D(img, c) if isinstance(D, NVlabsDiscriminator) else D(img)
    return out.reshape(img.shape[0])


# ---------------------------------------------------------------------------------------------
# checkpoints (safetensors + JSON, never pickle)

def _flat_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict) -> list:
    sd = opt.state_dict()
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{prefix}.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    return sd["param_groups"]


def _restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict, groups: list) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    """The training state and one step of it. Build with :meth:`new` or :meth:`resume`."""

    def __init__(self, cfg: TrainConfig, out: Path, G: torch.nn.Module, D: torch.nn.Module,
                 device: torch.device, log=print):
        self.cfg, self.out, self.device, self.log = cfg, out, device, log
        self.G, self.D = G.to(device), D.to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.policy = parse_policy(cfg.augment)
        # lazy regularisation (R1 on D every r1_every steps, path length on G every pl_every):
        # NVlabs' correction of Adam's learning rate and momentum for the interval
        gc = cfg.pl_every / (cfg.pl_every + 1) if cfg.pl_weight > 0 else 1.0
        self.optG = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * gc, betas=(0.0, 0.99 ** gc), eps=1e-8)
        r1c = cfg.r1_every / (cfg.r1_every + 1)
        self.optD = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * r1c,
                                     betas=(0.0, 0.99 ** r1c), eps=1e-8)
        if cfg.mode == "uncanny":
            self.D.requires_grad_(False).eval()
        self.step = 0
        self.images_seen = 0
        self.last: dict[str, float] = {}
        self._queued: list[tuple[int, int, dict]] = []   # steps whose stats.jsonl line is due
        self._ema_params = list(self.G_ema.parameters())
        self._params = [p.detach() for p in self.G.parameters()]
        self._ema_buffers, self._buffers = list(self.G_ema.buffers()), list(self.G.buffers())
        self.pl_mean = torch.zeros([], device=device)   # running mean of the path lengths
        self.ada = AdaptiveP(cfg.ada_target, cfg.ada_kimg, cfg.ada_interval) if cfg.ada else None
        # the data set lives on the device (a few dozen to a few thousand small images)
        shape = image_shape(cfg)
        self.reals = load_images(cfg.images, shape, cfg.mirror).to(device) if cfg.images else None
        self.mix = load_images(cfg.mix, shape, cfg.mirror).to(device) if cfg.mix else None
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.sample_z = torch.randn(16, cfg.z_dim, generator=gen)

    # ------------------------------------------------------------------ construction
    @classmethod
    def new(cls, cfg: TrainConfig, out: str | Path, device=None, log=print) -> "Trainer":
        out = Path(out)
        if (out / "checkpoint.json").exists():
            raise StudioError(f"{out} already holds a run: resume it with --resume, or choose "
                              "another --output")
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(cfg.seed)
        if cfg.mode == "train":
            cfg.init_kwargs = generator_kwargs(cfg)
            G = build_generator(cfg.init_kwargs)
        else:
            if not cfg.base_model:
                raise StudioError(f"{cfg.mode} needs a model to start from")
            if cfg.mode == "uncanny":
                G, D = load_uncanny_networks(cfg.base_model)
                cfg.init_kwargs = G.init_kwargs_
                cfg.d_kind = "nvlabs" if isinstance(D, NVlabsDiscriminator) else "ours"
                cfg.d_kwargs = json.loads(json.dumps(D.init_kwargs))
                cfg.resolution, cfg.init_res = int(G.img_resolution), list(G.init_res)
                cfg.z_dim = int(G.z_dim)
                return cls._finish(cls(cfg, out, G, D, device, log))
            G, cfg.init_kwargs = load_base_generator(cfg.base_model)
            cfg.resolution, cfg.z_dim = int(G.img_resolution), int(G.z_dim)
            cfg.init_res = list(G.init_res)
            D = load_base_discriminator(cfg.base_model, G)
            if D is not None:   # the pickle's own D goes on training
                cfg.d_kind, cfg.d_kwargs = "nvlabs", json.loads(json.dumps(D.init_kwargs))
                log(f"lj: {cfg.base_model}: fine-tuning its discriminator too")
                return cls._finish(cls(cfg, out, G.train().requires_grad_(True), D, device, log))
        D = _make_discriminator(cfg)
        return cls._finish(cls(cfg, out, G.train().requires_grad_(True), D, device, log))

    @staticmethod
    def _finish(t: "Trainer") -> "Trainer":
        try:
            t.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StudioError(f"cannot create {t.out}: {e.strerror or e}") from None
        return t

    @classmethod
    def resume(cls, out: str | Path, steps: int | None = None, device=None, log=print) -> "Trainer":
        from safetensors.torch import load_file

        out = Path(out)
        meta = _read_checkpoint_json(out)
        cfg = TrainConfig(**meta["config"])
        if steps is not None:
            cfg.steps = steps
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tensors = load_file(str(out / "checkpoint.safetensors"))
        G = build_generator(cfg.init_kwargs)
        D = _make_discriminator(cfg)
        t = cls(cfg, out, G, D, device, log)
        for name, net in (("G", t.G), ("G_ema", t.G_ema), ("D", t.D)):
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            net.load_state_dict(sd, strict=True)
        _restore_optimizer(t.optG, "optG", tensors, meta["optG"])
        _restore_optimizer(t.optD, "optD", tensors, meta["optD"])
        t.pl_mean.copy_(tensors["pl_mean"].reshape(()))
        if t.ada is not None:
            t.ada.load(meta["ada"])
        torch.set_rng_state(tensors["rng.cpu"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        t.step, t.images_seen = int(meta["step"]), int(meta["images_seen"])
        t._trim_record()
        return t

    # ------------------------------------------------------------------ one step
    def batch_of_reals(self) -> torch.Tensor:
        b = self.cfg.batch
        idx = torch.randint(0, len(self.reals), (b,))
        x = self.reals[idx]
        if self.mix is not None and self.cfg.ratio > 0:
            take = torch.rand(b) < self.cfg.ratio
            other = self.mix[torch.randint(0, len(self.mix), (b,))]
            x = torch.where(take.to(self.device).view(b, 1, 1, 1), other, x)
        return x

    def run_D(self, img: torch.Tensor) -> torch.Tensor:
        """D's logits ``[B]`` for ``img`` seen through the augmentation (with ADA's ``p``)."""
        return _d_logits(self.D, augment(img, self.policy, self.ada.p if self.ada else None))

    def run_G(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(w, ws, images)`` for ``z``: ``w`` the mapping's ``[B, w_dim]``, ``ws`` the styles
        after style mixing (with probability ``style_mixing`` the layers from a random crossover
        on come from a second z, one crossover per batch as in StyleGAN2)."""
        G, cfg = self.G, self.cfg
        ws = G.mapping(z, None)
        w = ws[:, 0]
        n = ws.shape[1]
        if cfg.style_mixing > 0 and n > 1:
            cutoff = torch.randint(1, n, ())
            cutoff = torch.where(torch.rand(()) < cfg.style_mixing, cutoff, torch.tensor(n))
            keep = (torch.arange(n) < cutoff).to(ws.device).view(1, n, 1)
            ws = torch.where(keep, ws, G.mapping(torch.randn_like(z), None))
        return w, ws, G.synthesis(ws, noise_mode="random")

    def path_length_penalty(self) -> torch.Tensor:
        """StyleGAN2's path-length regulariser: the length of ``J_w^T y`` (the image's change
        along a random image-space direction ``y``, pulled back to w) is pulled towards its
        running mean (``pl_decay``); returns the penalty (before ``pl_weight``)."""
        cfg = self.cfg
        b = max(1, cfg.batch // cfg.pl_batch_shrink)
        _, ws, img = self.run_G(torch.randn(b, cfg.z_dim, device=self.device))
        y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        grad, = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), cfg.pl_decay))
        return (lengths - self.pl_mean).square().mean()

    def train_step(self, wait: bool = True) -> dict:
        """One step: G (with the lazy path-length penalty), D (with lazy R1), EMA, ADA's count.

        Returns the step's losses as floats, and its ``stats.jsonl`` line is written. With
        ``wait=False`` the losses stay on the device (0-d tensors) and the line is queued until
        :meth:`flush_stats`, so that a GPU never idles while the host waits for a number: this
        is what :meth:`run` does, flushing at each progress line and checkpoint.
        """
        stats = self._step()
        self._queued.append((self.step, self.images_seen, stats))
        if wait:
            return self.flush_stats()
        if len(self._queued) >= 256:  # a bound on what waits in memory
            self.flush_stats()
        return stats

    def flush_stats(self) -> dict:
        """Write the queued steps' lines to ``stats.jsonl`` (their losses read back in one host
        sync); returns the last step's losses as floats (also :attr:`last`)."""
        if not self._queued:
            return self.last
        where = [(i, k) for i, (_, _, st) in enumerate(self._queued)
                 for k, v in st.items() if isinstance(v, torch.Tensor)]
        values = torch.stack([self._queued[i][2][k] for i, k in where]).tolist() if where else []
        rows = [dict(st) for _, _, st in self._queued]
        for (i, k), v in zip(where, values):
            rows[i][k] = v
        with open(self.out / "stats.jsonl", "a") as f:
            for (step, images, _), row in zip(self._queued, rows):
                f.write(json.dumps({"step": step, "images": images, **row}) + "\n")
        self._queued.clear()
        self.last = rows[-1]
        return self.last

    def _step(self) -> dict:
        cfg = self.cfg
        b = cfg.batch
        # generator
        z = torch.randn(b, cfg.z_dim, device=self.device)
        w, _, fake = self.run_G(z)
        logits = self.run_D(fake)
        # uncanny: push G towards what the frozen D calls fake (the inverted objective)
        loss_g = (F.softplus(logits) if cfg.mode == "uncanny" else F.softplus(-logits)).mean()
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        stats = {"G": loss_g.detach(), "D_fake": logits.detach().mean()}
        if cfg.pl_weight > 0 and self.step % cfg.pl_every == 0:
            pl = self.path_length_penalty()
            (pl * (cfg.pl_weight * cfg.pl_every)).backward()
            stats["PL"] = pl.detach()
        self.optG.step()
        with torch.no_grad():
            self.G.mapping.w_avg.copy_(w.mean(0).lerp(self.G.mapping.w_avg, 0.995))
        if cfg.mode != "uncanny":
            reals = self.batch_of_reals()
            with torch.no_grad():
                fake = self.run_G(torch.randn(b, cfg.z_dim, device=self.device))[2]
            lf, lr_ = self.run_D(fake), self.run_D(reals)
            loss_d = F.softplus(lf).mean() + F.softplus(-lr_).mean()
            self.optD.zero_grad(set_to_none=True)
            loss_d.backward()
            if cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
                r = reals.detach().requires_grad_(True)
                out = self.run_D(r)
                grad, = torch.autograd.grad(out.sum(), r, create_graph=True)
                r1 = grad.square().sum(dim=(1, 2, 3)).mean()
                (r1 * (cfg.r1_gamma / 2) * cfg.r1_every).backward()
                stats["R1"] = r1.detach()
            self.optD.step()
            stats.update(D=loss_d.detach(), D_real=lr_.detach().mean())
            if self.ada is not None:
                self.ada.observe(lr_)
                if (self.step + 1) % cfg.ada_interval == 0:
                    self.ada.adjust(b)
                stats["p"] = self.ada.p
                if self.ada.rt is not None:
                    stats["rt"] = self.ada.rt
        self.update_ema()
        self.step += 1
        self.images_seen += b
        return stats

    # ------------------------------------------------------------------ the record
    def _trim_record(self) -> None:
        """On resume: drop the lines of steps after the checkpoint (they will be done again)."""
        path = self.out / "stats.jsonl"
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
        path.write_text("".join(ln + "\n" for ln in keep))

    @torch.no_grad()
    def update_ema(self) -> None:
        cfg = self.cfg
        # half-life ema_kimg thousand images, shorter at the start (EMA_RAMPUP of the images
        # seen so far) so that short runs on tiny data sets export a G that has moved
        ema_nimg = min(cfg.ema_kimg * 1000, (self.images_seen + cfg.batch) * EMA_RAMPUP)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        # one fused update for all tensors (not two kernels per parameter): ema += (1-beta)(p-ema)
        torch._foreach_lerp_(self._ema_params, self._params, 1.0 - beta)
        torch._foreach_copy_(self._ema_buffers, self._buffers)

    # ------------------------------------------------------------------ files
    @torch.no_grad()
    def save_samples(self) -> Path:
        from engine.studio.sheets import save_png, tile, to_uint8

        img = self.G_ema.synthesis(self.G_ema.mapping(self.sample_z.to(self.device), None),
                                   noise_mode="const")
        path = self.out / "samples" / f"step-{self.step:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(tile(to_uint8(img), 4, 4), path)
        return path

    def save_checkpoint(self) -> Path:
        from safetensors.torch import save_file

        self.flush_stats()  # stats.jsonl and the losses recorded up to this step
        tensors = {}
        for name, net in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        groups_g = _flat_optimizer(self.optG, "optG", tensors)
        groups_d = _flat_optimizer(self.optD, "optD", tensors)
        tensors["pl_mean"] = self.pl_mean.detach().cpu().reshape(1)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        meta = {"latent_jockey_checkpoint": CHECKPOINT_FORMAT, "step": self.step,
                "images_seen": self.images_seen, "config": asdict(self.cfg),
                "optG": groups_g, "optD": groups_d, "losses": self.last,
                "ada": self.ada.state() if self.ada is not None else None}
        tmp = self.out / "checkpoint.tmp.safetensors"
        save_file(tensors, str(tmp))
        (self.out / "checkpoint.json.tmp").write_text(json.dumps(meta, indent=1) + "\n")
        tmp.replace(self.out / "checkpoint.safetensors")
        (self.out / "checkpoint.json.tmp").replace(self.out / "checkpoint.json")
        return self.out / "checkpoint.safetensors"

    def export(self, path: Path) -> Path:
        """G_ema in our export form (``path`` + its JSON); loads with ``load_generator``."""
        from engine.generators.export import write_safetensors
        from engine.generators.stylegan import StyleGANGenerator

        net = copy.deepcopy(self.G_ema).cpu()
        gen = StyleGANGenerator(net, name=str(path))
        gen.init_kwargs = self.cfg.init_kwargs
        path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(gen, path)
        return path

    # ------------------------------------------------------------------ the loop
    def run(self, progress: bool = True) -> dict:
        cfg = self.cfg
        t0, n0 = time.perf_counter(), self.images_seen
        line_t = 0.0
        while self.step < cfg.steps:
            self.train_step(wait=False)   # no host sync per step; flushed below
            now = time.perf_counter()
            if progress and (now - line_t > 2 or self.step == cfg.steps):
                stats = self.flush_stats()
                now = time.perf_counter()
                ips = (self.images_seen - n0) / max(now - t0, 1e-9)
                line_t = now
                losses = "  ".join(f"{k} {v:.3f}" for k, v in stats.items())
                self.log(f"lj: {cfg.mode} step {self.step}/{cfg.steps}  {losses}  {ips:.1f} img/s")
            if cfg.sample_every and self.step % cfg.sample_every == 0:
                self.save_samples()
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.export(self.out / "snapshots" / f"step-{self.step:06d}.safetensors")
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
        self.flush_stats()  # waits for the last queued step, so the time below is the real one
        elapsed = time.perf_counter() - t0
        self.save_checkpoint()
        model = self.export(self.out / "model.safetensors")
        return {"steps": self.step, "model": str(model), "losses": self.last,
                "images_per_second": (self.images_seen - n0) / max(elapsed, 1e-9)}


def _read_checkpoint_json(out: Path) -> dict:
    js = out / "checkpoint.json"
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError:
        raise StudioError(f"{out}: no checkpoint to resume (checkpoint.json missing)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise StudioError(f"{js}: not a readable checkpoint ({e})") from None
    version = meta.get("latent_jockey_checkpoint") if isinstance(meta, dict) else None
    if isinstance(version, int) and version < CHECKPOINT_FORMAT:
        raise StudioError(f"{js}: a checkpoint of an older Latent Jockey (format {version}, this one "
                          f"reads {CHECKPOINT_FORMAT}): start a new run (its model.safetensors "
                          "still loads and fine-tunes)")
    if version != CHECKPOINT_FORMAT:
        raise StudioError(f"{js}: not a Latent Jockey training checkpoint")
    return meta


def load_run_networks(run: str | Path):
    """G_ema (trainable copy) and the D of a training run folder (our D or an NVlabs-form one,
    as its checkpoint says)."""
    from safetensors.torch import load_file

    run = Path(run)
    if run.is_file():
        run = run.parent
    meta = _read_checkpoint_json(run)
    cfg = meta["config"]
    tensors = load_file(str(run / "checkpoint.safetensors"))
    G = build_generator(cfg["init_kwargs"])
    G.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")}, strict=True)
    D = _build_discriminator(cfg.get("d_kind", "ours"), cfg["d_kwargs"])
    D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")}, strict=True)
    G.init_kwargs_ = cfg["init_kwargs"]
    return G, D


def load_uncanny_networks(spec: str):
    """``lj uncanny MODEL``: G (trainable) and D for ``spec``, a training run folder (or a file
    in one: G_ema and its D) or an NVlabs StyleGAN2(-ADA) pickle with its discriminator (G_ema
    and the pickle's D). Anything without a D is refused in one line."""
    from engine.generators import PICKLE_SUFFIXES, split_options

    path = Path(split_options(spec)[0]).expanduser()
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        G, kwargs = load_base_generator(spec)
        D = load_base_discriminator(spec, G)
        if D is None:
            raise StudioError(f"{path}: the pickle holds no discriminator (D), and lj uncanny "
                              "needs one: fine-tune it first (lj finetune) and use that run")
        G.init_kwargs_ = kwargs
        return G, D
    run = path.parent if path.is_file() else path
    if not (run / "checkpoint.json").exists():
        what = "a model file" if path.is_file() else "a folder"
        raise StudioError(f"{path}: {what} with no discriminator (no checkpoint.json beside it): "
                          "lj uncanny needs a run folder of lj train / lj finetune or an NVlabs "
                          "pickle with its D")
    return load_run_networks(run)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, device=None, log=print,
          progress: bool = True) -> dict:
    """Run ``lj train``/``finetune``/``uncanny`` into the folder ``out``."""
    t = Trainer.resume(out, cfg.steps, device, log) if resume else Trainer.new(cfg, out, device, log)
    if t.step >= t.cfg.steps:
        log(f"lj: {out} is already at step {t.step} (ask for more with --steps)")
    summary = t.run(progress)
    log(f"lj: wrote {summary['model']} after {summary['steps']} steps "
        f"({summary['images_per_second']:.1f} images/s)")
    return summary

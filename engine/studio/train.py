"""``lj train``, ``lj finetune`` and ``lj uncanny``: training our StyleGAN2 generator.

One loop, three objectives:

* ``train``: a new :mod:`engine.generators.stylegan2` generator against our
  :class:`~engine.studio.discriminator.Discriminator`, from a folder of images.
* ``finetune``: the same, starting from an existing generator (our ``.safetensors`` export or an
  NVlabs StyleGAN2(-ADA) pickle, read by the restricted reader; the discriminator starts fresh),
  optionally drawing a share ``--ratio`` of every batch from a second folder (``--mix``).
* ``uncanny``: the discriminator of a training run is frozen and the generator is fine-tuned
  towards what it judges *fake* (the non-saturating loss with the sign of the logit flipped).

Losses: the non-saturating logistic loss (G: ``softplus(-D(G(z)))``; D:
``softplus(D(G(z))) + softplus(-D(x))``) with lazy R1 on the reals (every ``r1_every`` steps,
``gamma/2 * |grad D(x)|^2``, scaled by the interval). Both networks see the same differentiable
augmentation (:mod:`engine.studio.augment`). Adam (``betas = (0, 0.99)``) as in StyleGAN2; an
exponential moving average of G (``G_ema``, ramped up at the start) is what gets exported.
``w_avg`` is tracked while training (NVlabs' rule, beta 0.995) so truncation works.

Not done (say so rather than pretend): path-length regularisation and style-mixing
regularisation; adaptive augmentation (ADA); rectangular output (the network is square: images
are centre-cropped).

Files in the run folder (no pickle anywhere)::

    checkpoint.safetensors + checkpoint.json   the whole state: G, G_ema, D, both optimisers,
                                               the random generator; --resume continues bit-exactly
    model.safetensors + model.json             G_ema in our export form (load_generator loads it)
    samples/step-000100.png                    a fixed-z sample grid every --sample-every steps
    snapshots/step-000100.safetensors (+.json) finetune/uncanny: G_ema every --snapshot-every
                                               steps, for blend:A|B keyframes
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.studio.augment import augment, parse_policy
from engine.studio.discriminator import Discriminator
from engine.studio.config import StudioError, TrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
CHECKPOINT_FORMAT = 1
EMA_RAMPUP = 0.5


# ---------------------------------------------------------------------------------------------
# data

def load_images(folder: str | Path, resolution: int, mirror: bool = False) -> torch.Tensor:
    """Every image in ``folder`` (not recursive), centre-cropped square, resized, as float
    ``[N, 3, R, R]`` in [-1, 1] (``mirror`` adds the left-right flips)."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise StudioError(f"{folder}: no such folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise StudioError(f"{folder}: no images in it ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                im = im.resize((resolution, resolution), Image.LANCZOS)
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
                                 "num_fp16_res": 0, "conv_clamp": 256, "architecture": "skip"}}


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
        self.optG = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(0.0, 0.99), eps=1e-8)
        r1c = cfg.r1_every / (cfg.r1_every + 1)   # lazy regularisation: NVlabs' correction
        self.optD = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * r1c,
                                     betas=(0.0, 0.99 ** r1c), eps=1e-8)
        if cfg.mode == "uncanny":
            self.D.requires_grad_(False).eval()
        self.step = 0
        self.images_seen = 0
        self.last: dict[str, float] = {}
        # the data set lives on the device (a few dozen to a few thousand small images)
        self.reals = (load_images(cfg.images, cfg.resolution, cfg.mirror).to(device)
                      if cfg.images else None)
        self.mix = load_images(cfg.mix, cfg.resolution, cfg.mirror).to(device) if cfg.mix else None
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
                G, D = load_run_networks(cfg.base_model)
                cfg.init_kwargs = G.init_kwargs_
                cfg.d_kwargs = dict(D.init_kwargs)
                cfg.resolution = int(G.img_resolution)
                cfg.z_dim = int(G.z_dim)
                return cls._finish(cls(cfg, out, G, D, device, log))
            G, cfg.init_kwargs = load_base_generator(cfg.base_model)
            cfg.resolution, cfg.z_dim = int(G.img_resolution), int(G.z_dim)
        cfg.d_kwargs = cfg.d_kwargs or {"resolution": cfg.resolution, "channel_base": 32 * cfg.channels,
                                        "channel_max": cfg.channels}
        try:
            D = Discriminator(**cfg.d_kwargs)
        except ValueError as e:
            raise StudioError(str(e)) from None
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
        D = Discriminator(**cfg.d_kwargs)
        t = cls(cfg, out, G, D, device, log)
        for name, net in (("G", t.G), ("G_ema", t.G_ema), ("D", t.D)):
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            net.load_state_dict(sd, strict=True)
        _restore_optimizer(t.optG, "optG", tensors, meta["optG"])
        _restore_optimizer(t.optD, "optD", tensors, meta["optD"])
        torch.set_rng_state(tensors["rng.cpu"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        t.step, t.images_seen = int(meta["step"]), int(meta["images_seen"])
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
        return self.D(augment(img, self.policy))

    def train_step(self) -> dict:
        cfg, G = self.cfg, self.G
        b = cfg.batch
        # generator
        z = torch.randn(b, cfg.z_dim, device=self.device)
        ws = G.mapping(z, None)
        fake = G.synthesis(ws, noise_mode="random")
        logits = self.run_D(fake)
        # uncanny: push G towards what the frozen D calls fake (the inverted objective)
        loss_g = (F.softplus(logits) if cfg.mode == "uncanny" else F.softplus(-logits)).mean()
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        with torch.no_grad():
            G.mapping.w_avg.copy_(ws[:, 0].mean(0).lerp(G.mapping.w_avg, 0.995))
        stats = {"G": float(loss_g.detach()), "D_fake": float(logits.detach().mean())}
        if cfg.mode != "uncanny":
            reals = self.batch_of_reals()
            with torch.no_grad():
                fake = G(torch.randn(b, cfg.z_dim, device=self.device), None, noise_mode="random")
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
                stats["R1"] = float(r1.detach())
            self.optD.step()
            stats.update(D=float(loss_d.detach()), D_real=float(lr_.detach().mean()))
        self.update_ema()
        self.step += 1
        self.images_seen += b
        self.last = stats
        return stats

    @torch.no_grad()
    def update_ema(self) -> None:
        cfg = self.cfg
        # half-life ema_kimg thousand images, shorter at the start (EMA_RAMPUP of the images
        # seen so far) so that short runs on tiny data sets export a G that has moved
        ema_nimg = min(cfg.ema_kimg * 1000, (self.images_seen + cfg.batch) * EMA_RAMPUP)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
            pe.copy_(p.detach().lerp(pe, beta))
        for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
            be.copy_(b)

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

        tensors = {}
        for name, net in (("G", self.G), ("G_ema", self.G_ema), ("D", self.D)):
            for k, v in net.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
        groups_g = _flat_optimizer(self.optG, "optG", tensors)
        groups_d = _flat_optimizer(self.optD, "optD", tensors)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        meta = {"latent_jockey_checkpoint": CHECKPOINT_FORMAT, "step": self.step,
                "images_seen": self.images_seen, "config": asdict(self.cfg),
                "optG": groups_g, "optD": groups_d, "losses": self.last}
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
            stats = self.train_step()
            now = time.perf_counter()
            ips = (self.images_seen - n0) / max(now - t0, 1e-9)
            if progress and (now - line_t > 2 or self.step == cfg.steps):
                line_t = now
                losses = "  ".join(f"{k} {v:.3f}" for k, v in stats.items())
                self.log(f"lj: {cfg.mode} step {self.step}/{cfg.steps}  {losses}  {ips:.1f} img/s")
            if cfg.sample_every and self.step % cfg.sample_every == 0:
                self.save_samples()
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.export(self.out / "snapshots" / f"step-{self.step:06d}.safetensors")
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
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
    if meta.get("latent_jockey_checkpoint") != CHECKPOINT_FORMAT:
        raise StudioError(f"{js}: not a Latent Jockey training checkpoint")
    return meta


def load_run_networks(run: str | Path):
    """G_ema (trainable copy) and the frozen D of a training run folder (``lj uncanny``)."""
    from safetensors.torch import load_file

    run = Path(run)
    if run.is_file():
        run = run.parent
    meta = _read_checkpoint_json(run)
    cfg = meta["config"]
    tensors = load_file(str(run / "checkpoint.safetensors"))
    G = build_generator(cfg["init_kwargs"])
    G.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("G_ema.")}, strict=True)
    D = Discriminator(**cfg["d_kwargs"])
    D.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("D.")}, strict=True)
    G.init_kwargs_ = cfg["init_kwargs"]
    return G, D


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

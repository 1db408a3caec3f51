"""The studio's subcommands for ``lj`` (``explore``, ``train``, ``finetune``, ``uncanny``):
their options and what runs them. :mod:`engine.cli` only calls :func:`add_parsers`."""

from __future__ import annotations

import argparse
import sys

from engine.argtypes import folder, number, whole

#: Seeds: what numpy's generators take; steps and counts: far beyond any real run, but finite.
SEED = whole(0, 2**32 - 1)
COUNT = whole(0, 10**9)


def _train_size(text: str) -> str:
    """``--size WxH`` of ``lj train``: the form and the bounds here (one argparse line);
    :func:`engine.studio.config.parse_size` then checks the power-of-two layout."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT, e.g. 128x64, not {text[:40]!r}") from None
    if not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"must have sides between 8 and 4096 pixels, not {text!r}")
    return text


def _add_train_options(p: argparse.ArgumentParser, new: bool) -> None:
    from engine.studio.config import TrainConfig

    d = TrainConfig()
    p.add_argument("--output", "-o", required=True, type=folder, help="run folder (checkpoints, samples, model)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output where it stopped")
    p.add_argument("--steps", type=whole(1, 10**9), help=f"train until this step (default {d.steps}; with "
                                              "--resume: the run's own)")
    p.add_argument("--batch", type=whole(1, 4096), default=d.batch, help=f"images per step (default {d.batch})")
    p.add_argument("--lr", type=number(0, 1, above=True), default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--r1-gamma", type=number(0, 1e4), default=d.r1_gamma, help=f"R1 weight (default {d.r1_gamma})")
    p.add_argument("--augment", default=d.augment,
                   help="differentiable augmentation: color,translation,cutout or none (default all)")
    p.add_argument("--ada", action="store_true",
                   help="adaptive augmentation: apply --augment with a probability p tuned from "
                        "D's overfitting (p starts at 0)")
    p.add_argument("--ada-target", type=number(0, 1), default=d.ada_target, metavar="T",
                   help=f"ADA's target for r_t = mean sign of D(reals) (default {d.ada_target}; implies --ada)")
    p.add_argument("--ada-kimg", type=number(0, 1e6, above=True), default=d.ada_kimg, metavar="K",
                   help=f"ADA's speed: p can go 0 to 1 in K thousand images (default {d.ada_kimg:g}; "
                        "NVlabs uses 500 for big data sets)")
    p.add_argument("--style-mixing", type=number(0, 1), default=d.style_mixing, metavar="P",
                   help=f"style-mixing regularisation probability (default {d.style_mixing}; 0 = off)")
    p.add_argument("--pl-weight", type=number(0, 1e4), default=d.pl_weight, metavar="W",
                   help=f"path-length regularisation weight (default {d.pl_weight:g}; 0 = off)")
    p.add_argument("--no-mirror", action="store_true", help="do not add left-right flips of the images")
    p.add_argument("--sample-every", type=COUNT, default=d.sample_every, metavar="N",
                   help=f"sample grid PNG every N steps (default {d.sample_every}, 0 = never)")
    p.add_argument("--checkpoint-every", type=COUNT, default=d.checkpoint_every, metavar="N",
                   help=f"checkpoint every N steps (default {d.checkpoint_every}; always at the end)")
    p.add_argument("--snapshot-every", type=COUNT, default=0, metavar="N",
                   help="export G as snapshots/step-N.safetensors every N steps (blend keyframes)")
    p.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    p.add_argument("--channels", type=whole(1, 4096), default=d.channels,
                   help=f"{'network' if new else 'discriminator'} width: most channels per layer (default "
                        f"{d.channels}{'' if new else '; a pickle with its own D keeps that D'})")
    if new:
        size = p.add_mutually_exclusive_group()
        size.add_argument("--resolution", type=whole(1, 4096), default=d.resolution,
                          help=f"square output size, a power of two (default {d.resolution})")
        size.add_argument("--size", metavar="WxH", type=_train_size,
                          help="rectangular (or square) output, e.g. 128x64 or 256x144 (images are "
                               "centre-cropped to its aspect)")
        p.add_argument("--z-dim", type=whole(1, 4096), default=d.z_dim, help=f"latent size (default {d.z_dim})")
        p.add_argument("--mapping-layers", type=whole(1, 64), default=d.mapping_layers,
                       help=f"mapping network depth (default {d.mapping_layers})")


def add_parsers(sub) -> None:
    p = sub.add_parser("explore", help="contact sheets, principal directions and latent banks of a model")
    p.add_argument("model", help="generator spec: builtin:cppn, model.pkl, model.safetensors, ...")
    p.add_argument("--output", "-o", default="explore", type=folder, help="folder for the sheets (default ./explore)")
    p.add_argument("--seeds", default="0-63", help="seed grid, e.g. 0-63 or 1,5,9-20 (default 0-63)")
    p.add_argument("--base", type=SEED, default=0, help="base seed of the knob and direction sweeps")
    p.add_argument("--interp", metavar="SEEDS", help="seeds to interpolate between, in order (e.g. 3,17,42)")
    p.add_argument("--mix", metavar="SEEDS", help="seeds of the style-mixing grids")
    p.add_argument("--steps", type=whole(2, 256), default=9, help="columns of sweeps and strips (default 9)")
    p.add_argument("--extent", type=number(0, 100, above=True), default=3.0, help="how far knobs and extremes go in z (default 3)")
    p.add_argument("--knobs", type=whole(1, 4096), default=8, help="z dimensions to turn (default 8)")
    p.add_argument("--psi", type=number(-10, 10), default=1.0, help="truncation of every picture (default 1)")
    p.add_argument("--samples", type=whole(2, 1_000_000), default=4096, help="w samples for the PCA (default 4096)")
    p.add_argument("--components", type=whole(1, 4096), default=8, help="principal directions kept (default 8)")
    p.add_argument("--sheets", help="only these sheets: seeds,knobs,extremes,interp,truncation,mix,directions")
    p.add_argument("--cell", type=whole(8, 1024), help="cell height in pixels (default: the model's, at most 128)")
    p.add_argument("--batch", type=whole(1, 4096), default=16, help="images per generator call (default 16)")
    p.add_argument("--size", type=whole(16, 4096), default=256,
                   help="size of a built-in generator (default 256; 16 to 4096)")
    p.add_argument("--pick", metavar="SEEDS", help="save these seeds' w_plus into the bank")
    p.add_argument("--pick-directions", metavar="K", help="save these principal directions (e.g. 0,2)")
    p.add_argument("--bank", default="bank", help="bank name (default bank)")
    p.add_argument("--latents", default="latents", type=folder,
                   help="bank folder: the latents/ folder beside your mapping file (default ./latents)")

    p = sub.add_parser("train", help="train a StyleGAN2 generator on a folder of images")
    p.add_argument("images", nargs="?", help="folder of images (not needed with --resume)")
    _add_train_options(p, new=True)

    p = sub.add_parser("finetune", help="fine-tune a StyleGAN2 model on a folder of images")
    p.add_argument("model", nargs="?", help="model.safetensors or an NVlabs StyleGAN2(-ADA) pickle")
    p.add_argument("images", nargs="?", help="folder of images")
    p.add_argument("--mix", metavar="DIR", help="a second folder of images mixed into every batch")
    p.add_argument("--ratio", type=number(0, 1), default=0.3, help="share of --mix images (default 0.3)")
    _add_train_options(p, new=False)

    p = sub.add_parser("uncanny", help="fine-tune G towards what a frozen D judges fake")
    p.add_argument("run", nargs="?", metavar="MODEL",
                   help="a training run folder (from lj train or lj finetune) or an NVlabs "
                        "StyleGAN2(-ADA) pickle that holds its discriminator (D)")
    _add_train_options(p, new=False)


def _config(args, mode: str):
    from engine.studio.config import StudioError, TrainConfig

    if not args.resume:
        need = {"train": ("images",), "finetune": ("model", "images"), "uncanny": ("run",)}[mode]
        for name in need:
            if not getattr(args, name, None):
                raise StudioError(f"lj {mode} needs {'MODEL' if name == 'run' else name.upper()} (or --resume)")
    if (args.steps is not None and args.steps < 1) or args.batch < 1:
        raise StudioError("--steps and --batch must be at least 1")
    cfg = TrainConfig(mode=mode, steps=args.steps or TrainConfig().steps, batch=args.batch, lr=args.lr,
                      r1_gamma=args.r1_gamma, augment=args.augment, mirror=not args.no_mirror,
                      sample_every=args.sample_every, checkpoint_every=args.checkpoint_every,
                      snapshot_every=args.snapshot_every, seed=args.seed, channels=args.channels,
                      ada=args.ada or args.ada_target != TrainConfig().ada_target,
                      ada_target=args.ada_target, ada_kimg=args.ada_kimg,
                      style_mixing=args.style_mixing, pl_weight=args.pl_weight)
    if cfg.ada and not args.augment or args.augment == "none" and cfg.ada:
        raise StudioError("--ada adapts the probability of --augment's transforms: it needs some "
                          "(e.g. --augment color,translation,cutout)")
    if cfg.ada and mode == "uncanny":
        raise StudioError("--ada tunes p from D's steps: lj uncanny has none (D is frozen)")
    if not 0 <= args.ada_target <= 1 or args.ada_kimg <= 0:
        raise StudioError("--ada-target must be between 0 and 1 and --ada-kimg above 0")
    if not 0 <= args.style_mixing <= 1 or args.pl_weight < 0:
        raise StudioError("--style-mixing must be between 0 and 1 and --pl-weight at least 0")
    try:
        from engine.studio.augment import parse_policy

        parse_policy(args.augment)
    except ValueError as e:
        raise StudioError(f"--augment: {e}") from None
    if mode == "train":
        cfg.images, cfg.resolution, cfg.z_dim = args.images, args.resolution, args.z_dim
        cfg.w_dim, cfg.mapping_layers = args.z_dim, args.mapping_layers
        if args.size:
            from engine.studio.config import parse_size

            cfg.resolution, cfg.init_res = parse_size(args.size)
        elif args.resolution < 8 or args.resolution & (args.resolution - 1):
            raise StudioError(f"--resolution must be a power of two >= 8, not {args.resolution}")
    elif mode == "finetune":
        cfg.images, cfg.base_model, cfg.mix = args.images, args.model, args.mix
        if not 0 <= args.ratio <= 1:
            raise StudioError("--ratio must be between 0 and 1")
        cfg.ratio = args.ratio if args.mix else 0.0
    else:
        cfg.base_model = args.run
    return cfg


def cmd_train(args) -> int:
    from engine.studio.train import train

    cfg = _config(args, args.command)
    if args.resume:
        cfg.steps = args.steps   # None: the run's own target (the other settings are the run's)
    train(cfg, args.output, resume=args.resume, device=args.device)
    return 0


def cmd_explore(args) -> int:
    from engine.studio.config import StudioError
    from engine.studio.explore import explore

    if args.batch < 1 or args.steps < 2 or args.samples < 2 or args.components < 1:
        raise StudioError("--batch, --samples and --components must be positive, --steps at least 2")
    explore(args.model, args.output, seeds=args.seeds, base=args.base, knob_dims=args.knobs,
            steps=args.steps, extent=args.extent, interp=args.interp, psi=args.psi,
            samples=args.samples, components=args.components, mix=args.mix,
            sheets=tuple(s.strip() for s in args.sheets.split(",")) if args.sheets else None,
            cell=args.cell, batch=args.batch, size=args.size, pick=args.pick,
            pick_directions=args.pick_directions, bank=args.bank, latents=args.latents,
            log=lambda m: print(m, file=sys.stdout))
    return 0


COMMANDS = {"explore": cmd_explore, "train": cmd_train, "finetune": cmd_train, "uncanny": cmd_train}

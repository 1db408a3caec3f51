"""Speed of the studio: ``lj explore``'s 16x16 seed sheet and ``lj train``'s images/second.

    python benchmarks/studio_speed.py [--threads 2] [--device cpu|cuda] [--steps 16] [--skip-train]
                                      [--train-res 128 256]

Explore: for each generator, the whole 16x16 seed sheet (256 seeds: z, mapping, truncation,
batched ``synthesize`` in 16s, uint8 conversion, tiling, PNG encoding) against the reference
measured in the same run, the bare generator: ``synthesize`` on the same 256 ``w_plus`` in the
same batches, nothing else. Ratio = sheet / bare (1.0 = no overhead). Generators: the built-in
CPPN at 128 px and an untrained 64 px StyleGAN2 of the ``lj train`` default shape.

Train: images/second of ``lj train``'s whole step (G step, D step with augmentation, lazy R1,
EMA, and as configured style mixing, lazy path length every 4 steps, ADA) for the small
configuration (64 px, 128 channels, batch 8): bare (fixed augmentation, no style mixing, no path
length), + ADA, + the regularisers, + both (``lj train``'s default is the regularisers without
ADA), and the tests' tiny one (32 px, 16 channels, batch 4). The reference, measured in the same
run on the same networks: the bare G+D forward/backward, one ``G(z)`` and ``D`` on those fakes
and on as many reals, the non-saturating losses' backward through both, nothing else (no
augmentation, no optimiser, no regulariser). Ratio = step / reference (1.0 = no overhead). The
steps timed include every lazy phase in proportion (16 steps: 4 path-length steps, 1 R1 step);
step and reference alternate in rounds of 4 so that a change of load hits both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.generators import load_generator  # noqa: E402
from engine.generators.stylegan import StyleGANGenerator  # noqa: E402
from engine.studio.config import TrainConfig  # noqa: E402
from engine.studio.explore import Explorer  # noqa: E402
from engine.studio.sheets import save_png  # noqa: E402
from engine.studio.train import Trainer, build_generator, generator_kwargs  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_sheet(name, gen, device, tmp, repeats=3):
    gen = gen.to(device)
    ex = Explorer(gen, batch=16, device=device)
    seeds = list(range(256))
    w = ex.plus(ex.truncate(ex.w_of(seeds))).contiguous()
    noise = 1.0 if gen.has_noise else 0.0
    bare, sheet = [], []
    with torch.inference_mode():
        gen.synthesize(w[:16], noise)  # warm-up
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            for i in range(0, 256, 16):
                gen.synthesize(w[i:i + 16], noise)
            sync(device)
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            s, img = ex.seed_sheet(seeds, cols=16)
            save_png(img, Path(tmp) / f"{name}.png")
            sheet.append(time.perf_counter() - t0)
    b, s = float(np.median(bare)), float(np.median(sheet))
    print(f"explore 16x16 {name:24s} sheet {s:7.2f} s   bare generator {b:7.2f} s   "
          f"ratio {s / b:5.2f}   ({256 / s:.1f} images/s)")


def bench_train(label, cfg, device, tmp, steps):
    import torch.nn.functional as F

    from engine.studio.train import _d_logits

    t = Trainer.new(cfg, Path(tmp) / label.split()[0], device=device, log=lambda m: None)
    G, D = t.G, t.D
    reals = t.reals[: cfg.batch]

    def bare():
        z = torch.randn(cfg.batch, cfg.z_dim, device=device)
        fake = G(z, None, noise_mode="random")
        loss = F.softplus(-_d_logits(D, fake)).mean() + F.softplus(-_d_logits(D, reals)).mean()
        loss.backward()

    for _ in range(2):   # warm-up (steps 0 and 1); the timed steps start at 2
        t.train_step()
    # timed as lj train runs them: losses left on the device, stats.jsonl written in batches
    bare()
    # interleaved in rounds of 4 (one path-length step each), so a change of the machine's load
    # hits both sides alike
    train_s = ref_s = 0.0
    for _ in range(max(1, steps // 4)):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(4):
            t.train_step(wait=False)
        t.flush_stats()
        sync(device)
        t1 = time.perf_counter()
        for _ in range(4):
            bare()
        sync(device)
        train_s, ref_s = train_s + t1 - t0, ref_s + time.perf_counter() - t1
    n = max(1, steps // 4) * 4 * cfg.batch
    train_ips, ref_ips = n / train_s, n / ref_s
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    print(f"train {label:40s} {train_ips:7.2f} images/s   bare G+D fwd/bwd {ref_ips:7.2f} images/s   "
          f"ratio {train_ips / ref_ips:5.3f}")
    return train_ips


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--train-res", type=int, nargs="*", default=[],
                    help="also time lj train's defaults (batch 8) at these resolutions, e.g. 128 256 "
                         "on a GPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{args.threads} CPU threads'}), torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        bench_sheet("builtin:cppn 128px", load_generator("builtin:cppn", (128, 128)), device, tmp)
        torch.manual_seed(0)
        cfg = TrainConfig(resolution=64)
        net = build_generator(generator_kwargs(cfg)).eval()
        bench_sheet("stylegan2 64px (untrained)", StyleGANGenerator(net), device, tmp)
        if args.skip_train:
            return 0
        from PIL import Image

        folder = Path(tmp) / "images"
        folder.mkdir()
        rng = np.random.default_rng(0)
        side = max([64] + args.train_res)
        for i in range(16):
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        common = dict(images=str(folder), sample_every=0, checkpoint_every=0)
        small = dict(resolution=64, batch=8, **common)    # lj train's default network, 128 channels
        off = dict(style_mixing=0.0, pl_weight=0.0)
        for label, kw in (("small-bare (64px, batch 8, fixed augment)", off),
                          ("small-ada (+ ADA)", dict(off, ada=True)),
                          ("small-reg (+ style mixing, path length)", {}),
                          ("small-both (+ ADA + regularisers)", dict(ada=True))):
            bench_train(label, TrainConfig(**small, **kw), device, tmp, args.steps)
        bench_train("tiny (32px, 16ch, batch 4, defaults)",
                    TrainConfig(resolution=32, z_dim=32, w_dim=32, channels=16, batch=4, **common),
                    device, tmp, args.steps)
        for res in args.train_res:
            bench_train(f"{res}px (lj train defaults, batch 8)",
                        TrainConfig(resolution=res, batch=8, **common), device, tmp, args.steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

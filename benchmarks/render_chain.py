"""Shader chain cost at 1080p output: three effects vs the bare upload + upscale + present.

On an EGL context (Mesa llvmpipe here: the GPU is software on the CPU's cores), one run:
  * bare: a 512x512 generator frame uploaded, upscaled (bicubic) to 1920x1080 and presented into a
    1920x1080 framebuffer (what a window gets), ``ctx.finish()`` each frame so GL work is counted;
  * chain: the same plus the three effects of the default mapping (feedback, rgb_shift, grade);
and the chain's cost as a share of the chained frame and as a ratio to the bare frame.

Usage: python benchmarks/render_chain.py [--frames 60] [--output 1920x1080] [--input 512]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from engine.paths import SHADER_DIR
from engine.render.context import headless_context
from engine.render.pipeline import Renderer

CHAIN = ["feedback", "rgb_shift", "grade"]


def per_frame(ctx, renderer, screen, size, img, frames: int) -> list[float]:
    times = []
    for i in range(frames + 5):
        t0 = time.perf_counter()
        renderer.render(img, {}, i / 60.0)
        renderer.present(screen, size)
        ctx.finish()
        if i >= 5:  # warm-up (shader compilation, first allocations)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--output", default="1920x1080")
    ap.add_argument("--input", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3, help="alternate bare/chain this many times")
    args = ap.parse_args()
    w, h = (int(v) for v in args.output.split("x"))
    ctx = headless_context()
    print(f"GL: {ctx.info['GL_RENDERER']}")
    img = np.random.default_rng(0).integers(0, 256, (args.input, args.input, 3), dtype=np.uint8)
    screen = ctx.simple_framebuffer((w, h))
    bare = Renderer(ctx, (args.input, args.input), (w, h), [], SHADER_DIR)
    chain = Renderer(ctx, (args.input, args.input), (w, h), CHAIN, SHADER_DIR)
    assert chain.chain == CHAIN, chain.errors
    t_bare, t_chain = [], []
    for _ in range(args.rounds):  # alternate, so load changes hit both alike
        t_bare += per_frame(ctx, bare, screen, (w, h), img, args.frames)
        t_chain += per_frame(ctx, chain, screen, (w, h), img, args.frames)
    mb, mc = statistics.median(t_bare), statistics.median(t_chain)
    cost = mc - mb
    print(f"{args.input}x{args.input} -> {w}x{h}, {len(t_bare)} frames each, medians:")
    print(f"  bare upload + upscale + present: {mb * 1e3:7.1f} ms")
    print(f"  with {', '.join(CHAIN)}: {mc * 1e3:7.1f} ms  ({mc / mb:.2f}x the bare frame)")
    print(f"  chain cost: {cost * 1e3:.1f} ms = {cost / mc * 100:.0f} % of the chained frame, "
          f"{cost / (1 / 60) * 100:.0f} % of a 60 fps frame budget")
    for r in (bare, chain):
        r.release()
    ctx.release()


if __name__ == "__main__":
    main()

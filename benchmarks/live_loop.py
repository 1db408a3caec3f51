"""Live loop speed: the built-in generator at 256², a real window (Xvfb) when one can be had.

Figures, all from one run:
  * frames per second sustained by the whole live loop (features, mapping, generator, shader
    chain, present, swap), vsync off, playing the demo song;
  * p99 frame time;
  * the bare generator call (GeneratorRunner.generate on the same frames, nothing else running),
    and the engine's overhead as a share of the frame: (frame time - bare generator) / frame time.

Usage: python benchmarks/live_loop.py [--size 256] [--seconds 20] [--mapping FILE]
Targets (issue 2): >= 60 fps, p99 <= 25 ms, overhead <= 15 %.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import display, percentile_ms  # noqa: E402

from engine.audio.demo import demo_song  # noqa: E402
from engine.audio.sources import FilePlayer  # noqa: E402
from engine.generators.runner import GeneratorRunner  # noqa: E402
from engine.live import LiveOptions, run_live  # noqa: E402
from engine.session import ArrayReader, Session, to_mono  # noqa: E402


def bare_generator(size: int, samples, sr, frames: int, mapping=None) -> list[float]:
    """Time the generator alone on the frames the mapping asks for."""
    session = Session(sr, mapping, None, (size, size), threaded=False)
    reader = ArrayReader(to_mono(samples))
    runner = GeneratorRunner(session.generator, device="cpu", threaded=False)
    times = []
    for i in range(frames + 10):
        params = session.params_at(reader, i * sr // 60)
        t0 = time.perf_counter()
        runner.generate(params)
        if i >= 10:
            times.append(time.perf_counter() - t0)
    runner.close()
    session.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--mapping", help="mapping file (default: mappings/default.toml)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples, sr, _ = demo_song(seconds=args.seconds + 5)

    with display() as disp:
        opts = LiveOptions(mapping=args.mapping, size=args.size, vsync=False,
                           headless=disp is None, osc_port=0,
                           max_seconds=args.seconds, watch=True)
        stats = run_live(FilePlayer(samples, sr), opts)
    frames = np.asarray(stats.frame_times[30:])  # skip the warm-up
    fps = len(frames) / frames.sum()
    frame_mean = frames.mean()

    bare = np.asarray(bare_generator(args.size, samples, sr, 300, args.mapping))
    overhead = (frame_mean - bare.mean()) / frame_mean

    target = "window (Xvfb)" if disp else "headless (EGL)"
    chain = ", ".join(stats.session.mapping.shader_chain) or "none"
    print(f"live loop, built-in generator {args.size}x{args.size}, {target}, {len(frames)} frames, "
          f"shader chain: {chain}")
    print(f"  fps sustained        {fps:7.1f}   ({fps / 60:.2f}x the 60 fps target)")
    print(f"  frame time mean      {frame_mean * 1e3:7.2f} ms   p50 {percentile_ms(frames, 50):.2f}"
          f"   p99 {percentile_ms(frames, 99):.2f} ms (target <= 25)")
    print(f"  bare generator mean  {bare.mean() * 1e3:7.2f} ms   p99 {percentile_ms(bare, 99):.2f} ms")
    print(f"  frame / bare gen     {frame_mean / bare.mean():7.2f}x")
    print(f"  overhead             {overhead * 100:7.1f} % of the frame (target <= 15 %)")
    print(f"  dropped audio hops   {stats.session.analysis.dropped_hops}")


if __name__ == "__main__":
    main()

"""Offline render speed: `lj render` of a 60 s song, as a ratio of render time to song length.

The song is the demo music (written at run time), 60 s; output 512x512 at 30 fps with the default
mapping, H.264 + AAC. A ratio of 0.5 means twice real time. Also reported, in the same run: the
bare generator's share of the time, and the same render with --render-scale 0.5 (the generator at
256x256, upscaled in the shader stage).

Usage: python benchmarks/render_speed.py [--seconds 60] [--size 512] [--fps 30]
Target (issue 2): render time / song length <= 0.5.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from engine.audio.demo import demo_song
from engine.generators.runner import GeneratorRunner
from engine.offline import render_song
from engine.session import ArrayReader, Session, to_mono


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=int, default=30)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    samples, sr, _ = demo_song(seconds=args.seconds)
    song = len(samples) / sr
    with tempfile.TemporaryDirectory() as tmp:
        for scale in (1.0, 0.5):
            out = Path(tmp) / f"render_{scale}.mp4"
            summary = render_song(samples, sr, out, size=args.size, fps=args.fps, render_scale=scale)
            gen_px = int(round(args.size * scale))
            # The bare generator over the same frames, same run.
            session = Session(sr, None, None, (gen_px, gen_px), threaded=False)
            reader = ArrayReader(to_mono(samples))
            runner = GeneratorRunner(session.generator, device="cpu", threaded=False)
            n = min(300, summary["frames"])
            t0 = time.perf_counter()
            for i in range(n):
                runner.generate(session.params_at(reader, i * sr // args.fps))
            gen_per_frame = (time.perf_counter() - t0) / n
            session.close()
            runner.close()
            ratio = summary["wall"] / song
            print(f"render {song:.0f} s song -> {args.size}x{args.size} @ {args.fps} fps, generator "
                  f"{gen_px}x{gen_px}: {summary['wall']:.1f} s, ratio {ratio:.2f} (target <= 0.5); "
                  f"bare generator {gen_per_frame * 1e3:.1f} ms/frame = "
                  f"{gen_per_frame * summary['frames'] / summary['wall'] * 100:.0f} % of the render")


if __name__ == "__main__":
    main()

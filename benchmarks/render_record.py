"""The recorder's cost to the live loop: fps with and without recording, same run.

The live loop (a real window on Xvfb when one can be had, vsync off, else headless EGL; the
demo song paced by the wall clock, default mapping) runs for
``--seconds`` without recording, then with ``--record`` to a temporary .mp4 (H.264 ultrafast +
AAC on the recorder's thread, 30 fps grid), alternating ``--rounds`` times so load changes hit
both alike. Reported: mean fps of each, the ratio, and the recorder's own counts (frames encoded,
frames not recorded because the encoder was behind).

Usage: python benchmarks/render_record.py [--seconds 10] [--size 256] [--output-size 512x512]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import display  # noqa: E402

from engine.audio.demo import demo_song
from engine.audio.sources import FilePlayer
from engine.live import LiveOptions, StopFlag, run_live
from engine.render.record import probe


def one_run(samples, sr, args, record: str | None):
    opts = LiveOptions(size=args.size, output_size=args.output_size, headless=args.headless,
                       vsync=False,
                       osc_port=None, watch=False, max_seconds=args.seconds, record=record)
    stats = run_live(FilePlayer(samples, sr, device=None), opts, StopFlag())
    return stats.mean_fps(), stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--output-size", default="512x512")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    args.output_size = tuple(int(v) for v in args.output_size.split("x"))
    logging.basicConfig(level=logging.WARNING)
    samples, sr, _ = demo_song(seconds=args.seconds * (2 * args.rounds + 1) + 5)
    plain, recorded, files = [], [], []
    with tempfile.TemporaryDirectory() as tmp, display() as disp:
        args.headless = disp is None
        print(f"{'headless EGL' if disp is None else f'window on display {disp}'}")
        for i in range(args.rounds):
            plain.append(one_run(samples, sr, args, None)[0])
            path = str(Path(tmp) / f"rec{i}.mp4")
            fps, stats = one_run(samples, sr, args, path)
            recorded.append(fps)
            info = probe(path)
            files.append((info["frames"], info["duration"], info["audio_duration"]))
    a, b = statistics.mean(plain), statistics.mean(recorded)
    print(f"live loop, generator {args.size}², output {args.output_size[0]}x{args.output_size[1]},"
          f" {args.seconds:g} s per run, {args.rounds} rounds alternating:")
    print(f"  without recording: {a:6.1f} fps  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"  recording:         {b:6.1f} fps  (runs: {', '.join(f'{v:.1f}' for v in recorded)})")
    print(f"  with / without: {b / a:.2f}  (cost {(1 / b - 1 / a) * 1e3:.1f} ms per frame)")
    for n, dur, adur in files:
        print(f"  file: {n} frames, {dur:.1f} s video, {adur:.1f} s audio "
              f"({n / max(dur, 1e-9):.1f} fps recorded)")


if __name__ == "__main__":
    main()

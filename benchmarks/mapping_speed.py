"""Mapping speed: compile time and per-frame evaluation of the largest shipped mapping.

Prints each figure as a share of one 60 fps frame (16.7 ms), the reference for the targets:
compile <= 50 ms (a reload must not stall a show), per frame <= 0.5 ms (step_hop for the hops
of one frame plus frame()). Run: .venv/bin/python benchmarks/mapping_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.generators.cppn import CPPNGenerator  # noqa: E402
from engine.mapping import compile_mapping, load_mapping  # noqa: E402

SR, HOP, FPS = 44100, 512, 60
FRAME_S = 1.0 / FPS


def main() -> None:
    space = CPPNGenerator((64, 64)).latent_space()
    paths = sorted((ROOT / "mappings").glob("*.toml"))
    largest = max(paths, key=lambda p: len(load_mapping(p).routes))
    compile_s = []
    for _ in range(20):
        t0 = time.perf_counter()
        m = compile_mapping(load_mapping(largest), space, SR, HOP)
        compile_s.append(time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    feats = [{name: float(rng.random()) for name in (
        "rms", "loudness", "level", "bass", "mid", "treb", "bass_att", "mid_att", "treb_att",
        "bass_level", "mid_level", "treb_level", "flux", "centroid", "flatness")}
        | {"onset": float(i % 20 == 0), "onset_low": float(i % 40 == 0),
           "onset_mid": float(i % 40 == 20), "onset_high": float(i % 10 == 0),
           "chroma": rng.random(12).astype(np.float32)} for i in range(64)]
    frame_s = []
    pos = 0
    for i in range(3000):
        target = (i + 1) * SR // FPS
        t0 = time.perf_counter()
        while pos + HOP <= target:
            m.step_hop(feats[(pos // HOP) % 64], {})
            pos += HOP
        m.frame(target / SR)
        frame_s.append(time.perf_counter() - t0)
    c = float(np.median(compile_s))
    f = float(np.median(frame_s))
    f99 = float(np.percentile(frame_s, 99))
    print(f"largest shipped mapping: {largest.name} ({len(m.spec.routes)} routes)")
    print(f"compile   median {c * 1e3:7.3f} ms = {c / FRAME_S:6.3f} frames at 60 fps "
          f"(target 50 ms = 3 frames)  {'ok' if c <= 0.050 else 'MISS'}")
    print(f"per frame median {f * 1e3:7.3f} ms = {f / FRAME_S:6.3f} of a 60 fps frame "
          f"(target 0.5 ms = 0.030)  {'ok' if f <= 0.0005 else 'MISS'}")
    print(f"per frame p99    {f99 * 1e3:7.3f} ms = {f99 / FRAME_S:6.3f} of a 60 fps frame")


if __name__ == "__main__":
    main()

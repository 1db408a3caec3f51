"""Speed of the built-in generator: ms/frame at 256² and 512², against a reference in the same run.

    python benchmarks/generator_speed.py [--threads 2] [--repeats 40] [--sizes 256 512]

For each size it times, interleaved (so load from other processes hits all alike), the median of
``--repeats`` runs of:

* ``synthesize``: the built-in CPPN's synthesis alone (``w_plus`` -> ``[1, 3, h, w]`` float);
* ``+ rgb8``: synthesis plus the runner's ``uint8`` conversion (what a frame costs the engine);
* the reference: one ``torch.sin`` over a ``12 x h x w`` float32 tensor, i.e. one per-pixel
  transcendental pass over the hidden width the generator used to have. It measures how fast the
  machine is right now; the generator before the half-resolution rewrite cost about 5-6 of these
  (three sine passes plus three matrix products and the broadcast adds), so a ratio well under
  that is the speed-up, independent of the machine's load.

The 60 fps column is how many frames of this size fit in one 16.7 ms frame budget.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.generators.cppn import CPPNGenerator  # noqa: E402
from engine.generators.runner import to_rgb8_  # noqa: E402

BUDGET_MS = 1000.0 / 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'size':>6} {'what':>12} {'ms/frame':>9} {'per 60fps':>10} {'x ref':>7}")
    for size in args.sizes:
        gen = CPPNGenerator((size, size)).eval()
        w = gen.w_avg[None, None].repeat(1, gen.num_layers, 1)
        w = w + 0.7 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
        rgb8 = torch.empty(size, size, 3, dtype=torch.uint8)
        ref_in = torch.randn(12, size, size)
        ref_out = torch.empty_like(ref_in)

        def synth():
            gen.synthesize(w, 0.1)

        def frame():
            to_rgb8_(gen.synthesize(w, 0.1)[0], rgb8)

        def reference():
            torch.sin(ref_in, out=ref_out)

        runs = {"synthesize": synth, "+ rgb8": frame, "ref sin": reference}
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            for fn in runs.values():  # warm-up: workspaces, allocator
                fn(), fn()
            for _ in range(args.repeats):
                for name, fn in runs.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for name, ms in med.items():
            print(f"{size:>5}² {name:>12} {ms:9.2f} {BUDGET_MS / ms:10.1f} {ms / med['ref sin']:7.2f}")


if __name__ == "__main__":
    main()

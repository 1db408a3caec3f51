"""Speed of the built-in generator and of the runner around it, against references in the same run.

    python benchmarks/generator_speed.py [--threads 2] [--repeats 40] [--sizes 256 512]

For each size it times, interleaved in a shuffled order per round (so load from other processes,
and thread pools still spinning after the previous call, hit all alike), the median of
``--repeats`` runs of:

* ``synthesize``: the built-in CPPN's synthesis alone (``w_plus`` -> ``[1, 3, h, w]`` float);
* ``flow``: the second built-in family's (``builtin:flow``) synthesis alone;
* ``+ rgb8``: synthesis plus the runner's ``uint8`` conversion (what a frame costs the engine);
* ``runner``: :class:`GeneratorRunner` end to end, unthreaded (``FrameParams`` in: fill the static
  inputs, truncate, synthesize, convert, hand out the slot);
* ``runner thr``: the same through the worker thread (``submit`` then ``result``), what the live
  loop pays when it waits for a frame;
* two references that measure how fast the machine is right now: ``ref sin``, one ``torch.sin``
  over a ``12 x h x w`` float32 tensor (a per-pixel transcendental pass over the hidden width), and
  ``ref conv``, one 1x1 convolution 12 -> 12 channels at ``h x w`` (a per-pixel channel mix, the
  cheapest layer a conv-net generator of this size would have).

Columns: milliseconds, the share of one 60 fps frame (16.7 ms), and ratios against ``ref conv``
and against the bare ``synthesize`` (the runner's overhead).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.frame import FrameParams  # noqa: E402
from engine.generators.cppn import CPPNGenerator  # noqa: E402
from engine.generators.flow import FlowGenerator  # noqa: E402
from engine.generators.runner import GeneratorRunner, to_rgb8_  # noqa: E402

BUDGET_MS = 1000.0 / 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'size':>6} {'what':>12} {'ms/frame':>9} {'of 60fps':>9} {'x conv':>7} {'x synth':>8}")
    for size in args.sizes:
        gen = CPPNGenerator((size, size)).eval()
        flow = FlowGenerator((size, size)).eval()
        w = gen.w_avg[None, None].repeat(1, gen.num_layers, 1)
        w = w + 0.7 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1))
        noise = torch.full((gen.num_layers,), 0.1)
        rgb8 = torch.empty(size, size, 3, dtype=torch.uint8)
        work = torch.empty(size, size, 3)
        ref_in = torch.randn(12, size, size)
        ref_out = torch.empty_like(ref_in)
        conv = torch.nn.Conv2d(12, 12, 1).eval()
        conv_in = torch.randn(1, 12, size, size)
        # The runner gets its own generator (it converts and owns it); same weights, same size.
        runner = GeneratorRunner(CPPNGenerator((size, size)), device="cpu", threaded=False)
        threaded = GeneratorRunner(CPPNGenerator((size, size)), device="cpu", threaded=True)
        params = FrameParams(t=0.0, w_plus=w[0].numpy().copy(), truncation=0.8,
                             noise=np.full(gen.num_layers, 0.1, np.float32))

        def synth():
            gen.synthesize(w, noise)

        def flow_synth():
            flow.synthesize(w, noise)

        def frame():
            to_rgb8_(gen.synthesize(w, noise)[0], rgb8, work)

        def run_unthreaded():
            runner.submit(params)
            runner.result()

        def run_threaded():
            threaded.submit(params)
            threaded.result()

        def ref_sin():
            torch.sin(ref_in, out=ref_out)

        def ref_conv():
            conv(conv_in)

        runs = {"synthesize": synth, "flow": flow_synth, "+ rgb8": frame, "runner": run_unthreaded,
                "runner thr": run_threaded, "ref sin": ref_sin, "ref conv": ref_conv}
        times: dict[str, list[float]] = {k: [] for k in runs}
        with torch.inference_mode():
            for fn in runs.values():  # warm-up: workspaces, allocator
                fn(), fn()
            order = list(runs.items())
            rng = random.Random(size)
            for _ in range(args.repeats):
                rng.shuffle(order)
                for name, fn in order:
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        runner.close()
        threaded.close()
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for name, ms in med.items():
            print(f"{size:>5}² {name:>12} {ms:9.2f} {100 * ms / BUDGET_MS:8.0f}% "
                  f"{ms / med['ref conv']:7.2f} {ms / med['synthesize']:8.2f}")


if __name__ == "__main__":
    main()

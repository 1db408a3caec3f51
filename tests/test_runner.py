"""The runner under a slow generator: the live loop's non-blocking path holds the shown frame."""

import threading
import time

import numpy as np

from engine.frame import FrameParams
from engine.generators.cppn import CPPNGenerator
from engine.generators.runner import GeneratorRunner


class Sluggish(CPPNGenerator):
    """A generator whose frames take as long as a test says (waits on an event)."""

    def __init__(self):
        super().__init__((16, 16))
        self.gate = threading.Event()
        self.gate.set()

    def synthesize(self, w_plus, noise_strength=0.0):
        self.gate.wait(10)
        return super().synthesize(w_plus, noise_strength)


def params(gen, seed):
    w = gen.latent_space().seed_to_w(seed)
    return FrameParams(t=0.0, w_plus=np.repeat(w[None], gen.num_layers, 0))


def test_a_late_frame_holds_the_shown_picture_without_blocking():
    gen = Sluggish()
    runner = GeneratorRunner(gen, device="cpu")
    try:
        runner.submit(params(gen, 1))
        shown = runner.result()
        kept = shown.copy()
        gen.gate.clear()                       # the next frames are "ten times slower"
        runner.submit(params(gen, 2))
        t0 = time.monotonic()
        held = runner.result(timeout=0.02)
        assert held is shown and runner.late_frames == 1
        assert time.monotonic() - t0 < 5, "result(timeout) must not wait for the generator"
        assert not runner.idle
        gen.gate.set()                         # the slow frame completes, uncollected...
        deadline = time.monotonic() + 10
        while not runner.idle and time.monotonic() < deadline:
            time.sleep(0.005)
        runner.submit(params(gen, 3))          # ...and the next job starts before it is taken
        runner.result()
        np.testing.assert_array_equal(kept, shown)  # never written while it was on screen
    finally:
        gen.gate.set()
        runner.close()


def test_fresh_frames_alternate_between_the_two_buffers():
    gen = CPPNGenerator((16, 16))
    runner = GeneratorRunner(gen, device="cpu", threaded=False)
    seen = []
    for seed in range(4):
        runner.submit(params(gen, seed))
        frame = runner.result()
        seen.append(frame)
        assert frame is not (seen[-2] if len(seen) > 1 else None)
    assert seen[0] is seen[2] and seen[1] is seen[3]
    assert runner.result() is seen[-1], "no new job: the shown frame again"
    runner.close()

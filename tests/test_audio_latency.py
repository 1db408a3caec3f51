"""Latency: a transient produces its onset event within one hop plus the FFT's own delay.

The FFT's own delay is taken as a quarter window (n_fft / 4): the Hann window weighs the newest
samples of its frame near zero and reaches half weight a quarter window in, so a transient is
fully "heard" once it is that deep in the frame. With hop 512 and n_fft 2048 the bound is 1024
samples (23.2 ms at 44.1 kHz); the transients are placed at every offset within a hop.
"""

import numpy as np
import pytest

from engine.audio.features import FeatureExtractor

SR, HOP, N_FFT = 44100, 512, 2048
BOUND = HOP + N_FFT // 4


def transient(kind, rng):
    if kind == "click":
        return 0.8 * np.hanning(16)
    if kind == "kick":
        t = np.arange(int(0.2 * SR)) / SR
        return 0.8 * np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.08)
    n = int(0.03 * SR)
    return 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / SR / 0.01)


@pytest.mark.parametrize("kind, event", [("click", "onset_low"), ("kick", "onset_low"),
                                         ("noise", "onset"), ("noise", "onset_high")])
def test_onset_event_within_one_hop_plus_the_window_delay(kind, event):
    rng = np.random.default_rng(0)
    latencies = []
    for offset in range(0, HOP, 61):             # every position within a hop
        x = np.zeros(3 * SR, np.float32)
        starts = [int(0.3 * SR) + k * int(0.5 * SR) + offset for k in range(5)]
        for s in starts:
            sig = transient(kind, rng)
            x[s:s + sig.size] += sig
        fe = FeatureExtractor(SR, HOP, N_FFT)
        fired = []
        for i in range(len(x) // HOP):
            if fe.process_hop(x[i * HOP:(i + 1) * HOP])[event]:
                fired.append((i + 1) * HOP)      # the hop's last sample: when it was known
        for s in starts:
            after = [e - s for e in fired if e > s]
            assert after, f"{kind} at {s} gave no {event}"
            latencies.append(min(after))
    assert max(latencies) <= BOUND, (max(latencies), BOUND)
    assert min(latencies) >= 1                    # causal: never before the transient

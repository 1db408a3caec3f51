"""Audio analysis speed: the streaming FeatureExtractor (all features incl. tempo/beats) in times
real time on one core: one hop per call (``process_hop``), as the engine's frame loop drives it at
60 fps (``Session``'s ``Analysis``: the hops due each frame, in blocks), and in blocks of up to
BLOCK_HOPS hops (``process_hops``: ``lj analyze``, renders, backlogs; the same features hop for
hop), against librosa's offline extraction of comparable features timed in the same run (STFT,
RMS, onset strength, chroma, spectral centroid/flatness, beat_track).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audio_speed.py [--seconds 60]

``--baseline FILE`` also times another version of ``engine/audio/features.py`` (e.g. written by
``git show main:engine/audio/features.py > /tmp/old_features.py``) hop by hop in the same run,
interleaved with the current one, for a before/after on the same machine load.
"""

from __future__ import annotations

import argparse
import os
import time

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

from engine.audio.beat import BeatTracker  # noqa: E402
from engine.audio.demo import demo_song  # noqa: E402
from engine.audio.features import BLOCK_HOPS, FeatureExtractor  # noqa: E402

HOP, N_FFT = 512, 2048


CLOCK = time.perf_counter


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", metavar="FILE", help="another features.py to time alongside")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time, the CPU time this "
                         "single-threaded process used (less inflated when other work shares "
                         "the cores)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    y, sr, _ = demo_song(seconds=args.seconds)
    x = np.ascontiguousarray(y.mean(axis=1), dtype=np.float32)
    n = len(x) // HOP
    hops = [x[i * HOP:(i + 1) * HOP] for i in range(n)]
    audio_s = n * HOP / sr

    def ours():
        fe = FeatureExtractor(sr, HOP, N_FFT)
        for h in hops:
            fe.process_hop(h)

    def ours_block():
        fe = FeatureExtractor(sr, HOP, N_FFT)
        for _ in fe.process_hops(x):
            pass

    from engine.session import Analysis, ArrayReader

    class _NoMapping:
        @staticmethod
        def step_hop(features, controls):
            pass

    def live_loop():
        # what the engine's frame loop does at 60 fps: every frame, analyse the hops that became
        # due (HopReader.blocks + process_hops: one or two hops per frame here)
        an, reader = Analysis(sr, HOP, N_FFT), ArrayReader(x)
        for f in range(1, int(audio_s * 60) + 1):
            an.advance(reader, f * sr // 60, _NoMapping, {})

    # The tracker is timed on the novelty and chroma the extractor really feeds it on this audio
    # (it locks and corrects its phase every hop, as in a show).
    fed = []
    rec = FeatureExtractor(sr, HOP, N_FFT)
    feed = rec.beat.update
    rec.beat.update = lambda v, c: (fed.append((v, c.copy())), feed(v, c))
    for _ in rec.process_hops(x):
        pass

    def tracker():
        bt = BeatTracker(sr / HOP)
        for v, c in fed:
            bt.update(v, c)

    import librosa

    def offline():
        S = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP))
        librosa.feature.rms(S=S, frame_length=N_FFT)
        env = librosa.onset.onset_strength(y=x, sr=sr, hop_length=HOP)
        librosa.feature.chroma_stft(S=S**2, sr=sr, n_fft=N_FFT)
        librosa.feature.spectral_centroid(S=S, sr=sr)
        librosa.feature.spectral_flatness(S=S)
        librosa.beat.beat_track(onset_envelope=env, sr=sr, hop_length=HOP)

    offline()  # warm librosa's caches / numba
    t_base = None
    if args.baseline:
        import importlib.util

        spec = importlib.util.spec_from_file_location("baseline_features", args.baseline)
        base_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(base_mod)

        def baseline():
            fe = base_mod.FeatureExtractor(sr, HOP, N_FFT)
            for h in hops:
                fe.process_hop(h)

        # interleaved, so that both see the same machine load
        t_base, t_ours, t_block = float("inf"), float("inf"), float("inf")
        for _ in range(args.repeats):
            t_base = min(t_base, best_of(baseline, 1))
            t_ours = min(t_ours, best_of(ours, 1))
            t_block = min(t_block, best_of(ours_block, 1))
    else:
        t_ours = best_of(ours, args.repeats)
        t_block = best_of(ours_block, args.repeats)
    t_live = best_of(live_loop, args.repeats)
    t_track = best_of(tracker, args.repeats)
    t_lib = best_of(offline, args.repeats)
    print(f"audio: {audio_s:.1f} s, {n} hops of {HOP} at {sr} Hz; best of {args.repeats}, "
          f"{args.clock} clock")
    print(f"FeatureExtractor (all features, streaming): {t_ours / n * 1e6:7.1f} us/hop  "
          f"{audio_s / t_ours:7.1f}x real time")
    print(f"FeatureExtractor.process_hops (same features, spectra {BLOCK_HOPS} hops at a time): "
          f"{t_block / n * 1e6:7.1f} us/hop  {audio_s / t_block:7.1f}x real time")
    print(f"the live loop's analysis at 60 fps (Session: blocks of the 1-2 hops due per frame): "
          f"{t_live / n * 1e6:7.1f} us/hop  {audio_s / t_live:7.1f}x real time")
    if t_base is not None:
        print(f"baseline {args.baseline} (process_hop): {t_base / n * 1e6:7.1f} us/hop  "
              f"{audio_s / t_base:7.1f}x real time")
    print(f"  of which BeatTracker.update:                {t_track / n * 1e6:7.1f} us/hop  "
          f"({t_track / t_ours:.0%} of the extractor)")
    print(f"librosa offline (stft, rms, onset, chroma, centroid, flatness, beat_track): "
          f"{audio_s / t_lib:7.1f}x real time")
    print(f"ratio streaming / librosa offline speed: per hop {t_lib / t_ours:.2f}, "
          f"blocks {t_lib / t_block:.2f}")
    for label, t in (("process_hop, one hop per call", t_ours),
                     ("the live loop at 60 fps", t_live),
                     ("process_hops (lj analyze, renders, backlogs)", t_block)):
        print(f"target 200x real time, {label}: {'met' if audio_s / t >= 200 else 'NOT met'} "
              f"({audio_s / t:.1f}x)")


if __name__ == "__main__":
    main()

"""Tempo and beat accuracy of the streaming tracker (causal, scored after a warm-up) side by side
with librosa.beat.beat_track (offline, sees the whole song), on music whose beats are known here:
the demo song and synthetic drum patterns (kick / snare / hats, with timing jitter) at several
tempi.

    .venv/bin/python benchmarks/audio_accuracy.py [--warmup 5]

Tempo accuracy: fraction of songs whose tempo is within 4 % of the truth (for the streaming
tracker: the fraction of post-warm-up hops, averaged; for librosa: its one global estimate).
Beat F-measure: one-to-one matches within +-70 ms, beats after the warm-up only.
"""

from __future__ import annotations

import argparse

import numpy as np

from engine.audio.demo import demo_song
from engine.audio.demo import drum_track
from engine.audio.features import FeatureExtractor

SR, HOP = 44100, 512


def drums(bpm, seconds=30.0, seed=0, jitter=0.005, hats=True):
    """Kick on beats, snare on 2 and 4, optional eighth hats; +-jitter s of human timing."""
    return drum_track(bpm, seconds, SR, seed=seed, first=0.2, jitter=jitter, hats=hats)


def f_measure(detected, reference, tol=0.07):
    used = np.zeros(len(detected), bool)
    hits = 0
    for r in reference:
        d = np.abs(np.asarray(detected) - r)
        d[used] = np.inf
        if d.size and d.min() <= tol:
            used[int(np.argmin(d))] = True
            hits += 1
    if not hits:
        return 0.0
    p, rc = hits / len(detected), hits / len(reference)
    return 2 * p * rc / (p + rc)


def ours(x, sr):
    fe = FeatureExtractor(sr, HOP)
    n = len(x) // HOP
    bpm = np.zeros(n)
    beats = []
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        bpm[i] = f["bpm"]
        if f["beat"]:
            beats.append((i + 1) * HOP / sr)
    return (np.arange(n) + 1) * HOP / sr, bpm, np.array(beats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, default=5.0)
    args = ap.parse_args()
    import librosa

    songs = []
    y, sr, bpm = demo_song(seconds=60.0)
    songs.append(("demo song", y.mean(axis=1).astype(np.float32), bpm,
                  np.arange(0, 60.0, 60.0 / bpm)))
    for i, (tempo, hats) in enumerate([(88, True), (96, False), (110, True), (120, True),
                                       (128, True), (136, False), (150, True), (174, True)]):
        x, beats = drums(float(tempo), seed=i, hats=hats)
        songs.append((f"drums {tempo}{'' if hats else ' no hats'}", x, float(tempo), beats))

    wu = args.warmup
    rows = []
    print(f"{'song':22s} {'ours tempo ok':>13s} {'ours F':>7s} {'librosa tempo':>13s} "
          f"{'librosa F':>9s}")
    for name, x, true_bpm, true_beats in songs:
        ref = true_beats[(true_beats >= wu) & (true_beats < len(x) / SR - 0.3)]
        t, bpm, beats = ours(x, SR)
        tempo_ok = float(np.mean(np.abs(bpm[t >= wu] / true_bpm - 1) <= 0.04))
        f_ours = f_measure(beats[beats >= wu], ref)
        lt, lb = librosa.beat.beat_track(y=x, sr=SR, hop_length=HOP, units="time")
        lt = float(np.atleast_1d(lt)[0])
        f_lib = f_measure(lb[lb >= wu], ref)
        rows.append((tempo_ok, f_ours, float(abs(lt / true_bpm - 1) <= 0.04), f_lib))
        print(f"{name:22s} {tempo_ok:13.2f} {f_ours:7.3f} {lt:9.1f} {'ok' if rows[-1][2] else '--':>3s} "
              f"{f_lib:9.3f}")
    m = np.mean(rows, axis=0)
    print(f"{'mean':22s} {m[0]:13.2f} {m[1]:7.3f} {m[2]:13.2f} {m[3]:9.3f}")
    print(f"targets: tempo accuracy >= 0.9 ({'met' if m[0] >= 0.9 else 'NOT met'}), "
          f"F >= 0.8 ({'met' if m[1] >= 0.8 else 'NOT met'}) -- synthetic and demo music only")


if __name__ == "__main__":
    main()

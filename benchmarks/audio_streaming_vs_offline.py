"""Streaming vs offline: the live extractor's chroma and onset strength against librosa's offline
``chroma_stft`` and ``onset_strength`` on the same audio, as Pearson correlations after aligning
the hops (our hop ``i`` ends at sample ``(i + 1) * hop``; librosa's frame ``j`` is centred at
``j * hop``; the best lag within +-8 hops is used and printed).

Audio: the demo song, plus whatever ``benchmarks/audio_real_music.py`` has rendered into its cache
(Hydrogen demo songs, music21 pieces through fluidsynth).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audio_streaming_vs_offline.py [--seconds 30]

Correlations: chroma over every (frame, pitch class) value of frames with sound; onset strength
over frames. Chroma is compared with ``chroma_stft`` as it is called by default (it estimates the
tuning from the whole file first, which a stream cannot) and at A440 (``tuning=0``, what the
stream uses). Two onset references are given: librosa's default (a 128-band mel spectrogram in dB,
its rise averaged over bands) and ``onset_strength`` fed our spectrum definition (log(1 + 100 |X|)
of a 2048-point Hann STFT, its rise averaged over 20 Hz .. Nyquist), which isolates the
streaming/offline difference from the choice of spectrum. Target: >= 0.95.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine.audio.demo import demo_song  # noqa: E402
from engine.audio.features import FeatureExtractor  # noqa: E402

HOP, N_FFT = 512, 2048
MAX_LAG = 8


def stream(x, sr):
    """Our per-hop chroma [n, 12] and raw onset strength [n]."""
    fe = FeatureExtractor(sr, HOP, N_FFT)
    n = len(x) // HOP
    chroma = np.zeros((n, 12), np.float32)
    onset = np.zeros(n)
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        chroma[i] = f["chroma"]
        onset[i] = fe.onset_strength
    return chroma, onset


def offline(x, sr):
    import librosa

    chroma = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP).T
    chroma_a440 = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0).T
    onset_default = librosa.onset.onset_strength(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP)
    S = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP)) * (4.0 / N_FFT)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    logmag = np.log1p(100.0 * S[freqs >= 20.0])
    onset_same = librosa.onset.onset_strength(S=logmag, sr=sr, hop_length=HOP, lag=1, max_size=1,
                                              detrend=False, center=False, aggregate=np.mean)
    return chroma, chroma_a440, onset_default, onset_same


def best_corr(ours, ref, mask=None):
    """Max over lags of the Pearson correlation of ours[i] with ref[i + lag] (flattened rows)."""
    best = (-1.0, 0)
    n = min(len(ours), len(ref))
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        i0, i1 = max(0, -lag), min(n, n - lag)
        a, b = ours[i0:i1], ref[i0 + lag:i1 + lag]
        if mask is not None:
            keep = mask[i0:i1]
            a, b = a[keep], b[keep]
        a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
        if a.std() == 0 or b.std() == 0:
            continue
        c = float(np.corrcoef(a, b)[0, 1])
        if c > best[0]:
            best = (c, lag)
    return best


def compare(x, sr):
    ch, on = stream(x, sr)
    lch, lch440, lon_default, lon_same = offline(x, sr)
    sounding = ch.max(axis=1) > 0
    return (best_corr(ch, lch, sounding), best_corr(ch, lch440, sounding),
            best_corr(on, lon_default), best_corr(on, lon_same))


def pieces(seconds):
    y, sr, _ = demo_song(seconds=seconds)
    yield "demo song", np.ascontiguousarray(y.mean(axis=1), dtype=np.float32), sr
    try:
        from audio_real_music import cache_dir
        from engine.audio.sources import load_audio

        for wav in sorted(cache_dir().glob("*.wav")):
            if ".tmp" in wav.name:
                continue
            s, sr = load_audio(wav)
            x = s.mean(axis=1) if s.ndim == 2 else s
            yield wav.stem, np.ascontiguousarray(x[:int(seconds * sr)], dtype=np.float32), sr
    except Exception as exc:  # noqa: BLE001 - the cache is optional
        print(f"(no cached real music: {exc})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    print(f"hop {HOP}, n_fft {N_FFT}; correlation (best lag in hops, + = librosa later)")
    print(f"{'audio':34s} {'chroma':>13s} {'chroma A440':>13s} {'onset (mel dB)':>16s} "
          f"{'onset (same spec)':>18s}")
    rows = []
    for name, x, sr in pieces(args.seconds):
        (c, cl), (a, al), (o, ol), (s, sl) = compare(x, sr)
        rows.append((c, a, o, s))
        print(f"{name[:34]:34s} {c:8.3f} ({cl:+d}) {a:8.3f} ({al:+d}) {o:11.3f} ({ol:+d}) "
              f"{s:13.3f} ({sl:+d})", flush=True)
    m = np.mean(rows, axis=0)
    mn = np.min(rows, axis=0)
    print(f"{'mean':34s} {m[0]:8.3f}      {m[1]:8.3f}      {m[2]:11.3f}      {m[3]:13.3f}")
    print(f"{'min':34s} {mn[0]:8.3f}      {mn[1]:8.3f}      {mn[2]:11.3f}      {mn[3]:13.3f}")
    print(f"target >= 0.95 (min over the audio): chroma vs chroma_stft "
          f"{'met' if mn[0] >= 0.95 else 'NOT met'}, vs chroma_stft at A440 "
          f"{'met' if mn[1] >= 0.95 else 'NOT met'}; onset strength vs onset_strength on the same "
          f"spectrum {'met' if mn[3] >= 0.95 else 'NOT met'}, vs its mel default "
          f"{'met' if mn[2] >= 0.95 else 'NOT met'}")


if __name__ == "__main__":
    main()

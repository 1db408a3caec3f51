"""Streaming vs offline on one short clip: the live extractor's chroma and onset strength follow
librosa's offline chroma_stft and onset_strength (computed on the same spectrum definition).
benchmarks/audio_streaming_vs_offline.py measures the same on longer and real music (>= 0.95);
the bound here is looser for a 6 s clip."""

import numpy as np

from engine.audio.demo import demo_song
from engine.audio.features import FeatureExtractor

HOP, N_FFT = 512, 2048


def corr_at_best_lag(a, b, max_lag=4):
    n = min(len(a), len(b))
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        i0, i1 = max(0, -lag), min(n, n - lag)
        x, y = np.ravel(a[i0:i1]), np.ravel(b[i0 + lag:i1 + lag])
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return best


def test_streamed_chroma_and_onset_strength_match_librosa_offline():
    import librosa

    y, sr, _ = demo_song(seconds=6.0)
    x = np.ascontiguousarray(y.mean(axis=1), dtype=np.float32)
    fe = FeatureExtractor(sr, HOP, N_FFT)
    n = len(x) // HOP
    chroma, onset = np.zeros((n, 12)), np.zeros(n)
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        chroma[i], onset[i] = f["chroma"], fe.onset_strength
    ref_chroma = librosa.feature.chroma_stft(y=x, sr=sr, n_fft=N_FFT, hop_length=HOP, tuning=0.0).T
    S = np.abs(librosa.stft(x, n_fft=N_FFT, hop_length=HOP)) * (4.0 / N_FFT)
    keep = librosa.fft_frequencies(sr=sr, n_fft=N_FFT) >= 20.0
    ref_onset = librosa.onset.onset_strength(S=np.log1p(100.0 * S[keep]), sr=sr, hop_length=HOP,
                                             lag=1, max_size=1, detrend=False, center=False,
                                             aggregate=np.mean)
    assert corr_at_best_lag(chroma, ref_chroma) >= 0.9
    assert corr_at_best_lag(onset, ref_onset) >= 0.9

"""Audio as shader input: the waveform and a log-frequency spectrum as ISF ``audio`` /
``audioFFT`` images (pure numpy; the renderer uploads the rows).

ISF's convention (https://docs.isf.video, "Audio Visualizers in ISF"): an ``audio`` input is an
image whose width is the number of samples and whose height is the number of channels, a sample
stored as ``0.5 + 0.5 * x`` (0.5 = silence); an ``audioFFT`` input is an image whose width is the
number of frequency bins, values 0..1. The input's ``MAX`` asks for a width (the engine's default
is :data:`DEFAULT_SIZE`). The engine analyses mono, so both images are one row high.

The spectrum here is what a VJ expects to see, not a raw FFT: ``n`` bins spaced evenly in log
frequency from :data:`FMIN` to the Nyquist frequency (music's octaves get equal width), each the
mean magnitude of the FFT bins it covers (or the magnitude interpolated at its centre where it is
narrower than one FFT bin), in decibels mapped so that ``-DB_RANGE`` dB → 0 and a full-scale sine
→ 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AudioTextures", "DEFAULT_SIZE", "FMIN", "DB_RANGE", "log_bin_matrix"]

DEFAULT_SIZE = 512
MAX_SIZE = 4096
FMIN = 20.0
DB_RANGE = 72.0


def log_bin_matrix(n: int, n_fft: int, sr: int, fmin: float = FMIN) -> np.ndarray:
    """``[n, n_fft // 2 + 1]`` float32 weights: row ``i`` averages the FFT bins of log band
    ``i`` (edges ``fmin * (nyq / fmin) ** (k / n)``); a band narrower than an FFT bin
    interpolates linearly at its centre instead."""
    nyq = sr / 2.0
    fmin = min(fmin, nyq / 2)
    edges = fmin * (nyq / fmin) ** (np.arange(n + 1) / n)
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    m = np.zeros((n, len(freqs)), np.float32)
    for i in range(n):
        lo, hi = edges[i], edges[i + 1]
        inside = (freqs >= lo) & (freqs < hi)
        if inside.sum() >= 2:
            m[i, inside] = 1.0 / inside.sum()
        else:
            c = np.sqrt(lo * hi) * n_fft / sr     # fractional FFT bin of the band's centre
            k = min(int(c), len(freqs) - 2)
            f = c - k
            m[i, k], m[i, k + 1] = 1.0 - f, f
    return m


class AudioTextures:
    """The rows of the ISF audio images, from the latest ``n_fft`` samples.

    ``update(window)`` takes the newest ``n_fft`` mono samples (float32, oldest first) once per
    frame; :meth:`waveform` and :meth:`spectrum` then give ``[n]`` float32 rows in 0..1 for any
    width ``n`` (the matrices for a width are built once).
    """

    def __init__(self, sr: int, n_fft: int = 2048):
        self.sr, self.n_fft = int(sr), int(n_fft)
        self._window = np.hanning(self.n_fft).astype(np.float32)
        # a full-scale sine of amplitude 1 peaks at |X| = sum(window) / 2
        self._scale = np.float32(2.0 / self._window.sum())
        self._samples = np.zeros(self.n_fft, np.float32)
        self._mag = np.zeros(self.n_fft // 2 + 1, np.float32)
        self._mats: dict[int, np.ndarray] = {}
        self._fresh = False

    def update(self, window: np.ndarray) -> None:
        """The newest samples (any length; the last ``n_fft`` are used, missing ones are 0)."""
        w = np.asarray(window, np.float32).reshape(-1)[-self.n_fft:]
        self._samples[: self.n_fft - len(w)] = 0.0
        self._samples[self.n_fft - len(w):] = w
        self._fresh = False

    def _magnitudes(self) -> np.ndarray:
        if not self._fresh:
            spec = np.fft.rfft(self._samples * self._window)
            np.multiply(np.abs(spec), self._scale, out=self._mag, casting="unsafe")
            self._fresh = True
        return self._mag

    @staticmethod
    def size(requested) -> int:
        """The width for an input's ``MAX`` (None → :data:`DEFAULT_SIZE`), within 1..MAX_SIZE."""
        if requested is None:
            return DEFAULT_SIZE
        try:
            n = int(requested)
        except (TypeError, ValueError, OverflowError):
            return DEFAULT_SIZE
        return max(1, min(MAX_SIZE, n))

    def waveform(self, n: int = DEFAULT_SIZE) -> np.ndarray:
        """The newest ``n`` samples as ``0.5 + 0.5 * x`` clipped to 0..1 (oldest first); more
        than ``n_fft`` are resampled from the last ``n_fft``."""
        x = self._samples[-n:] if n <= self.n_fft else \
            np.interp(np.linspace(0, self.n_fft - 1, n), np.arange(self.n_fft), self._samples)
        return np.clip(0.5 + 0.5 * x, 0.0, 1.0).astype(np.float32)

    def spectrum(self, n: int = DEFAULT_SIZE) -> np.ndarray:
        """``n`` log-spaced bins, 0..1 (decibels over a :data:`DB_RANGE` dB range)."""
        m = self._mats.get(n)
        if m is None:
            m = self._mats[n] = log_bin_matrix(n, self.n_fft, self.sr)
        bands = m @ self._magnitudes()
        db = 20.0 * np.log10(np.maximum(bands, 1e-9))
        return np.clip(1.0 + db / DB_RANGE, 0.0, 1.0).astype(np.float32)


_WINDOW = np.zeros(2048, np.float32)


def read_window(reader, pos: int, out: np.ndarray | None = None) -> np.ndarray:
    """The ``len(out)`` mono samples that end at ``pos`` from a ring or an ArrayReader (zeros
    before the start or where a ring has already overwritten them). Reuses one buffer."""
    out = _WINDOW if out is None else out
    n = len(out)
    start = pos - n
    if start < 0:
        out[: -start] = 0.0
        if n + start > 0 and not reader.read(0, out[-start:]):
            out[:] = 0.0
        return out
    if not reader.read(start, out):
        out[:] = 0.0
    return out

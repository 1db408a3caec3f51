"""Causal, streaming audio features, computed once per hop.

:class:`FeatureExtractor` keeps the latest ``n_fft`` samples, and for every new hop of ``hop``
samples it takes one Hann-windowed real FFT and updates a fixed set of features (see
``docs/features.md`` for the meaning and range of each). Everything is causal: a hop's features
depend only on that hop and the ones before it, never on how the caller chunked its reads, and all
smoothing constants are given in seconds, so results do not depend on the frame rate.

The per-hop path allocates nothing and makes few numpy calls (each costs about a microsecond on
arrays this small, whatever their length): band masks, the chroma matrix and all buffers are
computed once in the constructor, the band sums of power and flux come from one ``reduceat`` and
the spectral sum, centroid and chroma from one matrix-vector product, and the per-band bookkeeping
runs on plain Python floats. :meth:`FeatureExtractor.process_hops` does the array work of up to
``BLOCK_HOPS`` hops in one set of calls (the recursive, per-hop bookkeeping still runs hop by
hop), giving the same features for offline analysis and backlogs at a fraction of the cost.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from engine.audio import levels
from engine.audio.beat import BeatTracker
from engine.audio.spectrum import frame_block, spectrum_sums
from engine.audio.structure import StructureTracker
from engine.frame import Features

#: Names of the scalar features, in the order they appear in :attr:`FeatureExtractor.features`.
SCALAR_FEATURES = (
    "rms", "loudness", "level",
    "bass", "mid", "treb",
    "bass_att", "mid_att", "treb_att",
    "bass_level", "mid_level", "treb_level",
    "flux", "flux_low", "flux_mid", "flux_high",
    "onset", "onset_low", "onset_mid", "onset_high",
    "centroid", "flatness",
    "bpm", "bpm_confidence", "beat_phase", "bar_phase", "beat", "downbeat",
    "band0", "band1", "band2", "band3", "band4", "band5", "band6", "band7",
    "harmonic", "percussive",
    "novelty", "buildup", "drop",
)
#: Every feature name, including the 12-vector ``chroma``.
FEATURE_NAMES = SCALAR_FEATURES + ("chroma",)

#: Frequency bands (Hz) of bass / mid / treb and of the per-band flux and onsets.
BANDS = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treb": (4000.0, 16000.0)}

# --- tuning (the level, band and onset constants are in engine.audio.levels) -----------------
LOG_GAMMA = 100.0          # log-magnitude compression: log(1 + gamma * |X|), |X| = 1 at full scale
BEAT_BANDS = 24            # beat tracker novelty: the mean flux of this many log-frequency bands ...
BEAT_FMIN, BEAT_FMAX = 30.0, 16000.0  # ... between these (bands narrower than a bin merge) ...
BEAT_BAND_SHARE = 0.5      # ... weighted this much, plus (1 - this) times the overall flux
LOG_BANDS = 8              # band0 .. band7: equal log-frequency bands ...
LOG_BAND_FMIN, LOG_BAND_FMAX = 30.0, 16000.0  # ... between these (cut at Nyquist)
HPSS_TIME = 0.1            # harmonic: a bin's minimum over the last this many seconds ...
HPSS_FREQ_HZ = 90.0        # percussive: ... and over +- this many Hz around it in this hop
HPSS_FMAX = 8000.0         # the split looks at bins up to this frequency
BLOCK_HOPS = 32            # process_hops: spectra of up to this many hops computed in one go
STRUCTURE_EVERY = 4        # novelty / buildup / drop are updated every this many hops
_KERNEL_FEATURES = levels.KERNEL_FEATURES
_COL_LOUDNESS, _COL_CENTROID, _COL_BANDS_DB = levels.COL_LOUDNESS, levels.COL_CENTROID, levels.COL_BANDS_DB
_COL_ONSET_STRENGTH, _COL_BASS_DB = levels.COL_ONSET_STRENGTH, levels.COL_BASS_DB


@functools.lru_cache(maxsize=None)
def _make_rfft(n_fft: int):
    """A function ``rfft(x, out)`` writing the real FFTs of the float32 [..., n_fft] rows of ``x``
    into complex64 ``out`` [..., n_fft // 2 + 1].

    SciPy's pocketfft (a librosa dependency) is used without its Python-level argument handling
    (half of the cost at this size); the result is checked against ``scipy.fft.rfft`` once, and if
    the internal call is missing or behaves differently, the public ``scipy.fft.rfft`` (or, without
    SciPy, ``numpy.fft.rfft``) is used instead. ``x`` may be overwritten.
    """
    try:
        import scipy.fft as sfft
    except ImportError:  # pragma: no cover - scipy comes with librosa
        def plain(x, out):
            out[...] = np.fft.rfft(x, axis=-1)

        return plain
    try:
        from scipy.fft._pocketfft import pypocketfft

        def fast(x, out, _r2c=pypocketfft.r2c, _axes=(-1,)):
            _r2c(x, _axes, True, 0, out, 1)

        probe = np.random.default_rng(0).standard_normal((3, n_fft)).astype(np.float32)
        got = np.zeros((3, n_fft // 2 + 1), dtype=np.complex64)
        fast(probe.copy(), got)
        if np.allclose(got, sfft.rfft(probe, axis=-1), rtol=1e-5, atol=1e-4):
            return fast
    except Exception:  # noqa: BLE001 - any change in scipy's internals: use the public call
        pass

    def public(x, out):
        out[...] = sfft.rfft(x, axis=-1, overwrite_x=True, workers=1)

    return public


def chroma_matrix(sr: int, n_fft: int) -> np.ndarray:
    """Weights float32 [12, n_fft // 2 + 1] that fold a power spectrum onto pitch classes (C = 0).

    The standard short-time chroma filter bank (``librosa.filters.chroma`` at A440 tuning: each bin
    spread over the pitch classes near its own pitch, weighted toward the middle octaves), so the
    streamed chroma is the same quantity as ``librosa.feature.chroma_stft``, computed causally.
    """
    from librosa.filters import chroma

    return np.ascontiguousarray(chroma(sr=sr, n_fft=n_fft, tuning=0.0), dtype=np.float32)


_warmed = False


def warm_up() -> None:
    """Compile the extractor's numba kernels now, so no hop of a show waits for the compiler.

    numba compiles a kernel on its first call (a few seconds the first time a machine runs this
    version; later processes load the on-disk cache in milliseconds). A throwaway extractor
    analyses a few hops of noise through both :meth:`FeatureExtractor.process_hop` and
    :meth:`FeatureExtractor.process_hops`, which compiles (or loads) every kernel for the argument
    types the real calls use. Cheap after the first call in a process; call it before a live
    loop starts (``engine.session.Analysis`` does).
    """
    global _warmed
    if _warmed:
        return
    fe = FeatureExtractor(44100, 512, 2048)
    noise = np.random.default_rng(0).standard_normal(512 * 4).astype(np.float32) * 0.1
    fe.process_hop(noise[:512])
    for _ in fe.process_hops(noise):
        pass
    fe.beat.compile_kernels()    # the phase fold runs only once a tempo is found
    _warmed = True


class FeatureExtractor:
    """Streaming audio features, one update per hop.

    Parameters
    ----------
    sr : int
        Sample rate in Hz.
    hop : int
        Samples per hop: :meth:`process_hop` takes exactly this many (512 = 11.6 ms at 44.1 kHz).
    n_fft : int
        Analysis window in samples (2048 = 46 ms at 44.1 kHz); at least ``hop``.

    Attributes
    ----------
    features : dict
        The current features (``engine.frame.Features``): the same dict object for the extractor's
        whole life, updated in place by every :meth:`process_hop`. ``features["chroma"]`` is a
        float32 [12] array, also updated in place.
    hops : int
        Number of hops processed so far.
    """

    def __init__(self, sr: int, hop: int = 512, n_fft: int = 2048):
        if hop <= 0 or n_fft < hop:
            raise ValueError(f"need 0 < hop <= n_fft, got hop={hop}, n_fft={n_fft}")
        self.sr = int(sr)
        self.hop = int(hop)
        self.n_fft = int(n_fft)
        self.hop_seconds = hop / float(sr)
        self.hops = 0
        hs = self.hop_seconds

        # Block workspaces for up to BLOCK_HOPS hops at a time, made once. Samples: n_fft - hop
        # samples of history, then room for K hops; the hop with index i in the buffer (i < _cursor
        # are filled) has its frame at samples[i*hop : i*hop + n_fft]. When the room runs out, the
        # newest n_fft - hop samples move to the front (through _shift_tmp: no temporary array).
        K = BLOCK_HOPS
        self._keep = n_fft - hop
        self._samples = np.zeros(self._keep + K * hop, dtype=np.float32)
        self._shift_tmp = np.zeros(self._keep, dtype=np.float32)
        self._cursor = 0
        self._rms_len = max(hop, n_fft // 2)
        self._sq = np.zeros(K, dtype=np.float32)
        # Periodic Hann with the magnitude scale folded in (full-scale sine peak bin -> ~1.0); for
        # a power-of-two n_fft the scale is a power of two, so this changes no rounding.
        self._window = (np.hanning(n_fft + 1)[:-1] * (4.0 / n_fft)).astype(np.float32)
        self._windowed = np.zeros((K, n_fft), dtype=np.float32)
        # Each buffer index's new samples, for process_hop.
        self._one_at = [self._samples[self._keep + i * hop:self._keep + (i + 1) * hop]
                        for i in range(K)]
        self._rfft = _make_rfft(n_fft)
        nb = n_fft // 2 + 1
        self._nb = nb
        self._spec = np.zeros((K, nb), dtype=np.complex64)

        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        nyq = sr / 2.0
        # Band edges in bins: [bass, mid, treb, above treb], contiguous (engine.audio.spectrum
        # sums each segment). 20 Hz .. Nyquist is the sum of all four segments.
        edges = [int(np.searchsorted(freqs, min(f, nyq))) for f in (20.0, 250.0, 4000.0, 16000.0)]
        edges[0] = max(edges[0], 1)
        for i in range(1, 4):
            edges[i] = min(max(edges[i], edges[i - 1] + 1), nb)
        self._edges = np.array(edges, dtype=np.int64)
        counts = np.diff(np.array(edges + [nb + 1]))  # the last segment includes the spare zero
        counts[-1] -= 1
        self._inv_counts = [1.0 / max(int(c), 1) for c in counts[:3]]
        self._inv_full = 1.0 / max(nb - edges[0], 1)
        self._freqs = freqs.astype(np.float32)
        # The beat tracker's novelty, one weighted sum of the flux rise: the mean over BEAT_BANDS
        # log-frequency bands of each band's mean rise (every octave counts alike, so kick and
        # snare weigh as much as the hats that fill most linear bins), mixed with the overall
        # mean rise over 20 Hz .. Nyquist.
        be = np.unique([int(np.searchsorted(freqs, min(f, nyq)))
                        for f in np.geomspace(BEAT_FMIN, BEAT_FMAX, BEAT_BANDS + 1)])
        bw = np.zeros(nb, dtype=np.float64)
        for lo, hi in zip(be[:-1], be[1:]):
            bw[lo:hi] += BEAT_BAND_SHARE / ((hi - lo) * (len(be) - 1))
        bw[edges[0]:] += (1.0 - BEAT_BAND_SHARE) * self._inv_full
        self._beat_weights = bw.astype(np.float32)
        self._chroma_rows = chroma_matrix(sr, n_fft)
        # Eight equal log-frequency bands (band0 .. band7), cut at Nyquist (a band above it sums
        # to 0; the last segment, above the top edge, is not used).
        log_edges = np.geomspace(LOG_BAND_FMIN, LOG_BAND_FMAX, LOG_BANDS + 1)
        le = [int(np.searchsorted(freqs, f)) for f in log_edges]
        le[0] = max(le[0], 1)
        for i in range(1, len(le)):
            le[i] = min(max(le[i], le[i - 1] + 1), nb)
        self._log_edges = np.array(le, dtype=np.int64)

        # Causal harmonic/percussive split by rank filters on the magnitudes of bins 1 .. fmax:
        # "harmonic" is what each bin kept for HPSS_TIME (its minimum over the last hops: a click
        # is gone, a held note stays), "percussive" what is smooth across frequency in this hop
        # (the minimum over +- HPSS_FREQ_HZ: a click's flat spectrum stays, a partial's peak goes).
        self._h_hi = max(2, min(int(np.searchsorted(freqs, min(HPSS_FMAX, nyq))), nb))
        self._p_radius = max(1, int(round(HPSS_FREQ_HZ * n_fft / sr)))
        t_hops = max(n_fft // hop + 2, int(round(HPSS_TIME / hs)))
        # State carried from hop to hop: the last log-magnitude (for the flux rise) and the ring
        # of recent magnitudes (harmonic minimum); scratch and per-hop results for K hops.
        self._prev_log = np.zeros(nb, dtype=np.float32)
        self._h_ring = np.zeros((t_hops, self._h_hi - 1), dtype=np.float32)
        self._h_pos = np.zeros(1, dtype=np.int64)
        self._scratch = np.zeros((3, nb), dtype=np.float32)
        self._sums = np.zeros((K, 4, 4), dtype=np.float64)
        self._mag_sums = np.zeros((K, 2), dtype=np.float64)
        self._log_sums = np.zeros((K, LOG_BANDS + 1), dtype=np.float64)
        self._eh = np.zeros(K, dtype=np.float64)
        self._ep = np.zeros(K, dtype=np.float64)
        self._beat_novelty = np.zeros(K, dtype=np.float64)
        self._chroma_raw = np.zeros((K, 12), dtype=np.float32)
        self._chroma_max = np.zeros(K, dtype=np.float64)
        #: Novelty, build-up and drop (``engine.audio.structure``).
        self.structure = StructureTracker(hs * STRUCTURE_EVERY, LOG_BANDS)

        # Levels, bands, onsets and spectral shape: the compiled per-hop bookkeeping
        # (engine.audio.levels) and its state, one output row per hop of a block.
        self._lv_params = levels.make_params(hs, self._rms_len, self._inv_counts, self._inv_full, nyq)
        self._lv_state = levels.new_state()
        self._lv_hist = np.zeros((4, levels.history_length(hs)), dtype=np.float64)
        self._lv_out = np.zeros((K, levels.N_OUT), dtype=np.float64)
        #: The tempo and beat tracker behind ``bpm`` .. ``downbeat``; steer it through this
        #: (``tap``, ``set_tempo``, ``set_phase``, ``reset_phase``, ``lock``, ``release``).
        self.beat = BeatTracker(sr / hop)

        #: This hop's raw onset strength: the mean log-magnitude rise over 20 Hz .. Nyquist
        #: (``flux`` before its normalisation), as librosa's ``onset_strength`` is unnormalised.
        self.onset_strength = 0.0
        self.features: Features = {name: 0.0 for name in SCALAR_FEATURES}
        self.features["chroma"] = np.zeros(12, dtype=np.float32)
        self.features["loudness"] = -100.0

    def reset(self) -> None:
        """Forget all history, as if freshly constructed (``features`` stays the same object)."""
        chroma = self.features["chroma"]
        features = self.features
        self.__init__(self.sr, self.hop, self.n_fft)
        chroma[:] = 0.0
        features.clear()
        features.update(self.features)
        features["chroma"] = chroma
        self.features = features

    def process_hop(self, hop: np.ndarray) -> Features:
        """Analyse one more hop and return the updated :attr:`features`.

        Parameters
        ----------
        hop : numpy.ndarray
            Exactly ``self.hop`` mono samples, nominally in -1..1.

        Returns
        -------
        dict
            ``self.features``, the same object on every call.
        """
        if hop.shape != (self.hop,):
            raise ValueError(f"process_hop needs {self.hop} mono samples, got shape {hop.shape}")
        self._make_room(1)
        c = self._cursor
        self._cursor = c + 1
        self._one_at[c][:] = hop
        self._spectra(c, 1)
        return self._hop(0, self._levels(1))

    def process_hops(self, samples: np.ndarray):
        """Analyse ``len(samples) // hop`` more hops; yield :attr:`features` after each one.

        The same features, hop for hop, as calling :meth:`process_hop` on each hop in turn
        (within float rounding), but the spectral work of up to ``BLOCK_HOPS`` hops is done in
        one set of array operations, which makes offline analysis and catching up on a backlog
        much cheaper per hop. Trailing samples short of a whole hop are ignored. The yielded
        dict is the same object every time, updated in place: read it before the next step.
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"process_hops needs mono samples, got shape {samples.shape}")
        hop, keep = self.hop, self._keep
        n = len(samples) // hop
        done = 0
        while done < n:
            k = min(BLOCK_HOPS, n - done)
            self._make_room(k)
            c = self._cursor
            self._samples[keep + c * hop:keep + (c + k) * hop] = samples[done * hop:(done + k) * hop]
            self._spectra(c, k)
            self._cursor = c + k
            rows = self._levels(k)
            for j in range(k):
                yield self._hop(j, rows)
            done += k

    def _make_room(self, k: int) -> None:
        """Make room for k more hops in ``_samples`` (moving the history to the front)."""
        c = self._cursor
        if c + k > BLOCK_HOPS:
            hop, keep = self.hop, self._keep
            np.copyto(self._shift_tmp, self._samples[c * hop:c * hop + keep])
            np.copyto(self._samples[:keep], self._shift_tmp)
            self._cursor = 0

    def _spectra(self, c: int, k: int) -> None:
        """The array work for the k hops from buffer index c on: their energy, FFTs and
        spectral sums (:func:`engine.audio.spectrum.spectrum_sums`) into rows 0 .. k-1 of the
        per-hop results."""
        windowed = self._windowed[:k]
        frame_block(self._samples, c, k, self.hop, self._keep, self._rms_len, self._window,
                    self._sq, windowed)
        self._rfft(windowed, self._spec[:k])
        spectrum_sums(k, self._spec, 1.0 / LOG_GAMMA, self._edges, self._log_edges, self._freqs,
                      self._beat_weights, self._chroma_rows, self._p_radius, self._prev_log,
                      self._h_ring, self._h_pos, self._scratch, self._sums, self._mag_sums,
                      self._log_sums, self._eh, self._ep, self._beat_novelty, self._chroma_raw,
                      self._chroma_max)

    def _levels(self, k: int):
        """Run the compiled bookkeeping over the block's k hops; per hop, its output row, chroma
        maximum and beat novelty as Python lists."""
        out = self._lv_out
        levels.step_levels(k, self._sq, self._sums, self._mag_sums, self._log_sums, self._eh,
                           self._ep, self._lv_params, self._lv_state, self._lv_hist, out)
        return (out[:k].tolist(), self._chroma_max[:k].tolist(),
                self._beat_novelty[:k].tolist())

    def _hop(self, j: int, rows) -> Features:
        """Publish hop j of the current block, and run the structure and beat trackers on it."""
        out_l, cmax_l, beat_l = rows
        row = out_l[j]
        self.hops += 1
        feats = self.features
        feats.update(zip(_KERNEL_FEATURES, row))
        self.onset_strength = row[_COL_ONSET_STRENGTH]

        chroma = feats["chroma"]
        if cmax_l[j] > 1e-12:
            chroma[:] = self._chroma_raw[j]
        else:
            chroma.fill(0.0)

        # --- structure (slow cues: updated every STRUCTURE_EVERY hops, drop fires on that hop) ---
        if self.hops % STRUCTURE_EVERY == 0:
            st = self.structure
            st.update(row[_COL_LOUDNESS], row[_COL_BASS_DB], row[_COL_CENTROID],
                      row[_COL_BANDS_DB:_COL_BANDS_DB + LOG_BANDS])
            feats["novelty"] = st.novelty
            feats["buildup"] = st.buildup
            feats["drop"] = 1.0 if st.drop else 0.0
        else:
            feats["drop"] = 0.0

        # --- tempo and beats ---
        bt = self.beat
        bt.update(beat_l[j] if self.hops > 1 else 0.0, chroma)
        feats["bpm"] = bt.bpm
        feats["bpm_confidence"] = bt.confidence
        feats["beat_phase"] = bt.beat_phase
        feats["bar_phase"] = bt.bar_phase
        feats["beat"] = 1.0 if bt.beat else 0.0
        feats["downbeat"] = 1.0 if bt.downbeat else 0.0
        return feats

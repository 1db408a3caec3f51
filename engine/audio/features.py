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

from engine.audio.beat import BeatTracker
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

# --- tuning, all times in seconds --------------------------------------------------------------
BASELINE_TIME = 4.0        # bass/mid/treb: long-term baseline (EMA time constant)
ATT_ATTACK = 0.05          # *_att: rise time constant
ATT_RELEASE = 0.5          # *_att: fall time constant
RANGE_RELEASE = 10.0       # auto-gain: how fast the remembered loudest/quietest relax
RANGE_LOW_FALL = 0.3       # auto-gain: how fast the quiet end follows the signal down
MIN_RANGE_DB = 12.0        # auto-gain: the range is never narrower than this
FLOOR_DB = -80.0           # auto-gain: quieter than this counts as silence
FLUX_MAX_RELEASE = 4.0     # flux normaliser: running max decay time constant
FLUX_FLOOR = 0.16          # flux normaliser never divides by less (keeps noise floors near 0)
FLUX_HISTORY = 0.4         # onsets: length of the adaptive-threshold history
ONSET_MULTIPLIER = 2.0     # onsets: raw flux must exceed this times its recent mean ...
ONSET_RELATIVE = 0.5       # ... and this fraction of the running max ...
ONSET_ABSOLUTE = 0.08      # ... and this absolute floor (mean log-magnitude rise per bin)
ONSET_REFRACTORY = 0.08    # onsets: no second onset in a band within this time
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
_BAND_KEYS = tuple((b, b + "_att", b + "_level") for b in BANDS)
_LOG_BAND_KEYS = tuple(f"band{i}" for i in range(LOG_BANDS))
_FLUX_ONSET_KEYS = (("flux", "onset"), ("flux_low", "onset_low"), ("flux_mid", "onset_mid"),
                    ("flux_high", "onset_high"))


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


def _coef(time_constant: float, hop_seconds: float) -> float:
    """One-pole smoothing coefficient for a time constant in seconds at one update per hop."""
    if time_constant <= 0:
        return 1.0
    return 1.0 - math.exp(-hop_seconds / time_constant)


def chroma_matrix(sr: int, n_fft: int) -> np.ndarray:
    """Weights float32 [12, n_fft // 2 + 1] that fold a power spectrum onto pitch classes (C = 0).

    The standard short-time chroma filter bank (``librosa.filters.chroma`` at A440 tuning: each bin
    spread over the pitch classes near its own pitch, weighted toward the middle octaves), so the
    streamed chroma is the same quantity as ``librosa.feature.chroma_stft``, computed causally.
    """
    from librosa.filters import chroma

    return np.ascontiguousarray(chroma(sr=sr, n_fft=n_fft, tuning=0.0), dtype=np.float32)


class _AutoGain:
    """Maps one dB value onto 0..1 against its own remembered range.

    Plain Python floats: for a handful of scalars this is far cheaper than small numpy arrays.
    """

    __slots__ = ("hi", "lo", "k_release", "k_low_fall")

    def __init__(self, hop_seconds: float):
        self.hi = FLOOR_DB
        self.lo = FLOOR_DB
        self.k_release = _coef(RANGE_RELEASE, hop_seconds)
        self.k_low_fall = _coef(RANGE_LOW_FALL, hop_seconds)

    def update(self, db: float) -> float:
        x = db if db > FLOOR_DB else FLOOR_DB
        # The loud end jumps up at once and relaxes slowly towards the signal.
        hi = x if x > self.hi else self.hi + (x - self.hi) * self.k_release
        # The quiet end follows the signal down within a fraction of a second, up slowly.
        lo = self.lo + (x - self.lo) * (self.k_low_fall if x < self.lo else self.k_release)
        if lo > hi - MIN_RANGE_DB:
            lo = hi - MIN_RANGE_DB
        self.hi, self.lo = hi, lo
        if x <= FLOOR_DB:
            return 0.0
        v = (x - lo) / (hi - lo)
        return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


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
        self._frames = np.lib.stride_tricks.as_strided(
            self._samples, shape=(K, n_fft), strides=(hop * 4, 4), writeable=False)
        self._rms_len = max(hop, n_fft // 2)
        self._sq = np.zeros(K, dtype=np.float32)
        # Periodic Hann with the magnitude scale folded in (full-scale sine peak bin -> ~1.0); for
        # a power-of-two n_fft the scale is a power of two, so this changes no rounding.
        self._window = (np.hanning(n_fft + 1)[:-1] * (4.0 / n_fft)).astype(np.float32)
        self._windowed = np.zeros((K, n_fft), dtype=np.float32)
        self._rfft = _make_rfft(n_fft)
        nb = n_fft // 2 + 1
        self._nb = nb
        self._spec = np.zeros((K, nb), dtype=np.complex64)
        # Spectral workspace, per hop rows: 0 magnitude |X|, 1 power |X|^2, 2 log(1/gamma + |X|),
        # 3 log power (for flatness), 4 flux rise. The log-magnitude differs from
        # log(1 + gamma |X|) by the constant log(gamma), which cancels in the hop-to-hop rise.
        # Rows 1..4 are summed per band by one reduceat; the spare zero column at the end lets
        # band edges equal nb. _prev_log is the log-magnitude of the hop before the block.
        self._work = np.zeros((K, 5, nb + 1), dtype=np.float32)
        self._prev_log = np.zeros(nb, dtype=np.float32)
        self._log_offsets = np.array([[1.0 / LOG_GAMMA], [1e-20]], dtype=np.float32)
        self._sums = np.zeros((K, 4, 4), dtype=np.float32)

        freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
        nyq = sr / 2.0
        # Band edges in bins: [bass, mid, treb, above treb]; the bands are contiguous, so one
        # np.add.reduceat sums all of them. 20 Hz .. Nyquist is the sum of all four segments.
        edges = [int(np.searchsorted(freqs, min(f, nyq))) for f in (20.0, 250.0, 4000.0, 16000.0)]
        edges[0] = max(edges[0], 1)
        for i in range(1, 4):
            edges[i] = min(max(edges[i], edges[i - 1] + 1), nb)
        self._edges = np.array(edges, dtype=np.intp)
        counts = np.diff(np.array(edges + [nb + 1]))  # the last segment includes the spare zero
        counts[-1] -= 1
        self._inv_counts = [1.0 / max(int(c), 1) for c in counts[:3]]
        self._inv_full = 1.0 / max(nb - edges[0], 1)
        self._log_fmin = math.log(20.0)
        self._log_span = math.log(max(nyq, 40.0)) - self._log_fmin
        # One matrix-vector product with the magnitudes gives their sum over 20 Hz .. Nyquist and
        # the frequency-weighted sum (centroid); one with the power spectrum the 12 chroma sums.
        self._mag_rows = np.zeros((2, nb), dtype=np.float32)
        self._mag_rows[0, edges[0]:] = 1.0
        self._mag_rows[1, edges[0]:] = freqs[edges[0]:]
        self._mag_rows_t = np.ascontiguousarray(self._mag_rows.T)
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
        self._beat_novelty = np.zeros(K, dtype=np.float32)
        self._mag_sums = np.zeros((K, 2), dtype=np.float32)
        self._chroma_rows = chroma_matrix(sr, n_fft)
        self._chroma_rows_t = np.ascontiguousarray(self._chroma_rows.T)
        self._chroma_raw = np.zeros((K, 12), dtype=np.float32)
        self._chroma_max = np.zeros((K, 1), dtype=np.float32)

        # Eight equal log-frequency bands (band0 .. band7): one reduceat over the power row (its
        # spare zero column makes a band that Nyquist cut off sum to 0; the last segment, above
        # the top edge, is not used).
        log_edges = np.geomspace(LOG_BAND_FMIN, LOG_BAND_FMAX, LOG_BANDS + 1)
        le = [int(np.searchsorted(freqs, f)) for f in log_edges]
        le[0] = max(le[0], 1)
        for i in range(1, len(le)):
            le[i] = min(max(le[i], le[i - 1] + 1), nb)
        self._log_edges = np.array(le, dtype=np.intp)
        self._log_sums = np.zeros((K, LOG_BANDS + 1), dtype=np.float32)
        # Auto-gain state of the eight log bands as in _AutoGain, kept in lists (inlined per hop).
        self._lb_hi = [FLOOR_DB] * LOG_BANDS
        self._lb_lo = [FLOOR_DB] * LOG_BANDS
        self._lb_k_release = _coef(RANGE_RELEASE, hs)
        self._lb_k_low_fall = _coef(RANGE_LOW_FALL, hs)
        self._bands_db = [-100.0] * LOG_BANDS

        # Causal harmonic/percussive split by rank filters on the magnitudes of bins 1 .. fmax:
        # "harmonic" is what each bin kept for HPSS_TIME (its minimum over the last hops: a click
        # is gone, a held note stays), "percussive" what is smooth across frequency in this hop
        # (the minimum over +- HPSS_FREQ_HZ: a click's flat spectrum stays, a partial's peak goes).
        h_hi = max(2, min(int(np.searchsorted(freqs, min(HPSS_FMAX, nyq))), nb))
        nh = h_hi - 1
        r = max(1, int(round(HPSS_FREQ_HZ * n_fft / sr)))
        t_hops = max(n_fft // hop + 2, int(round(HPSS_TIME / hs)))
        self._h_hi = h_hi
        # Harmonic: rows 0 .. t-2 are the magnitudes of the hops before the block, then the
        # block's; row j of the strided view [t, K, nh] at depth i is hop j's (i - t + 1)-th
        # predecessor, so a minimum down axis 0 is each hop's minimum over its last t hops.
        self._t_hops = t_hops
        self._h_hist = np.zeros((t_hops - 1 + K, nh), dtype=np.float32)
        rs = self._h_hist.strides[0]
        self._h_win = np.lib.stride_tricks.as_strided(
            self._h_hist, shape=(t_hops, K, nh), strides=(rs, rs, 4), writeable=False)
        self._h_min = np.zeros((K, nh), dtype=np.float32)
        self._h_tmp = np.zeros((t_hops - 1, nh), dtype=np.float32)
        self._h_pos = t_hops - 1   # process_hop's ring position in rows 0 .. t-1 (see _spectrum_one)
        # Percussive: each hop's magnitudes padded with +-r bins of inf; the view [2r+1, K, nh]
        # at depth s is the spectrum shifted by s - r bins.
        self._p_pad = np.full((K, nh + 2 * r), np.inf, dtype=np.float32)
        self._p_mid = self._p_pad[:, r:r + nh]
        ps = self._p_pad.strides[0]
        self._p_shifts = np.lib.stride_tricks.as_strided(
            self._p_pad, shape=(2 * r + 1, K, nh), strides=(4, ps, 4), writeable=False)
        self._p_min = np.zeros((K, nh), dtype=np.float32)
        self._eh = np.zeros(K, dtype=np.float32)
        self._ep = np.zeros(K, dtype=np.float32)
        # The same buffers seen as one hop's 1-D operands, for process_hop.
        keep, nbw, w0 = self._keep, nb, self._work[0]
        self._one_at = [(self._samples[keep + i * hop:keep + (i + 1) * hop], self._frames[i],
                         self._frames[i, n_fft - self._rms_len:]) for i in range(K)]
        self._one = (self._windowed[0], self._spec[0], w0[0, :nbw], w0[1, :nbw], w0[0:2, :nbw],
                     w0[2:4, :nbw], w0[2, :nbw], w0[4, :nbw], w0[1:], self._sums[0],
                     self._mag_sums[0], self._chroma_raw[0], self._log_sums[0],
                     w0[0, 1:h_hi], self._h_hist[:t_hops], self._h_win[:, 0], self._h_min[0],
                     self._p_mid[0], self._p_shifts[:, 0], self._p_min[0])
        #: Novelty, build-up and drop (``engine.audio.structure``).
        self.structure = StructureTracker(hs * STRUCTURE_EVERY, LOG_BANDS)

        # Per-band state in plain Python floats (index 0..2 = bass, mid, treb).
        self._k_base = _coef(BASELINE_TIME, hs)
        self._base = [0.0, 0.0, 0.0]   # EMA of band energy, bias-corrected by _base_weight
        self._base_weight = 0.0
        self._base_floor = 1e-9       # a band energy below this counts as silence (~ -90 dB)
        self._att = [0.0, 0.0, 0.0]
        self._k_att_up = _coef(ATT_ATTACK, hs)
        self._k_att_down = _coef(ATT_RELEASE, hs)
        self._gains = [_AutoGain(hs) for _ in range(4)]  # level, bass, mid, treb

        # Flux (index 0..3 = overall, low, mid, high), its normaliser and the onset state.
        self._flux_max = [0.0] * 4
        self._flux_decay = math.exp(-hs / FLUX_MAX_RELEASE)
        self._hist_len = max(2, int(round(FLUX_HISTORY / hs)))
        self._hist = [[0.0] * self._hist_len for _ in range(4)]
        self._hist_sum = [0.0] * 4
        self._hist_pos = 0
        self._above = [False] * 4
        self._refractory = max(1, int(round(ONSET_REFRACTORY / hs)))
        self._since_onset = [1 << 30] * 4
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
        new, frame, tail = self._one_at[c]
        new[:] = hop
        return self._hop(0, self._spectrum_one(new, frame, tail))

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
            values = self._block_values(k)
            for j in range(k):
                yield self._hop(j, values)
            done += k

    def _make_room(self, k: int) -> None:
        """Make room for k more hops in ``_samples`` (moving the history to the front)."""
        c = self._cursor
        if c + k > BLOCK_HOPS:
            hop, keep = self.hop, self._keep
            np.copyto(self._shift_tmp, self._samples[c * hop:c * hop + keep])
            np.copyto(self._samples[:keep], self._shift_tmp)
            self._cursor = 0

    def _spectrum_one(self, new, frame, tail):
        """:meth:`_spectra` and :meth:`_block_values` for a single hop, on 1-D views made once
        (numpy's per-call overhead is most of the cost at this size, and is lower for 1-D
        operands); scalars go straight to Python floats."""
        (windowed, spec, mag, power, log_in, logs, logmag, rise, summed,
         sums, mag_sums, chroma_raw, log_sums, h_mag, h_rows, h_win, h_min, p_mid, p_shifts,
         p_min) = self._one
        sq = float(np.dot(tail, tail))
        if not math.isfinite(sq):
            np.nan_to_num(new, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
            sq = float(np.dot(tail, tail))
        np.multiply(frame, self._window, out=windowed)
        self._rfft(windowed, spec)
        np.abs(spec, out=mag)
        np.multiply(mag, mag, out=power)
        np.add(log_in, self._log_offsets, out=logs)
        np.log(logs, out=logs)
        np.subtract(logmag, self._prev_log, out=rise)
        np.maximum(rise, 0.0, out=rise)
        self._prev_log[:] = logmag
        np.add.reduceat(summed, self._edges, axis=1, out=sums)
        novelty = float(np.dot(rise, self._beat_weights))
        np.dot(self._mag_rows, mag, out=mag_sums)
        np.dot(self._chroma_rows, power, out=chroma_raw)
        np.add.reduceat(summed[0], self._log_edges, out=log_sums)  # power + the spare zero bin
        # the harmonic minimum does not care about order: rows 0 .. t-1 are used as a ring here
        pos = self._h_pos
        h_rows[pos] = h_mag
        np.minimum.reduce(h_win, axis=0, out=h_min)
        self._h_pos = pos + 1 if pos + 1 < self._t_hops else 0
        p_mid[:] = h_mag
        np.minimum.reduce(p_shifts, axis=0, out=p_min)
        eh = float(np.dot(h_min, h_min))
        ep = float(np.dot(p_min, p_min))
        cmax = float(chroma_raw.max())
        if cmax > 1e-12:
            np.multiply(chroma_raw, 1.0 / cmax, out=chroma_raw)
        return ((sq,), (sums.tolist(),), (mag_sums.tolist(),), (log_sums.tolist(),), (eh,), (ep,),
                (cmax,), (novelty,))

    def _spectra(self, c: int, k: int) -> None:
        """Every array operation for the k hops from buffer index c on, one call per kind."""
        keep, hop = self._keep, self.hop
        new = self._samples[keep + c * hop:keep + (c + k) * hop]
        if not np.isfinite(np.dot(new, new)):
            # NaN/inf in the input count as silence (they would poison every later hop).
            np.nan_to_num(new, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        frames = self._frames[c:c + k]
        tail = frames[:, self.n_fft - self._rms_len:]
        if k == 1:  # (the 1-D calls are cheaper than the batched ones for a single hop)
            self._sq[0] = np.dot(tail[0], tail[0])
        else:
            np.einsum("ij,ij->i", tail, tail, out=self._sq[:k])
        windowed = self._windowed[:k]
        np.multiply(frames, self._window, out=windowed)
        self._rfft(windowed, self._spec[:k])
        nb = self._nb
        w = self._work[:k]
        mag = w[:, 0, :nb]
        np.abs(self._spec[:k], out=mag)
        np.multiply(mag, mag, out=w[:, 1, :nb])
        logs = w[:, 2:4, :nb]
        np.add(w[:, 0:2, :nb], self._log_offsets, out=logs)   # 1/gamma + |X|, |X|^2 + 1e-20
        np.log(logs, out=logs)
        logmag, rise = w[:, 2, :nb], w[:, 4, :nb]
        np.subtract(logmag[0], self._prev_log, out=rise[0])
        if k > 1:
            np.subtract(logmag[1:], logmag[:-1], out=rise[1:])
        np.maximum(rise, 0.0, out=rise)
        self._prev_log[:] = logmag[k - 1]
        np.add.reduceat(w[:, 1:], self._edges, axis=2, out=self._sums[:k])
        np.matmul(rise, self._beat_weights, out=self._beat_novelty[:k])
        power = w[:, 1, :nb]
        if k == 1:
            np.dot(self._mag_rows, mag[0], out=self._mag_sums[0])
            np.dot(self._chroma_rows, power[0], out=self._chroma_raw[0])
        else:
            np.matmul(mag, self._mag_rows_t, out=self._mag_sums[:k])
            np.matmul(power, self._chroma_rows_t, out=self._chroma_raw[:k])
        np.add.reduceat(w[:, 1], self._log_edges, axis=1, out=self._log_sums[:k])

        # harmonic / percussive: rank filters over time (history + block) and over frequency
        t = self._t_hops
        if self._h_pos != t - 1:  # process_hop left rows 0 .. t-1 as a ring: put them in order
            pos = self._h_pos
            np.copyto(self._h_tmp, self._h_hist[[(pos + 1 + i) % t for i in range(t - 1)]])
            np.copyto(self._h_hist[:t - 1], self._h_tmp)
            self._h_pos = t - 1
        h_mag = mag[:, 1:self._h_hi]
        self._h_hist[t - 1:t - 1 + k] = h_mag
        np.minimum.reduce(self._h_win[:, :k], axis=0, out=self._h_min[:k])
        np.copyto(self._h_tmp, self._h_hist[k:k + t - 1])
        np.copyto(self._h_hist[:t - 1], self._h_tmp)
        self._p_mid[:k] = h_mag
        np.minimum.reduce(self._p_shifts[:, :k], axis=0, out=self._p_min[:k])
        if k == 1:
            self._eh[0] = np.dot(self._h_min[0], self._h_min[0])
            self._ep[0] = np.dot(self._p_min[0], self._p_min[0])
        else:
            np.einsum("ij,ij->i", self._h_min[:k], self._h_min[:k], out=self._eh[:k])
            np.einsum("ij,ij->i", self._p_min[:k], self._p_min[:k], out=self._ep[:k])

        # chroma, each hop normalised by its maximum
        raw, cmax = self._chroma_raw[:k], self._chroma_max[:k]
        np.maximum.reduce(raw, axis=1, out=cmax[:, 0])
        np.maximum(cmax, 1e-12, out=cmax)
        np.divide(raw, cmax, out=raw)

    def _block_values(self, k: int):
        """The block's per-hop sums as Python lists (one conversion per array per block)."""
        return (self._sq[:k].tolist(), self._sums[:k].tolist(), self._mag_sums[:k].tolist(),
                self._log_sums[:k].tolist(), self._eh[:k].tolist(), self._ep[:k].tolist(),
                self._chroma_max[:k, 0].tolist(), self._beat_novelty[:k].tolist())

    def _hop(self, j: int, values) -> Features:
        """The per-hop bookkeeping (plain Python floats) for hop j of the current block."""
        sq_l, sums_l, mag_l, log_l, eh_l, ep_l, cmax_l, beat_l = values
        sq = sq_l[j]
        self.hops += 1
        feats = self.features

        # --- level ---
        rms = math.sqrt(sq / self._rms_len)
        loudness = 20.0 * math.log10(rms) if rms > 1e-5 else -100.0
        loudness = min(0.0, max(-100.0, loudness))
        feats["rms"] = rms
        feats["loudness"] = loudness
        energy, _, logseg, seg = sums_l[j]

        # --- bands: ratio to baseline, attack/release, auto-gained level ---
        self._base_weight += self._k_base * (1.0 - self._base_weight)
        inv_weight = 1.0 / self._base_weight
        gains = self._gains
        feats["level"] = gains[0].update(loudness)
        k_base, floor, k_up, k_down = self._k_base, self._base_floor, self._k_att_up, self._k_att_down
        base_l, att_l = self._base, self._att
        for i, (name, name_att, name_level) in enumerate(_BAND_KEYS):
            e = energy[i]
            base = base_l[i] + (e - base_l[i]) * k_base
            base_l[i] = base
            base *= inv_weight
            ratio = e / base if base > floor else e / floor
            if ratio > 10.0:
                ratio = 10.0
            att = att_l[i]
            att += (ratio - att) * (k_up if ratio > att else k_down)
            att_l[i] = att
            feats[name] = ratio
            feats[name_att] = att
            feats[name_level] = gains[i + 1].update(10.0 * math.log10(e) if e > 1e-10 else -100.0)

        # Eight log bands: _AutoGain.update inlined on parallel lists (a third of the cost).
        bands_db = self._bands_db
        his, los = self._lb_hi, self._lb_lo
        k_rel, k_fall = self._lb_k_release, self._lb_k_low_fall
        sums_lb = log_l[j]   # (its last entry, above the top edge, is not a band)
        for i in range(LOG_BANDS):
            e = sums_lb[i]
            db = 10.0 * math.log10(e) if e > 1e-10 else -100.0
            bands_db[i] = db
            x = db if db > FLOOR_DB else FLOOR_DB
            hi = his[i]
            hi = x if x > hi else hi + (x - hi) * k_rel
            lo = los[i]
            lo += (x - lo) * (k_fall if x < lo else k_rel)
            if lo > hi - MIN_RANGE_DB:
                lo = hi - MIN_RANGE_DB
            his[i] = hi
            los[i] = lo
            if x <= FLOOR_DB:
                v = 0.0
            else:
                v = (x - lo) / (hi - lo)
                v = 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
            feats[_LOG_BAND_KEYS[i]] = v

        # --- harmonic / percussive ---
        eh, ep = eh_l[j], ep_l[j]
        share = eh / (eh + ep) if eh + ep > 1e-12 else 0.5
        feats["harmonic"] = feats["level"] * share
        feats["percussive"] = feats["level"] * (1.0 - share)

        # --- flux and onsets ---
        if self.hops == 1:
            raw = (0.0, 0.0, 0.0, 0.0)  # the first hop's "rise" is from nothing
        else:
            inv = self._inv_counts
            raw = ((seg[0] + seg[1] + seg[2] + seg[3]) * self._inv_full,
                   seg[0] * inv[0], seg[1] * inv[1], seg[2] * inv[2])
        self.onset_strength = raw[0]
        p = self._hist_pos
        fmax_l, hist_sum, above_l, since_l = (self._flux_max, self._hist_sum, self._above,
                                              self._since_onset)
        decay, refractory, hist_len = self._flux_decay, self._refractory, self._hist_len
        for i, (name, onset_name) in enumerate(_FLUX_ONSET_KEYS):
            r = raw[i]
            fmax = fmax_l[i] * decay
            if r > fmax:
                fmax = r
            fmax_l[i] = fmax
            feats[name] = r / (fmax if fmax > FLUX_FLOOR else FLUX_FLOOR)
            threshold = max(hist_sum[i] / hist_len * ONSET_MULTIPLIER, fmax * ONSET_RELATIVE, ONSET_ABSOLUTE)
            above = r > threshold
            since = since_l[i] + 1
            onset = above and not above_l[i] and since >= refractory
            since_l[i] = 0 if onset else since
            above_l[i] = above
            feats[onset_name] = 1.0 if onset else 0.0
            hist = self._hist[i]
            hist_sum[i] += r - hist[p]
            hist[p] = r
        p += 1
        self._hist_pos = 0 if p == hist_len else p

        # --- spectral shape ---
        msum, cnum = mag_l[j]
        if msum > 1e-7:
            c = (math.log(max(cnum / msum, 20.0)) - self._log_fmin) / self._log_span
            feats["centroid"] = min(1.0, max(0.0, c))
            am = (energy[0] + energy[1] + energy[2] + energy[3]) * self._inv_full
            gm = math.exp((logseg[0] + logseg[1] + logseg[2] + logseg[3]) * self._inv_full)
            feats["flatness"] = min(1.0, gm / am) if am > 1e-14 else 0.0
        else:
            feats["centroid"] = 0.0
            feats["flatness"] = 0.0

        chroma = feats["chroma"]
        if cmax_l[j] > 1e-12:
            chroma[:] = self._chroma_raw[j]
        else:
            chroma.fill(0.0)

        # --- structure (slow cues: updated every STRUCTURE_EVERY hops, drop fires on that hop) ---
        if self.hops % STRUCTURE_EVERY == 0:
            st = self.structure
            st.update(loudness, 10.0 * math.log10(energy[0]) if energy[0] > 1e-10 else -100.0,
                      feats["centroid"], bands_db)
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

"""The per-hop level, band, onset and spectral-shape bookkeeping of the feature extractor,
compiled.

:func:`step_levels` turns the per-hop sums the extractor's array stage produced (the energy of the
last half window, band sums of power, log power and flux rise, the magnitude sums behind the
centroid, the eight log bands, the harmonic/percussive energies) into the scalar features of
``KERNEL_FEATURES``, carrying the recursive state (baselines, attack/release followers, auto-gain
ranges, flux normalisers, onset thresholds) from hop to hop. It is one loop of scalar arithmetic
per hop: written in Python it cost more than the FFT and the spectral work together, so it is
compiled with numba (a librosa dependency) once, and the compiled code is cached on disk
(``cache=True``) so later runs load it in milliseconds.

The state is a plain float64 vector (indices ``S_*``) and a ``[4, hist_len]`` onset history; the
constants are another float64 vector (indices ``P_*``), filled by :func:`make_params`. Nothing
here allocates per hop. The meaning and range of every output are in ``docs/features.md``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# --- tuning shared with engine.audio.features (all times in seconds) ---------------------------
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
BASE_FLOOR = 1e-9          # a band energy below this counts as silence (~ -90 dB)

#: The scalar features :func:`step_levels` writes, in the order of its output columns. After
#: them come the eight log bands in dB and the bass band in dB (for the structure tracker) and the
#: raw onset strength.
KERNEL_FEATURES = (
    "rms", "loudness", "level",
    "bass", "mid", "treb", "bass_att", "mid_att", "treb_att",
    "bass_level", "mid_level", "treb_level",
    "band0", "band1", "band2", "band3", "band4", "band5", "band6", "band7",
    "harmonic", "percussive",
    "flux", "onset", "flux_low", "onset_low", "flux_mid", "onset_mid", "flux_high", "onset_high",
    "centroid", "flatness",
)
COL_LOUDNESS, COL_CENTROID, COL_BANDS_DB = 1, KERNEL_FEATURES.index("centroid"), len(KERNEL_FEATURES)
COL_ONSET_STRENGTH = COL_BANDS_DB + 8
COL_BASS_DB = COL_ONSET_STRENGTH + 1
N_OUT = COL_BASS_DB + 1

# Auto-gain channels: 0 level (loudness), 1..3 bass/mid/treb, 4..11 the eight log bands.
N_GAINS = 12
# State vector layout.
S_BASE = 0            # 3: EMA of band energy (bias-corrected by S_BASE_W)
S_BASE_W = 3
S_ATT = 4             # 3
S_HI = 7              # 12: auto-gain loud end (dB)
S_LO = S_HI + N_GAINS  # 12: auto-gain quiet end (dB)
S_FMAX = S_LO + N_GAINS  # 4: flux running max (overall, low, mid, high)
S_HSUM = S_FMAX + 4   # 4: sum of the onset history
S_ABOVE = S_HSUM + 4  # 4: 1.0 while the flux is above its threshold
S_SINCE = S_ABOVE + 4  # 4: hops since the last onset
S_HPOS = S_SINCE + 4  # write position in the history
S_HOPS = S_HPOS + 1   # hops processed
N_STATE = S_HOPS + 1
# Parameter vector layout.
(P_RMS_LEN, P_K_BASE, P_K_UP, P_K_DOWN, P_K_RELEASE, P_K_FALL, P_FLUX_DECAY, P_REFRACTORY,
 P_INV_LOW, P_INV_MID, P_INV_HIGH, P_INV_FULL, P_LOG_FMIN, P_LOG_SPAN, N_PARAMS) = range(15)


def _coef(time_constant: float, hop_seconds: float) -> float:
    """One-pole smoothing coefficient for a time constant in seconds at one update per hop."""
    if time_constant <= 0:
        return 1.0
    return 1.0 - math.exp(-hop_seconds / time_constant)


def make_params(hop_seconds: float, rms_len: int, inv_counts, inv_full: float, nyquist: float):
    """The constant vector for :func:`step_levels` (float64 ``[N_PARAMS]``).

    ``inv_counts`` are 1 / the bin counts of the bass, mid and treble bands, ``inv_full`` 1 / the
    bins of 20 Hz .. Nyquist.
    """
    p = np.zeros(N_PARAMS, dtype=np.float64)
    hs = hop_seconds
    p[P_RMS_LEN] = rms_len
    p[P_K_BASE] = _coef(BASELINE_TIME, hs)
    p[P_K_UP], p[P_K_DOWN] = _coef(ATT_ATTACK, hs), _coef(ATT_RELEASE, hs)
    p[P_K_RELEASE], p[P_K_FALL] = _coef(RANGE_RELEASE, hs), _coef(RANGE_LOW_FALL, hs)
    p[P_FLUX_DECAY] = math.exp(-hs / FLUX_MAX_RELEASE)
    p[P_REFRACTORY] = max(1, int(round(ONSET_REFRACTORY / hs)))
    p[P_INV_LOW], p[P_INV_MID], p[P_INV_HIGH] = inv_counts
    p[P_INV_FULL] = inv_full
    p[P_LOG_FMIN] = math.log(20.0)
    p[P_LOG_SPAN] = math.log(max(nyquist, 40.0)) - p[P_LOG_FMIN]
    return p


def history_length(hop_seconds: float) -> int:
    """Hops in the onsets' adaptive-threshold history."""
    return max(2, int(round(FLUX_HISTORY / hop_seconds)))


def new_state() -> np.ndarray:
    """The state of a fresh extractor (float64 ``[N_STATE]``)."""
    s = np.zeros(N_STATE, dtype=np.float64)
    s[S_HI:S_HI + N_GAINS] = FLOOR_DB
    s[S_LO:S_LO + N_GAINS] = FLOOR_DB
    s[S_SINCE:S_SINCE + 4] = 1 << 30
    return s


@njit(cache=True, nogil=True)
def _db(e):
    return 10.0 * math.log10(e) if e > 1e-10 else -100.0


@njit(cache=True, nogil=True)
def _gain(s, ch, db, k_release, k_fall):
    """Auto-gain of channel ``ch``: ``db`` onto 0..1 against its own remembered range."""
    x = db if db > FLOOR_DB else FLOOR_DB
    hi = s[S_HI + ch]
    # The loud end jumps up at once and relaxes slowly towards the signal.
    hi = x if x > hi else hi + (x - hi) * k_release
    # The quiet end follows the signal down within a fraction of a second, up slowly.
    lo = s[S_LO + ch]
    lo += (x - lo) * (k_fall if x < lo else k_release)
    if lo > hi - MIN_RANGE_DB:
        lo = hi - MIN_RANGE_DB
    s[S_HI + ch] = hi
    s[S_LO + ch] = lo
    if x <= FLOOR_DB:
        return 0.0
    v = (x - lo) / (hi - lo)
    return 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)


@njit(cache=True, nogil=True)
def step_levels(k, sq, sums, mag_sums, log_sums, eh, ep, p, s, hist, out):
    """Advance ``k`` hops; write hop ``j``'s features to ``out[j]`` (``KERNEL_FEATURES`` order,
    then the eight log bands in dB, the raw onset strength and the bass band in dB).

    Inputs per hop ``j`` (float32 rows of the extractor's workspaces): ``sq[j]`` the energy of the
    last ``rms_len`` samples; ``sums[j]`` rows power / log power / flux rise (the first three rows
    after magnitude in the workspace), each summed over [bass, mid, treb, above treb];
    ``mag_sums[j]`` the magnitude sum over 20 Hz .. Nyquist and its frequency-weighted sum;
    ``log_sums[j, :8]`` the power of the eight log bands; ``eh[j]``, ``ep[j]`` the harmonic and
    percussive energies. ``p`` from :func:`make_params`, ``s`` from :func:`new_state`, ``hist``
    float64 ``[4, history_length]``, all updated in place.
    """
    k_base, k_up, k_down = p[P_K_BASE], p[P_K_UP], p[P_K_DOWN]
    k_rel, k_fall = p[P_K_RELEASE], p[P_K_FALL]
    decay, refractory, inv_full = p[P_FLUX_DECAY], p[P_REFRACTORY], p[P_INV_FULL]
    hist_len = hist.shape[1]
    for j in range(k):
        o = out[j]
        s[S_HOPS] += 1.0

        # --- level ---
        rms = math.sqrt(float(sq[j]) / p[P_RMS_LEN])
        loudness = 20.0 * math.log10(rms) if rms > 1e-5 else -100.0
        loudness = min(0.0, max(-100.0, loudness))
        o[0] = rms
        o[1] = loudness
        level = _gain(s, 0, loudness, k_rel, k_fall)
        o[2] = level

        # --- bands: ratio to baseline, attack/release, auto-gained level ---
        s[S_BASE_W] += k_base * (1.0 - s[S_BASE_W])
        inv_weight = 1.0 / s[S_BASE_W]
        for i in range(3):
            e = float(sums[j, 0, i])
            base = s[S_BASE + i] + (e - s[S_BASE + i]) * k_base
            s[S_BASE + i] = base
            base *= inv_weight
            ratio = e / base if base > BASE_FLOOR else e / BASE_FLOOR
            if ratio > 10.0:
                ratio = 10.0
            att = s[S_ATT + i]
            att += (ratio - att) * (k_up if ratio > att else k_down)
            s[S_ATT + i] = att
            o[3 + i] = ratio
            o[6 + i] = att
            db = _db(e)
            if i == 0:
                o[COL_BASS_DB] = db
            o[9 + i] = _gain(s, 1 + i, db, k_rel, k_fall)

        # --- eight log bands ---
        for i in range(8):
            db = _db(float(log_sums[j, i]))
            o[COL_BANDS_DB + i] = db
            o[12 + i] = _gain(s, 4 + i, db, k_rel, k_fall)

        # --- harmonic / percussive ---
        h, q = float(eh[j]), float(ep[j])
        share = h / (h + q) if h + q > 1e-12 else 0.5
        o[20] = level * share
        o[21] = level * (1.0 - share)

        # --- flux and onsets (0 overall, 1 low, 2 mid, 3 high) ---
        pos = int(s[S_HPOS])
        for i in range(4):
            if s[S_HOPS] == 1.0:
                r = 0.0  # the first hop's "rise" is from nothing
            elif i == 0:
                r = (float(sums[j, 3, 0]) + float(sums[j, 3, 1]) + float(sums[j, 3, 2])
                     + float(sums[j, 3, 3])) * inv_full
            else:
                r = float(sums[j, 3, i - 1]) * p[P_INV_LOW + i - 1]
            if i == 0:
                o[COL_ONSET_STRENGTH] = r
            fmax = s[S_FMAX + i] * decay
            if r > fmax:
                fmax = r
            s[S_FMAX + i] = fmax
            o[22 + 2 * i] = r / (fmax if fmax > FLUX_FLOOR else FLUX_FLOOR)
            threshold = max(s[S_HSUM + i] / hist_len * ONSET_MULTIPLIER,
                            max(fmax * ONSET_RELATIVE, ONSET_ABSOLUTE))
            above = r > threshold
            since = s[S_SINCE + i] + 1.0
            onset = above and s[S_ABOVE + i] == 0.0 and since >= refractory
            s[S_SINCE + i] = 0.0 if onset else since
            s[S_ABOVE + i] = 1.0 if above else 0.0
            o[23 + 2 * i] = 1.0 if onset else 0.0
            s[S_HSUM + i] += r - hist[i, pos]
            hist[i, pos] = r
        pos += 1
        s[S_HPOS] = 0.0 if pos == hist_len else float(pos)

        # --- spectral shape ---
        msum, cnum = float(mag_sums[j, 0]), float(mag_sums[j, 1])
        if msum > 1e-7:
            c = (math.log(max(cnum / msum, 20.0)) - p[P_LOG_FMIN]) / p[P_LOG_SPAN]
            o[30] = min(1.0, max(0.0, c))
            am = (float(sums[j, 0, 0]) + float(sums[j, 0, 1]) + float(sums[j, 0, 2])
                  + float(sums[j, 0, 3])) * inv_full
            gm = math.exp((float(sums[j, 2, 0]) + float(sums[j, 2, 1]) + float(sums[j, 2, 2])
                           + float(sums[j, 2, 3])) * inv_full)
            o[31] = min(1.0, gm / am) if am > 1e-14 else 0.0
        else:
            o[30] = 0.0
            o[31] = 0.0

"""Causal, streaming tempo and beat tracking, one update per analysis hop.

:class:`BeatTracker` is fed one onset-strength value per hop (the spectral flux the
:class:`~engine.audio.features.FeatureExtractor` already computes) and keeps, at every hop, what a
live show can know at that moment: a tempo in BPM with a confidence, a beat phase, a bar phase and
beat / downbeat events. It never looks ahead.

How it works (all lengths in hops; ``rate = sr / hop`` hops per second):

1. **Onset envelope.** The novelty value minus its slowly moving mean, half-wave rectified, is kept
   in a ``ENVELOPE_SECONDS`` history (a doubled ring filled backwards, so the newest stretch is
   always one contiguous slice, newest first).
2. **Tempo.** A leaky autocorrelation of the envelope (time constant ``ACF_SECONDS``) is updated
   every hop for lags up to ``MAX_LAG_SECONDS``. Every ``TEMPO_EVERY`` hops a comb over a log-spaced
   grid of tempi (``MIN_BPM`` .. ``MAX_BPM``) sums the autocorrelation at one to four multiples
   of each candidate period (one precomputed matrix product), weighted by a log-normal tempo prior
   around ``PRIOR_BPM``. The estimate follows the best candidate near the current tempo; a jump to
   a far one (another octave, a new song) needs to win clearly for ``SWITCH_SECONDS``.
3. **Phase.** A beat oscillator advances by ``1 / period`` per hop. Every hop the envelope of the
   last ``PHASE_BEATS`` periods is folded at the current period; the offset with the most onset
   energy says how long ago the last beat was, and the oscillator's phase is pulled toward it
   (a first-order phase-locked loop with gain ``PHASE_GAIN``). A beat event fires on the hop where
   the oscillator passes the beat, so events are predictions, not reactions: they do not wait for
   the onset and keep going (freewheel) through breaks.
4. **Bars.** Beats are counted in 4/4. When the caller passes chroma, the harmonic change at each
   beat (cosine distance between the mean chroma of the beat just ended and of the one before) is
   accumulated per position in the bar (leaky, ``BAR_SECONDS``); chords change on the one, so the
   position with the most change becomes the downbeat once it leads clearly. Without chroma, or
   until then, bars count from the first beat; :meth:`reset_phase` sets the one by hand.

Steering (call from the thread that calls :meth:`update`): :meth:`tap` (tap tempo),
:meth:`set_tempo`, :meth:`set_phase`, :meth:`reset_phase`, :meth:`lock`, :meth:`release`.

The per-hop path allocates no arrays: every buffer and the comb matrix are built in the
constructor, the autocorrelation is kept with a separate scale factor so that its decay costs no
array operation, and the two per-hop loops over arrays (the envelope push with the
autocorrelation update, and the phase fold) are compiled with numba (:func:`_push`,
:func:`_fold`); the tempo comb, every ``TEMPO_EVERY`` hops, is one matrix-vector product.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# --- tuning, times in seconds --------------------------------------------------------------------
MIN_BPM, MAX_BPM = 60.0, 200.0   # tempo search range
PRIOR_BPM = 120.0                 # centre of the log-normal tempo prior ...
PRIOR_OCTAVES = 0.9               # ... and its width (standard deviation in octaves)
GRID_STEP = 0.005                 # tempo grid spacing (fraction of tempo: 0.5 %)
ENVELOPE_SECONDS = 9.5            # onset envelope history (the phase fold reaches 9 s back at 60 BPM)
ACF_SECONDS = 4.0                 # autocorrelation memory (time constant)
MAX_LAG_SECONDS = 3.2             # longest autocorrelation lag
MEAN_SECONDS = 1.0                # envelope detrending: moving mean time constant
TEMPO_EVERY = 4                   # hops between tempo estimates
WARMUP_SECONDS = 2.0              # no tempo is published before this much signal ...
MIN_CONFIDENCE = 0.3              # ... and before the confidence first reaches this
NEAR = 0.06                       # "near the current tempo": within 6 %
SWITCH_MARGIN = 1.15              # a far candidate must score this much higher ...
SWITCH_SECONDS = 1.5              # ... for this long to replace the current tempo
PHASE_BEATS = 8                   # periods folded for the phase measurement
PHASE_DECAY = 0.85                # weight of each older period in the fold
PHASE_GAIN = 0.08                 # PLL: fraction of the phase error corrected per hop
PHASE_SALIENCE = 1.5              # the fold's peak must exceed its mean by this factor ...
PHASE_RELATIVE = 0.35             # ... and this fraction of its recent maximum (else freewheel:
PEAK_SECONDS = 10.0               #     breaks without drums), which decays with this time constant
LEAD_SECONDS = 0.012              # beats fire this early (the onset envelope lags the sound)
TAP_TIMEOUT = 2.0                 # a tap more than this after the previous starts a new series
TAP_MAX = 8                       # taps remembered
BEATS_PER_BAR = 4
BAR_SECONDS = 16.0                # downbeat evidence memory (time constant)
BAR_MARGIN = 1.3                  # a new downbeat position must lead the current one by this factor
BAR_MIN_EVIDENCE = 0.1            # ... and have gathered at least this much (cosine distance, summed)


class BeatTracker:
    """Streaming tempo, beat phase and beat events from one onset-strength value per hop.

    Parameters
    ----------
    rate : float
        Updates per second (``sr / hop``; 86.13 at 44.1 kHz with 512-sample hops).

    Attributes (read after each :meth:`update`)
    ----------
    bpm : float
        Tempo in beats per minute, ``MIN_BPM`` .. ``MAX_BPM``; 0.0 until the tracker is first
        confident (about two to four seconds into music with a beat), then held.
    confidence : float
        0 .. 1: how periodic the recent onset envelope is at ``bpm`` (0 in silence or noise,
        ~0.3 .. 1 for music with drums).
    beat_phase : float
        0 .. 1, 0 on the beat, rising linearly to the next; 0 while ``bpm`` is 0.
    bar_phase : float
        0 .. 1 over a 4/4 bar, 0 on the downbeat; 0 while ``bpm`` is 0.
    beat, downbeat : bool
        True on the single hop of a beat / of a beat that starts a bar.
    locked : bool
        True while :meth:`lock` holds tempo and phase.
    """

    def __init__(self, rate: float):
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = float(rate)
        r = self.rate
        self.hops = 0

        # Onset envelope: doubled ring of n samples filled backwards (every value is written at pos
        # and pos + n); env[pos : pos + n] are the newest n, newest first: env[pos + j] = x[t - j].
        self._n = n = int(round(ENVELOPE_SECONDS * r))
        self._env = np.zeros(2 * n, dtype=np.float32)
        self._pos = 0
        self._mean = 0.0
        self._k_mean = 1.0 - math.exp(-1.0 / (MEAN_SECONDS * r))

        # Leaky autocorrelation by lag 0 .. L-1, stored as _acf * _acf_scale: the decay shrinks
        # the Python float scale instead of the array, and new products are added divided by it.
        self._L = L = min(n - 1, int(math.ceil(MAX_LAG_SECONDS * r)) + 2)
        self._acf = np.zeros(L, dtype=np.float32)
        self._acf_scale = 1.0
        self._acf_decay = float(np.float32(math.exp(-1.0 / (ACF_SECONDS * r))))

        # Tempo grid and comb matrix [n_tempi, L]: harmonics 1..4 of each period with linear
        # interpolation between lags, times the tempo prior, normalised per row by the weights used.
        n_grid = int(math.floor(math.log(MAX_BPM / MIN_BPM) / math.log1p(GRID_STEP))) + 1
        self._grid = MIN_BPM * (1.0 + GRID_STEP) ** np.arange(n_grid)
        comb = np.zeros((n_grid, L), dtype=np.float64)
        for i, bpm in enumerate(self._grid):
            period = 60.0 * r / bpm
            total = 0.0
            for k, w in ((1, 1.0), (2, 0.8), (3, 0.6), (4, 0.5)):
                lag = k * period
                lo = int(math.floor(lag))
                if lo + 1 >= L:
                    break
                frac = lag - lo
                comb[i, lo] += w * (1.0 - frac)
                comb[i, lo + 1] += w * frac
                total += w
            prior = math.exp(-0.5 * (math.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)
            comb[i] *= prior / total
        # One more row, the mean of all the others, gives the mean score in the same product.
        self._comb = np.vstack([comb, comb.mean(axis=0)]).astype(np.float32)
        self._scores_all = np.zeros(n_grid + 1, dtype=np.float32)
        self._scores = self._scores_all[:n_grid]
        self._near = max(1, int(round(math.log1p(NEAR) / math.log1p(GRID_STEP))))
        self._switch_updates = max(1, int(round(SWITCH_SECONDS * r / TEMPO_EVERY)))
        self._challenger = -1
        self._challenger_count = 0
        self._tempo_idx = -1          # index into the grid of the current estimate

        # Phase fold: offsets 0 .. max_period-1 looking back PHASE_BEATS periods.
        self._max_period = int(math.ceil(60.0 * r / MIN_BPM)) + 1
        self._fold_idx = np.zeros((PHASE_BEATS, self._max_period), dtype=np.int64)
        self._fold_w = np.array([PHASE_DECAY ** k for k in range(PHASE_BEATS)], dtype=np.float32)
        self._fold_period = 0.0
        self._fold_len = 0
        self._fold_idx_view = self._fold_idx[:, :0].copy()
        self._peak_max = 0.0
        self._peak_decay = math.exp(-1.0 / (PEAK_SECONDS * r))

        self._warmup = int(round(WARMUP_SECONDS * r))
        self._lead = LEAD_SECONDS * r
        self._period = 0.0            # hops per beat in use (0 = no tempo yet)
        self._phase = 0.0             # beats since the last beat event (may dip below 0 briefly)
        self._beat_count = 0          # beats since the last downbeat
        self._anchor = 0.0            # tempo set by tap/set_tempo: the search stays near it
        self._taps: list[float] = []
        self._chroma_acc = np.zeros(12, dtype=np.float32)   # chroma summed over the current beat
        self._chroma_prev = np.zeros(12, dtype=np.float32)  # ... and over the beat before
        self._bar_evidence = [0.0] * BEATS_PER_BAR
        self._bar_decay = 1.0
        self._bar_manual = False      # reset_phase/set_phase(bar_beat=...) chose the one

        self.bpm = 0.0
        self.confidence = 0.0
        self.beat_phase = 0.0
        self.bar_phase = 0.0
        self.beat = False
        self.downbeat = False
        self.locked = False

    # --- per hop -------------------------------------------------------------------------------

    def update(self, novelty: float, chroma: np.ndarray | None = None) -> None:
        """Advance one hop.

        Parameters
        ----------
        novelty : float
            This hop's onset strength (any non-negative scale; 0 in silence).
        chroma : numpy.ndarray, optional
            This hop's float32 [12] pitch-class profile, for finding the downbeat.
        """
        self.hops += 1
        if not novelty > 0.0:          # also catches NaN
            novelty = 0.0
        self._mean += (novelty - self._mean) * self._k_mean
        x = novelty - self._mean
        if x < 0.0:
            x = 0.0
        n = self._n
        pos = self._pos - 1
        if pos < 0:
            pos = n - 1
        self._pos = pos

        # acf[lag] = decay * acf[lag] + x[t] * x[t - lag], with x[t - lag] = env[pos + lag].
        scale = self._acf_scale * self._acf_decay
        _push(self._env, pos, x, self._acf, x / scale)
        if scale < 1e-6:  # fold the scale back in long before the stored values could overflow
            np.multiply(self._acf, scale, out=self._acf)
            scale = 1.0
        self._acf_scale = scale

        if not self.locked and self.hops % TEMPO_EVERY == 0 and self.hops >= self._warmup:
            self._estimate_tempo()

        self.beat = self.downbeat = False
        if self._period <= 0.0:
            return
        if chroma is not None:
            self._chroma_acc += chroma
        if not self.locked:
            self._correct_phase()
        self._phase += 1.0 / self._period
        if self._phase >= 1.0 - self._lead / self._period:
            self._phase -= 1.0
            self.beat = True
            self._beat_count = (self._beat_count + 1) % BEATS_PER_BAR
            if chroma is not None:
                self._bar_cue()
            self.downbeat = self._beat_count == 0
        self._publish_phase()

    def _publish_phase(self) -> None:
        # The event fires ``lead`` early, so the published phase is shifted by the same amount:
        # beat_phase is 0 on the hop of the beat event.
        p = self._phase + self._lead / self._period
        p -= math.floor(p)
        self.beat_phase = p
        self.bar_phase = (self._beat_count + p) / BEATS_PER_BAR if p >= 0.0 else 0.0
        if self.bar_phase >= 1.0:
            self.bar_phase -= 1.0

    def _bar_cue(self) -> None:
        """At a beat: score the harmonic change into this bar position; maybe move the one."""
        a, b = self._chroma_acc, self._chroma_prev
        na, nb = float(np.dot(a, a)), float(np.dot(b, b))
        change = 1.0 - float(np.dot(a, b)) / math.sqrt(na * nb) if na > 1e-9 and nb > 1e-9 else 0.0
        self._chroma_prev, self._chroma_acc = a, b
        b.fill(0.0)
        decay = math.exp(-60.0 / (self.bpm * BAR_SECONDS))
        ev = self._bar_evidence
        for i in range(BEATS_PER_BAR):
            ev[i] *= decay
        # The beat that just ended started at position count - 1; the change is credited to it.
        ev[(self._beat_count - 1) % BEATS_PER_BAR] += change
        if self._bar_manual:
            return
        best = max(range(BEATS_PER_BAR), key=ev.__getitem__)
        if best != 0 and ev[best] > BAR_MARGIN * ev[0] and ev[best] > BAR_MIN_EVIDENCE:
            # Renumber so that position `best` is beat 0; the evidence moves with it.
            self._beat_count = (self._beat_count - best) % BEATS_PER_BAR
            self._bar_evidence = ev[best:] + ev[:best]

    def _estimate_tempo(self) -> None:
        acf0 = float(self._acf[0])   # the scores below share the acf's scale factor
        if acf0 * self._acf_scale <= 1e-12:
            self.confidence = 0.0
            return
        np.dot(self._comb, self._acf, out=self._scores_all)
        s = self._scores
        lo_i, hi_i = 0, s.size
        if self._anchor > 0.0:  # steered: stay within NEAR of the tapped / set tempo
            a = int(round(math.log(self._anchor / MIN_BPM) / math.log1p(GRID_STEP)))
            lo_i, hi_i = max(0, a - self._near), min(s.size, a + self._near + 1)
        g = lo_i + int(s[lo_i:hi_i].argmax())
        c = self._tempo_idx
        if c < 0 or not lo_i <= c < hi_i:
            best = g
        else:
            a, b = max(lo_i, c - self._near), min(hi_i, c + self._near + 1)
            local = a + int(s[a:b].argmax())
            best = local
            if abs(g - local) > self._near and s[g] > SWITCH_MARGIN * s[local]:
                if abs(g - self._challenger) <= self._near:
                    self._challenger_count += 1
                else:
                    self._challenger, self._challenger_count = g, 1
                if self._challenger_count >= self._switch_updates:
                    best = g
                    self._challenger, self._challenger_count = -1, 0
            else:
                self._challenger, self._challenger_count = -1, 0
        # Confidence: the comb's peak over its mean (the floor every tempo gets from a non-negative
        # envelope), against lag 0 over that mean: ~1 for a perfectly periodic envelope, ~0 for noise.
        floor = float(self._scores_all[-1])
        conf = (float(s[best]) - floor) / (acf0 - floor) if acf0 > floor else 0.0
        conf = 0.0 if conf < 0.0 else (1.0 if conf > 1.0 else conf)
        self.confidence = conf
        if self._tempo_idx < 0 and conf < MIN_CONFIDENCE:
            return
        self._tempo_idx = best
        # Parabolic refinement between grid points.
        bpm = float(self._grid[best])
        if 0 < best < s.size - 1:
            y0, y1, y2 = float(s[best - 1]), float(s[best]), float(s[best + 1])
            den = y0 - 2.0 * y1 + y2
            if den < 0.0:
                d = 0.5 * (y0 - y2) / den
                bpm *= (1.0 + GRID_STEP) ** max(-0.5, min(0.5, d))
        self._set_bpm(bpm)

    def _set_bpm(self, bpm: float) -> None:
        bpm = min(MAX_BPM, max(MIN_BPM, bpm))
        self.bpm = bpm
        self._period = 60.0 * self.rate / bpm

    def _correct_phase(self) -> None:
        period = self._period
        if abs(period - self._fold_period) > 0.15:  # offsets are whole hops anyway
            self._build_fold(period)
        peak, k, total = _fold(self._env, self._pos, self._fold_idx_view, self._fold_w)
        pmax = self._peak_max * self._peak_decay
        if peak > pmax:
            pmax = peak
        self._peak_max = pmax
        if (peak <= 0.0 or peak * self._fold_len < PHASE_SALIENCE * total
                or peak < PHASE_RELATIVE * pmax):
            return
        measured = k / period            # the last beat was k hops ago
        err = measured - self._phase
        err -= math.floor(err + 0.5)     # wrap into -0.5 .. 0.5
        self._phase += PHASE_GAIN * err

    def compile_kernels(self) -> None:
        """Compile (or load from numba's disk cache) the phase fold for this tracker's array
        types now; it first runs only once a tempo is found, which would be mid-show. Pure: the
        tracker's state is not touched."""
        _fold(self._env, self._pos, self._fold_idx_view, self._fold_w)

    def _build_fold(self, period: float) -> None:
        n = self._n
        m = min(int(math.ceil(period)), self._max_period)
        offsets = np.arange(self._max_period)
        for k in range(PHASE_BEATS):
            back = offsets + int(round(k * period))
            self._fold_idx[k] = np.clip(back, 0, n - 1)
        self._fold_period = period
        self._fold_len = m
        # Only the first m offsets are used (a contiguous copy, made once per tempo change).
        self._fold_idx_view = np.ascontiguousarray(self._fold_idx[:, :m])

    # --- steering ------------------------------------------------------------------------------

    def now(self) -> float:
        """Seconds of audio processed so far (the clock :meth:`tap` expects)."""
        return self.hops / self.rate

    def tap(self, time_s: float) -> None:
        """Tap tempo: a beat at ``time_s`` seconds on the audio clock (:meth:`now`).

        From the third tap of a series (taps less than ``TAP_TIMEOUT`` s apart) the tempo is set
        to the median interval and the phase so that the last tap was a beat; the automatic search
        then stays within 6 % of the tapped tempo until :meth:`release`.
        """
        if self._taps and not 0.0 < time_s - self._taps[-1] <= TAP_TIMEOUT:
            self._taps.clear()
        self._taps.append(float(time_s))
        del self._taps[:-TAP_MAX]
        if len(self._taps) < 3:
            return
        intervals = sorted(b - a for a, b in zip(self._taps, self._taps[1:]))
        beat_s = intervals[len(intervals) // 2]
        self.set_tempo(60.0 / beat_s)
        self.set_phase(((self.now() - self._taps[-1]) / beat_s) % 1.0)

    def set_tempo(self, bpm: float) -> None:
        """Set the tempo (clamped to ``MIN_BPM`` .. ``MAX_BPM``); the search then stays near it."""
        if not math.isfinite(bpm) or bpm <= 0:
            raise ValueError(f"tempo must be a positive number of BPM, got {bpm}")
        self._set_bpm(bpm)
        self._anchor = self.bpm
        self._tempo_idx = int(round(math.log(self.bpm / MIN_BPM) / math.log1p(GRID_STEP)))
        self._challenger, self._challenger_count = -1, 0
        if self.confidence < MIN_CONFIDENCE:
            self.confidence = MIN_CONFIDENCE
        self._publish_phase()

    def set_phase(self, beat_phase: float, bar_beat: int | None = None) -> None:
        """Set the beat phase (0 .. 1, 0 = on the beat) and optionally the beat in the bar (0..3)."""
        if self._period <= 0.0:
            return
        self._phase = (beat_phase % 1.0) - self._lead / self._period
        if bar_beat is not None:
            self._beat_count = int(bar_beat) % BEATS_PER_BAR
            self._bar_manual = True
        self._publish_phase()

    def reset_phase(self, time_s: float | None = None) -> None:
        """Beat 1 of a bar at ``time_s`` on the audio clock (:meth:`now`), or on the next hop.

        For a cue button pressed on the one; ``time_s`` lets a caller that learned of the press
        late (OSC, the frame loop) place the downbeat where it was. The bar position then stays
        where it was put (no automatic downbeat search) until :meth:`release`.
        """
        if self._period <= 0.0:
            return
        self._bar_manual = True
        if time_s is None:
            self._phase = 1.0 - 1.0 / self._period
            self._beat_count = BEATS_PER_BAR - 1
            return
        beats = max(0.0, (self.now() - float(time_s)) * self.rate / self._period)
        whole = math.floor(beats)
        self._phase = (beats - whole) - self._lead / self._period
        self._beat_count = int(whole) % BEATS_PER_BAR
        self._publish_phase()

    def lock(self, on: bool = True) -> None:
        """Hold the current tempo and phase (freewheel, no correction) while ``on``."""
        self.locked = bool(on)

    def release(self) -> None:
        """Back to fully automatic tracking: forget the tapped / set tempo and unlock."""
        self._anchor = 0.0
        self._taps.clear()
        self.locked = False
        self._bar_manual = False


# --- compiled inner loops (numba, cached on disk): a few hundred multiply-adds per hop, which as
# numpy calls cost more in call overhead than in arithmetic --------------------------------------

@njit(cache=True, nogil=True)
def _push(env, pos, x, acf, gain):
    """Write envelope value ``x`` at ``pos`` of the doubled ring ``env`` and add
    ``gain * env[pos + lag]`` to ``acf[lag]`` for every lag (nothing when ``x`` is 0)."""
    n = env.shape[0] // 2
    env[pos] = x
    env[pos + n] = x
    if x > 0.0:
        g = np.float32(gain)
        for lag in range(acf.shape[0]):
            acf[lag] += g * env[pos + lag]


@njit(cache=True, nogil=True)
def _fold(env, pos, idx, weights):
    """Fold the newest envelope values: for each offset ``o``, ``sum_q weights[q] *
    env[pos + idx[q, o]]``. Returns the largest fold value, its first offset and the fold's sum."""
    peak = -np.inf
    best = 0
    total = 0.0
    for o in range(idx.shape[1]):
        v = np.float32(0.0)
        for q in range(idx.shape[0]):
            v += weights[q] * env[pos + idx[q, o]]
        total += v
        if v > peak:
            peak = v
            best = o
    return float(peak), best, total

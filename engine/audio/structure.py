"""Causal song-structure cues, one update per analysis hop: novelty, build-up and drop.

:class:`StructureTracker` is fed, every hop, values the
:class:`~engine.audio.features.FeatureExtractor` has already computed (loudness in dB, the bass
band's energy in dB, the spectral centroid and the eight log bands in dB) and publishes three
features a mapping can switch scenes on:

``novelty`` (0 .. 1)
    How different the last ~0.3 s sound from the last ~4 s: the RMS difference, in dB over the
    eight log bands, between a short and a long exponential average of the band levels, mapped
    through ``1 - exp(-(d - NOVELTY_FLOOR_DB) / NOVELTY_SCALE_DB)``. Steady music stays near 0, a
    new section (drums coming in, a breakdown, a drop) pushes it toward 1 for a second or two.
``buildup`` (0 .. 1)
    Rising tension: the loudness and the spectral centroid (a filter opening, a noise riser) both
    measured as slopes over two time scales (the difference of a 0.25 s and a 1 s average, and of a
    1 s and a 4 s average; a ramp must show on both, a single step shows briefly on one). The
    slope score is smoothed (rises in ~1.5 s, falls in ~1 s). A plain crescendo counts as a
    build-up, which is what a VJ wants from it.
``drop`` (event, 0 or 1)
    1.0 on the hop where a drop is detected: the bass returns at least ``DROP_BASS_DB`` above its
    recent level while the music is not getting quieter, within ``ARM_SECONDS`` after
    ``buildup`` last exceeded ``ARM_LEVEL``. A drop resets ``buildup`` and the slope memories, and
    no second drop can fire for ``DROP_REFRACTORY`` seconds. Without a build-up before it, a
    change of section shows in ``novelty`` but is not a drop.

Everything runs on plain Python floats (a few dozen per hop); nothing is allocated.
"""

from __future__ import annotations

import math

# --- tuning, times in seconds --------------------------------------------------------------------
NOVELTY_SHORT = 0.3          # novelty: short average of the band levels ...
NOVELTY_LONG = 4.0           # ... against this long one
NOVELTY_FLOOR_DB = 3.0       # band-level difference (RMS dB) that still counts as "steady"
NOVELTY_SCALE_DB = 6.0       # ... and the scale above it (1 - 1/e at floor + scale)
SMOOTH = 0.25                # build-up: loudness and centroid are first smoothed with this ...
RAMP_WINDOWS = 4             # ... and a ramp must rise in each of this many consecutive windows
RAMP_WINDOW = 1.0            # ... of this length (a step rises in one window only)
LOUDNESS_SLOPE = 1.0         # dB per second of rising loudness that counts fully ...
CENTROID_SLOPE = 0.02        # ... and rise of the centroid (0..1 log-frequency scale) per second
BUILD_ATTACK = 1.0           # build-up score smoothing: rise ...
BUILD_RELEASE = 1.0          # ... and fall time constants
SILENCE_DB = -60.0           # quieter than this: no novelty, no build-up, no drop
ARM_LEVEL = 0.5              # drop: armed when buildup reached this ...
ARM_SECONDS = 4.0            # ... no longer than this ago
FAST = 0.05                  # drop: levels now (this fast average) ...
BASS_SLOW = 2.0              # ... against the bass lately (this slow average)
DROP_BASS_DB = 6.0           # the bass comes back at least this much above its recent level ...
DROP_CENTROID = 0.1          # ... or the centroid falls this much (the filter closes, the riser
DROP_CENTROID_SECONDS = 0.5  #     stops) within this time ...
DROP_LOUDNESS_DB = -3.0      # ... while loudness now is at least this relative to 1 s ago
DROP_REFRACTORY = 8.0        # no second drop within this time


def _coef(time_constant: float, hop_seconds: float) -> float:
    return 1.0 - math.exp(-hop_seconds / time_constant)


class StructureTracker:
    """Novelty, build-up and drop from per-hop levels (see the module docstring).

    Parameters
    ----------
    hop_seconds : float
        Duration of one hop (``hop / sr``).
    n_bands : int
        Number of band levels passed to :meth:`update`.

    Attributes (read after each :meth:`update`)
    ----------
    novelty, buildup : float
        0 .. 1.
    drop : bool
        True on the single hop of a detected drop.
    """

    def __init__(self, hop_seconds: float, n_bands: int = 8):
        hs = float(hop_seconds)
        self.hop_seconds = hs
        self._k_short = _coef(NOVELTY_SHORT, hs)
        self._k_long = _coef(NOVELTY_LONG, hs)
        self._short = [0.0] * n_bands
        self._long = [0.0] * n_bands
        self._inv_bands = 1.0 / n_bands
        self._k_smooth = _coef(SMOOTH, hs)
        self._k_fast = _coef(FAST, hs)
        self._k_bass = _coef(BASS_SLOW, hs)
        # Histories (Python lists used as rings, newest at _pos) of the smoothed loudness and
        # centroid over the ramp windows, and of the fast centroid and loudness for the drop.
        self._win = max(1, int(round(RAMP_WINDOW / hs)))
        self._ring_len = n = RAMP_WINDOWS * self._win + 1
        self._loud_hist = [0.0] * n
        self._cent_hist = [0.0] * n
        self._fast_cent_hist = [0.0] * n
        self._fast_loud_hist = [0.0] * n
        self._back_cent = min(n - 1, max(1, int(round(DROP_CENTROID_SECONDS / hs))))
        self._back_loud = min(n - 1, self._win)
        self._pos = 0
        self._loud = self._cent = self._fast_loud = self._fast_cent = 0.0
        self._bass_fast = self._bass_slow = 0.0
        self._k_build_up = _coef(BUILD_ATTACK, hs)
        self._k_build_down = _coef(BUILD_RELEASE, hs)
        self._arm_hops = int(round(ARM_SECONDS / hs))
        self._refractory = int(round(DROP_REFRACTORY / hs))
        self._since_armed = 1 << 30
        self._since_drop = 1 << 30
        self._started = False
        self.novelty = 0.0
        self.buildup = 0.0
        self.drop = False

    def _start(self, loudness: float, bass_db: float, centroid: float, bands_db) -> None:
        """Start every average and history at the first sound: no ramp up from silence."""
        self._started = True
        self._short[:] = bands_db
        self._long[:] = bands_db
        self._loud = self._fast_loud = loudness
        self._cent = self._fast_cent = centroid
        self._loud_hist[:] = [loudness] * self._ring_len
        self._fast_loud_hist[:] = [loudness] * self._ring_len
        self._cent_hist[:] = [centroid] * self._ring_len
        self._fast_cent_hist[:] = [centroid] * self._ring_len
        self._bass_fast = self._bass_slow = bass_db

    def update(self, loudness: float, bass_db: float, centroid: float, bands_db) -> None:
        """Advance one hop.

        Parameters
        ----------
        loudness : float
            Full-band level in dB (-100 in silence).
        bass_db : float
            Bass band (20-250 Hz) energy in dB.
        centroid : float
            Spectral centroid on the 0 .. 1 log-frequency scale (0 in silence).
        bands_db : sequence of float
            The log bands' energies in dB (``n_bands`` values, -100 in silence).
        """
        self._since_drop += 1
        self._since_armed += 1
        self.drop = False
        if loudness < SILENCE_DB:
            # Silence holds every memory (a pause is not a change of section) but the bass: a
            # drop after a silent gap is the bass coming back.
            self.novelty = 0.0
            self.buildup *= 1.0 - self._k_build_down
            if self._started:
                self._bass_slow += (bass_db - self._bass_slow) * self._k_bass
                self._bass_fast = bass_db
            return
        if not self._started:
            self._start(loudness, bass_db, centroid, bands_db)

        # --- novelty: short against long average of the band levels ---
        ks, kl = self._k_short, self._k_long
        short, long_ = self._short, self._long
        d2 = 0.0
        for i, v in enumerate(bands_db):
            s = short[i] + (v - short[i]) * ks
            lg = long_[i] + (v - long_[i]) * kl
            short[i] = s
            long_[i] = lg
            d2 += (s - lg) * (s - lg)
        d = math.sqrt(d2 * self._inv_bands) - NOVELTY_FLOOR_DB
        self.novelty = 1.0 - math.exp(-d / NOVELTY_SCALE_DB) if d > 0.0 else 0.0

        # --- histories ---
        k, kf = self._k_smooth, self._k_fast
        self._loud += (loudness - self._loud) * k
        self._cent += (centroid - self._cent) * k
        self._fast_loud += (loudness - self._fast_loud) * kf
        self._fast_cent += (centroid - self._fast_cent) * kf
        n = self._ring_len
        pos = self._pos + 1
        if pos == n:
            pos = 0
        self._pos = pos
        lh, ch = self._loud_hist, self._cent_hist
        lh[pos] = self._loud
        ch[pos] = self._cent
        self._fast_loud_hist[pos] = self._fast_loud
        self._fast_cent_hist[pos] = self._fast_cent

        # --- build-up: the smallest rise over consecutive windows (a ramp, not a step) ---
        w = self._win
        i0 = pos
        s_loud = s_cent = 1e9
        for _ in range(RAMP_WINDOWS):
            i1 = i0 - w
            if i1 < 0:
                i1 += n
            dl, dc = lh[i0] - lh[i1], ch[i0] - ch[i1]
            if dl < s_loud:
                s_loud = dl
            if dc < s_cent:
                s_cent = dc
            i0 = i1
        s_loud /= LOUDNESS_SLOPE * RAMP_WINDOW
        s_cent /= CENTROID_SLOPE * RAMP_WINDOW
        score = (s_loud if s_loud > 0.0 else 0.0) + (s_cent if s_cent > 0.0 else 0.0)
        if score > 1.0:
            score = 1.0
        b = self.buildup
        b += (score - b) * (self._k_build_up if score > b else self._k_build_down)
        self.buildup = b

        # --- drop: after a build-up, the bass comes back or the filter closes ---
        self._bass_fast += (bass_db - self._bass_fast) * kf
        bass_jump = self._bass_fast - self._bass_slow
        self._bass_slow += (bass_db - self._bass_slow) * self._k_bass
        if b >= ARM_LEVEL:
            self._since_armed = 0
        j = pos - self._back_cent
        cent_fall = self._fast_cent_hist[j if j >= 0 else j + n] - self._fast_cent
        j = pos - self._back_loud
        loud_change = self._fast_loud - self._fast_loud_hist[j if j >= 0 else j + n]
        if (self._since_armed <= self._arm_hops and self._since_drop >= self._refractory
                and (bass_jump >= DROP_BASS_DB or cent_fall >= DROP_CENTROID)
                and loud_change >= DROP_LOUDNESS_DB):
            self.drop = True
            self._since_drop = 0
            self._since_armed = 1 << 30
            self.buildup = 0.0

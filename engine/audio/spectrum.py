"""From one hop's spectrum to the sums the features are made of, compiled.

:func:`frame_block` prepares a block of hops for their FFTs in one pass (non-finite samples set
to 0, each frame's energy, the window applied). :func:`spectrum_sums` takes the complex spectra of
``k`` consecutive hops and, hop by hop, computes the magnitude, power and log spectra, the
spectral-flux rise against the hop before, and reduces them to the few numbers the extractor's
bookkeeping (:mod:`engine.audio.levels`) and the beat tracker need: band sums, the centroid's
weighted sums, chroma, the eight log bands, the harmonic and percussive energies of the causal
median-free HPSS split, and the beat tracker's novelty. One pass per hop over ~1000 bins, with no
temporary arrays: as numpy calls this was twenty-odd calls of a microsecond or more each, most of
the cost of a hop; compiled with numba (cached on disk) it is a fraction of that and the same code
serves one hop (live) and blocks of hops (offline).

Band edges follow ``numpy.add.reduceat`` over the spectrum with one spare zero bin appended at
index ``nb``: segment ``i`` is bins ``edges[i] .. edges[i+1] - 1`` (the last one runs to the spare
bin), and an empty segment (equal edges) holds the single bin at its start.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Rows of ``sums[j]``: power, log-magnitude (not summed: always 0), log power
#: (``log(|X|^2 + 1e-20)``), flux rise (of ``log(1/gamma + |X|)``).
SUM_POWER, SUM_LOGMAG, SUM_LOGPOWER, SUM_RISE = range(4)


@njit(cache=True, nogil=True, inline="always")
def _segment(x, lo, hi, nb):
    """Sum of ``x[lo:hi]`` with reduceat's rules (see the module docstring); ``x[nb]`` is 0."""
    if lo >= hi:
        return float(x[lo]) if lo < nb else 0.0
    acc = 0.0
    for b in range(lo, min(hi, nb)):
        acc += x[b]
    return acc


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def frame_block(samples, c, k, hop, keep, rms_len, window, sq, windowed):
    """Prepare the ``k`` hops from buffer index ``c`` on for their FFTs, in one pass.

    ``samples`` is the extractor's float32 buffer: ``keep = n_fft - hop`` samples of history,
    then one hop after another, so hop ``c + j``'s frame is ``samples[(c + j) * hop:][:n_fft]``.
    Non-finite new samples (NaN, inf) are set to 0 in place: they count as silence and would
    poison every later hop. Then per hop ``j``: ``sq[j]``, the energy of the frame's last
    ``rms_len`` samples (summed in float64), and ``windowed[j]``, the frame times ``window``.
    """
    n_fft = window.shape[0]
    start = keep + c * hop
    for i in range(start, start + k * hop):
        if not np.isfinite(samples[i]):
            samples[i] = 0.0
    for j in range(k):
        frame = samples[(c + j) * hop:(c + j) * hop + n_fft]
        tail = frame[n_fft - rms_len:]
        acc = 0.0
        for i in range(rms_len):
            acc += tail[i] * tail[i]
        sq[j] = acc
        out = windowed[j]
        for i in range(n_fft):
            out[i] = frame[i] * window[i]


@njit(cache=True, nogil=True)
def spectrum_sums(k, spec, log_gamma_inv, edges, log_edges, freqs, beat_weights, chroma_rows,
                  p_radius, prev_log, h_ring, h_pos, work,
                  sums, mag_sums, log_sums, eh, ep, novelty, chroma_raw, chroma_max):
    """Reduce the spectra ``spec[:k]`` (complex64 ``[K, nb]``) of ``k`` consecutive hops.

    State, updated in place: ``prev_log`` float32 ``[nb]`` (the log-magnitude of the hop before),
    ``h_ring`` float32 ``[t, nh]`` (the magnitudes of bins ``1 .. nh`` of the last ``t`` hops, a
    ring: the split looks at those bins) and ``h_pos`` int64 ``[1]`` (where the next hop goes in
    it). ``work`` is float32 ``[3, nb]`` scratch; ``chroma_raw`` float32 ``[K, 12]``.

    Per hop ``j`` it writes: ``sums[j]`` (the ``SUM_*`` rows, each summed over the segments of
    ``edges``: bass, mid, treb, above), ``mag_sums[j]`` (the magnitude summed from ``edges[0]``
    on, and weighted by ``freqs``), ``log_sums[j]`` (power per segment of
    ``log_edges``), ``eh[j]`` / ``ep[j]`` (harmonic / percussive energy: the squared sum of each
    bin's minimum over the last ``t`` hops / over ``+- p_radius`` bins of this hop),
    ``novelty[j]`` (the rise weighted by ``beat_weights``), ``chroma_raw[j]`` (the power folded by
    ``chroma_rows``, divided by its maximum when that exceeds 1e-12) and ``chroma_max[j]``.
    """
    nb = spec.shape[1]
    t = h_ring.shape[0]
    nh = h_ring.shape[1]
    mag, power, tmp = work[0], work[1], work[2]
    n_log = log_edges.shape[0]
    offset = np.float32(log_gamma_inv)
    zero = np.float32(0.0)
    for j in range(k):
        row = spec[j]
        s = sums[j]
        # --- magnitude, power, log-magnitude and its rise: simple passes the compiler can
        # vectorise (tmp holds the log-magnitude, then the rise) ---
        for b in range(nb):
            re = row[b].real
            im = row[b].imag
            m = np.sqrt(re * re + im * im)
            mag[b] = m
            power[b] = m * m
        for b in range(nb):
            tmp[b] = np.log(offset + mag[b])
        nov = 0.0
        for b in range(nb):
            lm = tmp[b]
            r = max(lm - prev_log[b], zero)
            prev_log[b] = lm
            tmp[b] = r
            nov += r * beat_weights[b]
        novelty[j] = nov
        # --- per segment: power, log power (kept as a product renormalised by powers of ten:
        # one log per segment instead of one per bin; it is only ever summed, for flatness),
        # flux rise; and the centroid's sums over 20 Hz .. Nyquist ---
        msum = 0.0
        wsum = 0.0
        for i in range(4):
            lo = edges[i]
            hi = edges[i + 1] if i < 3 else nb
            sp = 0.0
            sr = 0.0
            prod = 1.0
            prod_log = 0.0
            for b in range(lo, min(hi, nb)):
                p = power[b]
                sp += p
                sr += tmp[b]
                msum += mag[b]
                wsum += mag[b] * freqs[b]
                prod *= p + 1e-20
                if prod < 1e-200:
                    prod *= 1e200
                    prod_log -= 460.51701859880916   # log(1e200)
            s[SUM_POWER, i] = sp
            s[SUM_LOGPOWER, i] = math.log(prod) + prod_log if hi > lo else 0.0
            s[SUM_RISE, i] = sr
            s[SUM_LOGMAG, i] = 0.0
        mag_sums[j, 0] = msum
        mag_sums[j, 1] = wsum
        # --- eight log bands ---
        for i in range(n_log):
            hi = log_edges[i + 1] if i + 1 < n_log else nb + 1
            log_sums[j, i] = _segment(power, log_edges[i], hi, nb)
        # --- chroma (one matrix-vector product) ---
        out = chroma_raw[j]
        np.dot(chroma_rows, power, out)
        cmax = 0.0
        for c in range(12):
            if out[c] > cmax:
                cmax = out[c]
        chroma_max[j] = cmax
        if cmax > 1e-12:
            inv = np.float32(1.0 / cmax)
            for c in range(12):
                out[c] *= inv
        # --- harmonic: each bin's minimum over the last t hops (this one included) ---
        hmin = tmp
        pos = h_pos[0]
        ring = h_ring[pos]
        for i in range(nh):
            ring[i] = mag[i + 1]
        h_pos[0] = pos + 1 if pos + 1 < t else 0
        for i in range(nh):
            hmin[i] = h_ring[0, i]
        for q in range(1, t):
            ring = h_ring[q]
            for i in range(nh):
                hmin[i] = min(hmin[i], ring[i])
        acc = 0.0
        for i in range(nh):
            acc += hmin[i] * hmin[i]
        eh[j] = acc
        # --- percussive: each bin's minimum over +- p_radius bins of this hop ---
        for i in range(nh):
            hmin[i] = mag[i + 1]
        for d in range(1, p_radius + 1):
            for i in range(nh - d):   # the neighbour d bins above, and d bins below
                hmin[i] = min(hmin[i], mag[i + 1 + d])
                hmin[i + d] = min(hmin[i + d], mag[i + 1])
        acc = 0.0
        for i in range(nh):
            acc += hmin[i] * hmin[i]
        ep[j] = acc

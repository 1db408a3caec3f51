"""``lj analyze``: run the live feature extractor over a song and write what it knew, when.

The song is mixed to mono and fed hop by hop through the same
:class:`~engine.audio.features.FeatureExtractor` the live loop uses, so every value is what a show
would have seen at that moment (causal): a row's time is the end of its hop (hop ``i`` covers
samples ``[i * hop, (i + 1) * hop)`` and is stamped ``(i + 1) * hop / sr`` seconds), and beat,
downbeat and onset times are the hops on which those events fired.

Outputs, for a song ``<stem>.<ext>`` and a directory ``DIR``:

- ``DIR/<stem>.features.csv``: ``time`` then every scalar feature and ``chroma_0`` .. ``chroma_11``,
  one row per hop;
- ``DIR/<stem>.json``: the summary (:func:`summary`): tempo, beat / downbeat / onset times and
  each feature's min / max / mean;
- ``DIR/<stem>.png``: a plot of the main curves, the eight log bands as a heat strip, and drop,
  beat, downbeat and onset ticks (Pillow).
"""

from __future__ import annotations

import csv
import json
import math
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio.features import SCALAR_FEATURES, FeatureExtractor
from engine.errors import LJError

#: Curves drawn in the plot, top to bottom.
PLOT_CURVES = ("level", "bass", "mid", "treb", "flux", "centroid", "harmonic", "percussive",
               "novelty", "buildup", "bpm_confidence", "beat_phase")
#: The log bands, drawn as one heat strip (band0 at the bottom), each value 0..1.
PLOT_BANDS = tuple(f"band{i}" for i in range(8))
#: Event rows drawn in the plot (feature name, label).
PLOT_EVENTS = (("drop", "drop"), ("downbeat", "downbeat"), ("beat", "beat"), ("onset", "onset"),
               ("onset_low", "onset low"))


@dataclass
class SongAnalysis:
    """Per-hop features of one song, as computed live.

    Attributes
    ----------
    times : numpy.ndarray
        float64 [n_hops]: end of each hop in seconds.
    values : numpy.ndarray
        float64 [n_hops, len(SCALAR_FEATURES)]: the scalar features, columns in ``SCALAR_FEATURES``
        order.
    chroma : numpy.ndarray
        float32 [n_hops, 12].
    sr, hop : int
        Sample rate (Hz) and hop length (samples).
    duration : float
        Length of the song in seconds.
    """

    times: np.ndarray
    values: np.ndarray
    chroma: np.ndarray
    sr: int
    hop: int
    duration: float

    def column(self, name: str) -> np.ndarray:
        """One scalar feature over time, float64 [n_hops]."""
        return self.values[:, SCALAR_FEATURES.index(name)]

    def event_times(self, name: str) -> np.ndarray:
        """Times (s) of the hops where the 0/1 feature ``name`` was 1."""
        return self.times[self.column(name) >= 0.5]


def analyze_samples(samples: np.ndarray, sr: int, hop: int = 512, n_fft: int = 2048) -> SongAnalysis:
    """Run the streaming extractor over ``samples`` (float32 [n] or [n, channels]) hop by hop
    (in blocks: :meth:`~engine.audio.features.FeatureExtractor.process_hops`).

    A trailing part shorter than one hop is not analysed (the live loop would not have seen it
    yet either).
    """
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    n = len(mono) // hop
    fe = FeatureExtractor(sr, hop, n_fft)
    chroma = np.zeros((n, 12), dtype=np.float32)
    scalars = operator.itemgetter(*SCALAR_FEATURES)
    rows = []
    # process_hops gives, hop for hop, what the live loop's process_hop would have known
    for i, f in enumerate(fe.process_hops(mono[:n * hop])):
        rows.append(scalars(f))
        chroma[i] = f["chroma"]
    values = np.array(rows, dtype=np.float64).reshape(n, len(SCALAR_FEATURES))
    times = (np.arange(n) + 1) * hop / sr
    return SongAnalysis(times, values, chroma, int(sr), int(hop), len(mono) / sr)


def summary(a: SongAnalysis, source: str = "") -> dict:
    """The JSON summary: tempo, event times and per-feature statistics.

    ``tempo`` is the median of the published ``bpm`` over the hops where it was known (0.0 if it
    never was), ``tempo_final`` the value at the end; times are seconds rounded to 0.1 ms.
    """
    bpm = a.column("bpm")
    known = bpm > 0
    conf = a.column("bpm_confidence")

    def times(name):
        return [round(float(t), 4) for t in a.event_times(name)]

    stats = {}
    for j, name in enumerate(SCALAR_FEATURES):
        col = a.values[:, j]
        stats[name] = ({"min": float(col.min()), "max": float(col.max()), "mean": float(col.mean())}
                       if col.size else {"min": 0.0, "max": 0.0, "mean": 0.0})
    return {
        "source": source,
        "sample_rate": a.sr,
        "hop": a.hop,
        "duration": round(a.duration, 4),
        "tempo": round(float(np.median(bpm[known])), 2) if known.any() else 0.0,
        "tempo_final": round(float(bpm[-1]), 2) if bpm.size else 0.0,
        "tempo_confidence": round(float(np.median(conf[known])), 3) if known.any() else 0.0,
        "tempo_known_from": round(float(a.times[known][0]), 4) if known.any() else None,
        "beats": times("beat"),
        "downbeats": times("downbeat"),
        "onsets": times("onset"),
        "features": stats,
    }


def write_csv(a: SongAnalysis, path: Path) -> None:
    """``time`` plus every scalar feature and ``chroma_0`` .. ``chroma_11``, one row per hop."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", *SCALAR_FEATURES, *(f"chroma_{k}" for k in range(12))])
        for t, row, ch in zip(a.times, a.values, a.chroma):
            w.writerow([f"{t:.6f}", *(f"{v:.6g}" for v in row), *(f"{v:.4g}" for v in ch)])


def plot(a: SongAnalysis, path: Path, width: int = 1600) -> None:
    """Draw :data:`PLOT_CURVES` (each scaled to its own min..max) and :data:`PLOT_EVENTS` ticks."""
    from PIL import Image, ImageDraw

    label_w, row_h, tick_h, top = 110, 70, 22, 24
    band_h = 8 * 8
    plot_w = width - label_w - 10
    height = top + len(PLOT_CURVES) * row_h + band_h + 6 + len(PLOT_EVENTS) * tick_h + 30
    img = Image.new("RGB", (width, height), (18, 18, 22))
    d = ImageDraw.Draw(img)
    dur = max(a.duration, 1e-6)

    def x_of(t):
        return label_w + int(round(t / dur * (plot_w - 1)))

    bpm = a.column("bpm")
    tempo = float(np.median(bpm[bpm > 0])) if (bpm > 0).any() else 0.0
    d.text((8, 6), f"tempo {tempo:.1f} BPM" if tempo else "tempo unknown", fill=(230, 230, 230))
    # Columns: each pixel column shows the max of the hops that fall in it (peaks stay visible).
    n = a.times.size
    cols = np.minimum((a.times / dur * plot_w).astype(np.intp), plot_w - 1) if n else np.zeros(0, np.intp)
    y = top
    for name in PLOT_CURVES:
        v = a.column(name)
        d.text((8, y + row_h // 2 - 6), name, fill=(200, 200, 200))
        d.rectangle([label_w, y + 2, label_w + plot_w - 1, y + row_h - 3], outline=(50, 50, 60))
        if n:
            lo, hi = float(v.min()), float(v.max())
            col_max = np.full(plot_w, np.nan)
            np.fmax.at(col_max, cols, v)
            ok = ~np.isnan(col_max)
            scale = (row_h - 8) / (hi - lo) if hi > lo else 0.0
            ys = y + row_h - 4 - (np.nan_to_num(col_max) - lo) * scale
            pts = [(label_w + int(c), float(ys[c])) for c in np.flatnonzero(ok)]
            if len(pts) > 1:
                d.line(pts, fill=(120, 200, 255), width=1)
        y += row_h
    # The log bands: one row of 8 px per band (band0 at the bottom), brightness = level 0..1.
    d.text((8, y + band_h // 2 - 6), "bands 0-7", fill=(200, 200, 200))
    if n:
        strip = np.zeros((8, plot_w))
        for b, name in enumerate(PLOT_BANDS):
            col_max = np.zeros(plot_w)
            np.maximum.at(col_max, cols, np.clip(a.column(name), 0.0, 1.0))
            strip[7 - b] = col_max
        rgb = np.stack([strip * 255, strip * 170, strip * 60], axis=-1).astype(np.uint8)
        rgb = np.repeat(rgb, band_h // 8, axis=0)
        img.paste(Image.fromarray(rgb, "RGB"), (label_w, y))
    y += band_h + 6
    colours = {"drop": (255, 60, 255), "downbeat": (255, 90, 90), "beat": (255, 200, 80), "onset": (140, 255, 140),
               "onset_low": (90, 170, 255)}
    for name, label in PLOT_EVENTS:
        d.text((8, y + 4), label, fill=(200, 200, 200))
        for t in a.event_times(name):
            x = x_of(t)
            d.line([(x, y + 3), (x, y + tick_h - 3)], fill=colours[name])
        y += tick_h
    # Time axis: a tick every 10 s (every 60 s for songs over 5 minutes).
    step = 10.0 if dur <= 300 else 60.0
    for k in range(int(math.floor(dur / step)) + 1):
        x = x_of(k * step)
        d.line([(x, y + 2), (x, y + 8)], fill=(200, 200, 200))
        d.text((x + 2, y + 10), f"{k * step:g}s", fill=(200, 200, 200))
    img.save(path, format="PNG")


def analyze_file(song: str | Path, out_dir: str | Path = ".", hop: int = 512,
                 n_fft: int = 2048) -> tuple[dict, dict[str, Path]]:
    """Analyse ``song`` and write its CSV, JSON and PNG into ``out_dir`` (created if needed).

    Returns the summary and ``{"csv": path, "json": path, "png": path}``. Raises ``LJError``
    (one line) when the song cannot be read or the directory cannot be written.
    """
    from engine.audio.sources import load_audio

    song = Path(song)
    samples, sr = load_audio(song)
    a = analyze_samples(samples, sr, hop, n_fft)
    if a.times.size == 0:
        raise LJError(f"{song}: too short to analyse (less than one {hop}-sample hop)")
    out = Path(out_dir)
    paths = {"csv": out / f"{song.stem}.features.csv", "json": out / f"{song.stem}.json",
             "png": out / f"{song.stem}.png"}
    info = summary(a, source=str(song))
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(a, paths["csv"])
        paths["json"].write_text(json.dumps(info, indent=1) + "\n")
        plot(a, paths["png"])
    except OSError as exc:
        raise LJError(f"cannot write analysis to {out}: {exc.strerror or exc}")
    return info, paths

"""Tempo and beat accuracy on real music nobody here wrote, built from what Debian ships, side by
side with aubio's real-time tracker and librosa's offline beat_track, all on the same audio.

The set (rendered once, cached under ``~/.cache/latent-jockey/benchmark-music``, never committed):

- **Hydrogen demo songs** (``apt-get install hydrogen``): every ``.h2song`` in
  ``/usr/share/hydrogen/data/demo_songs``, rendered by Hydrogen's own command-line renderer
  ``h2cli``. The true tempo is the song's ``<bpm>``; every pattern is 192 ticks (4 quarter beats)
  and the export starts at tick 0, so the beats fall at ``k * 60 / bpm``. Music with drums.
- **music21 corpus pieces** (``pip install music21``), written to MIDI by music21 with one tempo
  (the score's first metronome mark, else 120 quarter notes per minute; every other mark
  removed) and rendered by ``fluidsynth`` with the FluidR3 GM soundfont
  (``apt-get install fluidsynth fluid-soundfont-gm``). Beats are the quarter notes of the score,
  measure by measure (pickups included), at the rendered tempo. No drums.

Scoring, the same for every tracker: after a warm-up of ``--warmup`` seconds, the tempo is right
when within 4 % of the truth (for the causal trackers, the fraction of hops whose published tempo
is right; for librosa, its one global estimate), and the beat F-measure counts one-to-one matches
within +-70 ms. Ours and aubio's are causal: each beat is reported on the hop it was known; librosa
sees the whole song.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audio_real_music.py [--warmup 5] [--seconds 60]
        [--music21 N] [--tempo-scale 0.85,1.2]

``--tempo-scale`` adds the Hydrogen songs re-rendered at other tempos (their ``<bpm>`` changed in
a copy of the song file): the tracker's settings were chosen on this set at the written tempos,
so those rows are the nearest thing here to music it was not tuned on.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audio_accuracy import f_measure  # noqa: E402

from engine.audio.features import FeatureExtractor  # noqa: E402
from engine.audio.sources import load_audio  # noqa: E402

SR, HOP = 44100, 512
H2_DIR = Path("/usr/share/hydrogen/data/demo_songs")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
#: (corpus path, label); tempo from the score's first metronome mark, else DEFAULT_TEMPO.
MUSIC21_PIECES = [
    ("joplin/maple_leaf_rag", "Joplin, Maple Leaf Rag"),
    ("bach/bwv66.6", "Bach, BWV 66.6"),
    ("mozart/k80/movement1", "Mozart, K. 80 i"),
    ("haydn/opus74no1/movement3", "Haydn, op. 74/1 iii"),
    ("corelli/opus3no1/1grave", "Corelli, op. 3/1 i"),
]
DEFAULT_TEMPO = 120.0


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    d = Path(base) / "latent-jockey" / "benchmark-music"
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- the set --------------------------------------------------------------------------------------

def hydrogen_songs(cache: Path, seconds: float, scale: float = 1.0):
    """The Hydrogen demo songs, each at its own tempo times ``scale`` (1: as written; otherwise
    the song file is copied into the cache with its ``<bpm>`` changed, and rendered from there:
    the same patterns at tempos the tracker was never tuned on)."""
    if shutil.which("h2cli") is None or not H2_DIR.is_dir():
        print("hydrogen not installed (apt-get install -y hydrogen): Hydrogen songs skipped")
        return []
    out = []
    for song in sorted(H2_DIR.glob("*.h2song")):
        text = song.read_text(errors="replace")
        bpm = float(re.search(r"<bpm>([0-9.]+)</bpm>", text).group(1))
        tag, kind, src = "", "drums", song
        if scale != 1.0:
            bpm = round(bpm * scale, 2)
            tag, kind = f"-x{scale:g}", f"drums x{scale:g}"
            src = cache / f"h2-{song.stem}{tag}.h2song"
            if not src.exists():
                src.write_text(re.sub(r"<bpm>[0-9.]+</bpm>", f"<bpm>{bpm:g}</bpm>", text, count=1))
        wav = cache / f"h2-{song.stem}{tag}.wav"
        if not wav.exists():
            print(f"rendering {src.name} with h2cli ...", flush=True)
            tmp = wav.with_suffix(".tmp.wav")
            subprocess.run(["h2cli", "-s", str(src), "-o", str(tmp), "-r", str(SR), "-b", "16"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
                           check=True)
            tmp.rename(wav)
        x = mono(wav, seconds)
        beats = np.arange(0.0, len(x) / SR, 60.0 / bpm)
        out.append((f"hydrogen {song.stem}{tag}", kind, x, bpm, beats))
    return out


def music21_pieces(cache: Path, seconds: float, max_pieces: int = len(MUSIC21_PIECES)):
    try:
        from music21 import corpus, tempo
    except ImportError:
        print("music21 not installed (pip install music21): corpus pieces skipped")
        return []
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        print("fluidsynth / FluidR3_GM missing (apt-get install -y fluidsynth fluid-soundfont-gm): "
              "corpus pieces skipped")
        return []
    out = []
    for path, label in MUSIC21_PIECES[:max_pieces]:
        stem = path.replace("/", "_")
        wav, beats_file = cache / f"m21-{stem}.wav", cache / f"m21-{stem}.beats.npy"
        if not (wav.exists() and beats_file.exists()):
            print(f"rendering {path} with music21 + fluidsynth ...", flush=True)
            score = corpus.parse(path)
            marks = list(score.recurse().getElementsByClass(tempo.MetronomeMark))
            bpm = float(marks[0].getQuarterBPM()) if marks and marks[0].getQuarterBPM() else DEFAULT_TEMPO
            for m in marks:
                m.activeSite.remove(m)
            score.parts[0].measure(score.parts[0].getElementsByClass("Measure")[0].number).insert(
                0, tempo.MetronomeMark(number=bpm, referent=1.0))
            beats = quarter_beats(score) * 60.0 / bpm
            mid = cache / f"m21-{stem}.mid"
            score.write("midi", fp=str(mid))
            tmp = wav.with_suffix(".tmp.wav")
            try:
                subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(SR), "-F", str(tmp),
                                str(SOUNDFONT), str(mid)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               timeout=300, check=True)
            except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
                print(f"  {path}: fluidsynth failed ({exc}); skipped")
                continue
            tmp.rename(wav)
            np.save(beats_file, np.concatenate([[bpm], beats]))
        data = np.load(beats_file)
        bpm, beats = float(data[0]), data[1:]
        x = mono(wav, seconds)
        out.append((f"music21 {label}", "no drums", x, bpm, beats[beats < len(x) / SR]))
    return out


def quarter_beats(score) -> np.ndarray:
    """Quarter-note beat positions (quarter lengths from the start) of every measure, pickups
    included: a pickup measure's beats are counted from where the full bar would have begun."""
    beats = []
    for m in score.parts[0].getElementsByClass("Measure"):
        start = float(m.offset)
        length = float(m.duration.quarterLength)
        pad = float(m.paddingLeft or 0.0)
        k = np.ceil(pad - 1e-9)
        while k - pad < length - 1e-9:
            beats.append(start + k - pad)
            k += 1.0
    return np.unique(np.round(beats, 6))


def mono(path: Path, seconds: float) -> np.ndarray:
    samples, sr = load_audio(path)
    if sr != SR:
        raise SystemExit(f"{path}: rendered at {sr} Hz, expected {SR}")
    x = samples.mean(axis=1) if samples.ndim == 2 else samples
    return np.ascontiguousarray(x[:int(seconds * SR)], dtype=np.float32)


# --- the trackers ---------------------------------------------------------------------------------

def run_ours(x):
    fe = FeatureExtractor(SR, HOP)
    n = len(x) // HOP
    bpm = np.zeros(n)
    beats = []
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        bpm[i] = f["bpm"]
        if f["beat"]:
            beats.append((i + 1) * HOP / SR)
    return (np.arange(n) + 1) * HOP / SR, bpm, np.array(beats)


def run_aubio(x):
    import aubio

    tr = aubio.tempo("default", 1024, HOP, SR)
    n = len(x) // HOP
    bpm = np.zeros(n)
    beats = []
    for i in range(n):
        if tr(x[i * HOP:(i + 1) * HOP])[0]:
            beats.append(tr.get_last_s())
        bpm[i] = tr.get_bpm()
    return (np.arange(n) + 1) * HOP / SR, bpm, np.array(beats)


def run_librosa(x):
    import librosa

    t, b = librosa.beat.beat_track(y=x, sr=SR, hop_length=HOP, units="time")
    return float(np.atleast_1d(t)[0]), np.asarray(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="analyse at most this much of each piece")
    ap.add_argument("--music21", type=int, default=len(MUSIC21_PIECES), metavar="N",
                    help="use the first N music21 pieces (default all)")
    ap.add_argument("--tempo-scale", default="", metavar="S,S",
                    help="also render the Hydrogen songs at these multiples of their tempo "
                         "(e.g. 0.85,1.2): a check on tempos the tracker was not tuned on")
    args = ap.parse_args()
    cache = cache_dir()
    print(f"renders cached in {cache}")
    songs = hydrogen_songs(cache, args.seconds) + music21_pieces(cache, args.seconds, args.music21)
    for scale in [float(v) for v in args.tempo_scale.split(",") if v.strip()]:
        songs += hydrogen_songs(cache, args.seconds, scale)
    try:
        import aubio  # noqa: F401
        have_aubio = True
    except ImportError as exc:
        print(f"aubio unavailable ({exc}): its columns are empty")
        have_aubio = False

    wu = args.warmup
    print(f"\n{'piece':38s} {'kind':11s} {'bpm':>5s} | {'ours':>11s} | {'aubio':>11s} | {'librosa':>16s}")
    print(f"{'':38s} {'':11s} {'':5s} | {'tempo':>5s} {'F':>5s} | {'tempo':>5s} {'F':>5s} | "
          f"{'tempo':>9s} {'F':>6s}")
    rows = {}
    for name, kind, x, true_bpm, true_beats in songs:
        end = len(x) / SR - 0.3
        ref = true_beats[(true_beats >= wu) & (true_beats < end)]
        t, bpm, beats = run_ours(x)
        ours = (float(np.mean(np.abs(bpm[t >= wu] / true_bpm - 1) <= 0.04)),
                f_measure(beats[beats >= wu], ref))
        if have_aubio:
            t, bpm, beats = run_aubio(x)
            aub = (float(np.mean(np.abs(bpm[t >= wu] / true_bpm - 1) <= 0.04)),
                   f_measure(beats[beats >= wu], ref))
        else:
            aub = (float("nan"), float("nan"))
        lt, lb = run_librosa(x)
        lib = (float(abs(lt / true_bpm - 1) <= 0.04), f_measure(lb[lb >= wu], ref))
        rows.setdefault(kind, []).append(ours + aub + lib)
        print(f"{name[:38]:38s} {kind:11s} {true_bpm:5.0f} | {ours[0]:5.2f} {ours[1]:5.3f} | "
              f"{aub[0]:5.2f} {aub[1]:5.3f} | {lt:6.1f} {'ok' if lib[0] else '--':>2s} {lib[1]:6.3f}",
              flush=True)
    print()
    for kind, r in rows.items():
        m = np.nanmean(np.array(r), axis=0)
        print(f"{'mean, ' + kind + f' ({len(r)} pieces)':50s} {'':5s} | {m[0]:5.2f} {m[1]:5.3f} | "
              f"{m[2]:5.2f} {m[3]:5.3f} | {m[4]:9.2f} {m[5]:6.3f}")
    if "drums" in rows:
        m = np.nanmean(np.array(rows["drums"]), axis=0)
        print(f"\ntargets on music with drums: tempo accuracy >= 0.9 "
              f"({'met' if m[0] >= 0.9 else 'NOT met'}: {m[0]:.2f}), beat F >= 0.8 "
              f"({'met' if m[1] >= 0.8 else 'NOT met'}: {m[1]:.3f})")


if __name__ == "__main__":
    main()

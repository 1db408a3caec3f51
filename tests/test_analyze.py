"""lj analyze through the command line: files written, summary on stdout, one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.audio.demo import write_demo_wav
from engine.audio.features import SCALAR_FEATURES

ROOT = Path(__file__).resolve().parents[1]


def lj(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=300)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return write_demo_wav(tmp_path_factory.mktemp("song") / "demo song.wav", seconds=12.0)


def test_analyze_writes_csv_json_png_and_prints_the_tempo(song, tmp_path):
    out = tmp_path / "out"
    r = lj("analyze", str(song), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "tempo 124.0 BPM" in r.stdout
    stem = "demo song"
    rows = list(csv.reader(open(out / f"{stem}.features.csv")))
    assert rows[0][:1 + len(SCALAR_FEATURES)] == ["time", *SCALAR_FEATURES]
    assert rows[0][-1] == "chroma_11"
    assert len(rows) - 1 == int(12.0 * 44100) // 512
    data = np.array(rows[1:], dtype=float)
    # Row times are hop ends; the beat column agrees with the beat times in the JSON.
    assert data[0, 0] == pytest.approx(512 / 44100, abs=1e-6)
    info = json.loads((out / f"{stem}.json").read_text())
    beat_col = data[:, 1 + SCALAR_FEATURES.index("beat")]
    assert np.allclose(data[beat_col == 1, 0], info["beats"], atol=1e-4)
    assert abs(info["tempo"] - 124.0) <= 124.0 * 0.04
    assert info["features"]["bass"]["max"] > info["features"]["bass"]["min"]
    # Causal beats: consecutive beats are one beat apart, on the song's grid after the warm-up.
    late = np.array([b for b in info["beats"] if b > 5.0])
    grid = 60.0 / 124.0
    assert np.all(np.abs(np.diff(late) - grid) < 0.03)
    assert np.all(np.abs((late + grid / 2) % grid - grid / 2) < 0.07)
    img = Image.open(out / f"{stem}.png")
    assert img.format == "PNG" and img.width >= 800
    assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # drawn


def test_analyze_json_puts_the_summary_on_stdout(song, tmp_path):
    r = lj("analyze", str(song), "-o", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert abs(info["tempo"] - 124.0) < 5.0 and len(info["beats"]) > 10 and info["onsets"]
    assert (tmp_path / "demo song.json").exists()


def test_analyze_errors_are_one_line(tmp_path):
    r = lj("analyze", str(tmp_path / "missing.wav"), "-o", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing.wav" in r.stderr
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"not audio at all")
    r = lj("analyze", str(bad), "-o", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("lj: error:") and r.stderr.count("\n") == 1
    blocker = tmp_path / "file"
    blocker.write_text("x")
    song = write_demo_wav(tmp_path / "s.wav", seconds=1.0)
    r = lj("analyze", str(song), "-o", str(blocker / "sub"))
    assert r.returncode == 2 and "cannot write analysis" in r.stderr and r.stderr.count("\n") == 1


def test_analyze_writes_the_new_features(tmp_path):
    """The log bands, the harmonic/percussive split and the structure cues reach the CSV, the
    JSON statistics and the plot; the demo song's first drop (after its build-up) is in the CSV."""
    from engine.analyze import PLOT_CURVES, analyze_file
    from engine.audio.demo import demo_sections

    song = write_demo_wav(tmp_path / "d.wav", seconds=20.0)
    info, paths = analyze_file(song, tmp_path / "out")
    rows = list(csv.reader(open(paths["csv"])))
    header = rows[0]
    data = np.array(rows[1:], dtype=float)
    for name in ["band0", "band7", "harmonic", "percussive", "novelty", "buildup", "drop"]:
        assert name in header and name in info["features"]
    assert {"harmonic", "percussive", "novelty", "buildup"} <= set(PLOT_CURVES)
    drops = data[data[:, header.index("drop")] == 1.0, 0]
    drop_at = [s for name, s, _ in demo_sections(20.0) if name == "drop"][0]
    assert len(drops) == 1 and drop_at <= drops[0] <= drop_at + 0.3
    assert info["features"]["buildup"]["max"] > 0.5
    assert Image.open(paths["png"]).height > 900

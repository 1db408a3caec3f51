"""The show goes on: bad files mid-show, and clean exits on signals (issue 8's first faults)."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from engine.audio.demo import demo_song, write_demo_wav
from engine.live import LiveOptions, StopFlag, run_live
from engine.render.record import probe
from support import SMALL_MAPPING, PacedSource

GOOD = SMALL_MAPPING


def test_a_mapping_file_broken_in_every_way_mid_show(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="lj.session")
    samples, sr, _ = demo_song(seconds=30.0)
    path = tmp_path / "show.toml"
    path.write_text(GOOD.format(name="v1"))
    stop = StopFlag()
    out = {}
    opts = LiveOptions(mapping=str(path), size=32, headless=True, osc_port=None, max_seconds=25)
    loop = threading.Thread(target=lambda: out.setdefault("stats", run_live(
        PacedSource(samples, sr), opts, stop)))
    loop.start()

    def settle():
        time.sleep(0.6)  # the loop checks the file a few times a second

    try:
        settle()
        path.write_text("[meta]\nname = \"v1\"\n[latent\n")               # saved broken
        settle()
        path.write_text(GOOD.format(name="half")[:40])                    # half-written
        settle()
        path.unlink()                                                     # deleted
        settle()
        path.mkdir()                                                      # replaced by a dir
        settle()
        path.rmdir()
        for i in range(10):                                               # 10 saves a second
            text = GOOD.format(name=f"flicker{i}")
            path.write_text(text if i % 2 else text.replace("level", "lvl"))
            time.sleep(0.1)
        path.write_text(GOOD.format(name="v2"))                           # the good version
        deadline = time.monotonic() + 10
        while loop.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            if "v2" in caplog.text or any("show.toml" in r.getMessage() and "loaded" in r.getMessage()
                                          for r in caplog.records if r.levelno == logging.INFO):
                break
        time.sleep(1.0)
    finally:
        stop()
        loop.join(30)
    stats = out["stats"]
    assert stats.session.mapping.name == "v2", "the good version is picked up when it comes back"
    refused = [r.getMessage() for r in caplog.records if "keeping the last good one" in r.getMessage()]
    assert len(refused) >= 4, refused
    assert any("show.toml:3" in m for m in refused), "the syntax error names its line"
    gaps = np.asarray(stats.frame_times)
    assert stats.frames > 100 and gaps.max() < 1.0, "frames kept coming through every fault"


def run_cli(*args):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_sigterm_ends_a_live_run_cleanly(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=30.0)
    proc = run_cli("run", "--audio", str(song), "--headless", "--no-osc", "--size", "32")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("running:" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    proc.wait(30)
    reader.join(5)
    assert proc.returncode == 0, "".join(lines)
    assert "frames" in out and "Traceback" not in "".join(lines)


def test_sigterm_during_start_up_is_a_clean_exit_too(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=5.0)
    proc = run_cli("run", "--audio", str(song), "--headless", "--no-osc", "--size", "32")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err


def test_ctrl_c_during_a_render_leaves_a_playable_file(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=30.0)
    video = tmp_path / "cut.mp4"
    proc = run_cli("render", str(song), "-o", str(video), "--size", "64", "-q")
    deadline = time.monotonic() + 60
    while (not video.exists() or video.stat().st_size < 2000) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    info = probe(video)
    assert 0 < info["frames"] < 900
    assert info["has_audio"]
    assert info["audio_duration"] == pytest.approx(info["duration"], abs=0.2)

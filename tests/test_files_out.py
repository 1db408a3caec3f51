"""Files the show writes on request (issue 17 item 4): stills, presets, latents and recordings go
into the show's own folders as new files, names that would leave them are refused, and floods
write a bounded number of files with a bounded number of log lines. The real live loop over real
OSC/UDP on 127.0.0.1, real files, the real ``lj`` command."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine.control.wire import encode_message
from engine.writegate import WriteGate, check_folder
from support import SMALL_MAPPING, PacedSource, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_gate_bucket_refills_at_its_rate_and_the_cap_holds():
    clock = Clock()
    g = WriteGate("still", rate=2.0, burst=5, cap=12, clock=clock)
    got = [g.admit() for _ in range(20)]
    assert got.count(True) == 5 and g.refused == 15
    for _ in range(5):
        g.wrote()
    clock.t += 1.0                        # one second: two more
    assert [g.admit() for _ in range(4)] == [True, True, False, False]
    g.wrote(), g.wrote()
    clock.t += 1000.0                     # a long pause refills only up to the burst
    assert sum(g.admit() and (g.wrote() or True) for _ in range(20)) == 5
    clock.t += 1000.0
    assert sum(g.admit() for _ in range(20)) == 0      # 12 written: the cap, for this show
    assert "cap" in g.last_refusal


def test_gate_logs_refusals_once_per_interval_with_the_count(caplog):
    clock = Clock()
    g = WriteGate("preset", rate=1.0, burst=1, clock=clock, interval=5.0)
    with caplog.at_level(logging.WARNING, logger="lj.files"):
        for _ in range(1000):
            g.admit()
        clock.t += 6.0
        g.refuse("bad name")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and g.refused == 1000
    assert lines[1] == "preset not written: bad name (998 more refused since the last message)"


def test_check_folder_refuses_a_file_and_accepts_a_folder_or_nothing(tmp_path):
    from engine.errors import LJError

    (tmp_path / "f").write_text("x")
    with pytest.raises(LJError, match="--stills .*f: exists and is not a folder"):
        check_folder(tmp_path / "f", "--stills")
    assert check_folder(tmp_path, "--stills") == tmp_path
    assert check_folder(tmp_path / "new", "--stills") == tmp_path / "new"


class FakeRenderer:
    def read(self):
        return np.full((8, 8, 3), 200, np.uint8)


def test_save_still_never_replaces_and_is_bounded(tmp_path, monkeypatch):
    """Before: a still per request (one per frame in a flood); a planted file or link at the
    next name was written through."""
    from engine import live

    monkeypatch.setattr(live.time, "strftime", lambda fmt: "20260101-000000")
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep me")
    stills = tmp_path / "stills"
    stills.mkdir()
    (stills / "lj-20260101-000000.png").symlink_to(victim)
    (stills / "lj-20260101-000000-2.png").write_bytes(b"earlier still")
    clock = Clock()
    gate = WriteGate("still", clock=clock)
    saved = [live.save_still(FakeRenderer(), str(stills), gate) for _ in range(100)]
    made = [p for p in saved if p is not None]
    assert len(made) == gate.burst == gate.written and gate.refused == 100 - gate.burst
    assert victim.read_bytes() == b"keep me"
    assert (stills / "lj-20260101-000000-2.png").read_bytes() == b"earlier still"
    assert {p.name for p in made} == {f"lj-20260101-000000-{k}.png" for k in range(3, 8)}
    from PIL import Image

    assert Image.open(made[0]).size == (8, 8)


def _snapshot(folder: Path, skip: Path) -> dict:
    out = {}
    for p in folder.rglob("*"):
        if skip in p.parents or p == skip:
            continue
        out[str(p)] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def test_remote_writes_stay_in_the_show_folders_and_floods_are_bounded(tmp_path):
    """The real live loop and OSC over UDP: records to an absolute path and ``../..``, latents
    and presets named out of their folders, a still flood and a preset flood. Before: the
    existing file was overwritten, ``../../`` wrote outside the working folder, every still
    and preset request wrote files."""
    show = tmp_path / "show"
    show.mkdir()
    mapping = show / "m.toml"
    mapping.write_text(SMALL_MAPPING.format(name="files"))
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(b"not yours")
    before = _snapshot(tmp_path, show)
    sr = 22050
    samples = np.zeros((sr * 40, 2), np.float32)
    port = free_port()
    from engine.live import LiveOptions, StopFlag, run_live

    opts = LiveOptions(mapping=str(mapping), size=32, headless=True, osc_port=port,
                       max_seconds=60, watch=False, zeroconf=False,
                       record_dir=str(show / "recs"), stills_dir=str(show / "stills"),
                       presets_dir=str(show / "presets"))
    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", run_live(
        PacedSource(samples, sr), opts, stop)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(address, *args):
        sock.sendto(encode_message(address, list(args)), ("127.0.0.1", port))

    thread.start()
    try:
        wait_for(lambda: _frames(port) > 5, "the show to run", timeout=60)
        for path in (str(victim), "../../victim.mp4", "../outside.mp4", "sub/x.mp4"):
            send("/lj/record/start", path)
            time.sleep(0.05)
        send("/lj/latent/save", "../../evil")
        send("/lj/preset/save", "../evil")
        flood_t0 = time.monotonic()
        for i in range(500):
            send("/lj/trigger/still", 1)
            send("/lj/preset/save", f"junk{i}")
            if i % 50 == 0:
                time.sleep(0.01)      # let the socket drain: this is about files, not packets
        time.sleep(1.5)
        flood_s = time.monotonic() - flood_t0
        frames_then = _frames(port)
        time.sleep(1.0)
        assert _frames(port) > frames_then          # the show goes on
    finally:
        sock.close()
        stop()
        thread.join(60)
    stats = result["stats"]
    assert stats.frames > 10
    assert _snapshot(tmp_path, show) == before      # nothing outside the show folder changed
    assert not (show / "recs").exists() or not list((show / "recs").iterdir())
    assert stats.recording.gate.refused == 4 and stats.recording.gate.written == 0
    stills = list((show / "stills").glob("*.png"))
    presets = list((show / "presets").glob("*.toml"))
    allowed_stills = 5 + 2.0 * flood_s + 1
    allowed_presets = 5 + 1.0 * flood_s + 1
    assert 1 <= len(stills) <= allowed_stills, (len(stills), flood_s)
    assert 1 <= len(presets) <= allowed_presets, (len(presets), flood_s)
    assert not (show / "evil.toml").exists() and not (tmp_path / "evil.npy").exists()


def _frames(port: int) -> int:
    """``/lj/state/frames`` asked over OSC (0 when no answer yet)."""
    from pythonosc.osc_packet import OscPacket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(encode_message("/lj/get", ["/lj/state/frames"]), ("127.0.0.1", port))
        msg = OscPacket(s.recvfrom(65536)[0]).messages[0].message
        return int(msg.params[0]) if msg.params else 0
    except (OSError, ValueError, IndexError):
        return 0
    finally:
        s.close()


@pytest.mark.parametrize("option", ["--stills", "--presets", "--record-dir"])
def test_lj_run_with_a_folder_option_naming_a_file_is_one_line(tmp_path, option):
    """Before: ``--presets``/``--stills`` pointing at a file were accepted silently."""
    from engine.audio.demo import write_demo_wav

    song = write_demo_wav(tmp_path / "song.wav", seconds=2.0)
    (tmp_path / "afile").write_text("precious")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "engine", "run", "--audio", str(song), "--headless",
                        "--no-osc", "--size", "32", "--seconds", "20", option, "afile"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    # argparse's folder type refuses it first (engine/argtypes.py); check_folder is the backstop
    assert lines == [f"lj: error: {option} must be a folder, but 'afile' is a file "
                     "(see lj run -h)"], r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "afile").read_text() == "precious"

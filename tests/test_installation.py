"""Unattended installations: the loop restarts after a crash; configuration errors still fail fast."""

import logging
import os
import socket
import subprocess
import sys

import pytest

from engine.audio.demo import demo_song, write_demo_wav
from engine.errors import ControlError
from engine.live import LiveOptions, StopFlag, supervise
from support import PacedSource


class CrashingSource(PacedSource):
    """Plays like PacedSource, but its clock raises after ``crash_after`` reads."""

    def __init__(self, samples, sr, crash_after):
        super().__init__(samples, sr)
        self.reads = 0
        self.crash_after = crash_after

    @property
    def position(self):
        self.reads += 1
        if self.crash_after is not None and self.reads > self.crash_after:
            raise RuntimeError("the audio clock broke")
        return self.ring.total_written


def test_a_crash_mid_show_restarts_the_loop(caplog):
    samples, sr, _ = demo_song(seconds=20.0)
    made = []

    def make_source():
        made.append(CrashingSource(samples, sr, crash_after=40 if not made else None))
        return made[-1]

    opts = LiveOptions(size=32, headless=True, osc_port=None, max_frames=90)
    stats = supervise(make_source, opts, StopFlag(), delay=0.1)
    assert len(made) == 2, "one crash, one restart"
    assert stats.frames == 90, "the restarted loop ran to its end"
    assert stats.controls.value("/lj/state/restarts") == 1
    assert any("restarting" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_configuration_error_on_first_start_is_not_retried():
    samples, sr, _ = demo_song(seconds=5.0)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        opts = LiveOptions(size=32, headless=True, osc_port=busy.getsockname()[1], max_frames=5)
        with pytest.raises(ControlError, match="busy"):
            supervise(lambda: PacedSource(samples, sr), opts, StopFlag(), delay=0.1)
    finally:
        busy.close()


def test_lj_run_installation_logs_to_a_rotating_file(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=3.0)
    log = tmp_path / "show.log"
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--installation", "--headless", "--audio",
         str(song), "--frames", "30", "--size", "32", "--no-osc", "--log", str(log)],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "30 frames" in result.stdout
    assert "running:" in log.read_text()


def test_a_failed_start_leaves_no_osc_server_behind(tmp_path):
    from engine.errors import MappingError
    from engine.live import run_live
    from support import free_port

    samples, sr, _ = demo_song(seconds=3.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[route]]\nfrom = "nope"\nto = "noise"\n')
    port = free_port()
    for _ in range(2):  # the second attempt would find the port busy if the first leaked it
        with pytest.raises(MappingError, match="bad.toml:2"):
            run_live(PacedSource(samples, sr),
                     LiveOptions(mapping=str(bad), size=32, headless=True, osc_port=port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.close()

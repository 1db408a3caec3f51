"""Live recording: the output as shown with its audio, encoded on another thread, never stalling
the show; a full disk or a file-size limit ends the recording, not the show; SIGTERM finalises a
playable file. Real PyAV encoding and decoding, a real ring buffer, the real live loop, real
processes and signals, a real full file system where this machine lets us mount one."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.audio.demo import write_demo_wav
from engine.audio.ring import RingBuffer
from engine.control.wire import encode_message
from engine.errors import RenderError
from engine.live import LiveOptions, StopFlag, run_live
from engine.render.record import probe
from engine.render.recorder import LiveRecorder, Recording
from support import PacedSource, free_port, wait_for

SR = 44100
ROOT = Path(__file__).resolve().parent.parent


def tone_ring(seconds):
    ring = RingBuffer(SR * 8)
    t = np.arange(int(seconds * SR)) / SR
    ring.write((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32))
    return ring


def test_recorder_round_trip_with_audio_in_sync(tmp_path):
    ring = tone_ring(2.0)
    path = tmp_path / "live.mp4"
    rec = LiveRecorder(path, (64, 48), fps=30, audio=(ring, SR), queue_frames=64)
    # a live loop running at 60 fps from 0.5 s to 1.5 s: one frame per 30 fps slot is kept
    for i in range(60):
        t = 0.5 + i / 60
        assert rec.offer(np.full((48, 64, 3), (i * 4) % 256, np.uint8), t, int(t * SR)) \
            == (i % 2 == 0)
    rec.close()
    assert rec.error is None and rec.dropped == 0 and rec.encoded == 30
    info = probe(path)
    assert info["frames"] == 30 and (info["width"], info["height"]) == (64, 48)
    assert info["has_audio"]
    assert abs(info["audio_duration"] - info["duration"]) < 0.1   # in step with the video


def test_a_slow_encoder_drops_recorded_frames_and_never_blocks(tmp_path):
    """1080p through x264's slowest preset with two buffers: the encoder cannot keep up with a
    loop offering frames back to back; offers drop and count instead of waiting."""
    rec = LiveRecorder(tmp_path / "big.mkv", (1920, 1080), fps=30, queue_frames=2,
                       preset="veryslow")
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    offered = 40
    for i in range(offered):
        rec.offer(frame, i / 30)
    in_flight = rec.frames - rec.encoded   # measured before close: the encoder is behind
    rec.close(timeout=300)
    assert rec.error is None
    assert rec.dropped > 0 and rec.frames + rec.dropped == offered
    assert in_flight > 0
    assert probe(tmp_path / "big.mkv")["frames"] == rec.frames


def test_bad_paths_are_one_line(tmp_path):
    with pytest.raises(RenderError, match="cannot record to .*nowhere"):
        LiveRecorder(tmp_path / "nowhere" / "x.mp4", (16, 16))
    with pytest.raises(RenderError, match="unknown extension"):
        LiveRecorder(tmp_path / "x.gif", (16, 16))
    r = Recording(tmp_path)

    class R:
        output_size = (16, 16)

    assert r.start("nowhere/x.mp4", R(), None) is False   # the show goes on
    assert "bad recording name 'nowhere/x.mp4'" in r.state()["record_error"]
    with pytest.raises(RenderError, match="nowhere"):
        r.start_file(tmp_path / "nowhere" / "x.mp4", R(), None)


def test_live_loop_records_from_the_start_and_by_osc(tmp_path):
    samples = np.stack([np.sin(2 * np.pi * 220 * np.arange(SR * 6) / SR) * 0.3] * 2, 1)
    src = PacedSource(samples.astype(np.float32), SR)
    port = free_port()
    first, second = tmp_path / "first.mp4", tmp_path / "recs" / "second.mkv"
    opts = LiveOptions(size=32, osc_port=port, headless=True, record=str(first),
                       max_seconds=60, watch=False, record_dir=str(tmp_path / "recs"))
    stop = StopFlag()

    def drive():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            wait_for(first.exists, "first recording", timeout=60)
            time.sleep(1.5)  # (small frames: the muxer writes in 32 kB blocks, so no size test)
            sock.sendto(encode_message("/lj/record/start", [second.name]), ("127.0.0.1", port))
            wait_for(second.exists, "OSC recording", timeout=60)
            time.sleep(1.5)
            sock.sendto(encode_message("/lj/record/stop", []), ("127.0.0.1", port))
            sock.sendto(encode_message("/lj/record/start", []), ("127.0.0.1", port))
            wait_for(lambda: list((tmp_path / "recs").glob("lj-*.mp4")), "default-named file",
                     timeout=60)
            time.sleep(1.5)
        finally:
            sock.close()
            stop()

    import threading

    th = threading.Thread(target=drive, daemon=True)
    th.start()
    stats = run_live(src, opts, stop)
    th.join(10)
    assert stats.frames > 10
    for path in (first, second, *(tmp_path / "recs").glob("lj-*.mp4")):
        info = probe(path)
        assert info["frames"] >= 2 and (info["width"], info["height"]) == (32, 32), path
        assert info["has_audio"] and info["audio_duration"] > 0.1, path
    assert stats.recording.last_error == ""


def _run_lj(args, tmp_path, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "engine", "run", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def test_file_size_limit_stops_the_recording_not_the_show(tmp_path):
    """RLIMIT_FSIZE in the child: writes past 150 kB fail with EFBIG (Python ignores SIGXFSZ)."""
    song = write_demo_wav(tmp_path / "song.wav", seconds=8.0)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))

    proc = _run_lj(["--audio", str(song), "--headless", "--size", "96", "--no-osc",
                    "--record", "big.mp4", "--seconds", "6"], tmp_path, preexec_fn=limit)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    frames = int(out.split(" frames")[0].split()[-1])
    assert frames > 20                                        # the show went on to the end
    assert err.count("recording stopped:") == 1, err          # one clear message
    assert "File too large" in err or "Errno 27" in err, err


def _can_mount_tmpfs(where):
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


def test_full_disk_stops_the_recording_not_the_show(tmp_path):
    """A real 128 kB tmpfs fills up while recording (needs permission to mount)."""
    disk = tmp_path / "disk"
    if not _can_mount_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (not root); the RLIMIT_FSIZE test covers this")
    try:
        samples = np.random.default_rng(0).uniform(-0.3, 0.3, (SR * 30, 2)).astype(np.float32)
        src = PacedSource(samples, SR)
        opts = LiveOptions(size=128, osc_port=None, headless=True, record=str(disk / "x.mp4"),
                           max_seconds=8, watch=False)
        stats = run_live(src, opts, StopFlag())
        assert stats.frames > 20                                      # the show went on
        assert "No space left on device" in stats.recording.last_error
        assert stats.recording.recorder is None
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_sigterm_finalises_a_playable_recording(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=20.0)
    out = tmp_path / "out.mp4"
    proc = _run_lj(["--audio", str(song), "--headless", "--size", "64", "--no-osc",
                    "--record", str(out)], tmp_path)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 20_000 or proc.poll() is not None,
                 "the recording to grow", timeout=120)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    info = probe(out)
    assert info["frames"] > 10 and info["has_audio"]
    assert abs(info["audio_duration"] - info["duration"]) < 0.5


# -- issue 17: odd sample rates; recordings only as new files inside --record-dir ---------------


@pytest.mark.parametrize("sr", [192000, 384000, 1000])
def test_live_recording_at_a_rate_aac_cannot_open_has_its_audio(tmp_path, sr):
    """Before: the AAC stream failed to open (EINVAL, 22) and the recording did not start."""
    ring = RingBuffer(sr * 4)
    t = np.arange(int(2.0 * sr)) / sr
    ring.write((0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32))
    path = tmp_path / "odd.mp4"
    rec = LiveRecorder(path, (32, 32), fps=30, audio=(ring, sr), queue_frames=64)
    for i in range(30):
        tt = 0.5 + i / 30
        assert rec.offer(np.full((32, 32, 3), (i * 8) % 256, np.uint8), tt, int(tt * sr))
    rec.close()
    assert rec.error is None and rec.encoded == 30
    info = probe(path)
    assert info["has_audio"] and abs(info["audio_duration"] - info["duration"]) < 0.1
    import av

    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        x = np.concatenate([f.to_ndarray()[0] for f in c.decode(c.streams.audio[0])])
    assert rate == 48000
    mid = x[len(x) // 4: -len(x) // 4]
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    assert np.fft.rfftfreq(len(mid), 1 / rate)[int(np.argmax(spec))] == pytest.approx(110, abs=3)


class _R:
    output_size = (16, 16)


def _tree(folder):
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def test_remote_record_names_stay_in_the_record_dir_and_never_overwrite(tmp_path):
    """Before: ``/lj/record/start`` took any path: it truncated an existing file anywhere and
    ``../../`` wrote outside the show folder."""
    recs = tmp_path / "show" / "recs"
    recs.mkdir(parents=True)
    victim = tmp_path / "victim.mp4"
    victim.write_bytes(b"someone else's file")
    (recs / "take.mp4").write_bytes(b"the earlier take")
    r = Recording(recs)
    r.gate.burst = r.gate.rate = 1000    # this test is about names, not the rate
    r.gate._tokens = 1000.0
    outside = dict(_tree(tmp_path))
    for bad in (str(victim), "../../victim.mp4", "../x.mp4", "sub/x.mp4", "..", ".hidden.mp4",
                "x.gif", "a\x00b.mp4", "x" * 300 + ".mp4", "take.mp4\n"):
        assert r.start(bad, _R(), None) is False, bad
        assert not r.active
        assert r.last_error.startswith("recording not started: "), bad
        assert "\n" not in r.last_error
    assert _tree(tmp_path) == outside                      # nothing anywhere changed
    assert r.gate.refused == 10
    # an existing name: a fresh take beside it; the earlier one is kept byte for byte
    assert r.start("take.mp4", _R(), None)
    assert r.stop() == str(recs / "take-2.mp4")
    assert (recs / "take.mp4").read_bytes() == b"the earlier take"
    assert r.start("night", _R(), None) and r.stop() == str(recs / "night.mp4")
    assert (recs / "night.mp4").is_file()                   # ".mp4" added to a bare name
    # a link planted where the recorder writes is not followed
    (recs / "trap.mp4").symlink_to(victim)
    with pytest.raises(RenderError, match="exists"):
        LiveRecorder(recs / "trap.mp4", (16, 16))
    assert victim.read_bytes() == b"someone else's file"
    assert r.start("trap.mp4", _R(), None) is False and "leaves the folder" in r.last_error
    assert victim.read_bytes() == b"someone else's file"


def test_record_dir_that_is_a_file_is_refused_at_start(tmp_path):
    (tmp_path / "recs").write_text("not a folder")
    from engine.errors import LJError

    with pytest.raises(LJError, match="--record-dir .*recs: exists and is not a folder"):
        Recording(tmp_path / "recs")


def test_record_starts_are_rate_limited_and_capped(tmp_path, caplog):
    clock = [0.0]
    from engine.writegate import WriteGate

    r = Recording(tmp_path, gate=WriteGate("recording", clock=lambda: clock[0]))
    started = sum(r.start(None, _R(), None) for _ in range(200))   # a flood at one instant
    r.stop()
    assert started == r.gate.burst == 3
    assert len(list(tmp_path.glob("*.mp4"))) == 3
    assert r.gate.refused == 197
    assert sum("recording not written" in m for m in caplog.messages) == 1   # logged once
    clock[0] += 10.0
    assert r.start("later.mp4", _R(), None)                # the bucket refills with time
    r.stop()


def test_record_from_the_command_line_keeps_an_existing_file(tmp_path):
    """``--record FILE`` is the operator's path, but a restarted show (``--installation``) must
    not truncate the take it recorded before the restart."""
    take = tmp_path / "take.mp4"
    take.write_bytes(b"the first take")
    r = Recording(tmp_path / "recs")
    assert r.start_file(take, _R(), None)
    assert r.stop() == str(tmp_path / "take-2.mp4")
    assert take.read_bytes() == b"the first take"

"""Steering the tempo tracker: OSC /lj/tempo/* over real UDP against a running loop, the command
queue's clock, and the Ableton Link follower (real aalink peers where the library is installed)."""

import socket
import threading
import time

import numpy as np
import pytest
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from engine.audio.beat import BeatTracker
from engine.audio.demo import demo_song
from engine.audio.steer import LinkFollower, TempoSteering, apply_tempo_commands
from engine.control import Controls
from engine.live import LiveOptions, StopFlag, run_live
from support import PacedSource, free_port, wait_for

RATE = 44100 / 512


def features_of(data):
    out = {}
    for m in OscPacket(data).messages:
        msg = m.message
        if msg.address.startswith("/lj/feature/") and len(msg.params) == 1:
            out[msg.address[len("/lj/feature/"):]] = msg.params[0]
    return out


def feature_reader(listener):
    """Return a function that reads the newest feature bundle as a dict (float values):
    bundles queued in the socket since the last call are skipped, so values are fresh."""
    def read():
        out = {}
        while "bpm" not in out:
            out = features_of(listener.recvfrom(65536)[0])
        listener.setblocking(False)
        try:
            while True:
                newer = features_of(listener.recvfrom(65536)[0])
                if "bpm" in newer:
                    out = newer
        except BlockingIOError:
            pass
        finally:
            listener.settimeout(30)
        return out
    return read


def test_tempo_addresses_steer_the_running_loop_over_udp():
    samples, sr, _ = demo_song(seconds=40.0)
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(30)
    in_port = free_port()
    opts = LiveOptions(size=32, headless=True, osc_port=in_port, oscquery_port=None,
                       osc_out=[("127.0.0.1", listener.getsockname()[1])], max_seconds=35)
    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", run_live(
        PacedSource(samples, sr), opts, stop)))
    thread.start()
    read = feature_reader(listener)
    client = SimpleUDPClient("127.0.0.1", in_port)
    try:
        read()  # the loop runs
        # set + lock: the published tempo is exactly the one sent, and stays there
        client.send_message("/lj/tempo/set", 100.0)
        client.send_message("/lj/tempo/lock", 1)
        wait_for(lambda: read().get("bpm") == pytest.approx(100.0), "the set tempo", timeout=10)
        time.sleep(1.0)
        assert read()["bpm"] == pytest.approx(100.0)
        # reset: beat one now (locked, so nothing moves it). Sent while the bar is 0.3..0.6
        # through (at 100 BPM a bar is 2.4 s, so without the reset it cannot wrap for 0.96 s);
        # the bar must then restart within 0.9 s.
        wait_for(lambda: 0.3 <= read()["bar_phase"] <= 0.6, "mid-bar", timeout=10)
        client.send_message("/lj/tempo/reset", 1)
        sent = time.monotonic()
        restarted = False
        while time.monotonic() - sent < 0.9 and not restarted:
            restarted = read()["bar_phase"] < 0.25
        assert restarted, "the bar did not restart after /lj/tempo/reset"
        # taps at 150 BPM (0.4 s apart) override the set tempo, even while locked
        sent_at = []
        for _ in range(5):
            client.send_message("/lj/tempo/tap", 1)
            sent_at.append(time.monotonic())
            time.sleep(0.4)
        # the tempo the taps were actually sent at (a loaded machine oversleeps)
        tapped = 60.0 / float(np.median(np.diff(sent_at)))
        wait_for(lambda: abs(read().get("bpm", 0) / tapped - 1) < 0.06, "the tapped tempo", timeout=10)
        # unusable arguments are counted, not applied
        client.send_message("/lj/tempo/set", "fast")
        client.send_message("/lj/tempo/set", 0.0)   # not a tempo: logged, ignored
        time.sleep(0.5)
        assert abs(read()["bpm"] / tapped - 1) < 0.06
    finally:
        stop()
        thread.join(30)
    stats = result["stats"]
    assert stats.controls.stats["bad_values"] >= 1
    assert stats.session.analysis.extractor.beat.locked


def test_queued_commands_are_placed_on_the_audio_clock_when_they_arrived():
    """Taps stamped 0.5 s apart on arrival give 120 BPM even when the loop reads them late."""
    bt = BeatTracker(RATE)
    for _ in range(int(10 * RATE)):
        bt.update(0.0)
    controls = Controls()
    for _ in range(4):
        controls.request_tempo("tap")
    commands = controls.take_tempo()
    assert controls.take_tempo() == []
    base = commands[0][2]
    # re-stamp as if they had arrived 0.5 s apart, the last one 0.2 s before the loop looked
    commands = [(n, v, base + 0.5 * i) for i, (n, v, _) in enumerate(commands)]
    apply_tempo_commands(bt, commands, now=base + 1.5 + 0.2)
    assert bt.bpm == pytest.approx(120.0, rel=1e-3)
    # the last tap was 0.2 s ago: 0.4 of a beat
    assert bt.beat_phase == pytest.approx(0.4, abs=0.02)
    assert not controls.request_tempo("set", float("nan"))


class FakeLink:
    """Stands in for aalink.Link in the pure-logic test: a session clock we control."""

    def __init__(self, tempo, beat, peers=1):
        self.tempo, self.beat, self.num_peers, self.enabled = tempo, beat, peers, True


def test_link_follower_sets_tempo_and_phase_and_releases_when_alone():
    bt = BeatTracker(RATE)
    link = FakeLink(tempo=132.0, beat=9.25)
    follower = LinkFollower(link)
    assert follower.apply(bt)
    assert bt.bpm == pytest.approx(132.0)
    assert bt.beat_phase == pytest.approx(0.25, abs=1e-6)
    assert bt.bar_phase == pytest.approx((1 + 0.25) / 4, abs=1e-6)   # beat 9 = beat 2 of a bar
    assert bt.locked
    link.num_peers = 0          # the DJ left: back to the tracker's own estimate
    assert not follower.apply(bt)
    assert not bt.locked
    link.num_peers = 2
    follower.enabled = False    # /lj/tempo/link 0
    assert not follower.apply(bt) and not link.enabled


def test_missing_link_library_leaves_the_tracker_running(caplog):
    steering = TempoSteering(link=True, opener=lambda: None)
    bt = BeatTracker(RATE)
    steering.step(bt, [("set", 128.0, time.monotonic())])
    assert steering.link is None and bt.bpm == pytest.approx(128.0)


def test_open_link_without_aalink_logs_one_line(monkeypatch, caplog):
    import builtins

    from engine.audio import steer

    real_import = builtins.__import__

    def no_aalink(name, *a, **kw):
        if name == "aalink":
            raise ImportError("No module named 'aalink'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_aalink)
    with caplog.at_level("WARNING", logger="lj.tempo"):
        assert steer.open_link() is None
    assert len(caplog.records) == 1 and "internal tempo tracker keeps running" in caplog.text


def test_two_real_link_peers_share_tempo_and_the_follower_follows():
    """Two aalink peers in one process find each other over loopback: the other peer's tempo
    reaches ours, and the follower sets the tracker to it."""
    aalink = pytest.importorskip("aalink")
    from engine.audio.steer import _make_link, open_link

    follower = open_link(bpm=120.0)
    assert follower is not None
    other = _make_link(aalink, 97.0)
    other.enabled = True
    try:
        wait_for(lambda: follower.peers() >= 1, "a Link peer on loopback", timeout=15)
        other.tempo = 97.0
        wait_for(lambda: abs(float(follower.link.tempo) - 97.0) < 0.01, "the peer's tempo", timeout=10)
        bt = BeatTracker(RATE)
        assert follower.apply(bt)
        assert bt.bpm == pytest.approx(97.0, abs=0.01)
        # the phase follows the session's beat: read both clocks back to back
        beat = float(follower.link.beat)
        follower.apply(bt)
        assert (bt.beat_phase - (beat % 1.0) + 0.5) % 1.0 - 0.5 == pytest.approx(0.0, abs=0.05)
    finally:
        other.enabled = False
        follower.enabled = False

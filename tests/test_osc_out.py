"""OSC out over real UDP on 127.0.0.1: several targets, /lj/beat, /lj/tempo and /lj/state."""

from __future__ import annotations

import socket

import pytest
from pythonosc.osc_packet import OscPacket

from engine.control import OscSender
from engine.errors import ControlError

LOCAL = "127.0.0.1"


@pytest.fixture
def listeners():
    socks = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCAL, 0))
        s.settimeout(5.0)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


def parse(dgram: bytes) -> dict[str, list]:
    return {m.message.address: m.message.params for m in OscPacket(dgram).messages}


def test_every_target_gets_the_same_bundle(listeners):
    targets = [(LOCAL, s.getsockname()[1]) for s in listeners]
    with OscSender(targets=targets) as sender:
        assert sender.targets == targets
        assert sender.send_features({"rms": 0.5}, t=1.0)
    got = [s.recvfrom(65535)[0] for s in listeners]
    assert got[0] == got[1]
    assert parse(got[0]) == {"/lj/feature/rms": [0.5], "/lj/time": [1.0]}
    assert sender.stats["sent"] == 2


def test_tempo_and_beats(listeners):
    sock = listeners[0]
    sender = OscSender(LOCAL, sock.getsockname()[1])
    frames = [
        {"bpm": 120.0, "beat": 0.0, "beat_phase": 0.80, "bar_phase": 0.20},
        {"bpm": 120.0, "beat": 1.0, "beat_phase": 0.00, "bar_phase": 0.25},  # beat on the frame's hop
        {"bpm": 120.0, "beat": 0.0, "beat_phase": 0.90, "bar_phase": 0.475},
        {"bpm": 121.0, "beat": 0.0, "beat_phase": 0.05, "bar_phase": 0.51},  # beat on an earlier hop
        {"bpm": 121.0, "beat": 0.0, "beat_phase": 0.30, "bar_phase": 0.57},
    ]
    for i, f in enumerate(frames):
        sender.send_features(f, t=i / 60)
    parsed = [parse(sock.recvfrom(65535)[0]) for _ in frames]
    sender.close()
    assert [p["/lj/tempo"] for p in parsed] == [[120.0], [120.0], [120.0], [121.0], [121.0]]
    assert [p.get("/lj/beat") for p in parsed] == [None, [2], None, [3], None]
    assert sender.stats["beats"] == 2


def test_no_tempo_or_beat_without_those_features(listeners):
    sock = listeners[0]
    with OscSender(LOCAL, sock.getsockname()[1]) as sender:
        sender.send_features({"rms": 0.25}, t=0.0)
    assert set(parse(sock.recvfrom(65535)[0])) == {"/lj/feature/rms", "/lj/time"}


def test_send_state(listeners):
    sock = listeners[0]
    with OscSender(LOCAL, sock.getsockname()[1]) as sender:
        assert sender.send_state({"mapping": "ambient drift", "fps": 59.5, "bad name": 1})
    assert parse(sock.recvfrom(65535)[0]) == {"/lj/state/mapping": ["ambient drift"], "/lj/state/fps": [59.5]}
    assert sender.stats["skipped"] == 1


def test_bad_targets_are_one_line_errors():
    with pytest.raises(ControlError):
        OscSender()
    with pytest.raises(ControlError) as info:
        OscSender(targets=[("no.such.host.invalid", 9001)])
    assert "\n" not in str(info.value)

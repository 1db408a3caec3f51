"""OSC in and out over real UDP on 127.0.0.1 (ephemeral ports only)."""

from __future__ import annotations

import logging
import math
import random
import socket
import time

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from engine.control import Controls, OscSender, OscServer
from engine.control.access import ShowFolders
from engine.errors import ControlError
from support import wait_for

WAIT = 5.0  # an upper bound for a packet to cross loopback; never asserted as a duration

LOCAL = "127.0.0.1"




def msg(address: str, *args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


@pytest.fixture
def server(tmp_path):
    controls = Controls()
    srv = OscServer(controls, host=LOCAL, port=0, folders=ShowFolders([tmp_path], tmp_path))
    srv.show_dir = tmp_path.resolve()  # type: ignore[attr-defined]
    srv.start()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.send_raw = lambda data: raw.sendto(data, (LOCAL, srv.port))  # type: ignore[attr-defined]
    srv.client = SimpleUDPClient(LOCAL, srv.port)  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    raw.close()


def wait_messages(srv: OscServer, n: int) -> None:
    wait_for(lambda: srv.stats["messages"] >= n, f"{n} OSC messages")


def test_binds_an_ephemeral_port_on_loopback(server):
    assert server.port != 0
    assert server.address == f"{LOCAL}:{server.port}"
    assert server.running


def test_param_float_arrives_in_snapshot(server):
    server.client.send_message("/lj/param/speed", 0.25)
    wait_messages(server, 1)
    assert server.controls.snapshot().params == {"speed": 0.25}


def test_param_int_and_bool_values(server):
    server.client.send_message("/lj/param/count", 3)
    server.client.send_message("/lj/param/on", True)
    server.client.send_message("/lj/param/off", False)
    wait_messages(server, 3)
    assert server.controls.snapshot().params == {"count": 3.0, "on": 1.0, "off": 0.0}
    assert server.stats["bad_values"] == 0


def test_triggers_are_drained_once_and_button_release_is_ignored(server):
    server.send_raw(msg("/lj/trigger/flash"))  # no arguments
    server.client.send_message("/lj/trigger/flash", 1.0)  # button press
    server.client.send_message("/lj/trigger/flash", 0.0)  # button release: ignored
    server.client.send_message("/lj/trigger/cut", True)
    wait_messages(server, 4)
    assert server.controls.snapshot().triggers == ["flash", "flash", "cut"]
    assert server.controls.snapshot().triggers == []


def test_mapping_load_request(server):
    server.client.send_message("/lj/mapping/load", "maps/one.toml")
    server.client.send_message("/lj/mapping/load", "maps/two.toml")
    wait_messages(server, 2)
    # relative paths are resolved against the show's folder before they are queued
    assert server.controls.snapshot().mapping == str(server.show_dir / "maps/two.toml")
    assert server.controls.snapshot().mapping is None


def test_bundle_with_several_messages_and_a_nested_bundle(server):
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(_built("/lj/param/depth", 2))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(_built("/lj/param/speed", 0.5))
    outer.add_content(_built("/lj/trigger/flash"))
    outer.add_content(_built("/lj/mapping/load", "m.toml"))
    outer.add_content(inner.build())
    server.send_raw(outer.build().dgram)
    wait_messages(server, 4)
    snap = server.controls.snapshot()
    assert snap.params == {"speed": 0.5, "depth": 2.0}
    assert snap.triggers == ["flash"]
    assert snap.mapping == str(server.show_dir / "m.toml")
    assert server.stats["bad_packets"] == 0


def _built(address: str, *args):
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build()


def test_malformed_packets_are_counted_ignored_and_the_server_survives(server):
    rng = random.Random(1234)
    junk = bytes([0x17]) + bytes(rng.randrange(256) for _ in range(63))  # not '/' nor '#bundle'
    good = msg("/lj/param/speed", 0.5)
    truncated = good[:-2]
    unknown_tag = b"/lj/param/speed\x00,x\x00\x00\x00\x00\x00\x01"
    bad_bundle = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + b"\x00\x00\x01\x00" + good  # size too big
    bad_utf8 = b"/lj/param/\xff\xfe\x00\x00,f\x00\x00" + b"\x3f\x00\x00\x00"
    for packet in (junk, truncated, unknown_tag, bad_bundle, bad_utf8, b""):
        server.send_raw(packet)
    # well-formed OSC with unusable values
    server.client.send_message("/lj/param/speed", "fast")  # a string for a param
    server.client.send_message("/lj/param/speed", math.nan)
    server.client.send_message("/lj/param/speed", math.inf)
    server.client.send_message("/lj/param/speed", -math.inf)
    server.client.send_message("/lj/param/speed", [1.0, 2.0])  # two values
    server.client.send_message("/lj/mapping/load", 3)  # not a path
    # addresses outside the v1 space
    server.client.send_message("/other/app", 1.0)
    server.client.send_message("/lj/param/a/b", 1.0)
    server.client.send_message("/lj/param/", 1.0)
    # and finally a good one, which must still be handled
    server.client.send_message("/lj/param/speed", 0.75)
    wait_for(lambda: "speed" in server.controls.snapshot().params, "the good message")
    assert server.controls.snapshot().params == {"speed": 0.75}
    stats = server.stats
    assert stats["bad_packets"] == 6
    assert stats["bad_values"] == 6
    assert stats["unknown_addresses"] == 3
    assert stats["messages"] == 10
    assert server.running


def test_a_flood_of_bad_packets_logs_only_a_few_lines(server, caplog):
    caplog.set_level(logging.WARNING)
    for _ in range(200):
        server.send_raw(b"\x01garbage!")
    server.client.send_message("/lj/param/x", 1.0)
    wait_messages(server, 1)
    assert server.stats["bad_packets"] > 0
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert 1 <= len(lines) <= 3
    assert all(r.name == "lj.osc" for r in lines)
    assert not [r for r in caplog.records if r.name == "root"]  # python-osc's own warnings avoided


def test_allow_list_rejects_other_senders():
    controls = Controls()
    with OscServer(controls, host=LOCAL, port=0, allow=["192.0.2.1"]) as srv:
        srv.handle_datagram(msg("/lj/param/speed", 1.0), "198.51.100.7")  # a sender not listed
        assert srv.stats["rejected_senders"] == 1
        assert controls.snapshot().params == {}
        # loopback is this machine: always accepted (see test_osc_security.py for LAN peers)
        SimpleUDPClient(LOCAL, srv.port).send_message("/lj/param/speed", 1.0)
        wait_messages(srv, 1)
        assert controls.snapshot().params == {"speed": 1.0}
    with pytest.raises(ControlError, match="notanip"):
        OscServer(controls, host=LOCAL, port=0, allow=["notanip"])


def test_second_server_on_the_same_port_is_a_control_error(server):
    other = OscServer(Controls(), host=LOCAL, port=server.port)
    with pytest.raises(ControlError) as info:
        other.start()
    text = str(info.value)
    assert "\n" not in text
    assert f"OSC port {server.port} on {LOCAL} is busy" in text
    assert "--osc-port" in text
    assert not other.running
    assert server.running  # the first one is untouched


def test_stop_joins_the_thread_promptly_and_frees_the_port():
    srv = OscServer(Controls(), host=LOCAL, port=0)
    srv.start()
    port = srv.port
    thread = srv._thread
    assert thread is not None and thread.is_alive()
    srv.stop(timeout=1.0)
    assert not thread.is_alive()
    assert not srv.running
    srv.stop()  # idempotent
    again = OscServer(Controls(), host=LOCAL, port=port)
    again.start()  # the port was released
    again.stop()


# -- OscSender -------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    sock.settimeout(WAIT)
    yield sock
    sock.close()


def _parse_bundle(dgram: bytes) -> dict[str, list]:
    assert dgram.startswith(b"#bundle\x00")
    return {m.message.address: m.message.params for m in OscPacket(dgram).messages}


def test_sender_sends_one_bundle_per_call_with_the_right_values(receiver):
    chroma = np.linspace(0.0, 1.0, 12, dtype=np.float32)
    features = {"rms": 0.125, "bass": np.float32(0.5), "onset": 1, "chroma": chroma}
    sender = OscSender(LOCAL, receiver.getsockname()[1])
    try:
        for i in range(3):
            assert sender.send_features(features, t=i * 0.5)
        received = [receiver.recvfrom(65535)[0] for _ in range(3)]
        receiver.settimeout(0.2)
        with pytest.raises(socket.timeout):
            receiver.recvfrom(65535)  # exactly one datagram per call
    finally:
        sender.close()
    for i, dgram in enumerate(received):
        parsed = _parse_bundle(dgram)
        assert set(parsed) == {"/lj/feature/rms", "/lj/feature/bass", "/lj/feature/onset",
                               "/lj/feature/chroma", "/lj/time"}
        assert parsed["/lj/feature/rms"] == [0.125]
        assert parsed["/lj/feature/bass"] == [0.5]
        assert parsed["/lj/feature/onset"] == [1.0]
        assert parsed["/lj/time"] == [i * 0.5]
        assert len(parsed["/lj/feature/chroma"]) == 12
        np.testing.assert_allclose(parsed["/lj/feature/chroma"], chroma, rtol=0, atol=1e-7)
    assert sender.stats["sent"] == 3 and sender.stats["send_errors"] == 0


def test_sender_skips_unusable_values_and_zeroes_non_finite(receiver):
    sender = OscSender(LOCAL, receiver.getsockname()[1])
    sender.send_features({"ok": 0.5, "nan": math.nan, "text": "hi", "bad name": 1.0,
                          "vec": np.array([1.0, np.inf], dtype=np.float32)}, t=2.0)
    parsed = _parse_bundle(receiver.recvfrom(65535)[0])
    sender.close()
    assert parsed == {"/lj/feature/ok": [0.5], "/lj/feature/nan": [0.0],
                      "/lj/feature/vec": [1.0, 0.0], "/lj/time": [2.0]}
    assert sender.stats["skipped"] == 2


def test_sender_counts_send_errors_instead_of_raising(receiver):
    sender = OscSender(LOCAL, receiver.getsockname()[1])
    too_big = {"huge": np.zeros(20000, dtype=np.float32)}  # > 65507 bytes: EMSGSIZE
    assert sender.send_features(too_big, t=0.0) is False
    assert sender.stats["send_errors"] == 1
    sender.close()
    assert sender.send_features({"rms": 0.1}, t=0.0) is False
    assert sender.stats["send_errors"] == 2


def test_sender_round_trips_into_a_server():
    """The stream out is valid OSC for our own parser too (addresses are simply unknown to it)."""
    controls = Controls()
    with OscServer(controls, host=LOCAL, port=0) as srv:
        with OscSender(LOCAL, srv.port) as sender:
            sender.send_features({"rms": 0.5, "chroma": np.ones(12, dtype=np.float32)}, t=1.0)
        wait_messages(srv, 3)
        assert srv.stats["bad_packets"] == 0
        assert srv.stats["unknown_addresses"] == 3

"""OSC in, over real UDP on 127.0.0.1: address patterns, time-tagged bundles, /lj/get and /lj/list."""

from __future__ import annotations

import socket
import time

import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.control import Controls, OscServer
from engine.control.pattern import PatternError, compile_pattern, match
from support import wait_for

WAIT = 5.0  # an upper bound for a packet to cross loopback; never asserted as a duration

LOCAL = "127.0.0.1"




def built(address: str, *args):
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build()


@pytest.fixture
def rig():
    """A server with declared params/triggers and a client socket that can receive replies."""
    controls = Controls(smoothing=0)
    for name in ("speed", "spin", "glow"):
        controls.declare_param(name, 0.5, 0.0, 1.0)
    controls.declare_trigger("flash")
    controls.declare_trigger("cut")
    srv = OscServer(controls, host=LOCAL, port=0)
    srv.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((LOCAL, 0))
    client.settimeout(WAIT)
    srv.send = lambda data: client.sendto(data, (LOCAL, srv.port))  # type: ignore[attr-defined]
    srv.client = client  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    client.close()


def replies(sock: socket.socket) -> dict[str, list]:
    data, sender = sock.recvfrom(65535)
    return {m.message.address: m.message.params for m in OscPacket(data).messages}


# -- patterns ---------------------------------------------------------------------------------

SPACE = ["/lj/param/speed", "/lj/param/spin", "/lj/param/glow", "/lj/param/a-b",
         "/lj/trigger/flash", "/lj/list"]


@pytest.mark.parametrize("pattern, expected", [
    ("/lj/param/*", ["/lj/param/speed", "/lj/param/spin", "/lj/param/glow", "/lj/param/a-b"]),
    ("/lj/param/sp?n", ["/lj/param/spin"]),
    ("/lj/param/[gs]*", ["/lj/param/speed", "/lj/param/spin", "/lj/param/glow"]),
    ("/lj/param/[!s]*", ["/lj/param/glow", "/lj/param/a-b"]),
    ("/lj/param/[a-c]-b", ["/lj/param/a-b"]),
    ("/lj/param/{speed,glow}", ["/lj/param/speed", "/lj/param/glow"]),
    ("/lj/*", ["/lj/list"]),  # '*' never crosses '/'
    ("/lj/*/flash", ["/lj/trigger/flash"]),
    ("/lj/param/speed", ["/lj/param/speed"]),
    ("/lj/param/nothing*", []),
])
def test_pattern_matching(pattern, expected):
    assert match(pattern, SPACE) == expected


@pytest.mark.parametrize("bad", ["/lj/[abc", "/lj/{a,b", "/lj/a]", "/lj/[z-a]", "no-slash*", "/" + "*" * 300])
def test_malformed_patterns_raise(bad):
    with pytest.raises(PatternError):
        compile_pattern(bad)


def test_wildcard_sets_every_known_param_over_udp(rig):
    rig.send(built("/lj/param/*", 0.25).dgram)
    rig.send(built("/lj/param/{speed,spin}", 0.75).dgram)
    rig.send(built("/lj/trigger/*", 1.0).dgram)
    rig.send(built("/lj/nothing/*", 1.0).dgram)
    rig.send(built("/lj/param/[oops", 1.0).dgram)
    rig.send(built("/lj/param/g*", "text").dgram)
    wait_for(lambda: rig.stats["messages"] >= 6, "6 messages")
    snap = rig.controls.snapshot()
    assert snap.params == {"speed": 0.75, "spin": 0.75, "glow": 0.25}
    assert snap.triggers == ["flash", "cut"]
    stats = rig.stats
    assert stats["unknown_addresses"] == 2  # matched nothing, and the malformed pattern
    assert stats["bad_values"] == 1
    # an undeclared literal address is still stored, and then known to patterns
    rig.send(built("/lj/param/extra", 0.125).dgram)
    rig.send(built("/lj/param/ex*", 0.375).dgram)
    wait_for(lambda: rig.stats["messages"] >= 8, "8 messages")
    assert rig.controls.snapshot().params["extra"] == 0.375


# -- bundles with time tags -------------------------------------------------------------------

def test_future_bundle_is_applied_at_its_time_and_immediate_on_arrival(rig):
    delay = 0.3
    later = OscBundleBuilder(time.time() + delay)
    later.add_content(built("/lj/param/speed", 0.875))
    later.add_content(built("/lj/trigger/flash"))
    now = OscBundleBuilder(IMMEDIATELY)
    now.add_content(built("/lj/param/glow", 0.125))
    sent = time.monotonic()
    rig.send(later.build().dgram)
    rig.send(now.build().dgram)
    wait_for(lambda: rig.controls.value("/lj/param/glow") == 0.125, "the immediate bundle")
    if time.monotonic() - sent < delay * 0.8:  # only meaningful while we are surely early
        assert rig.controls.value("/lj/param/speed") == 0.5
        assert rig.pending == 2
    wait_for(lambda: rig.controls.value("/lj/param/speed") == 0.875, "the future bundle")
    assert time.monotonic() - sent >= delay * 0.9  # not before its time tag (small clock slack)
    assert rig.controls.snapshot().triggers == ["flash"]
    assert rig.stats["scheduled"] == 2
    assert rig.pending == 0


def test_nested_bundle_never_runs_before_its_parent(rig):
    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(built("/lj/param/spin", 0.2))
    outer = OscBundleBuilder(time.time() + 30.0)
    outer.add_content(inner.build())
    rig.send(outer.build().dgram)
    wait_for(lambda: rig.pending == 1, "the scheduled message")
    assert rig.controls.value("/lj/param/spin") == 0.5


def test_past_time_tag_applies_at_once(rig):
    past = OscBundleBuilder(time.time() - 10.0)
    past.add_content(built("/lj/param/spin", 0.375))
    rig.send(past.build().dgram)
    wait_for(lambda: rig.controls.value("/lj/param/spin") == 0.375, "the late bundle")
    assert rig.stats["scheduled"] == 0


def test_schedule_is_bounded(rig, monkeypatch):
    import engine.control.osc as osc
    monkeypatch.setattr(osc, "MAX_SCHEDULED", 3)
    far = OscBundleBuilder(time.time() + 30.0)  # within MAX_SCHEDULE_AHEAD
    for _ in range(5):
        far.add_content(built("/lj/param/spin", 0.375))
    rig.send(far.build().dgram)
    wait_for(lambda: rig.stats["messages"] + rig.pending >= 3 and rig.stats["dropped_scheduled"] == 2,
             "the overflow")
    assert rig.pending == 3


# -- queries ----------------------------------------------------------------------------------

def test_get_answers_the_sender_with_the_value(rig):
    rig.send(built("/lj/param/speed", 0.125).dgram)
    rig.send(built("/lj/get", "/lj/param/speed").dgram)
    assert replies(rig.client) == {"/lj/param/speed": [0.125]}
    rig.send(built("/lj/get", "/lj/param/*").dgram)
    assert replies(rig.client) == {"/lj/param/speed": [0.125], "/lj/param/spin": [0.5],
                                   "/lj/param/glow": [0.5]}
    rig.controls.set_state({"mapping": "ambient", "fps": 59.5})
    rig.send(built("/lj/get", "/lj/state/*").dgram)
    assert replies(rig.client) == {"/lj/state/mapping": ["ambient"], "/lj/state/fps": [59.5]}
    rig.send(built("/lj/get", "/lj/param/unknown").dgram)
    rig.send(built("/lj/get", 3).dgram)
    wait_for(lambda: rig.stats["bad_values"] >= 1 and rig.stats["unknown_addresses"] >= 1, "the counts")
    assert rig.stats["replies"] == 3


def test_list_answers_the_address_space(rig):
    rig.send(built("/lj/list").dgram)
    (addresses,) = replies(rig.client).values()
    from engine.control.space import FIXED

    fixed = [info.address for info in FIXED]
    assert {"/lj/mapping/load", "/lj/generator", "/lj/get", "/lj/list", "/lj/learn",
            "/lj/release", "/lj/record/start", "/lj/scene", "/lj/preset/load"} <= set(fixed)
    assert addresses == fixed + ["/lj/param/speed", "/lj/param/spin", "/lj/param/glow",
                                 "/lj/trigger/flash", "/lj/trigger/cut"]


def test_list_of_a_large_space_is_split_into_datagrams(rig):
    for i in range(300):
        rig.controls.declare_param(f"p{i:03d}_{'x' * 40}", 0.0)
    rig.send(built("/lj/list").dgram)
    got = []
    total = len(rig.controls.addresses())
    while len(got) < total:
        data, _ = rig.client.recvfrom(65535)
        assert len(data) <= 8192
        for m in OscPacket(data).messages:
            assert m.message.address == "/lj/list"
            got.extend(m.message.params)
    assert total > 300 and len(got) == total and len(set(got)) == total


def test_replies_have_a_byte_budget(rig, monkeypatch):
    import engine.control.osc as osc
    rig._budget = osc._ReplyBudget(200)  # bytes per second: room for about one reply
    for _ in range(20):
        rig.send(built("/lj/list").dgram)
    wait_for(lambda: rig.stats["messages"] >= 20, "20 queries")
    stats = rig.stats
    assert stats["replies"] <= 2
    assert stats["dropped_replies"] >= 18


def test_the_fast_path_for_single_values_is_as_strict_as_the_full_parser():
    """parse_simple (one f/i/d/h/T/F argument or none) accepts exactly what check_packet accepts
    among fuzzed messages, and reads the same address and value as python-osc."""
    import random
    import struct

    from pythonosc.osc_message import OscMessage

    from engine.control.wire import check_packet, parse_simple

    base = [built(a, *args).dgram for a, args in (("/lj/param/speed", [0.5]), ("/a", [3]),
                                                  ("/abc", [True]), ("/abcd", [False]), ("/x/y", []),
                                                  ("/lj/p", [2 ** 40]), ("/s", ["text"]))]
    base.append(b"/d\0\0,d\0\0" + struct.pack(">d", 1e300))
    rng = random.Random(7)
    accepted = 0
    for _ in range(20000):
        d = bytearray(rng.choice(base))
        for _ in range(rng.randint(0, 3)):
            op = rng.random()
            if op < 0.4 and d:
                d[rng.randrange(len(d))] = rng.randrange(256)
            elif op < 0.7 and d:
                del d[rng.randrange(len(d)):]
            else:
                d += bytes([rng.randrange(256)])
        d = bytes(d)
        fast = parse_simple(d)
        if fast is None:
            continue
        accepted += 1
        assert check_packet(d) is None, d
        m = OscMessage(d)
        assert fast[0] == m.address and len(fast[1]) == len(m.params), d
        for a, b in zip(fast[1], m.params):
            assert a == b or (a != a and b != b), d
    assert accepted > 1000
    assert parse_simple(built("/s", "text").dgram) is None  # strings take the full path


def test_a_datagram_of_too_many_messages_is_malformed():
    from engine.control.wire import MAX_BUNDLE_MESSAGES, check_packet, encode_bundle, encode_message

    one = encode_message("/lj/param/speed", [0.5])
    assert check_packet(encode_bundle([one] * MAX_BUNDLE_MESSAGES)) is None
    nested = encode_bundle([encode_bundle([one] * (MAX_BUNDLE_MESSAGES // 2))] * 2 + [one])
    assert "more than" in check_packet(nested)

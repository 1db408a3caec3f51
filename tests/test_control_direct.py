"""Direct control: /lj/fx/<effect>/<input>, /lj/truncation, /lj/noise override the mapping's values.

The targets come from the real ISF headers of the shipped shaders; OSC goes over real UDP on
127.0.0.1, OSCQuery over real HTTP.
"""

from __future__ import annotations

import http.client
import json
import socket

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.control import Controls, OscQueryServer, OscServer
from engine.control.direct import DirectControl, fx_targets, to_norm, to_real
from engine.frame import FrameParams
from engine.paths import SHADER_DIR
from engine.session import chain_inputs
from support import wait_for

LOCAL = "127.0.0.1"


def built(address: str, *args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def frame_params(**uniforms) -> FrameParams:
    return FrameParams(t=0.0, w_plus=np.zeros((4, 8), np.float32), truncation=0.7, noise=0.1,
                       uniforms=dict(uniforms))


@pytest.fixture
def chain():
    return chain_inputs(["kaleido", "strobe"], SHADER_DIR)


def test_scaling_maps_zero_one_onto_the_real_range():
    assert to_real(0.5, 1.0, 24.0) == 12.5
    assert to_real(-3.0, 1.0, 24.0) == 1.0 and to_real(7.0, 1.0, 24.0) == 24.0
    assert to_norm(12.5, 1.0, 24.0) == 0.5
    assert to_norm(3.0, 2.0, 2.0) == 0.0  # empty range


def test_fx_targets_come_from_the_isf_headers(chain):
    targets = fx_targets(chain)
    assert targets["/lj/fx/kaleido/segments"] == ("kaleido.segments", 6.0, 1.0, 24.0)
    assert targets["/lj/fx/kaleido/rotate"][2:] == (-1.0, 1.0)
    # a bool input without MIN/MAX gets 0..1
    assert targets["/lj/fx/strobe/invert"][2:] == (0.0, 1.0)
    assert set(targets) == {"/lj/fx/" + k.replace(".", "/") for k in chain}


def test_an_override_replaces_the_mapping_value_until_released(chain):
    controls = Controls(smoothing=0)
    direct = DirectControl(controls)
    direct.declare(chain)
    assert controls.set_direct("/lj/fx/kaleido/segments", 0.5)
    assert controls.set_direct("/lj/truncation", 0.25)
    assert controls.set_direct("/lj/noise", 2.0)  # clamped to 1
    assert not controls.set_direct("/lj/fx/kaleido/nope", 0.5)
    assert not controls.set_direct("/lj/noise", float("nan"))
    assert controls.stats["bad_values"] == 2
    params = frame_params(**{"kaleido.segments": 3.0, "kaleido.zoom": 2.0})
    direct.apply(params, controls.snapshot().direct)
    assert params.uniforms == {"kaleido.segments": 12.5, "kaleido.zoom": 2.0}
    assert params.truncation == 0.25 and params.noise == 1.0
    # released: the mapping's values come through again
    assert controls.release_direct(["/lj/fx/kaleido/segments"]) == 1
    params = frame_params(**{"kaleido.segments": 3.0})
    direct.apply(params, controls.snapshot().direct)
    assert params.uniforms["kaleido.segments"] == 3.0 and params.truncation == 0.25
    controls.release_direct()
    assert controls.snapshot().direct == {}


def test_grabbing_a_target_glides_from_the_value_on_screen(chain):
    now = [0.0]
    controls = Controls(smoothing=0.1, clock=lambda: now[0])
    direct = DirectControl(controls)
    direct.declare(chain)
    direct.publish(frame_params(**{"kaleido.zoom": 0.25}))  # the mapping shows zoom at its MIN
    controls.set_direct("/lj/fx/kaleido/zoom", 1.0)
    assert controls.snapshot().direct["/lj/fx/kaleido/zoom"] == pytest.approx(0.25)
    now[0] = 0.1
    expected = 4.0 + (0.25 - 4.0) * np.exp(-1.0)
    assert controls.snapshot().direct["/lj/fx/kaleido/zoom"] == pytest.approx(expected)
    now[0] = 5.0
    assert controls.snapshot().direct["/lj/fx/kaleido/zoom"] == pytest.approx(4.0)


def test_values_in_effect_are_readable_and_a_chain_change_retires_old_targets(chain):
    controls = Controls(smoothing=0)
    direct = DirectControl(controls)
    direct.declare(chain)
    direct.publish(frame_params(**{"kaleido.segments": 24.0}))
    assert controls.value("/lj/fx/kaleido/segments") == 1.0
    assert controls.value("/lj/fx/kaleido/rotate") == 0.5  # default 0 in -1..1
    assert controls.value("/lj/truncation") == 0.7 and controls.value("/lj/noise") == pytest.approx(0.1)
    controls.set_direct("/lj/fx/kaleido/segments", 0.25)
    assert controls.value("/lj/fx/kaleido/segments") == 0.25  # the held value wins
    direct.declare(chain_inputs(["feedback"], SHADER_DIR))
    names = controls.direct_names()
    assert "/lj/fx/feedback/amount" in names and not any("kaleido" in n for n in names)
    assert controls.snapshot().direct == {}  # the held kaleido value went with its effect


@pytest.fixture
def rig(chain):
    controls = Controls(smoothing=0)
    direct = DirectControl(controls)
    direct.declare(chain)
    srv = OscServer(controls, host=LOCAL, port=0)
    srv.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((LOCAL, 0))
    client.settimeout(5)
    srv.send = lambda data: client.sendto(data, (LOCAL, srv.port))  # type: ignore[attr-defined]
    srv.client = client  # type: ignore[attr-defined]
    srv.direct = direct  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    client.close()


def test_osc_sets_patterns_and_releases_direct_targets(rig):
    rig.send(built("/lj/fx/kaleido/segments", 1.0))
    rig.send(built("/lj/truncation", 0.5))
    rig.send(built("/lj/noise", 1))  # an int is fine
    rig.send(built("/lj/fx/strobe/*", 0.0))  # every strobe input
    rig.send(built("/lj/fx/kaleido/zoom", "wide"))  # a string: bad value
    wait_for(lambda: rig.stats["messages"] >= 5, "5 messages")
    direct = rig.controls.snapshot().direct
    assert direct["/lj/fx/kaleido/segments"] == 24.0
    assert direct["/lj/truncation"] == 0.5 and direct["/lj/noise"] == 1.0
    strobe = {a for a in direct if a.startswith("/lj/fx/strobe/")}
    assert strobe and strobe == {a for a in rig.controls.direct_names() if "/strobe/" in a}
    assert rig.stats["bad_values"] == 1
    rig.send(built("/lj/release", "/lj/fx/strobe/*"))
    wait_for(lambda: rig.stats["messages"] >= 6, "the release")
    assert set(rig.controls.snapshot().direct) == {"/lj/fx/kaleido/segments", "/lj/truncation", "/lj/noise"}
    rig.send(built("/lj/release"))
    wait_for(lambda: rig.stats["messages"] >= 7, "release all")
    assert rig.controls.snapshot().direct == {}
    assert rig.stats["unknown_addresses"] == 0


def test_get_and_list_include_direct_targets(rig):
    rig.send(built("/lj/fx/kaleido/segments", 0.75))
    rig.send(built("/lj/get", "/lj/fx/kaleido/*"))
    data, _ = rig.client.recvfrom(65535)
    got = {m.message.address: m.message.params for m in OscPacket(data).messages}
    assert got["/lj/fx/kaleido/segments"] == [0.75]
    assert got["/lj/fx/kaleido/zoom"] == [pytest.approx(to_norm(1.0, 0.25, 4.0))]
    rig.send(built("/lj/list"))
    data, _ = rig.client.recvfrom(65535)
    listed = [a for m in OscPacket(data).messages for a in m.message.params]
    assert {"/lj/truncation", "/lj/noise", "/lj/release", "/lj/fx/kaleido/segments",
            "/lj/fx/strobe/invert"} <= set(listed)


def test_oscquery_describes_direct_targets(rig):
    with OscQueryServer(rig.controls, osc_port=rig.port, host=LOCAL, port=0) as query:
        conn = http.client.HTTPConnection(LOCAL, query.port, timeout=5)
        conn.request("GET", "/lj/fx/kaleido/segments")
        node = json.loads(conn.getresponse().read())
        conn.close()
    assert node["TYPE"] == "f" and node["ACCESS"] == 3
    assert node["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}]
    assert node["VALUE"] == [pytest.approx(to_norm(6.0, 1.0, 24.0))]
    assert "1..24" in node["DESCRIPTION"]

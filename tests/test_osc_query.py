"""OSCQuery over real HTTP on 127.0.0.1 (ephemeral port): the tree, attributes, HOST_INFO, errors."""

from __future__ import annotations

import http.client
import json

import pytest

from engine.control import Controls, OscQueryServer
from engine.errors import ControlError

LOCAL = "127.0.0.1"


@pytest.fixture
def query():
    controls = Controls()
    controls.declare_param("speed", 0.5, 0.0, 2.0)
    controls.declare_trigger("flash")
    controls.set_state({"mapping": "ambient", "fps": 60.0})
    with OscQueryServer(controls, osc_port=9123, host=LOCAL, port=0) as srv:
        yield srv


def get(srv: OscQueryServer, path: str, method: str = "GET") -> tuple[int, dict | None]:
    conn = http.client.HTTPConnection(LOCAL, srv.port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    return resp.status, (json.loads(body) if body else None)


def test_root_tree_has_every_address_with_types_ranges_and_values(query):
    status, tree = get(query, "/")
    assert status == 200
    assert tree["FULL_PATH"] == "/"
    lj = tree["CONTENTS"]["lj"]
    assert lj["FULL_PATH"] == "/lj"
    speed = lj["CONTENTS"]["param"]["CONTENTS"]["speed"]
    assert speed == {"FULL_PATH": "/lj/param/speed", "TYPE": "f", "ACCESS": 3, "VALUE": [0.5],
                     "RANGE": [{"MIN": 0.0, "MAX": 2.0}], "DESCRIPTION": "live parameter"}
    flash = lj["CONTENTS"]["trigger"]["CONTENTS"]["flash"]
    assert flash["ACCESS"] == 2 and flash["TYPE"] == "N" and "VALUE" not in flash
    load = lj["CONTENTS"]["mapping"]["CONTENTS"]["load"]
    assert load["TYPE"] == "s" and load["ACCESS"] == 2
    state = lj["CONTENTS"]["state"]["CONTENTS"]
    assert state["mapping"]["VALUE"] == ["ambient"] and state["mapping"]["ACCESS"] == 1
    assert state["fps"]["TYPE"] == "f"


def test_values_are_current_and_attributes_can_be_asked_alone(query):
    query.controls.set_param("speed", 1.25)
    assert get(query, "/lj/param/speed?VALUE") == (200, {"VALUE": [1.25]})
    assert get(query, "/lj/param/speed?RANGE") == (200, {"RANGE": [{"MIN": 0.0, "MAX": 2.0}]})
    status, node = get(query, "/lj/param")
    assert status == 200 and set(node["CONTENTS"]) == {"speed"}
    assert get(query, "/lj/trigger/flash?VALUE") == (204, None)
    assert get(query, "/lj/param/speed?NOPE")[0] == 400


def test_host_info(query):
    status, info = get(query, "/?HOST_INFO")
    assert status == 200
    assert info["OSC_PORT"] == 9123 and info["OSC_TRANSPORT"] == "UDP" and info["OSC_IP"] == LOCAL
    assert info["EXTENSIONS"]["VALUE"] is True and info["EXTENSIONS"]["LISTEN"] is False


def test_unknown_paths_and_methods(query):
    assert get(query, "/lj/param/nope")[0] == 404
    assert get(query, "/nothing/here")[0] == 404
    assert get(query, "/", method="POST")[0] == 405
    assert get(query, "/", method="HEAD")[0] == 200
    assert get(query, "/")[0] == 200  # still serving after all that


def test_busy_port_is_a_control_error(query):
    other = OscQueryServer(Controls(), osc_port=9000, host=LOCAL, port=query.port)
    with pytest.raises(ControlError) as info:
        other.start()
    assert "busy" in str(info.value) and "\n" not in str(info.value)


def test_stop_frees_the_port():
    srv = OscQueryServer(Controls(), osc_port=9000, host=LOCAL, port=0)
    srv.start()
    port = srv.port
    srv.stop()
    srv.stop()
    again = OscQueryServer(Controls(), osc_port=9000, host=LOCAL, port=port)
    again.start()
    again.stop()

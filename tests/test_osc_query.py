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
                     "RANGE": [{"MIN": 0.0, "MAX": 2.0}], "CLIPMODE": ["both"],
                     "DESCRIPTION": "live parameter"}
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


SPEC_ATTRIBUTES = {"FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION",
                   "CLIPMODE", "EXTENDED_TYPE", "UNIT", "TAGS", "CRITICAL", "OVERLOADS"}


def check_node(node: dict, path: str, extensions: dict) -> int:
    """Check one node (and its children) against the OSCQuery proposal; the number of methods."""
    assert set(node) <= SPEC_ATTRIBUTES, set(node) - SPEC_ATTRIBUTES
    assert node["FULL_PATH"] == path
    for attr in node:
        if attr not in ("FULL_PATH", "CONTENTS", "TYPE"):  # the required ones
            assert extensions.get(attr) is True, f"{path}: {attr} used but not in EXTENSIONS"
    if "ACCESS" in node:
        assert node["ACCESS"] in (0, 1, 2, 3)
    methods = int("TYPE" in node or "CONTENTS" not in node)  # no CONTENTS: a method (spec)
    if "TYPE" in node:
        tags = node["TYPE"]
        assert isinstance(tags, str) and set(tags) <= set("ifsbhtdScrmTFNI[]")
        n = len(tags)
        for attr in ("VALUE", "RANGE", "CLIPMODE", "EXTENDED_TYPE"):
            if attr in node:
                assert isinstance(node[attr], list) and len(node[attr]) == n, (path, attr)
        for clip in node.get("CLIPMODE", []):
            assert clip in ("none", "low", "high", "both")
        if "VALUE" in node:
            assert node["ACCESS"] & 1, f"{path}: a VALUE on a method that cannot be read"
            for tag, value in zip(tags, node["VALUE"]):
                assert isinstance(value, float if tag == "f" else str)
        if "RANGE" in node and "VALUE" in node:
            for r, v in zip(node["RANGE"], node["VALUE"]):
                assert r["MIN"] <= r["MAX"] and r["MIN"] - 1e-9 <= v <= r["MAX"] + 1e-9, path
    for name, child in node.get("CONTENTS", {}).items():
        methods += check_node(child, path.rstrip("/") + "/" + name, extensions)
    return methods


def test_every_address_follows_the_oscquery_proposal():
    """The whole tree of a show-like space (params, triggers, state, direct targets of a real
    chain, learn and release commands) checked attribute by attribute against the proposal."""
    from engine.control.direct import DirectControl
    from engine.paths import SHADER_DIR
    from engine.session import chain_inputs

    controls = Controls()
    controls.declare_param("speed", 0.5, 0.0, 2.0)
    controls.set_param("undeclared", 3.0)
    controls.declare_trigger("flash")
    controls.set_state({"mapping": "ambient", "fps": 60.0})
    DirectControl(controls).declare(chain_inputs(["kaleido", "strobe", "feedback"], SHADER_DIR))
    with OscQueryServer(controls, osc_port=9123, host=LOCAL, port=0) as srv:
        status, info = get(srv, "/lj/param?HOST_INFO")  # the path does not matter for HOST_INFO
        assert status == 200
        assert set(info) <= {"NAME", "EXTENSIONS", "OSC_IP", "OSC_PORT", "OSC_TRANSPORT", "WS_IP", "WS_PORT"}
        assert isinstance(info["OSC_PORT"], int) and info["OSC_TRANSPORT"] in ("UDP", "TCP")
        assert all(isinstance(v, bool) for v in info["EXTENSIONS"].values())
        status, tree = get(srv, "/")
        assert status == 200
        methods = check_node(tree, "/", info["EXTENSIONS"])
        assert methods == len(controls.addresses())
        # each method answers alone, and attributes one at a time
        for address in controls.addresses():
            status, node = get(srv, address)
            assert status == 200 and node["FULL_PATH"] == address
            for attr in ("TYPE", "ACCESS", "RANGE", "VALUE"):
                status, only = get(srv, f"{address}?{attr}")
                assert (status, only) == ((200, {attr: node[attr]}) if attr in node else (204, None))
    learn = tree["CONTENTS"]["lj"]["CONTENTS"]["learn"]
    assert learn["TYPE"] == "s" and set(learn["CONTENTS"]) == {"cancel", "forget"}
    segments = tree["CONTENTS"]["lj"]["CONTENTS"]["fx"]["CONTENTS"]["kaleido"]["CONTENTS"]["segments"]
    assert segments["RANGE"] == [{"MIN": 0.0, "MAX": 1.0}] and segments["CLIPMODE"] == ["both"]
    load = tree["CONTENTS"]["lj"]["CONTENTS"]["mapping"]["CONTENTS"]["load"]
    assert load["EXTENDED_TYPE"] == ["filepath"]
    assert tree["CONTENTS"]["lj"]["CONTENTS"]["truncation"]["ACCESS"] == 3

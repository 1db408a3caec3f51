"""The TouchOSC layout (examples/touchosc/latent-jockey.tosc): up to date with its generator and
the all-OSC recipe, and every message it sends is understood by a real OscServer."""

from __future__ import annotations

import importlib.util
import socket
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.control import Controls, OscServer
from engine.control.direct import DirectControl
from engine.mapping import load_mapping
from engine.paths import SHADER_DIR
from engine.session import chain_inputs
from support import wait_for

ROOT = Path(__file__).resolve().parents[1]
TOSC = ROOT / "examples" / "touchosc" / "latent-jockey.tosc"
RECIPE = ROOT / "mappings" / "osc_faders.toml"
#: Layout buttons whose work is queued for the frame loop (show, record and tempo commands).
QUEUED = {"/lj/tempo/tap", "/lj/tempo/reset", "/lj/record/start", "/lj/record/stop",
                  "/lj/scene/prev", "/lj/scene/next", "/lj/scene"}


def load_generator():
    spec = importlib.util.spec_from_file_location("make_layout", TOSC.with_name("make_layout.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def controls_of(root: ET.Element) -> list[dict]:
    """Each FADER/BUTTON: name, type, OSC path, argument (type, conversion, value, min, max)."""
    out = []
    for node in root.iter("node"):
        if node.get("type") not in ("FADER", "BUTTON"):
            continue
        name = next(p.findtext("value") for p in node.iter("property") if p.findtext("key") == "name")
        osc = node.find("messages/osc")
        arg = osc.find("arguments/partial")
        out.append({"name": name, "type": node.get("type"), "path": osc.findtext("path/partial/value"),
                    "condition": osc.findtext("triggers/trigger/condition"),
                    "arg": tuple(arg.findtext(k) for k in ("type", "conversion", "value", "scaleMin", "scaleMax"))})
    return out


def test_the_committed_layout_is_what_the_generator_writes():
    assert TOSC.read_bytes() == load_generator().build(RECIPE), \
        "run examples/touchosc/make_layout.py and commit the .tosc"


def test_the_layout_is_a_lexml_document_with_unique_ids():
    root = ET.fromstring(zlib.decompress(TOSC.read_bytes()))
    assert root.tag == "lexml" and root.get("version") == "3"
    ids = [n.get("ID") for n in root.iter("node")]
    assert len(ids) == len(set(ids)) > 20
    for node in root.iter("node"):
        keys = [p.findtext("key") for p in node.find("properties")]
        assert {"name", "frame", "color"} <= set(keys)


def test_every_control_of_the_layout_plays_a_real_server():
    root = ET.fromstring(zlib.decompress(TOSC.read_bytes()))
    spec = load_mapping(RECIPE)
    controls = Controls(smoothing=0)
    for name, p in spec.params.items():
        controls.declare_param(name, p.default, p.min, p.max)
    controls.declare_trigger("still")
    DirectControl(controls).declare(chain_inputs(spec.shader_chain, SHADER_DIR))
    items = controls_of(root)
    faders = [c for c in items if c["type"] == "FADER"]
    buttons = [c for c in items if c["type"] == "BUTTON"]
    assert {f["path"] for f in faders} == {f"/lj/param/{n}" for n in spec.params} | {"/lj/truncation", "/lj/noise"}
    assert {"/lj/trigger/still", "/lj/release", "/lj/scene/next", "/lj/tempo/tap"} <= {b["path"] for b in buttons}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    with OscServer(controls, host="127.0.0.1", port=0) as srv:
        def send(path, value):  # what TouchOSC sends: the path and one argument
            b = OscMessageBuilder(path)
            b.add_arg(value)
            sock.sendto(b.build().dgram, ("127.0.0.1", srv.port))

        for f in faders:  # each fader moved to its middle: x = 0.5 scaled to scaleMin..scaleMax
            kind, conversion, var, lo, hi = f["arg"]
            assert (kind, conversion, var) == ("VALUE", "FLOAT", "x")
            send(f["path"], float(lo) + 0.5 * (float(hi) - float(lo)))
            sent += 1
        wait_for(lambda: controls.stats["messages"] >= sent, f"{sent} messages")
        snap = controls.snapshot()
        for name, p in spec.params.items():
            assert snap.params[name] == pytest.approx(p.min + 0.5 * (p.max - p.min)), name
        assert snap.direct == {"/lj/truncation": 0.5, "/lj/noise": 0.5}
        for b in buttons:  # each button pressed
            kind, conversion, value, _, _ = b["arg"]
            send(b["path"], int(value) if kind == "CONSTANT" else 1.0)
            sent += 1
        wait_for(lambda: controls.stats["messages"] >= sent, f"{sent} messages")
    sock.close()
    snap = controls.snapshot()
    assert snap.direct == {}  # RELEASE pressed
    assert snap.triggers == ["still"]
    queued = {b["path"] for b in buttons} - {"/lj/trigger/still", "/lj/release"}
    assert queued == QUEUED
    assert controls.stats["unknown_addresses"] == 0  # every control of the layout is routed
    commands = {cmd[0] for cmd in snap.commands}
    tempo = {name for name, _, _ in controls.take_tempo()}
    assert commands | {"/lj/tempo/" + name for name in tempo} == QUEUED
    assert controls.stats["bad_values"] == 0 and controls.stats["bad_packets"] == 0

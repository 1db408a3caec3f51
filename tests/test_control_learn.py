"""Learn and bindings: sources (OSC addresses outside /lj/, MIDI controls) bound to targets, the
sidecar file, and learn mode over real UDP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import tomllib

import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.control import Controls, OscServer
from engine.control import learn as learn_mod
from engine.control.direct import DirectControl
from engine.control.learn import (Bindings, format_bindings, read_bindings, sidecar_path,
                                  target_address, target_name, valid_source)
from engine.paths import SHADER_DIR
from engine.session import chain_inputs
from support import wait_for

LOCAL = "127.0.0.1"


def built(address: str, *args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


@pytest.mark.parametrize("name, address", [
    ("param.speed", "/lj/param/speed"), ("trigger.flash", "/lj/trigger/flash"),
    ("shader.kaleido.segments", "/lj/fx/kaleido/segments"), ("truncation", "/lj/truncation"),
    ("noise", "/lj/noise"), ("/lj/scene/next", "/lj/scene/next")])
def test_target_names_and_addresses(name, address):
    assert target_address(name) == address
    assert target_address(target_name(address)) == address
    assert target_address("fx.kaleido.segments") == "/lj/fx/kaleido/segments"


@pytest.mark.parametrize("bad", ["speed", "param.", "param.a/b", "shader.kaleido", "/lj/param/a b",
                                 "", 3, "shader.a.b.c"])
def test_bad_targets(bad):
    assert target_address(bad) is None


def test_sources():
    assert valid_source("/1/fader1") and valid_source("/composition/layers/1/video/opacity")
    assert valid_source("midi:cc:1:7") and valid_source("midi:note:16:127")
    for bad in ("/lj/param/speed", "midi:cc:0:7", "midi:cc:17:7", "midi:cc:1:128", "midi:pb:1:0",
                "fader1", "/a b", "", None):
        assert not valid_source(bad), bad


@pytest.fixture
def controls(tmp_path, monkeypatch):
    monkeypatch.setattr(learn_mod, "CONFIG_DIR", tmp_path / "config")
    c = Controls(smoothing=0)
    c.declare_param("speed", 1.0, 0.0, 4.0)
    c.declare_trigger("flash")
    DirectControl(c).declare(chain_inputs(["kaleido"], SHADER_DIR))
    return c


def test_learn_binds_the_next_control_scales_it_and_saves_a_sidecar(controls, tmp_path):
    mapping = tmp_path / "show.toml"
    mapping.write_text("")
    b = controls.bindings
    b.attach(mapping, {})
    assert not b.feed("/1/fader1", 0.5)  # not learning, not bound: unused
    assert b.learn("param.speed") and b.learning == "/lj/param/speed"
    assert controls.value("/lj/state/learning") == "/lj/param/speed"
    assert b.feed("/1/fader1", 0.25)
    assert b.learning is None and controls.snapshot().params["speed"] == 1.0  # 0.25 of 0..4
    b.feed("/1/fader1", 1.0)
    assert controls.snapshot().params["speed"] == 4.0
    # MIDI sources go the same way
    b.learn("/lj/fx/kaleido/segments")
    b.feed("midi:cc:1:7", 0.5)
    assert controls.snapshot().direct["/lj/fx/kaleido/segments"] == 12.5
    b.learn("trigger.flash")
    b.feed("midi:note:10:36", 1.0)
    b.feed("midi:note:10:36", 0.0)  # note off: no second trigger
    assert controls.snapshot().triggers == ["flash"]
    side = sidecar_path(mapping)
    assert side == tmp_path / "show.bindings.toml"
    saved = tomllib.loads(side.read_text())["bindings"]
    assert saved == {"/1/fader1": "param.speed", "midi:cc:1:7": "shader.kaleido.segments",
                     "midi:note:10:36": "trigger.flash"}


def test_relearning_a_target_replaces_its_source(controls, tmp_path):
    b = controls.bindings
    b.attach(tmp_path / "show.toml", {})
    b.learn("param.speed")
    b.feed("/1/fader1", 0.5)
    b.learn("param.speed")
    b.feed("/2/knob", 0.5)
    assert b.table == {"/2/knob": "/lj/param/speed"}
    assert b.forget("param.speed") == 1 and b.table == {}


def test_attach_merges_the_mapping_table_and_the_sidecar_which_wins(controls, tmp_path, caplog):
    mapping = tmp_path / "show.toml"
    sidecar_path(mapping).write_text('[bindings]\n"/1/fader1" = "param.speed"\n"/bad" = "nowhere"\n')
    b = controls.bindings
    with caplog.at_level(logging.WARNING, logger="lj.learn"):
        b.attach(mapping, {"/1/fader1": "noise", "midi:cc:1:1": "truncation", "/lj/param/x": "noise"})
    assert b.table == {"/1/fader1": "/lj/param/speed", "midi:cc:1:1": "/lj/truncation"}
    text = caplog.text
    assert "show.bindings.toml" in text and "'/bad'" in text and "/lj/param/x" in text


def test_a_broken_sidecar_is_one_warning_and_no_bindings(controls, tmp_path, caplog):
    mapping = tmp_path / "show.toml"
    sidecar_path(mapping).write_text('[bindings\n"/1" = ')
    with caplog.at_level(logging.WARNING, logger="lj.learn"):
        controls.bindings.attach(mapping, {"/2": "noise"})
    assert controls.bindings.table == {"/2": "/lj/noise"}
    assert "show.bindings.toml" in caplog.text


def test_unwritable_folder_falls_back_to_the_config_folder(controls, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr(learn_mod, "sidecar_path", lambda p: blocker / "x.bindings.toml")
    mapping = tmp_path / "show.toml"
    b = controls.bindings
    b.attach(mapping, {})
    b.learn("noise")
    b.feed("/fader", 0.5)
    assert b.path is not None and b.path.parent == tmp_path / "config"
    again = Bindings(controls)
    again.attach(mapping, {})
    assert again.table == {"/fader": "/lj/noise"}


def test_format_and_read_round_trip_odd_characters(tmp_path):
    table = {'/a"quoted"/x': "/lj/param/speed", "/ünï/cødé": "/lj/noise"}
    path = tmp_path / "b.toml"
    path.write_text(format_bindings(table, "m.toml"))
    assert read_bindings(path) == table


@pytest.fixture
def rig(controls, tmp_path):
    controls.bindings.attach(tmp_path / "show.toml", {})
    srv = OscServer(controls, host=LOCAL, port=0)
    srv.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.send = lambda data: client.sendto(data, (LOCAL, srv.port))  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    client.close()


def test_learn_over_osc(rig):
    c = rig.controls
    rig.send(built("/1/fader1", 0.5))  # not bound yet: unknown
    rig.send(built("/lj/learn/param/speed", 1.0))  # a button press ...
    rig.send(built("/lj/learn/param/speed", 0.0))  # ... and its release
    wait_for(lambda: c.bindings.learning == "/lj/param/speed", "learn mode")
    rig.send(built("/lj/param/speed", 3.0))  # an /lj/ address is never learned
    rig.send(built("/1/fader1", 0.75))
    wait_for(lambda: c.bindings.table.get("/1/fader1") == "/lj/param/speed", "the binding")
    wait_for(lambda: c.snapshot().params["speed"] == 3.0, "the bound value (0.75 of 0..4)")
    rig.send(built("/1/fader1", 0.25))
    wait_for(lambda: c.snapshot().params["speed"] == 1.0, "the next value")
    rig.send(built("/lj/learn", "shader.kaleido.zoom"))  # the target as an argument
    wait_for(lambda: c.bindings.learning == "/lj/fx/kaleido/zoom", "learn mode again")
    rig.send(built("/lj/learn/cancel"))
    wait_for(lambda: c.bindings.learning is None, "cancel")
    rig.send(built("/lj/learn/trigger/flash"))
    rig.send(built("/2/push1"))  # a bare address: a button
    wait_for(lambda: "/2/push1" in c.bindings.table, "the button binding")
    rig.send(built("/lj/learn/forget", "/1/fader1"))
    rig.send(built("/lj/learn/param/nothere", 1))  # not in the space: bad
    rig.send(built("/lj/learn", "/lj/get"))  # not a target: bad
    wait_for(lambda: c.stats["messages"] >= 12, "all messages")
    assert set(c.bindings.table) == {"/2/push1"}
    assert c.stats["bad_values"] == 2
    assert c.stats["unknown_addresses"] == 1  # the first /1/fader1
    assert c.snapshot().triggers == ["flash"]  # the learned button fired it once


def test_the_example_controller_bindings_fit_the_all_osc_recipe():
    """examples/bindings/nanokontrol2.bindings.toml: every entry is valid, and every target that
    this branch routes exists for mappings/osc_faders.toml (params, its chain's shader inputs)."""
    from pathlib import Path

    from engine.control.direct import fx_targets
    from engine.mapping import load_mapping

    root = Path(__file__).resolve().parents[1]
    raw = tomllib.loads((root / "examples/bindings/nanokontrol2.bindings.toml").read_text())["bindings"]
    table = read_bindings(root / "examples/bindings/nanokontrol2.bindings.toml")
    assert len(table) == len(raw) == 22
    spec = load_mapping(root / "mappings/osc_faders.toml")
    known = {f"/lj/param/{p}" for p in spec.params} | set(fx_targets(chain_inputs(
        spec.shader_chain, SHADER_DIR))) | {"/lj/truncation", "/lj/noise", "/lj/trigger/still",
                                            "/lj/release"}
    others = {t for t in table.values() if t not in known}
    assert others == {"/lj/tempo/tap", "/lj/tempo/reset", "/lj/scene/next", "/lj/scene/prev"}  # C4
    assert sum(t.startswith("/lj/param/") for t in table.values()) == 8 == len(spec.params)

"""examples/osc_client.py plays a real OscServer over UDP on 127.0.0.1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine.control import Controls, OscServer
from engine.paths import MAPPING_DIR

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "osc_client.py"


def load_example():
    spec = importlib.util.spec_from_file_location("osc_client_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_client_plays_the_engine():
    example = load_example()
    controls = Controls()
    controls.declare_param("speed", 0.0, 0.0, 1.0)
    controls.declare_param("glow", 0.0, 0.0, 1.0)
    controls.declare_param("warp", 0.0, 0.0, 1.0)
    controls.declare_trigger("flash")
    lines = []
    with OscServer(controls, host="127.0.0.1", port=0) as srv:
        values = example.play("127.0.0.1", srv.port, mapping="ambient.toml", sweep_seconds=0.2, reply_timeout=0.3,
                              out=lambda *a: lines.append(a))
        stats = srv.stats
    snap = controls.snapshot()
    assert values == {"/lj/param/speed": [0.25], "/lj/param/glow": [0.5], "/lj/param/warp": [0.5]}
    assert snap.triggers == ["flash"]
    # relative to the show's folder (here the shipped mappings), resolved before it is queued
    assert snap.mapping == str(MAPPING_DIR.resolve() / "ambient.toml")
    assert stats["bad_packets"] == 0 and stats["bad_values"] == 0 and stats["unknown_addresses"] == 0
    assert stats["replies"] >= 3
    listed = dict(lines)["address space:"]["/lj/list"]
    assert "/lj/param/glow" in listed and "/lj/trigger/flash" in listed


def test_example_client_plays_direct_targets_and_learn(tmp_path):
    from engine.control.direct import DirectControl
    from engine.paths import SHADER_DIR
    from engine.session import chain_inputs

    example = load_example()
    controls = Controls(smoothing=0)
    controls.declare_param("speed", 0.0, 0.0, 4.0)
    DirectControl(controls).declare(chain_inputs(["kaleido"], SHADER_DIR))
    controls.bindings.attach(tmp_path / "show.toml", {})
    with OscServer(controls, host="127.0.0.1", port=0) as srv:
        held = example.play_direct("127.0.0.1", srv.port, "kaleido", ("segments", "zoom"),
                                   reply_timeout=0.3, out=lambda *a: None)
        got = example.play_learn("127.0.0.1", srv.port, "param.speed", "/1/fader1",
                                 reply_timeout=0.3, out=lambda *a: None)
        stats = srv.stats
    assert held["/lj/fx/kaleido/segments"] == [0.25] and held["/lj/fx/kaleido/zoom"] == [0.5]
    assert held["/lj/truncation"] == [pytest.approx(0.7)] and held["/lj/noise"] == [pytest.approx(0.2)]
    assert held["/lj/fx/kaleido/rotate"] == [0.5]  # not held: the value in effect (default 0 of -1..1)
    assert controls.snapshot().direct == {}  # released at the end
    assert got == {"/lj/param/speed": [4.0]}  # the learned fader at 1.0 = the top of 0..4
    assert controls.bindings.table == {"/1/fader1": "/lj/param/speed"}
    assert (tmp_path / "show.bindings.toml").exists()
    assert stats["bad_values"] == 0 and stats["unknown_addresses"] == 0

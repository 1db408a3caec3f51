"""The control stage inside the running live loop (headless, real UDP on 127.0.0.1): direct
overrides reach the frame's parameters, learned bindings survive a mapping reload."""

from __future__ import annotations

import threading
import time

import pytest
from pythonosc.udp_client import SimpleUDPClient

from engine.audio.demo import demo_song
from engine.live import LiveOptions, StopFlag, run_live
from support import PacedSource, free_port, wait_for

MAPPING = """[meta]
name = "{name}"
[params]
glow = 0.5
[latent]
keyframes = {{ seeds = [1, 2] }}
truncation = 0.8
[shaders]
chain = ["kaleido", "feedback"]
[[route]]
from = "param.glow"
to = "shader.feedback.amount"
[[route]]
from = "level"
to = "shader.kaleido.rotate"
"""


class Show:
    """``run_live`` on a thread, with access to its controls while it runs."""

    def __init__(self, tmp_path, mapping, midi=None):
        samples, sr, _ = demo_song(seconds=40.0)
        self.port = free_port()
        self.opts = LiveOptions(mapping=str(mapping), size=32, headless=True, osc_port=self.port,
                                oscquery_port=None, max_seconds=40, osc_smoothing=0.0,
                                stills_dir=str(tmp_path / "stills"), midi=midi, zeroconf=False)
        self.stop = StopFlag()
        self.result: dict = {}
        self.controls = None
        import engine.live as live

        real = live.Controls

        def capture(*a, **kw):  # keep a handle on the loop's Controls
            self.controls = real(*a, **kw)
            return self.controls

        self._patch = (live, real)
        live.Controls = capture
        self.thread = threading.Thread(target=lambda: self.result.setdefault(
            "stats", run_live(PacedSource(samples, sr), self.opts, self.stop)))
        self.client = SimpleUDPClient("127.0.0.1", self.port)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.controls is not None and "/lj/fx/kaleido/segments"
                 in self.controls.direct_names(), "the loop to declare its targets", timeout=30)
        self._patch[0].Controls = self._patch[1]
        return self

    def __exit__(self, *exc):
        self._patch[0].Controls = self._patch[1]
        self.stop()
        self.thread.join(30)

    def value(self, address):
        return self.controls.value(address)


def test_direct_overrides_reach_the_frame_and_release_gives_it_back(tmp_path, caplog):
    """Also: a MIDI input that is not there is one warning line, and the show runs."""
    import logging

    mapping = tmp_path / "show.toml"
    mapping.write_text(MAPPING.format(name="show"))
    with caplog.at_level(logging.WARNING, logger="lj.control"), \
            Show(tmp_path, mapping, midi=["no-such-controller"]) as show:
        show.client.send_message("/lj/fx/kaleido/segments", 1.0)
        show.client.send_message("/lj/truncation", 0.25)
        show.client.send_message("/lj/fx/feedback/amount", 0.0)
        # the loop publishes the values in effect: the overrides show up there
        wait_for(lambda: show.controls.value("/lj/truncation") == 0.25
                 and show.controls.in_effect().get("/lj/fx/kaleido/segments") == 24.0,
                 "the overrides in the frame", timeout=20)
        assert show.controls.in_effect()["/lj/truncation"] == 0.25
        assert show.controls.in_effect()["/lj/fx/feedback/amount"] == 0.0
        show.client.send_message("/lj/release", [])
        # released: the mapping's truncation (0.8) and param.glow route (0.5) are back
        wait_for(lambda: show.controls.in_effect().get("/lj/truncation") == pytest.approx(0.8)
                 and show.controls.in_effect().get("/lj/fx/feedback/amount") == pytest.approx(0.5),
                 "the mapping's values again", timeout=20)
    stats = show.result["stats"]
    assert stats.last_params.truncation == pytest.approx(0.8)
    midi_lines = [r.getMessage() for r in caplog.records if r.name == "lj.control"]
    assert len(midi_lines) == 1 and "running without MIDI" in midi_lines[0]


def test_a_learned_binding_survives_mapping_reloads(tmp_path):
    """Autolume users' top complaint: learned controls are lost on reload. Here they are not."""
    mapping = tmp_path / "show.toml"
    mapping.write_text(MAPPING.format(name="show"))
    with Show(tmp_path, mapping) as show:
        c = show.controls
        show.client.send_message("/lj/learn/param/glow", 1.0)
        wait_for(lambda: c.bindings.learning == "/lj/param/glow", "learn mode", timeout=20)
        show.client.send_message("/1/fader1", 0.2)
        wait_for(lambda: c.in_effect().get("/lj/fx/feedback/amount") == pytest.approx(0.2),
                 "the learned fader driving param.glow -> feedback.amount", timeout=20)
        assert (tmp_path / "show.bindings.toml").exists()
        # the file is edited (a reload by the file watcher) ...
        mapping.write_text(MAPPING.format(name="show, edited"))
        wait_for(lambda: show.result == {} and c.value("/lj/state/mapping") == "show, edited",
                 "the edited mapping", timeout=30)
        show.client.send_message("/1/fader1", 0.7)
        wait_for(lambda: c.in_effect().get("/lj/fx/feedback/amount") == pytest.approx(0.7),
                 "the fader still bound after the reload", timeout=20)
        # ... and loaded again over OSC
        show.client.send_message("/lj/mapping/load", str(mapping))
        show.client.send_message("/1/fader1", 0.4)
        wait_for(lambda: c.in_effect().get("/lj/fx/feedback/amount") == pytest.approx(0.4),
                 "the fader bound after /lj/mapping/load", timeout=20)
        assert c.bindings.table == {"/1/fader1": "/lj/param/glow"}
    # a new show on the same mapping starts with the binding (read from the sidecar)
    with Show(tmp_path, mapping) as show:
        wait_for(lambda: show.controls.bindings.table == {"/1/fader1": "/lj/param/glow"},
                 "the sidecar read at start", timeout=20)
        show.client.send_message("/1/fader1", 0.9)
        wait_for(lambda: show.controls.in_effect().get("/lj/fx/feedback/amount") == pytest.approx(0.9),
                 "the binding in a new run", timeout=20)

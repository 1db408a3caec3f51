"""Scenes: several mappings in one file, switched by name, by a trigger's rising edge or by cue
times, with a crossfade that keeps the picture continuous."""

from pathlib import Path

import numpy as np
import pytest

from engine.errors import MappingError
from engine.generators.cppn import CPPNGenerator
from engine.mapping import compile_mapping, load_mapping, parse_mapping
from engine.mapping.scenes import SceneSet, mix_w
from engine.mapping.spec import SCALAR_FEATURES

ROOT = Path(__file__).resolve().parent.parent
SR, HOP = 44100, 512
DT = HOP / SR


class Space:
    latent_dim = 16
    w_dim = 16
    num_layers = 6

    def __init__(self):
        self.w_avg = np.linspace(-0.5, 0.5, self.w_dim).astype(np.float32)

    def seed_to_w(self, seed):
        rng = np.random.default_rng(seed)
        return (self.w_avg + rng.standard_normal(self.w_dim)).astype(np.float32)

    def layer_groups(self):
        return {"coarse": range(0, 2), "middle": range(2, 4), "fine": range(4, 6)}


SPACE = Space()

SCENES = '''
[clock]
bpm = 120

[params]
speed = 0.5

[latent]
keyframes = { seeds = [1, 2, 3] }
walk = { seconds_per_key = 4 }
truncation = 0.7

[scenes]
crossfade = { seconds = 1.0 }

[[route]]
from = "2 * param.speed"
to = "latent.speed"

[[scene]]
name = "calm"

[[scene]]
name = "loud"
crossfade = { beats = 4, interp = "linear" }
switch_on = "downbeat"
next = "calm"

[scene.latent]
keyframes = { seeds = [11, 12] }
truncation = 1.0

[scene.params]
kick = 1.0

[[scene.route]]
from = "onset_low * param.kick"
to = "latent.push"
direction = { seed = 5 }
layers = "coarse"
'''


def steps(m, n, feats=None):
    frames = []
    for _ in range(n):
        m.step_hop(feats or {}, {})
        frames.append(m.frame(m.time))
    return frames


def test_scene_file_parses_into_scenes_sharing_defaults():
    spec = parse_mapping(SCENES, "s.toml")
    assert [s.name for s in spec.scenes] == ["calm", "loud"]
    calm, loud = spec.scenes
    assert calm.latent.seeds == [1, 2, 3] and loud.latent.seeds == [11, 12]
    assert calm.latent.walk.per_key == 4 and loud.latent.walk.per_key == 8   # latent replaced
    assert [r.to for r in calm.routes] == ["latent.speed"]
    assert [r.to for r in loud.routes] == ["latent.speed", "latent.push"]     # shared + own
    assert set(loud.params) == {"speed", "kick"} and set(spec.params) == {"speed", "kick"}
    opts = spec.scene_options
    assert opts.scenes[0].crossfade.length == 1.0 and opts.scenes[1].crossfade.unit == "beats"
    assert opts.scenes[0].next == 1 and opts.scenes[1].next == 0


@pytest.mark.parametrize("edit, message", [
    (('from = "onset_low * param.kick"', 'from = "onset_lo"'), r"s.toml:37: route #2 'from': "
                                                             r"unknown source 'onset_lo'"),
    (('next = "calm"', 'next = "clam"'), r"s.toml:27: scene next = 'clam' is not a scene; "
                                         r"did you mean 'calm'"),
    (('name = "loud"', 'name = "calm"'), r"s.toml:24: scene name 'calm' is used twice"),
    (('switch_on = "downbeat"', 'switch_on = "dwnbeat"'), r"s.toml:26: switch_on: unknown source"),
    (('crossfade = { seconds = 1.0 }', 'crossfade = { bars = 1 }'), r"s.toml:14: unknown key "
                                                                    r"'bars' in crossfade"),
    (('[[scene]]\nname = "calm"\n', '[[scene]]\nname = "calm"\n[scene.shaders]\nchain = []\n'),
     r"s.toml:2\d: unknown key 'shaders' in scene #1"),
    (('bpm = 120', 'bpm_x = 1'), r"unknown key 'bpm_x'"),
])
def test_scene_errors_name_the_line(edit, message):
    text = SCENES
    assert edit[0] in text
    with pytest.raises(MappingError, match=message):
        parse_mapping(text.replace(*edit), "s.toml")


def scene_set():
    return compile_mapping(parse_mapping(SCENES, "s.toml"), SPACE, SR, HOP)


def test_switch_crossfades_without_a_jump_and_keeps_the_walk():
    m = scene_set()
    assert isinstance(m, SceneSet) and m.scene == "calm"
    steps(m, 100)
    pos = m.position
    before = m.frame(m.time)
    assert m.switch("loud")
    assert m.scene == "loud" and m.fading
    assert abs(m.position - pos % 2) < 1e-9               # walk position carried (mod 2 keys)
    first = m.frame(m.time)
    np.testing.assert_allclose(first.w_plus, before.w_plus, atol=1e-5)  # x = 0: no jump
    frames = steps(m, int(2.0 / DT) + 5)                   # 4 beats at 120 bpm = 2 s
    assert not m.fading
    jumps = [np.abs(b.w_plus - a.w_plus).max() for a, b in zip([first] + frames, frames)]
    distance = np.abs(frames[-1].w_plus - before.w_plus).max()
    assert distance > 0.5 and max(jumps) < distance / 20   # a fade, not a cut
    assert frames[-1].truncation == pytest.approx(1.0)
    mid = frames[int(1.0 / DT)].truncation                 # halfway (eased): between both
    assert 0.75 < mid < 0.95


def test_switch_on_rising_edge_and_queue_during_fade():
    m = scene_set()
    m.switch("loud", crossfade=type(m._entries[0].crossfade)(0.0))
    assert not m.fading and m.switches == 1
    steps(m, 5, {"downbeat": 0.0})
    steps(m, 1, {"downbeat": 1.0})
    assert m.scene == "calm" and m.switches == 2 and m.fading       # the edge switched
    m.switch("loud")                                                 # queued behind the fade
    assert m.scene == "calm"
    steps(m, int(1.0 / DT) + 2)
    assert m.scene == "loud" and m.switches == 3


def test_trigger_held_high_does_not_retrigger():
    m = scene_set()
    m.switch("loud", crossfade=type(m._entries[0].crossfade)(0.0))
    steps(m, 3, {"downbeat": 1.0})       # high since before the switch: must fall first
    assert m.scene == "loud"


def test_cues_switch_scenes_on_the_audio_clock_and_loop():
    text = SCENES + '''
[cues]
loop = 4.0

[[cue]]
at = 0
scene = "calm"

[[cue]]
at = 2.0
scene = 2
'''
    m = compile_mapping(parse_mapping(text, "c.toml"), SPACE, SR, HOP)
    seen = []
    for _ in range(int(9.0 / DT)):
        m.step_hop({}, {})
        if not seen or seen[-1][1] != m.scene:
            seen.append((round(m.time, 1), m.scene))
    assert [s for _, s in seen] == ["calm", "loud", "calm", "loud", "calm"]
    assert [t for t, _ in seen][1:] == [2.0, 4.0, 6.0, 8.0]


def test_mix_w_slerp_keeps_the_norm_and_ends_exactly():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 6, 16)).astype(np.float32)
    avg = np.zeros(16)
    np.testing.assert_allclose(mix_w(a, b, 0.0, avg), a, atol=1e-6)
    np.testing.assert_allclose(mix_w(a, b, 1.0, avg), b, atol=1e-5)
    mid = mix_w(a, b, 0.5, avg)
    na, nb, nm = (np.linalg.norm(x, axis=1) for x in (a, b, mid))
    assert np.all(nm > 0.9 * np.minimum(na, nb))            # no dip toward the average image


def test_reload_keeps_the_scene():
    m = scene_set()
    m.switch("loud", crossfade=type(m._entries[0].crossfade)(0.0))
    steps(m, 10)
    fresh = scene_set()
    fresh.restore(m.state())
    assert fresh.scene == "loud" and fresh.time == pytest.approx(m.time)


def test_drop_recipe_switches_scenes_on_drops():
    """mappings/scene_drops.toml needs the audio branch's `drop` feature."""
    path = ROOT / "mappings" / "scene_drops.toml"
    if "drop" not in SCALAR_FEATURES:
        with pytest.raises(MappingError, match="unknown source 'drop'"):
            load_mapping(path)
        pytest.skip("the analyser has no 'drop' feature yet (audio branch not merged): "
                    "scene_drops.toml cannot compile until it is")
    space = CPPNGenerator((64, 64)).latent_space()
    m = compile_mapping(load_mapping(path), space, SR, HOP)
    assert m.names == ["build", "drop", "breakdown"]
    quiet = {"drop": 0.0, "onset_low": 0.0}
    steps(m, 50, quiet)
    before = m.frame(m.time)
    steps(m, 1, dict(quiet, drop=1.0))
    assert m.scene == "drop"
    frames = steps(m, int(0.6 / DT), quiet)                 # one beat at 128 bpm: 0.47 s
    assert not m.fading
    kick = steps(m, 3, dict(quiet, onset_low=1.0))[-1]
    groups = space.layer_groups()
    d = np.linalg.norm(kick.w_plus - frames[-1].w_plus, axis=1)
    assert d[list(groups["coarse"])].min() > 10 * max(d[list(groups["fine"])].max(), 1e-6)
    assert np.abs(frames[-1].w_plus - before.w_plus).max() > 0.1
    steps(m, 10, quiet)
    steps(m, 1, dict(quiet, drop=1.0))
    assert m.scene == "breakdown"


def test_drop_recipe_on_a_song_with_a_build_up_and_a_drop():
    """The analyser's own `drop` on a song built for it (16 s steady, 8 s build-up, a drop at
    24 s, tests/test_audio_structure.py): the recipe stays in "build" through the steady part and
    the build-up, and crossfades to "drop" right after the drop."""
    from engine.session import ArrayReader, Session
    from tests.test_audio_structure import SR as SONG_SR, song

    x, drop_at = song()
    session = Session(SONG_SR, ROOT / "mappings" / "scene_drops.toml", size=(32, 32),
                      threaded=False)
    try:
        reader = ArrayReader(x)
        switched_at = None
        prev = None
        jumps = []
        for i in range(1, int(len(x) / SONG_SR * 30)):          # 30 fps
            pos = i * SONG_SR // 30
            p = session.params_at(reader, pos)
            if prev is not None:
                jumps.append(float(np.abs(p.w_plus - prev.w_plus).max()))
            prev = p
            if switched_at is None and session.mapping.scene != "build":
                switched_at = pos / SONG_SR
        assert switched_at is not None and drop_at <= switched_at <= drop_at + 0.5
        assert session.mapping.scene == "drop"
        assert np.isfinite(jumps).all()
    finally:
        session.close()

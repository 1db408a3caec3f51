"""The recipes in mappings/: each compiles against the built-in generator's latent space and, on a
feature signal built for it, moves what its comment says it moves."""

from pathlib import Path

import numpy as np
import pytest

from engine.generators.cppn import CPPNGenerator
from engine.mapping import compile_mapping, load_mapping
from engine.mapping.spec import SCALAR_FEATURES

ROOT = Path(__file__).resolve().parent.parent
SR, HOP = 44100, 512
RECIPES = sorted((ROOT / "mappings").glob("*.toml"))


@pytest.fixture(scope="module")
def space():
    return CPPNGenerator((64, 64)).latent_space()


def load(name, space):
    return compile_mapping(load_mapping(ROOT / "mappings" / name), space, SR, HOP)


def run(m, hops, feats):
    for _ in range(hops):
        m.step_hop(feats, {})
    return m.frame(m.time)


QUIET = {"rms": 0.02, "level": 0.1, "bass_att": 0.5, "mid_att": 0.5, "treb_level": 0.0,
         "bass_level": 0.1, "onset": 0.0, "onset_low": 0.0, "onset_high": 0.0,
         "chroma": np.zeros(12, np.float32)}


def test_at_least_eight_commented_recipes(space):
    assert len(RECIPES) >= 8
    for path in RECIPES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("#"), f"{path.name} does not open with a comment"
        if path.name == "scene_drops.toml" and "drop" not in SCALAR_FEATURES:
            continue   # tested (and its absence reported) in test_mapping_scenes.py
        m = compile_mapping(load_mapping(path), space, SR, HOP)
        assert m.frame(0.0).w_plus.shape == (space.num_layers, space.w_dim)


def rows_moved(a, b):
    return np.linalg.norm(a.w_plus - b.w_plus, axis=1)


def test_maua_kicks_move_coarse_and_hats_move_fine(space):
    m = load("maua_kick_hats.toml", space)
    groups = space.layer_groups()
    coarse, fine = list(groups["coarse"]), list(groups["fine"])
    base = run(m, 20, QUIET)
    kick = run(m, 1, dict(QUIET, onset_low=1.0))
    d = rows_moved(kick, base)
    assert d[coarse].min() > 10 * max(d[fine].max(), 1e-6)
    run(m, 200, QUIET)
    base = run(m, 1, QUIET)
    hat = run(m, 1, dict(QUIET, onset_high=1.0))
    d = rows_moved(hat, base)
    assert d[fine].min() > 10 * max(d[coarse].max(), 1e-6)


def test_maua_loops_one_key_per_bar(space):
    m = load("maua_kick_hats.toml", space)
    bar_s = 4 * 60.0 / 128
    while m.time + m.dt <= bar_s:
        m.step_hop(QUIET, {})
    assert m.position == pytest.approx(1.0, abs=m.dt / bar_s + 1e-9)


def test_lucid_hits_pulse_and_loudness_speeds_the_motion(space):
    m = load("lucid_pulse_motion.toml", space)
    base = run(m, 50, QUIET)
    hit = run(m, 1, dict(QUIET, onset=1.0))
    assert rows_moved(hit, base).min() > 0.5          # every layer pulses
    back = run(m, 100, QUIET)
    assert rows_moved(back, base).max() < rows_moved(hit, base).min()

    def drift(level):
        mm = load("lucid_pulse_motion.toml", space)
        feats = dict(QUIET, level=level)
        a = run(mm, 100, feats)
        b = run(mm, 100, feats)
        walk = np.linalg.norm(mm._walk.keys[0] - mm._walk.keys[1]) * 100 * mm.dt / 30.0
        return rows_moved(a, b).mean() - walk
    assert drift(1.0) > 3 * drift(0.0)


def test_lucid_harmony_picks_keyframes(space):
    m = load("lucid_pulse_motion.toml", space)
    c = np.zeros(12, np.float32)
    c[3] = 1.0
    a = run(m, 300, dict(QUIET, chroma=c))
    key3 = m.keyframes[3]
    before = np.linalg.norm(run(load("lucid_pulse_motion.toml", space), 300, QUIET).w_plus[2]
                            - key3)
    assert np.linalg.norm(a.w_plus[2] - key3) < 0.7 * before


def test_milkdrop_bass_zooms_mids_swing_treble_smears(space):
    m = load("milkdrop_feedback.toml", space)
    quiet = run(m, 100, QUIET)
    loud = run(m, 100, dict(QUIET, bass_att=3.0, treb_level=1.0))
    assert loud.uniforms["feedback.zoom"] > quiet.uniforms["feedback.zoom"] + 0.05
    assert loud.uniforms["rgb_shift.amount"] > quiet.uniforms["rgb_shift.amount"] + 0.4
    rot = []
    for _ in range(2000):
        m.step_hop(dict(QUIET, mid_att=3.0), {})
        rot.append(m.frame(m.time).uniforms["feedback.rotate"])
    rot = np.array(rot)
    assert rot.min() >= -0.2 and rot.max() <= 0.2
    assert rot.max() - rot.min() > 0.3                 # it swings from bound to bound
    assert np.all(np.abs(np.diff(rot)) <= 1.0 * m.dt + 1e-9)   # at most its velocity, 1/s


def test_gallery_breathes_with_the_room_whatever_its_loudness(space):
    for scale in (0.01, 0.3):                           # a quiet room and a busy one
        m = load("gallery_drift.toml", space)
        run(m, 3000, dict(QUIET, rms=0.5 * scale))
        hushed = run(m, 1500, dict(QUIET, rms=0.2 * scale))
        busy = run(m, 1500, dict(QUIET, rms=1.0 * scale))
        assert busy.uniforms["grade.brightness"] > hushed.uniforms["grade.brightness"] + 0.2
        assert busy.truncation > hushed.truncation + 0.1


def test_gallery_keeps_moving_in_silence_without_jumps(space):
    m = load("gallery_drift.toml", space)
    frames = [run(m, 5, dict(QUIET, rms=0.0)).w_plus for _ in range(200)]
    steps = [np.linalg.norm(b - a) for a, b in zip(frames, frames[1:])]
    assert min(steps) > 0
    assert max(steps) < 3 * np.median(steps)


def test_osc_faders_each_fader_moves_its_own_target(space):
    m = load("osc_faders.toml", space)
    groups = space.layer_groups()
    coarse, fine = list(groups["coarse"]), list(groups["fine"])

    def settle(controls, feats=QUIET):
        for _ in range(150):
            m.step_hop(feats, controls)
        return m.frame(m.time)

    still = {"speed": 0.0, "shape": 0.0, "detail": 0.0, "wild": 0.0, "trails": 0.0}
    base = settle(still)
    assert base.truncation == pytest.approx(0.4, abs=1e-3)
    shaped = settle(dict(still, shape=1.0))
    d = rows_moved(shaped, base)
    assert d[coarse].min() > 0.5 and d[fine].max() < 1e-3
    detailed = settle(dict(still, detail=1.0))
    d = rows_moved(detailed, base)
    assert d[fine].min() > 0.5 and d[coarse].max() < 1e-3
    wild = settle(dict(still, wild=1.0, trails=0.8))
    assert wild.truncation == pytest.approx(1.2, abs=1e-3)
    assert wild.uniforms["feedback.amount"] == pytest.approx(0.8)
    # with every fader down and the walk stopped, a kick and a loud bar move nothing
    settle(still)
    calm = settle(still)
    loud = settle(still, dict(QUIET, onset_low=1.0, bass_att=3.0, level=1.0, rms=0.5))
    assert rows_moved(loud, calm).max() < 1e-3

"""Compiled mappings: conditioning in hop time, walks, pushes, blends, reloads, shipped files."""

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.errors import MappingError
from engine.mapping import compile_mapping, load_mapping, parse_mapping
from engine.mapping.latent import slerp
from engine.mapping.spec import SCALAR_FEATURES

ROOT = Path(__file__).resolve().parent.parent
SR, HOP = 44100, 512
DT = HOP / SR


class FakeSpace:
    """A LatentSpace stand-in: w = w_avg + standard normal from the seed."""

    latent_dim = 64
    w_dim = 64
    num_layers = 6

    def __init__(self):
        self.w_avg = np.linspace(-0.5, 0.5, self.w_dim).astype(np.float32)

    def seed_to_w(self, seed):
        rng = np.random.default_rng(seed)
        return (self.w_avg + rng.standard_normal(self.w_dim)).astype(np.float32)

    def layer_groups(self):
        return {"coarse": range(0, 2), "middle": range(2, 4), "fine": range(4, 6)}


SPACE = FakeSpace()


def build(text, sr=SR, hop=HOP):
    return compile_mapping(parse_mapping(textwrap.dedent(text), "t.toml"), SPACE, sr, hop)


def run(m, hops, features=None, controls=None):
    for _ in range(hops):
        m.step_hop(features or {}, controls or {})


def advance_to(m, t, features=None):
    """Process every hop that ends at or before t (as the session does)."""
    while m.time + m.dt <= t + 1e-12:
        m.step_hop(features or {}, {})


STILL = '[latent]\nkeyframes = { seeds = [1] }\n'


# --- conditioning in hop time ------------------------------------------------------------------

def test_envelope_attack_and_release_durations():
    m = build(STILL + """
        [[route]]
        from = "onset_low"
        to = "noise"
        envelope = { attack_ms = 50, release_ms = 300 }
        """)
    trace = []
    for i in range(200):
        m.step_hop({"onset_low": 1.0 if i == 0 else 0.0}, {})
        trace.append(m.frame(m.time).noise)
    trace = np.array(trace)
    peak = int(np.argmax(trace))
    assert trace[peak] == pytest.approx(1.0)
    assert abs((peak + 1) * DT - 0.050) <= DT            # rises in attack_ms
    assert np.all(np.diff(trace[: peak + 1]) > 0)
    below = peak + int(np.argmax(trace[peak:] < 0.01))
    assert abs((below - peak) * DT - 0.300) <= 1.5 * DT  # falls to 1 % in release_ms
    assert np.all(np.diff(trace[peak:]) <= 0)


def test_envelope_triggers_on_rising_edges_only():
    m = build(STILL + """
        [[route]]
        from = "bass"
        to = "noise"
        envelope = { attack_ms = 0, release_ms = 100 }
        """)
    run(m, 1, {"bass": 1.0})
    assert m.frame(m.time).noise == 1.0
    run(m, 40, {"bass": 1.0})                    # held high: no new pulse
    assert m.frame(m.time).noise < 0.01
    run(m, 1, {"bass": 0.2})
    run(m, 1, {"bass": 0.9})                     # crosses 0.5 again: new pulse
    assert m.frame(m.time).noise == 1.0


def test_smooth_rise_and_fall_times():
    m = build(STILL + """
        [[route]]
        from = "level"
        to = "noise"
        smooth = { attack_ms = 200, release_ms = 600 }
        """)
    run(m, 5, {"level": 0.0})
    rise = 0
    while m.frame(m.time).noise < 0.99:
        run(m, 1, {"level": 1.0})
        rise += 1
    assert abs(rise * DT - 0.2) <= DT
    fall = 0
    while m.frame(m.time).noise > 0.01:
        run(m, 1, {"level": 0.0})
        fall += 1
    assert abs(fall * DT - 0.6) <= DT


def test_conditioning_does_not_depend_on_how_frames_interleave():
    text = STILL + """
        [[route]]
        from = "onset"
        to = "noise"
        envelope = { attack_ms = 20, release_ms = 200 }
        smooth = 50
        [[route]]
        from = "level"
        to = "truncation"
        smooth = { attack_ms = 100, release_ms = 300 }
        """
    rng = np.random.default_rng(0)
    feats = [{"onset": float(rng.random() > 0.9), "level": float(rng.random())}
             for _ in range(300)]
    results = []
    for pattern in ([0], [1], [3, 0, 1], [0, 0, 7]):   # frames drawn after each hop
        m = build(text)
        for i, f in enumerate(feats):
            m.step_hop(f, {})
            for k in range(pattern[i % len(pattern)]):
                m.frame(m.time + k * 0.001)
        p = m.frame(m.time)
        results.append((p.noise, p.truncation))
    assert all(r == results[0] for r in results)
    assert results[0][0] != 0.0 or results[0][1] != 0.0


def test_gain_offset_power_range_clamp_threshold_order():
    m = build(STILL + """
        [[route]]
        from = "bass"
        to = "noise"
        threshold = 0.2
        power = 2
        range = [1, 3]
        gain = 2
        offset = -1
        clamp = [0, 4]
        """)
    run(m, 1, {"bass": 0.5})           # 0.25 -> 1.5 -> 3 -> 2
    assert m.frame(m.time).noise == pytest.approx(2.0)
    run(m, 1, {"bass": 0.1})           # below threshold: 0 -> 1 -> 2 -> 1
    assert m.frame(m.time).noise == pytest.approx(1.0)
    run(m, 1, {"bass": 2.0})           # 4 -> 9 -> 18 -> 17 -> clamp 4
    assert m.frame(m.time).noise == pytest.approx(4.0)


def test_missing_or_bad_source_holds_last_value():
    m = build(STILL + """
        [[route]]
        from = "bass"
        to = "noise"
        [[route]]
        from = "1 / (mid - 0.5)"
        to = "truncation"
        """)
    run(m, 1, {"bass": 0.7, "mid": 1.0})
    p = m.frame(m.time)
    assert (p.noise, p.truncation) == (pytest.approx(0.7), pytest.approx(2.0))
    run(m, 3, {})                                  # features missing
    assert m.frame(m.time).noise == pytest.approx(0.7)
    run(m, 1, {"bass": float("nan"), "mid": 0.5})  # NaN feature; division by zero
    p = m.frame(m.time)
    assert (p.noise, p.truncation) == (pytest.approx(0.7), pytest.approx(2.0))
    run(m, 1, {"bass": 0.1, "mid": 0.75})
    p = m.frame(m.time)
    assert (p.noise, p.truncation) == (pytest.approx(0.1), pytest.approx(4.0))


def test_params_from_controls_clamped_and_held():
    m = build(STILL + """
        [params]
        trails = 0.6
        zoom = { default = 0.0, min = -1, max = 1 }
        [shaders]
        chain = ["feedback"]
        [[route]]
        from = "param.trails"
        to = "shader.feedback.amount"
        [[route]]
        from = "param.zoom"
        to = "shader.feedback.zoom"
        """)
    assert m.params == {"trails": 0.6, "zoom": 0.0}
    assert m.param_ranges["zoom"] == (-1.0, 1.0)
    assert m.frame(0.0).uniforms == {"feedback.amount": pytest.approx(0.6), "feedback.zoom": 0.0}
    run(m, 1, controls={"trails": 0.9, "zoom": -5, "unknown": 3})
    assert m.frame(m.time).uniforms == {"feedback.amount": pytest.approx(0.9),
                                        "feedback.zoom": -1.0}
    run(m, 2, controls={})
    assert m.frame(m.time).uniforms["feedback.amount"] == pytest.approx(0.9)
    assert m.uniform_targets == {"feedback.amount": 11, "feedback.zoom": 14}


def test_clock_sources_follow_the_audio_clock():
    m = build(STILL + "[clock]\nbpm = 120\n[[route]]\nfrom = \"beats\"\nto = \"noise\"\n")
    advance_to(m, 1.0)
    assert m.frame(m.time).noise == pytest.approx(m.time * 2.0)
    v = m.values()
    assert v["beat_phase"] == pytest.approx((m.time * 2.0) % 1.0)
    assert v["bar_phase"] == pytest.approx((m.time * 0.5) % 1.0)


# --- latent --------------------------------------------------------------------------------------

def test_push_moves_only_the_chosen_layers():
    m = build(STILL + """
        [[route]]
        from = "onset_low"
        to = "latent.push"
        direction = { seed = 7 }
        layers = "coarse"
        """)
    still = m.frame(0.0).w_plus
    assert np.array_equal(still[0], still[5])
    run(m, 1, {"onset_low": 1.0})
    w = m.frame(m.time).w_plus
    assert w.shape == (6, 64) and w.dtype == np.float32
    assert np.array_equal(w[2:], still[2:])             # middle and fine untouched
    moved = np.linalg.norm(w[:2] - still[:2], axis=1)
    typical = np.linalg.norm(SPACE.seed_to_w(1) - SPACE.w_avg)
    assert np.all(moved > 0.5 * typical) and np.all(moved < 2.0 * typical)


def test_push_layers_as_range_and_out_of_range():
    m = build(STILL + """
        [[route]]
        from = "1"
        to = "latent.push"
        direction = { seed = 7 }
        layers = [3, 4]
        """)
    w = m.frame(0.0).w_plus
    base = w[0]
    changed = [not np.array_equal(w[i], base) for i in range(6)]
    assert changed == [False, False, False, True, True, False]
    with pytest.raises(MappingError) as info:
        build(STILL + '[[route]]\nfrom = "1"\nto = "latent.push"\n'
              'direction = { seed = 7 }\nlayers = [3, 9]\n')
    assert info.value.line == 7 and "out of range" in info.value.message


WALK = """
    [latent]
    keyframes = { seeds = [10, 11, 12] }
    walk = { seconds_per_key = 2.0, interp = "%s" }
    """


@pytest.mark.parametrize("interp", ["linear", "slerp"])
def test_walk_passes_through_keyframes_and_loops_seamlessly(interp):
    m = build(WALK % interp)
    keys = [SPACE.seed_to_w(s) for s in (10, 11, 12)]
    for k, t in enumerate([0.0, 2.0, 4.0, 6.0]):
        advance_to(m, t)
        w = m.frame(t).w_plus[0]
        np.testing.assert_allclose(w, keys[k % 3], atol=1e-4)
    # step sizes near the loop point are like those elsewhere (no jump)
    m = build(WALK % interp)
    steps, prev = [], None
    for i in range(1, 800):
        t = i / 100.0
        advance_to(m, t)
        w = m.frame(t).w_plus[0]
        if prev is not None:
            steps.append(float(np.linalg.norm(w - prev)))
        prev = w
    steps = np.array(steps)
    assert steps.max() < 3.0 * np.median(steps)
    # halfway point
    m = build(WALK % interp)
    advance_to(m, 1.0)
    want = (keys[0] + keys[1]) / 2 if interp == "linear" else slerp(keys[0], keys[1], 0.5,
                                                                       SPACE.w_avg)
    np.testing.assert_allclose(m.frame(1.0).w_plus[0], want, atol=1e-4)


def test_speed_route_scales_the_walk_and_beats_per_key():
    m = build(WALK % "linear" + '[[route]]\nfrom = "2"\nto = "latent.speed"\n')
    advance_to(m, 1.0)
    np.testing.assert_allclose(m.frame(1.0).w_plus[0], SPACE.seed_to_w(11), atol=1e-4)
    m = build("""
        [clock]
        bpm = 120
        [latent]
        keyframes = { seeds = [10, 11, 12] }
        walk = { bars_per_key = 1, interp = "linear" }
        """)
    advance_to(m, 4.0)                            # 2 bars of 4 beats at 120 bpm
    np.testing.assert_allclose(m.frame(4.0).w_plus[0], SPACE.seed_to_w(12), atol=1e-4)


def test_frame_is_a_pure_read():
    m = build(WALK % "slerp" + '[[route]]\nfrom = "level"\nto = "noise"\nsmooth = 100\n')
    run(m, 10, {"level": 1.0})
    a = m.frame(m.time + 0.004)
    b = m.frame(m.time + 0.004)
    np.testing.assert_array_equal(a.w_plus, b.w_plus)
    assert (a.noise, a.uniforms) == (b.noise, b.uniforms)
    assert a.w_plus is not b.w_plus


def test_blend_moves_toward_the_weighted_keyframe():
    seeds = list(range(100, 112))
    base = f'[latent]\nkeyframes = {{ seeds = {seeds} }}\nwalk = {{ seconds_per_key = 5 }}\n'
    chroma = np.zeros(12)
    chroma[4] = 1.0
    m = build(base + '[[route]]\nfrom = "chroma"\nto = "latent.blend"\namount = 1.0\n')
    run(m, 1, {"chroma": chroma})
    np.testing.assert_allclose(m.frame(m.time).w_plus[3], SPACE.seed_to_w(104), atol=1e-5)
    # half way, and two bins -> their average
    chroma[7] = 1.0
    m = build(base + '[[route]]\nfrom = "chroma"\nto = "latent.blend"\namount = 0.5\n')
    walk_only = m.frame(0.0).w_plus[0].copy()
    m.step_hop({"chroma": chroma}, {})
    target = (SPACE.seed_to_w(104) + SPACE.seed_to_w(107)) / 2
    walk_now = build(base).frame(m.time).w_plus[0]
    np.testing.assert_allclose(m.frame(m.time).w_plus[0], (walk_now + target) / 2, atol=1e-4)
    assert not np.allclose(walk_only, target)
    # fewer keyframes than bins: bins cycle (bin 7 -> key 7 % 5 = 2)
    m = build('[latent]\nkeyframes = { seeds = [1, 2, 3, 4, 5] }\n'
              '[[route]]\nfrom = "chroma"\nto = "latent.blend"\n')
    one = np.zeros(12)
    one[7] = 1.0
    run(m, 1, {"chroma": one})
    np.testing.assert_allclose(m.frame(m.time).w_plus[0], SPACE.seed_to_w(3), atol=1e-5)


# --- reload ----------------------------------------------------------------------------------------

def test_state_restore_keeps_walk_time_and_smoothing():
    text = WALK % "slerp" + """
        [[route]]
        from = "level"
        to = "noise"
        smooth = { attack_ms = 500, release_ms = 500 }
        """
    m1 = build(text)
    run(m1, 150, {"level": 1.0})
    m2 = build(text)
    m2.restore(m1.state())
    assert m2.position == m1.position and m2.time == m1.time
    a, b = m1.frame(m1.time), m2.frame(m2.time)
    np.testing.assert_array_equal(a.w_plus, b.w_plus)
    assert a.noise == b.noise and 0.0 < a.noise < 1.0
    run(m1, 5, {"level": 0.2})
    run(m2, 5, {"level": 0.2})
    assert m1.frame(m1.time).noise == m2.frame(m2.time).noise
    # a different mapping with fewer keyframes: position wraps, nothing jumps in time
    m3 = build('[latent]\nkeyframes = { seeds = [1, 2] }\n')
    m3.restore(m1.state())
    assert m3.position == pytest.approx(m1.position % 2) and m3.time == m1.time


# --- shipped mappings ------------------------------------------------------------------------------

def shader_inputs():
    """'<effect>.<input>' -> (min, max) from the ISF headers in shaders/."""
    out = {}
    for path in (ROOT / "shaders").glob("*.fs"):
        m = re.search(r"/\*(\{.*?\})\*/", path.read_text(), re.S)
        if not m:
            continue
        for inp in json.loads(m.group(1)).get("INPUTS", []):
            if inp.get("TYPE") == "float":
                out[f"{path.stem}.{inp['NAME']}"] = (inp.get("MIN", -1e9), inp.get("MAX", 1e9))
    return out


MAPPINGS = sorted((ROOT / "mappings").glob("*.toml"))


def test_there_are_shipped_mappings():
    assert {"default.toml", "minimal.toml"} <= {p.name for p in MAPPINGS}
    assert len(MAPPINGS) >= 3


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda p: p.name)
def test_shipped_mapping_compiles_and_runs(path):
    if path.name == "scene_drops.toml" and "drop" not in SCALAR_FEATURES:
        with pytest.raises(MappingError, match="unknown source 'drop'"):
            load_mapping(path)
        pytest.skip("needs the analyser's 'drop' feature (audio branch)")
    spec = load_mapping(path)
    m = compile_mapping(spec, SPACE, SR, HOP)
    inputs = shader_inputs()
    lines = path.read_text().splitlines()
    for target, line in m.uniform_targets.items():
        if inputs:
            assert target in inputs, f"{path.name}:{line}: no shader input {target}"
        assert lines[line - 1].lstrip().startswith("to ="), (target, line)
    rng = np.random.default_rng(1)
    for i in range(300):
        feats = {name: float(rng.random()) for name in (
            "rms", "loudness", "level", "bass", "mid", "treb", "bass_att", "mid_att", "treb_att",
            "bass_level", "mid_level", "treb_level", "flux", "flux_low", "flux_mid",
            "flux_high", "centroid", "flatness")}
        feats.update(onset=float(i % 20 == 0), onset_low=float(i % 40 == 0),
                     onset_mid=float(i % 40 == 20), onset_high=float(i % 10 == 0),
                     chroma=rng.random(12).astype(np.float32))
        m.step_hop(feats, {name: rng.random() for name in m.params})
        p = m.frame(m.time)
        assert p.w_plus.shape == (6, 64) and p.w_plus.dtype == np.float32
        assert np.all(np.isfinite(p.w_plus))
        assert math.isfinite(p.truncation) and np.all(np.isfinite(p.noise))
        for name, value in p.uniforms.items():
            assert math.isfinite(value)
            if name in inputs:
                lo, hi = inputs[name]
                assert lo - 1e-6 <= value <= hi + 1e-6, (name, value)


def test_default_mapping_is_clearly_music_driven():
    m = compile_mapping(load_mapping(ROOT / "mappings" / "default.toml"), SPACE, SR, HOP)
    quiet = {"level": 0.1, "bass_att": 0.5, "treb_level": 0.0, "onset_low": 0.0,
             "chroma": np.zeros(12, np.float32)}
    run(m, 100, quiet)
    before = m.frame(m.time)
    run(m, 1, dict(quiet, onset_low=1.0))       # a kick
    run(m, 10, quiet)
    kick = m.frame(m.time)
    coarse = np.linalg.norm(kick.w_plus[0] - before.w_plus[0])
    fine = np.linalg.norm(kick.w_plus[-1] - before.w_plus[-1])
    assert coarse > 3 * fine                     # the kick pushes the coarse layers
    loud = dict(quiet, level=1.0, bass_att=2.0, treb_level=1.0)
    run(m, 100, loud)
    after = m.frame(m.time)
    assert after.truncation > before.truncation + 0.2
    assert after.uniforms["rgb_shift.amount"] > before.uniforms["rgb_shift.amount"] + 0.2
    assert after.uniforms["feedback.amount"] > before.uniforms["feedback.amount"]
    assert m.generator == "builtin:cppn" and m.shader_chain[0] == "feedback"

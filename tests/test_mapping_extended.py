"""Mapping language v2: LFOs, live tempo, new conditioning stages, keyframe files, spline loops,
motion and pulls."""

import math
import textwrap

import numpy as np
import pytest

from engine.errors import MappingError
from engine.mapping import compile_mapping, load_mapping, parse_mapping
from engine.mapping.latent import Walk, lfo_value
from tests.test_mapping_compile import DT, HOP, SPACE, SR, STILL, build, run


def values_over(m, hops, name, features=None):
    out = []
    for _ in range(hops):
        m.step_hop(features or {}, {})
        out.append(m.values()[name])
    return np.array(out)


def uniform_over(m, hops, features_fn):
    out = []
    for i in range(hops):
        m.step_hop(features_fn(i), {})
        out.append(m.frame(m.time).uniforms["grade.hue"])
    return np.array(out)


def hue_route(body, head=""):
    return build(head + STILL + '[shaders]\nchain = ["grade"]\n[[route]]\nto = "shader.grade.hue"\n'
                 + textwrap.dedent(body))


# --- LFOs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,f,want", [
    ("sine", 0.0, 0.5), ("sine", 0.25, 1.0), ("sine", 0.75, 0.0),
    ("triangle", 0.0, 0.0), ("triangle", 0.5, 1.0), ("triangle", 0.25, 0.5),
    ("saw", 0.3, 0.3), ("saw", 1.3, 0.3), ("square", 0.2, 1.0), ("square", 0.7, 0.0),
])
def test_lfo_shapes(shape, f, want):
    assert lfo_value(shape, f) == pytest.approx(want, abs=1e-12)


def test_random_lfo_holds_per_cycle_and_varies_between_cycles():
    a = [lfo_value("random", c + 0.1, seed=3) for c in range(50)]
    assert all(0.0 <= v < 1.0 for v in a)
    assert lfo_value("random", 7.1, 3) == lfo_value("random", 7.9, 3)
    assert len(set(a)) == 50 and 0.3 < np.mean(a) < 0.7
    assert lfo_value("random", 7.1, 4) != lfo_value("random", 7.1, 3)


def test_lfo_in_hz_runs_on_the_audio_clock():
    m = build(STILL + '[lfo]\nwobble = { shape = "saw", hz = 0.5 }\n'
              '[[route]]\nfrom = "lfo.wobble"\nto = "noise"\n')
    v = values_over(m, 200, "lfo.wobble")
    t = np.arange(1, 201) * DT
    np.testing.assert_allclose(v, (t * 0.5) % 1.0, atol=1e-9)


def test_lfo_in_beats_follows_the_clock_and_prefers_a_live_beat_phase():
    m = build('[clock]\nbpm = 120\n' + STILL + '[lfo]\npump = { shape = "saw", beats = 2 }\n'
              '[[route]]\nfrom = "lfo.pump"\nto = "noise"\n')
    v = values_over(m, 100, "lfo.pump")
    t = np.arange(1, 101) * DT
    np.testing.assert_allclose(v, (t * 2.0 / 2.0) % 1.0, atol=1e-9)   # 2 beats/s, 2 beats/cycle
    # a tempo tracker sends beat_phase: the lfo follows it, counting wraps as beats
    live = build('[clock]\nbpm = 120\n' + STILL + '[lfo]\npump = { shape = "saw", beats = 2 }\n'
                 '[[route]]\nfrom = "lfo.pump"\nto = "noise"\n')
    seen = []
    for i in range(60):
        phase = (i * 0.1) % 1.0            # a tempo the clock does not have
        live.step_hop({"beat_phase": phase}, {})
        seen.append((live.values()["beats"], live.values()["lfo.pump"]))
    beats = np.array([b for b, _ in seen])
    np.testing.assert_allclose(np.diff(beats), 0.1, atol=1e-9)
    assert seen[-1][1] == pytest.approx((beats[-1] / 2.0) % 1.0)


def test_live_bpm_feature_sets_the_beat_rate():
    m = build('[clock]\nbpm = 60\n' + STILL + '[[route]]\nfrom = "beats"\nto = "noise"\n')
    b = values_over(m, 100, "beats", {"bpm": 240.0})
    np.testing.assert_allclose(np.diff(b), DT * 4.0, rtol=1e-9)


def test_lfo_errors():
    with pytest.raises(MappingError, match=r"t.toml:2: lfo.p.beats needs \[clock\] bpm"):
        parse_mapping('[lfo]\np = { shape = "saw", beats = 1 }\n', "t.toml")
    with pytest.raises(MappingError, match=r"t.toml:2: lfo.p needs exactly one of hz, beats"):
        parse_mapping('[lfo]\np = { shape = "saw" }\n', "t.toml")
    with pytest.raises(MappingError, match=r"did you mean 'sine'"):
        parse_mapping('[lfo]\np = { shape = "sin", hz = 1 }\n', "t.toml")
    with pytest.raises(MappingError, match=r":4: .*unknown lfo 'lfo.wobbel'.*'lfo.wobble'"):
        parse_mapping('[lfo]\nwobble = { hz = 1 }\n[[route]]\nfrom = "lfo.wobbel"\n'
                      'to = "noise"\n', "t.toml")


# --- conditioning -------------------------------------------------------------------------------

def test_gate_closes_the_route():
    m = hue_route('from = "0.7"\ngate = "param.on"\n', '[params]\non = 0.0\n')
    m.step_hop({}, {})
    assert m.frame(m.time).uniforms["grade.hue"] == 0.0
    m.step_hop({}, {"on": 1.0})
    assert m.frame(m.time).uniforms["grade.hue"] == pytest.approx(0.7)


def test_hold_samples_on_the_trigger_edge():
    m = hue_route('from = "centroid"\nhold = "onset"\n')
    feats = [{"centroid": 0.2, "onset": 0.0}, {"centroid": 0.6, "onset": 1.0},
             {"centroid": 0.9, "onset": 1.0}, {"centroid": 0.1, "onset": 0.0},
             {"centroid": 0.4, "onset": 1.0}]
    out = uniform_over(m, len(feats), lambda i: feats[i])
    # before the first trigger it holds the value at load (all features 0)
    np.testing.assert_allclose(out, [0.0, 0.6, 0.6, 0.6, 0.4])


def test_quantize_changes_only_on_the_beat():
    m = hue_route('from = "time"\nquantize = { beats = 1 }\n', '[clock]\nbpm = 120\n')
    out = uniform_over(m, 300, lambda i: {})
    changes = np.nonzero(np.diff(out))[0] + 1
    t_changes = (changes + 1) * DT
    assert len(changes) >= 5
    # each change happens on the first hop of a new half-second beat
    assert np.all((t_changes % 0.5) < DT + 1e-9)


def test_normalize_tracks_a_running_range():
    m = hue_route('from = "rms"\nnormalize = { window_s = 2 }\n')
    quiet = uniform_over(m, 400, lambda i: {"rms": 0.01 + 0.01 * math.sin(i * 0.3)})
    # a quiet signal still swings over most of 0..1 once its range is learnt
    assert quiet[-100:].max() > 0.9 and quiet[-100:].min() < 0.1
    assert np.all((quiet >= 0) & (quiet <= 1))


def test_curves():
    m = hue_route('from = "param.x"\ncurve = "smoothstep"\n', '[params]\nx = 0.25\n')
    m.step_hop({}, {})
    assert m.frame(0).uniforms["grade.hue"] == pytest.approx(0.25 ** 2 * (3 - 0.5))
    m = hue_route('from = "param.x"\ncurve = { exp = 3 }\n', '[params]\nx = 0.5\n')
    m.step_hop({}, {})
    assert m.frame(0).uniforms["grade.hue"] == pytest.approx(math.expm1(1.5) / math.expm1(3))
    for x in (0.0, 1.0):
        m.step_hop({}, {"x": x})
        assert m.frame(0).uniforms["grade.hue"] == pytest.approx(x)


@pytest.mark.parametrize("bounds,check", [
    ("wrap", lambda v: np.any(np.diff(v) < -0.5)),
    ("bounce", lambda v: np.any(np.diff(v) < 0) and v.max() <= 1.0 and np.all(np.abs(np.diff(v)) < 0.02)),
    ("clamp", lambda v: v[-1] == 1.0),
])
def test_integrate_velocity_to_position(bounds, check):
    m = hue_route(f'from = "1"\nintegrate = {{ min = 0, max = 1, bounds = "{bounds}" }}\n')
    v = uniform_over(m, 300, lambda i: {})
    assert v[0] == pytest.approx(DT * 2, rel=1e-6)     # initial value + first hop: 1/s
    assert np.all((v >= 0) & (v <= 1))
    assert check(v)


def test_integrated_speed_depends_on_velocity():
    m = hue_route('from = "bass"\nintegrate = { min = 0, max = 100 }\n')
    uniform_over(m, 86, lambda i: {"bass": 2.0})    # velocity 2/s for 86 hops (load: bass 0)
    assert m.frame(m.time).uniforms["grade.hue"] == pytest.approx(2.0 * 86 * DT, rel=1e-6)


def test_conditioning_errors():
    with pytest.raises(MappingError, match=r"t.toml:5: .*'quantize' needs \[clock\] bpm"):
        parse_mapping('[[route]]\nfrom = "1"\nto = "noise"\n\nquantize = 1\n', "t.toml")
    with pytest.raises(MappingError, match=r"t.toml:4: .*integrate: min must be below max"):
        parse_mapping('[[route]]\nfrom = "1"\nto = "noise"\nintegrate = { min = 1, max = 0 }\n',
                      "t.toml")
    with pytest.raises(MappingError, match=r"t.toml:4: .*'gate': unknown source 'onst'"):
        parse_mapping('[[route]]\nfrom = "1"\nto = "noise"\ngate = "onst"\n', "t.toml")
    with pytest.raises(MappingError, match=r"curve' must be one of"):
        parse_mapping('[[route]]\nfrom = "1"\nto = "noise"\ncurve = "cubic"\n', "t.toml")


def test_new_stages_survive_a_reload():
    text = STILL + '[shaders]\nchain = ["grade"]\n[[route]]\nfrom = "1"\nto = "shader.grade.hue"\n' \
        'integrate = { min = 0, max = 10 }\n'
    a = build(text)
    run(a, 100)
    b = build(text)
    b.restore(a.state())
    b.step_hop({}, {})
    a.step_hop({}, {})
    assert b.frame(b.time).uniforms == a.frame(a.time).uniforms


# --- latent targets -----------------------------------------------------------------------------

def test_keyframes_from_files_and_seeds(tmp_path):
    key = np.full(SPACE.w_dim, 0.25, dtype=np.float32)
    np.save(tmp_path / "k.npy", key)
    layered = np.arange(SPACE.num_layers * SPACE.w_dim, dtype=np.float32).reshape(
        SPACE.num_layers, SPACE.w_dim) / 100
    np.save(tmp_path / "layered.npy", layered)
    f = tmp_path / "m.toml"
    f.write_text('[latent]\nkeyframes = ["k.npy", 5]\nwalk = { seconds_per_key = 1, '
                 'interp = "linear" }\n')
    m = compile_mapping(load_mapping(f), SPACE, SR, HOP)
    np.testing.assert_array_equal(m.frame(0.0).w_plus, np.tile(key, (SPACE.num_layers, 1)))
    f.write_text('[latent]\nkeyframes = { seeds = [5], files = ["layered.npy"] }\n'
                 'walk = { seconds_per_key = 1, interp = "linear" }\n')
    m = compile_mapping(load_mapping(f), SPACE, SR, HOP)
    while m.time + DT <= 1.0:
        m.step_hop({}, {})
    np.testing.assert_allclose(m.frame(1.0).w_plus, layered, atol=1e-5)
    fresh = compile_mapping(load_mapping(f), SPACE, SR, HOP)
    np.testing.assert_allclose(fresh.frame(0.0).w_plus,
                               np.tile(SPACE.seed_to_w(5), (SPACE.num_layers, 1)), atol=1e-6)


def test_keyframe_file_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 7), dtype=np.float32))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f = tmp_path / "m.toml"
    for name, pattern in [("bad.npy", r"has shape \[3, 7\]; this generator needs \[64\] or "
                                      r"\[6, 64\]"),
                          ("obj.npy", r"not a readable .npy array"),
                          ("gone.npy", r"not found")]:
        f.write_text(f'[meta]\nname = "x"\n[latent]\nkeyframes = {{ files = ["{name}"] }}\n')
        with pytest.raises(MappingError, match=r"m.toml:4: keyframe file .*" + pattern):
            compile_mapping(load_mapping(f), SPACE, SR, HOP)
    with pytest.raises(MappingError, match=r"must be a .npy file"):
        parse_mapping('[latent]\nkeyframes = ["x.py"]\n')


def test_spline_walk_passes_through_keys_and_joins_smoothly():
    keys = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    w = Walk(keys, "spline", np.zeros(8, np.float32))
    out = np.empty(8, np.float32)
    for k in range(5):
        np.testing.assert_allclose(w.at(k, out), keys[k], atol=1e-6)
    # the velocity is continuous at every key, the loop's join included
    h = 1e-3
    for k in range(5):
        before = (w.at(k, out).copy() - w.at(k - h, out).copy()) / h
        after = (w.at(k + h, out).copy() - w.at(k, out).copy()) / h
        np.testing.assert_allclose(before, after, atol=0.02)


def test_pull_drags_toward_a_keyframe_on_its_layers():
    m = build('[latent]\nkeyframes = { seeds = [1, 2, 3] }\nwalk = { seconds_per_key = 100 }\n'
              '[[route]]\nfrom = "onset"\nto = "latent.pull"\nkey = 2\nlayers = "coarse"\n'
              'envelope = { attack_ms = 0, release_ms = 500 }\n')
    before = m.frame(0.0).w_plus
    m.step_hop({"onset": 1.0}, {})
    hit = m.frame(m.time).w_plus
    target = SPACE.seed_to_w(3)
    d_before = np.linalg.norm(before[0] - target)
    assert np.linalg.norm(hit[0] - target) < 0.05 * d_before          # coarse: at key 2
    np.testing.assert_allclose(hit[4], before[4], atol=0.05 * d_before)  # fine: untouched
    run(m, 100)
    assert np.linalg.norm(m.frame(m.time).w_plus[0] - target) > 0.5 * d_before  # released


def test_pull_key_out_of_range():
    with pytest.raises(MappingError, match=r"t.toml:6: route #1 'key' must be 0..2, got 3"):
        parse_mapping('[latent]\nkeyframes = { seeds = [1, 2, 3] }\n[[route]]\nfrom = "onset"\n'
                      'to = "latent.pull"\nkey = 3\n', "t.toml")


def test_motion_drifts_bounded_and_follows_its_route():
    text = (STILL + '[latent.motion]\nspeed = 2.0\njitter = 0.5\nbound = 0.5\nseed = 1\n'
            '[[route]]\nfrom = "bass"\nto = "latent.motion"\n')
    m = build(text)
    base = m.frame(0.0).w_plus.copy()
    run(m, 200, {"bass": 0.0})
    np.testing.assert_array_equal(m.frame(m.time).w_plus, base)        # no bass, no motion
    offsets = []
    for _ in range(600):
        m.step_hop({"bass": 1.0}, {})
        offsets.append(m.frame(m.time).w_plus[0] - base[0])
    offsets = np.array(offsets)
    spread = np.abs(offsets).max()
    assert spread > 0
    assert np.all(np.abs(offsets) <= spread + 1e-6)
    # some dimensions turned back at the bound: motion is not a straight line
    turned = np.any(np.diff(np.sign(np.diff(offsets, axis=0)), axis=0) != 0, axis=0)
    assert turned.mean() > 0.5


def test_a_mapping_with_motion_survives_a_reload_with_its_drift_and_params():
    from engine.paths import MAPPING_DIR as MAPPINGS_DIR

    spec = load_mapping(MAPPINGS_DIR / "gallery_drift.toml")
    a = compile_mapping(spec, SPACE, SR, HOP)
    run(a, 200)
    before = a.frame(a.time).w_plus
    b = compile_mapping(load_mapping(MAPPINGS_DIR / "gallery_drift.toml"), SPACE, SR, HOP)
    b.restore(a.state())   # this once raised NameError for a mapping with motion
    np.testing.assert_allclose(b.frame(b.time).w_plus, before, atol=1e-5)
    assert b.values() == a.values()

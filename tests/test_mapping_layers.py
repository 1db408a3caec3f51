"""Per-layer routing: layers and mode (average / add / overwrite) of every latent contribution,
per-layer noise, generator-specific targets and [bindings]."""

import textwrap

import numpy as np
import pytest

from engine.errors import MappingError
from engine.mapping import compile_mapping, parse_mapping

SR, HOP = 44100, 512


class Space:
    latent_dim = 16
    w_dim = 16
    num_layers = 6

    def __init__(self, param_ranges=None):
        self.w_avg = np.linspace(-0.5, 0.5, self.w_dim).astype(np.float32)
        if param_ranges is not None:
            self.param_ranges = param_ranges

    def seed_to_w(self, seed):
        rng = np.random.default_rng(seed)
        return (self.w_avg + rng.standard_normal(self.w_dim)).astype(np.float32)

    def layer_groups(self):
        return {"coarse": range(0, 2), "middle": range(2, 4), "fine": range(4, 6)}


SPACE = Space()


def build(text, space=SPACE):
    return compile_mapping(parse_mapping(textwrap.dedent(text), "t.toml"), space, SR, HOP)


def frame_after(m, features, hops=1):
    for _ in range(hops):
        m.step_hop(features, {})
    return m.frame(m.time)


STILL = '[latent]\nkeyframes = { seeds = [1, 2] }\nwalk = { seconds_per_key = 1000 }\n'


def moved(a, b):
    return np.linalg.norm(a.w_plus - b.w_plus, axis=1)


@pytest.mark.parametrize("mode", ["add", "average", "overwrite"])
def test_push_modes_touch_only_their_rows(mode):
    m = build(STILL + f'''
        [[route]]
        from = "bass"
        to = "latent.push"
        direction = {{ seed = 3 }}
        layers = "coarse"
        mode = "{mode}"
    ''')
    base = frame_after(m, {"bass": 0.0})
    hit = frame_after(m, {"bass": 0.8})
    d = moved(base, hit)
    assert d[:2].min() > 0.1 and d[2:].max() < 1e-3   # the walk itself barely moves
    w_avg = SPACE.w_avg
    direction = m._pushes[0].d
    rows = hit.w_plus[:2]
    if mode == "add":
        np.testing.assert_allclose(rows, base.w_plus[:2] + 0.8 * direction, atol=1e-3)
    elif mode == "average":
        p = w_avg + direction
        np.testing.assert_allclose(rows, 0.2 * base.w_plus[:2] + 0.8 * p, atol=1e-3)
    else:
        np.testing.assert_allclose(rows, np.broadcast_to(w_avg + 0.8 * direction, rows.shape),
                                   atol=1e-5)


def test_pull_modes_and_explicit_range():
    text = STILL + '''
        [[route]]
        from = "param.p"
        to = "latent.pull"
        key = 1
        layers = [3, 5]
        mode = "MODE"
        [params]
        p = 0.0
    '''
    key1 = SPACE.seed_to_w(2)
    for mode in ("average", "overwrite", "add"):
        m = build(text.replace("MODE", mode))
        base = m.frame(0.0)
        m.step_hop({}, {"p": 1.0})
        f = m.frame(m.time)
        assert np.abs(f.w_plus[:3] - base.w_plus[:3]).max() < 1e-3   # walk barely moves
        if mode in ("average", "overwrite"):
            np.testing.assert_allclose(f.w_plus[3:], np.broadcast_to(key1, (3, 16)), atol=1e-5)
        else:
            np.testing.assert_allclose(f.w_plus[3:], base.w_plus[3:] + (key1 - SPACE.w_avg),
                                       atol=1e-3)


def test_blend_on_fine_layers_only():
    m = build('''
        [latent]
        keyframes = { seeds = [1, 2, 3] }
        walk = { seconds_per_key = 1000 }
        [[route]]
        from = "chroma"
        to = "latent.blend"
        layers = "fine"
    ''')
    base = m.frame(0.0)
    chroma = np.zeros(12, np.float32)
    chroma[2] = 1.0
    f = frame_after(m, {"chroma": chroma})
    np.testing.assert_allclose(f.w_plus[4:], np.broadcast_to(SPACE.seed_to_w(3), (2, 16)),
                               atol=1e-5)
    assert np.abs(f.w_plus[:4] - base.w_plus[:4]).max() < 1e-3


def test_walk_layers_hold_key_zero_elsewhere_and_motion_overwrite():
    m = build('''
        [latent]
        keyframes = { seeds = [1, 2] }
        walk = { seconds_per_key = 1, layers = "fine", interp = "linear" }
        motion = { speed = 1, layers = "coarse", mode = "overwrite" }
    ''')
    k0 = SPACE.seed_to_w(1)
    f = frame_after(m, {}, hops=40)                # ~0.46 keys along the walk
    np.testing.assert_allclose(f.w_plus[2:4], np.broadcast_to(k0, (2, 16)), atol=1e-6)
    assert np.abs(f.w_plus[4:] - k0).max() > 0.1
    np.testing.assert_allclose(f.w_plus[0], SPACE.w_avg + m._motion32, atol=1e-6)


def test_order_pull_then_push():
    """Contributions apply blends -> pulls -> motion -> pushes: an overwriting pull then an
    added push gives key + push, whatever the file order."""
    m = build(STILL + '''
        [[route]]
        from = "1.0"
        to = "latent.push"
        direction = { seed = 9 }
        [[route]]
        from = "1.0"
        to = "latent.pull"
        key = 1
        mode = "overwrite"
    ''')
    f = m.frame(0.0)
    np.testing.assert_allclose(f.w_plus, np.broadcast_to(SPACE.seed_to_w(2) + m._pushes[0].d,
                                                         (6, 16)), atol=1e-5)


def test_per_layer_noise():
    m = build('''
        [latent]
        keyframes = { seeds = [1] }
        noise = 0.1
        [[route]]
        from = "bass"
        to = "noise"
        layers = "fine"
        [[route]]
        from = "treb"
        to = "noise"
        layers = "coarse"
        mode = "add"
    ''')
    f = frame_after(m, {"bass": 0.7, "treb": 0.3})
    assert isinstance(f.noise, np.ndarray) and f.noise.dtype == np.float32
    np.testing.assert_allclose(f.noise, [0.4, 0.4, 0.1, 0.1, 0.7, 0.7], atol=1e-6)
    plain = build('[[route]]\nfrom = "bass"\nto = "noise"\n')
    assert isinstance(frame_after(plain, {"bass": 0.5}).noise, float)


def test_generator_targets_checked_against_the_generator():
    text = '''
        [[route]]
        from = "bass"
        to = "generator.blend"
        gain = 2
    '''
    m = build(text, Space({"blend": (0.5, 0.0, 1.0)}))
    assert m.frame(0.0).generator == {"blend": 0.0}
    assert frame_after(m, {"bass": 0.3}).generator["blend"] == pytest.approx(0.6)
    assert frame_after(m, {"bass": 4.0}).generator["blend"] == 1.0      # clamped to its range
    with pytest.raises(MappingError, match=r"t.toml:4: unknown generator parameter 'blnd'.*"
                                           r"did you mean 'blend'"):
        build(text.replace("generator.blend", "generator.blnd"), Space({"blend": (0.5, 0, 1)}))
    with pytest.raises(MappingError, match="this generator has: none"):
        build(text)


def test_bindings_pass_through_and_bad_ones_fail():
    spec = parse_mapping('[bindings]\n"/1/fader1" = "param.speed"\n"midi:cc:1:7" = "x"\n', "b.toml")
    assert spec.bindings == {"/1/fader1": "param.speed", "midi:cc:1:7": "x"}
    assert compile_mapping(spec, SPACE, SR, HOP).bindings == spec.bindings
    with pytest.raises(MappingError, match=r"b.toml:3: bindings.'/x' must be a string"):
        parse_mapping('[bindings]\n"/a" = "p"\n"/x" = 3\n', "b.toml")


@pytest.mark.parametrize("body, message", [
    ('to = "latent.speed"\nlayers = "coarse"', "'layers' only applies to"),
    ('to = "truncation"\nmode = "add"', "'mode' only applies to"),
    ('to = "noise"\nmode = "average"', "must be one of add, overwrite"),
    ('to = "latent.push"\ndirection = { seed = 1 }\nmode = "avg"', "did you mean 'average'"),
])
def test_bad_modes_and_layers(body, message):
    with pytest.raises(MappingError, match=r"t.toml:\d+: .*" + message):
        parse_mapping('[[route]]\nfrom = "bass"\n' + body + "\n", "t.toml")

"""The VJ effects in shaders/ (kaleido, warp, displace, strobe, grain, edge_glow) through the real
Renderer on an EGL context: each compiles, its defaults are sane, and its inputs move the picture
the way they should."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.pipeline import Renderer

SHADERS = Path(__file__).resolve().parent.parent / "shaders"
EFFECTS = ["kaleido", "warp", "displace", "strobe", "grain", "edge_glow"]


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def smooth(w, h):
    """An asymmetric, smooth picture (small sampling differences give small colour errors)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = x / (w - 1)
    g = y / (h - 1)
    b = 0.5 + 0.4 * np.sin(x / w * 5.0 + y / h * 2.0)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def run(ctx, name, img, uniforms=None, time=0.0, frames=1):
    h, w = img.shape[:2]
    r = Renderer(ctx, (w, h), (w, h), [name], SHADERS)
    assert r.errors == [] and r.chain == [name]
    for _ in range(frames):
        r.render(img, {f"{name}.{k}": v for k, v in (uniforms or {}).items()}, time)
    out = r.read().astype(int)
    r.release()
    return out


def diff(a, b):
    return np.abs(np.asarray(a, int) - np.asarray(b, int))


@pytest.mark.parametrize("name", EFFECTS)
def test_header_is_complete(name):
    text = (SHADERS / f"{name}.fs").read_text()
    header = json.loads(re.match(r"\s*/\*(.*?)\*/", text, re.S).group(1))
    assert header["DESCRIPTION"] and header["CATEGORIES"]
    values = [i for i in header["INPUTS"] if i["TYPE"] != "image"]
    assert values
    for inp in values:
        assert inp.get("LABEL"), inp
        if inp["TYPE"] == "float":
            assert inp["MIN"] <= inp["DEFAULT"] <= inp["MAX"], inp


@pytest.mark.parametrize("name", EFFECTS)
def test_compiles_and_runs_with_defaults(ctx, name):
    img = smooth(64, 48)
    out = run(ctx, name, img, time=1.3)
    assert out.shape == (48, 64, 3)
    assert 10 < out.mean() < 245                    # a picture, not black or white


def test_kaleido_is_mirror_symmetric(ctx):
    img = smooth(64, 64)
    assert diff(img, img[::-1]).max() > 100 and diff(img, img[:, ::-1]).max() > 100
    two = run(ctx, "kaleido", img, {"segments": 2})
    assert diff(two, two[::-1]).max() <= 3          # top-bottom mirror
    assert diff(two, two[:, ::-1]).max() <= 3       # and left-right for an even count
    three = run(ctx, "kaleido", img, {"segments": 3})
    assert diff(three, three[::-1]).max() <= 3
    assert diff(three, three[:, ::-1]).max() > 30   # three-fold: no left-right mirror
    turned = run(ctx, "kaleido", img, {"segments": 3, "rotate": 0.25})
    assert diff(turned, turned[:, ::-1]).max() <= 3  # a quarter turn moves the mirror axis


def test_warp_identity_half_turn_and_zoom(ctx):
    img = smooth(64, 64)
    still = {"zoom": 0.0, "rotate": 0.0, "swirl": 0.0}
    assert diff(run(ctx, "warp", img, still), img).max() <= 2
    half = run(ctx, "warp", img, {**still, "rotate": 0.5})
    assert diff(half, img[::-1, ::-1]).max() <= 3
    zoomed = run(ctx, "warp", img, {**still, "zoom": 0.5})      # 2x about the centre
    assert diff(zoomed[0, 0], img[16, 16]).max() <= 6
    swirled = run(ctx, "warp", img, {**still, "swirl": 0.5})
    assert diff(swirled, img).max() > 60
    assert diff(swirled[0, 0], img[0, 0]).max() <= 3           # the corners barely twist


def test_displace_follows_the_luminance_gradient(ctx):
    y, x = np.mgrid[0:64, 0:64]
    blob = np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / 120.0)
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = (blob * 255).astype(np.uint8)               # a bright blob on a hue ramp
    img[..., 1] = (blob * 255).astype(np.uint8)
    img[..., 2] = ((x / 63) * 255).astype(np.uint8)
    assert diff(run(ctx, "displace", img, {"amount": 0.0}), img).max() <= 1
    moved = run(ctx, "displace", img, {"amount": 1.0, "scale": 1.0})
    assert diff(moved, img).max() > 20
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert diff(run(ctx, "displace", flat, {"amount": 1.0, "scale": 1.0}), flat).max() <= 1


def test_strobe_trigger_rate_and_invert(ctx):
    img = smooth(32, 32)
    assert diff(run(ctx, "strobe", img), img).max() <= 1       # no trigger, no rate: unchanged
    lit = run(ctx, "strobe", img, {"trigger": 1.0})
    assert lit.mean() > img.mean() + 30
    assert lit.min() >= 0.8 * 255 - 2                          # default amount 0.8 towards white
    assert run(ctx, "strobe", img, {"trigger": 1.0, "amount": 1.0}).min() >= 254
    on = run(ctx, "strobe", img, {"rate": 2.0, "amount": 1.0}, time=10.05)   # 10 % into a period
    off = run(ctx, "strobe", img, {"rate": 2.0, "amount": 1.0}, time=10.3)   # 60 % into it
    assert on.min() >= 254 and diff(off, img).max() <= 1
    inv = run(ctx, "strobe", img, {"trigger": 1.0, "amount": 1.0, "invert": 1.0})
    assert diff(inv, 255 - img.astype(int)).max() <= 1


def test_grain_is_off_at_zero_and_moves_with_time(ctx):
    img = np.full((64, 256, 3), 128, np.uint8)
    assert diff(run(ctx, "grain", img, {"amount": 0.0}, time=2.0), img).max() <= 1
    g1 = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 0.0}, time=2.0)
    again = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 0.0}, time=2.0)
    later = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 0.0}, time=2.5)
    frozen = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 0.0, "speed": 0.0}, time=2.5)
    frozen0 = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 0.0, "speed": 0.0}, time=0.1)
    assert (g1 - 128).std() > 10                               # visible grain
    assert abs(g1.mean() - 128) < 4                            # that does not shift the level
    assert np.array_equal(g1, again)                           # deterministic in TIME
    assert diff(g1, later).mean() > 5                          # and changes with it
    assert np.array_equal(frozen, frozen0)                     # speed 0: frozen grain
    rows = run(ctx, "grain", img, {"amount": 1.0, "scanlines": 1.0}, time=2.0).mean(axis=(1, 2))
    assert np.ptp(rows) > 30 and np.ptp(g1.mean(axis=(1, 2))) < 15


def test_edge_glow_colours_edges_only(ctx):
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 255
    flat = np.full((32, 32, 3), 100, np.uint8)
    assert diff(run(ctx, "edge_glow", flat), flat).max() <= 1
    red = run(ctx, "edge_glow", img, {"hue": 0.0, "amount": 1.0})
    assert red[16, 15, 0] > 150 and red[16, 15, 2] < 60         # a red line on the dark side
    assert diff(red[:, :10], img[:, :10]).max() <= 1            # away from the edge: unchanged
    green = run(ctx, "edge_glow", img, {"hue": 1 / 3, "amount": 1.0})
    assert green[16, 15, 1] > 150 and green[16, 15, 0] < 60
    dark = run(ctx, "edge_glow", img, {"background": 0.0, "amount": 1.0})
    assert dark[:, 24:].max() <= 1 and dark[16, 15].max() > 150  # only the edge is left
    assert diff(run(ctx, "edge_glow", img, {"threshold": 1.0}), img).max() <= 1

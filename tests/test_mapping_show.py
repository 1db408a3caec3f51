"""Show commands on a real Session: scene keys and OSC commands (over UDP), presets saved and
recalled with a crossfade, latent keyframes saved and loaded by name, cue files."""

from __future__ import annotations

import socket
import time
import textwrap

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.control import Controls, OscServer
from engine.cues import CueTimer, parse_cue_file
from engine.errors import MappingError
from engine.mapping.scenes import FadingMapping, SceneSet
from engine.presets import PresetError, load_preset
from engine.session import HOP, ArrayReader, Session
from engine.show import Show
from support import wait_for

SR = 22050
SIZE = (32, 32)

SCENE_FILE = '''
[params]
glow = 0.5

[latent]
keyframes = { seeds = [1, 2, 3] }
walk = { seconds_per_key = 2 }

[scenes]
crossfade = 0.5

[[scene]]
name = "a"

[[scene]]
name = "b"
[scene.latent]
keyframes = { seeds = [7, 8] }

[[scene]]
name = "c"
'''


@pytest.fixture
def rig(tmp_path):
    path = tmp_path / "show.toml"
    path.write_text(SCENE_FILE)
    session = Session(SR, path, size=SIZE, threaded=False)
    controls = Controls(smoothing=0.0)
    show = Show(session, controls, presets_dir=tmp_path / "presets")
    reader = ArrayReader(np.zeros(SR * 60, np.float32))
    state = {"pos": 0}

    def frames(n=1):
        p = None
        for _ in range(n):
            state["pos"] += SR // 30
            session.apply_reload()
            p = session.params_at(reader, state["pos"], controls.snapshot().params)
        return p

    yield session, show, controls, frames, tmp_path
    session.close()


def test_keys_pick_scenes_and_step_through_them(rig):
    session, show, _, frames, _ = rig
    frames(3)
    assert isinstance(session.mapping, SceneSet) and session.mapping.scene == "a"
    assert show.key("2") and session.mapping.scene == "b"
    frames(30)                                      # 1 s: the 0.5 s crossfade is over
    assert show.key("n") and session.mapping.scene == "c"
    frames(30)
    assert show.key("n") and session.mapping.scene == "a"   # wraps
    frames(30)
    assert show.key("p") and session.mapping.scene == "c"
    frames(30)
    assert show.key("9") is True and session.mapping.scene == "c"   # no 9th scene: reported
    assert "no scene 8" in session.last_error
    assert show.key("x") is False
    assert show.key("f3") is True and "no preset 'f3'" in session.last_error


def test_function_keys_recall_presets(rig):
    session, show, controls, frames, tmp_path = rig
    show.key("3")
    frames(30)
    show.save_preset("f2")
    show.key("1")
    frames(30)
    assert show.key("f2")
    wait_for(lambda: session._pending_mapping is not None, "the preset to compile")
    frames(80)
    assert session.mapping.scene == "c"


def test_osc_commands_arrive_over_udp(rig):
    session, show, controls, frames, tmp_path = rig
    server = OscServer(controls, port=0)
    server.start()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for address, *args in (("/lj/scene", 3), ("/lj/scene", "b"), ("/lj/scene/next",),
                               ("/lj/latent/save", "here"), ("/lj/scene", 1.5),
                               ("/lj/preset/save", "p1")):
            b = OscMessageBuilder(address)
            for a in args:
                b.add_arg(a)
            sock.sendto(b.build().dgram, ("127.0.0.1", server.port))
        got = []
        wait_for(lambda: got.extend(controls.snapshot().commands) or len(got) >= 5,
                 "five commands")
        assert got == [("/lj/scene", 3), ("/lj/scene", "b"), ("/lj/scene/next", None),
                       ("/lj/latent/save", "here"), ("/lj/preset/save", "p1")]
        assert controls.stats["bad_values"] == 1          # 1.5 is no scene number
        frames(2)
        show.command(*got[0])
        assert session.mapping.scene == "c"
        frames(20)
        show.command(*got[3])
        assert (tmp_path / "latents" / "here.npy").exists()
    finally:
        server.stop()


def test_preset_save_and_recall_with_a_crossfade(rig):
    session, show, controls, frames, tmp_path = rig
    show.key("2")
    frames(40)
    controls.set_param("glow", 0.9)
    frames(2)
    saved_keys = np.array(session.mapping.keyframes)
    path = show.save_preset("night")
    p = load_preset(tmp_path / "presets", "night")
    assert p.scene == "b" and p.params["glow"] == pytest.approx(0.9)
    np.testing.assert_array_equal(p.keyframes, saved_keys)
    assert (path.parent / "night.npy").exists()

    show.key("1")
    controls.set_param("glow", 0.1)
    frames(40)
    assert session.mapping.scene == "a"
    before = frames(1)
    show.load_preset("night")
    wait_for(lambda: session._pending_mapping is not None, "the preset's mapping to compile")
    after = frames(1)
    assert isinstance(session.mapping, FadingMapping)
    assert np.abs(after.w_plus - before.w_plus).max() < 0.2   # the fade starts where we were
    frames(80)                                                  # 2 s crossfade
    assert isinstance(session.mapping, SceneSet) and session.mapping.scene == "b"
    np.testing.assert_array_equal(session.mapping.keyframes, saved_keys)
    assert session.mapping.values()["param.glow"] == pytest.approx(0.9)


def test_bad_presets_are_reported_not_raised(rig):
    session, show, _, frames, tmp_path = rig
    frames(1)
    show.command("/lj/preset/load", "missing")
    assert "no preset 'missing'" in session.last_error
    show.command("/lj/preset/load", "../etc/passwd")
    assert "must be 1-64 letters" in session.last_error
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.toml").write_text('[preset]\nmapping = 3\n')
    with pytest.raises(PresetError, match="bad.toml: \\[preset\\] mapping must name"):
        load_preset(tmp_path / "presets", "bad")
    frames(1)                                                    # still running


def test_latent_save_recall_and_load_by_name(rig):
    session, show, _, frames, tmp_path = rig
    frames(5)
    show.save_latent("dawn")
    dawn = np.load(tmp_path / "latents" / "dawn.npy")
    assert dawn.shape == (session.space.num_layers, session.space.w_dim)
    frames(60)
    far = frames(1)
    assert np.abs(far.w_plus - dawn).max() > 0.1
    show.recall_latent("dawn")
    frames(70)                                                   # 2 s fade in
    np.testing.assert_allclose(frames(1).w_plus, dawn, atol=1e-4)
    show.recall_latent("")                                       # let go: fades back out
    frames(70)
    assert session.latent_hold is None
    # a mapping file loads it by name
    (tmp_path / "uses.toml").write_text('[latent]\nkeyframes = { latents = ["dawn"] }\n')
    s2 = Session(SR, tmp_path / "uses.toml", size=SIZE, threaded=False)
    np.testing.assert_allclose(s2.mapping.keyframes.reshape(dawn.shape), dawn)
    s2.close()
    (tmp_path / "typo.toml").write_text('[latent]\nkeyframes = { latents = ["dusk"] }\n')
    with pytest.raises(MappingError, match=r"typo.toml:2: keyframe file .*dusk.npy not found"):
        Session(SR, tmp_path / "typo.toml", size=SIZE, threaded=False)


CUES = '''
[cues]
loop = 3.0
clock = "audio"

[[cue]]
at = 0
scene = "a"

[[cue]]
at = 1.0
scene = 3

[[cue]]
at = 2.0
preset = "night"
'''


def test_cue_file_parses_and_loops():
    spec = parse_cue_file(CUES, "c.toml")
    assert [(c.at, c.kind, c.value) for c in spec.cues] == [
        (0.0, "scene", "a"), (1.0, "scene", "3"), (2.0, "preset", "night")]
    t = CueTimer(spec)
    t.start(10.0)
    fired = []
    for i in range(1, 80):
        fired += [(round(10.0 + i * 0.1, 1), c.value) for c in t.due(10.0 + i * 0.1)]
    assert fired[:6] == [(10.1, "a"), (11.0, "3"), (12.0, "night"), (13.0, "a"), (14.0, "3"),
                         (15.0, "night")]


@pytest.mark.parametrize("text, message", [
    ('[[cue]]\nat = 1\n', r"c.toml:1: cue #1 needs one of scene, preset"),
    ('[[cue]]\nat = 1\nscene = "a"\npreset = "b"\n', r"c.toml:1: cue #1 needs one of"),
    ('[cues]\nloop = 1\n[[cue]]\nat = 2\nscene = "a"\n', r"c.toml:2: cues.loop \(1 s\) must be"),
    ('[cues]\nclock = "moon"\n[[cue]]\nat = 0\nscene = "a"\n', r"c.toml:2: cues.clock must be one"),
    ('[[cue]]\nat = -1\nscene = "a"\n', r"c.toml:2: cue #1 at \(seconds\) must be"),
    ('[[cue]]\nbar = 1\nscene = "a"\n', r"c.toml:2: cue #1 bar needs \[clock\] bpm"),
    ('[[cue]]\nat = 1\npreset = "../x"\n', r"c.toml:3: cue #1 preset '../x' must be a name"),
    ('cue = 3\n', r"c.toml:1: cue must be \[\[cue\]\] tables|needs \[\[cue\]\]"),
    ('[other]\n', r"c.toml:1: unknown table \[other\]"),
])
def test_bad_cue_files(text, message):
    with pytest.raises(MappingError, match=message):
        parse_cue_file(text, "c.toml")


def test_cue_file_drives_scenes_and_presets(rig):
    session, show, controls, frames, tmp_path = rig
    frames(2)
    show.save_preset("night")
    show.cues = CueTimer(parse_cue_file(CUES, "c.toml"))
    show._cue_clock = "audio"
    show.start_cues()
    seen = []
    for _ in range(100):                                     # 3.3 s at 30 fps
        frames(1)
        show.poll()
        m = session.mapping
        seen.append(getattr(m, "scene", None) if not isinstance(m, FadingMapping)
                    else "fading")
    assert "c" in seen and "fading" in seen
    assert seen.index("c") < seen.index("fading")
    show.stop_cues()
    assert not show.cues.running


def test_live_loop_scene_and_preset_commands_over_osc(tmp_path):
    """The whole path: lj's live loop (headless), OSC over UDP into the show commands, a cue
    file on the wall clock, presets saved to --presets."""
    import threading

    from pythonosc.udp_client import SimpleUDPClient

    from engine.audio.demo import demo_song
    from engine.live import LiveOptions, StopFlag, run_live
    from support import PacedSource, free_port

    samples, sr, _ = demo_song(seconds=30.0)
    mapping = tmp_path / "show.toml"
    mapping.write_text(SCENE_FILE)
    cues = tmp_path / "cues.toml"
    cues.write_text('[cues]\nclock = "wall"\n[[cue]]\nat = 0.5\nscene = "c"\n')
    port = free_port()
    opts = LiveOptions(mapping=str(mapping), size=32, headless=True, osc_port=port,
                       max_seconds=25, cues=str(cues), presets_dir=str(tmp_path / "presets"),
                       watch=False)
    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", run_live(
        PacedSource(samples, sr), opts, stop)))
    thread.start()
    try:
        client = SimpleUDPClient("127.0.0.1", port)
        ask = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ask.settimeout(0.5)
        get = OscMessageBuilder("/lj/get")
        get.add_arg("/lj/state/scene")

        def scene_is(name):
            ask.sendto(get.build().dgram, ("127.0.0.1", port))
            try:
                from pythonosc.osc_packet import OscPacket

                msg = OscPacket(ask.recvfrom(65536)[0]).messages[0].message
            except OSError:
                return False
            return msg.params == [name]

        wait_for(lambda: scene_is("c"), "the cue at 0.5 s to pick scene c", timeout=30)
        client.send_message("/lj/scene", 2)         # after the cue's crossfade, if one is on
        wait_for(lambda: scene_is("b"), "scene b", timeout=30)
        client.send_message("/lj/preset/save", "live")
        wait_for(lambda: (tmp_path / "presets" / "live.toml").exists(), "the preset file",
                 timeout=20)
    finally:
        stop()
        thread.join(30)
    stats = result["stats"]
    assert stats.session.mapping.scene == "b"
    preset = load_preset(tmp_path / "presets", "live")
    assert preset.scene == "b" and preset.mapping == str(mapping.resolve())
    assert stats.controls.stats["bad_values"] == 0


# -- issue 17 item 4: saves never replace a file unless asked, stay in their folder, are bounded --


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.exists() else {}


def test_a_preset_saved_again_under_its_name_is_refused_unless_the_operator_allows_it(rig):
    """Before: ``/lj/preset/save night`` silently replaced the operator's prepared preset."""
    session, show, _, frames, tmp_path = rig
    frames(5)
    first = show.save_preset("night")
    kept = _files(tmp_path / "presets")
    assert set(kept) == {"night.toml", "night.npy"}
    frames(30)
    show.command("/lj/preset/save", "night")
    assert "preset 'night' exists already" in session.last_error
    assert "--presets-overwrite" in session.last_error
    assert _files(tmp_path / "presets") == kept                  # byte for byte
    assert show.preset_gate.refused == 1 and show.preset_gate.written == 1
    # the operator opted in on the command line: a re-save replaces it, whole
    show2 = Show(session, presets_dir=tmp_path / "presets", overwrite=True)
    show2.key("2")                                               # scene b: other keyframes
    frames(40)
    assert show2.save_preset("night") == first
    now = _files(tmp_path / "presets")
    assert set(now) == {"night.toml", "night.npy"} and now["night.npy"] != kept["night.npy"]
    again = load_preset(tmp_path / "presets", "night")
    assert again.scene == "b"
    np.testing.assert_array_equal(again.keyframes, np.asarray(session.mapping.keyframes,
                                                              np.float32))


def test_a_latent_saved_again_under_its_name_is_refused(rig):
    session, show, _, frames, tmp_path = rig
    frames(5)
    show.save_latent("dawn")
    kept = _files(tmp_path / "latents")
    show.key("2")
    frames(60)
    assert show.save_latent("dawn") is None
    assert "latent 'dawn' exists already" in session.last_error
    assert _files(tmp_path / "latents") == kept
    assert Show(session, latents_dir=tmp_path / "latents", overwrite=True).save_latent("dawn")
    assert _files(tmp_path / "latents")["dawn.npy"] != kept["dawn.npy"]


def test_a_flood_of_preset_names_writes_a_bounded_number_of_files(rig, caplog):
    """Before: 2,000 ``/lj/preset/save`` names made 3,736 files in 6.5 s, a log line each."""
    session, show, _, frames, tmp_path = rig
    frames(2)
    caplog.clear()
    t0 = time.monotonic()
    for i in range(2000):
        show.command("/lj/preset/save", f"junk{i}")
    for name in ("../escape", "a/b", ".hidden", "x" * 200):
        show.command("/lj/preset/save", name)
    elapsed = time.monotonic() - t0
    gate = show.preset_gate
    files = list((tmp_path / "presets").iterdir())
    allowed = gate.burst + gate.rate * elapsed + 1
    assert gate.written <= allowed and len(files) == 2 * gate.written   # .toml + .npy each
    assert gate.written + gate.refused == 2004
    assert not (tmp_path / "escape.toml").exists() and not list(tmp_path.glob("*.npy"))
    logged = [m for m in caplog.messages if "preset not written" in m]
    assert 1 <= len(logged) <= elapsed / 5.0 + 2                 # once per interval
    frames(2)                                                    # the show goes on


def test_presets_folder_that_is_a_file_is_refused(rig):
    from engine.errors import LJError

    session, _, _, _, tmp_path = rig
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(LJError, match="--presets .*plain: exists and is not a folder"):
        Show(session, presets_dir=tmp_path / "plain")

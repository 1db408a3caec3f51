"""Who may do what over OSC (issue 17, items 5 and 6), over real UDP: LAN peers play the show but
need the operator's --osc-lan-admin to load files, swap models or record; paths in remote commands
stay inside the show's folders, and a refusal tells the sender only "refused".

A LAN peer is a real non-loopback sender when this machine has a LAN address (the server then
listens on that address); otherwise the datagram goes through the server's own handler with a
LAN sender address.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket

from engine.control import Controls, OscServer
from engine.control.access import ShowFolders
from engine.control.wire import encode_message
from support import PacedSource, free_port, wait_for

LOCAL = "127.0.0.1"
WAIT = 10.0  # an upper bound for a reply to cross loopback; never asserted as a duration
ROOT = Path(__file__).resolve().parent.parent


def lan_address() -> str | None:
    """This machine's address on a LAN (not loopback), or None."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        ip = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


class Peer:
    """Sends datagrams to ``srv`` from a LAN address (real UDP when possible) and reads replies."""

    def __init__(self, srv: OscServer, ip: str | None):
        self.srv, self.ip = srv, ip
        self.sock = None
        if ip is not None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((ip, 0))
            self.sock.settimeout(WAIT)

    def send(self, address: str, *args) -> None:
        before = self.srv.stats["messages"] + self.srv.stats["rejected_senders"]
        dgram = encode_message(address, list(args))
        if self.sock is not None:
            self.sock.sendto(dgram, (self.srv.host, self.srv.port))
        else:
            self.srv.handle_datagram(dgram, "198.51.100.7")
        wait_for(lambda: self.srv.stats["messages"] + self.srv.stats["rejected_senders"] > before,
                 f"{address} to be handled", timeout=WAIT)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def make_server(controls, lan: str | None, **kw) -> OscServer:
    srv = OscServer(controls, host=lan or LOCAL, port=0, **kw)
    srv.start()
    return srv


@pytest.fixture
def show(tmp_path):
    """A show folder with a mapping and a model, and an outside folder with a secret."""
    show_dir, outside = tmp_path / "show", tmp_path / "outside"
    show_dir.mkdir()
    outside.mkdir()
    (show_dir / "show.toml").write_text('[meta]\nname = "show"\n')
    (show_dir / "other.toml").write_text('[meta]\nname = "other"\n')
    (outside / "secrets.toml").write_text('api_key = "hunter2"\n')
    (show_dir / "link.toml").symlink_to(outside / "secrets.toml")
    os.mkfifo(outside / "pipe.toml")
    return show_dir, outside


# -- item 5: what a LAN peer may do -------------------------------------------------------------

def test_a_lan_peer_plays_the_show_but_cannot_load_swap_or_record(show):
    show_dir, _ = show
    lan = lan_address()
    controls = Controls(smoothing=0)
    controls.declare_param("speed", 0.5)
    controls.declare_trigger("flash")
    controls.declare_direct("/lj/truncation", 0.7, 0.0, 1.0)
    folders = ShowFolders([show_dir], show_dir)
    srv = make_server(controls, lan, folders=folders)
    peer = Peer(srv, lan)
    try:
        for message in [("/lj/param/speed", 0.25), ("/lj/trigger/flash",), ("/lj/truncation", 0.5),
                        ("/lj/scene", 2), ("/lj/preset/save", "take1"), ("/lj/tempo/set", 120.0),
                        ("/lj/learn", "/lj/param/speed"), ("/lj/learn/cancel",)]:
            peer.send(*message)
        assert controls.stats["refused_commands"] == 0
        refused = [("/lj/mapping/load", "other.toml"), ("/lj/generator", "builtin:cppn"),
                   ("/lj/record/start",), ("/lj/record/start", "take.mp4"), ("/lj/record/stop",),
                   ("/lj/learn", "/lj/record/start"), ("/lj/{mapping/load,generator}", "x"),
                   ("/lj/*", "builtin:cppn")]
        for message in refused:
            peer.send(*message)
        snap = controls.snapshot()
        assert snap.params == {"speed": 0.25} and snap.triggers == ["flash"]
        assert snap.direct == {"/lj/truncation": 0.5}
        assert ("/lj/scene", 2) in snap.commands and ("/lj/preset/save", "take1") in snap.commands
        assert not [c for c in snap.commands if c[0].startswith("/lj/record")]
        assert snap.mapping is None and snap.generator is None
        assert controls.bindings.learning is None
        # 7: '/lj/*' reaches /lj/generator (refused); a '/' inside braces is a malformed pattern
        assert controls.stats["refused_commands"] == 7
    finally:
        peer.close()
        srv.stop()
    # this machine keeps full control; LAN peers get it only with the operator's opt-in
    for host, kw in ((LOCAL, {}), (lan, {"lan_admin": True})):
        controls = Controls(smoothing=0)
        srv = make_server(controls, host, folders=folders, **kw)
        peer = Peer(srv, host)  # LOCAL: a real loopback sender
        try:
            peer.send("/lj/mapping/load", "other.toml")
            peer.send("/lj/record/start", "take.mp4")
            snap = controls.snapshot()
            assert snap.mapping == str((show_dir / "other.toml").resolve())
            assert ("/lj/record/start", "take.mp4") in snap.commands
            assert controls.stats["refused_commands"] == 0
        finally:
            peer.close()
            srv.stop()


def test_the_allow_list_filters_lan_peers_by_network():
    lan = lan_address()
    peer_ip = lan or "198.51.100.7"
    for allow, accepted in ((["10.9.9.0/24"], False), ([peer_ip + "/24"], True), ([peer_ip], True)):
        controls = Controls(smoothing=0)
        srv = make_server(controls, lan, allow=allow)
        peer = Peer(srv, lan)
        try:
            peer.send("/lj/param/speed", 0.25)
            assert (controls.stats["rejected_senders"] == 0) == accepted
            assert (controls.snapshot().params == {"speed": 0.25}) == accepted
        finally:
            peer.close()
            srv.stop()


def test_a_bad_allow_list_entry_is_a_one_line_error_at_start():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "engine", "run", "--osc-allow", "10.0.0.0/24,notanip",
                        "--headless", "--frames", "1"], capture_output=True, text=True, env=env,
                       timeout=120, cwd=ROOT)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lj: error: --osc-allow 'notanip'"), r.stderr


# -- item 6: paths stay inside the show's folders -------------------------------------------------

@pytest.fixture
def local(show):
    show_dir, outside = show
    controls = Controls(smoothing=0)
    srv = make_server(controls, None, folders=ShowFolders([show_dir], show_dir))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind((LOCAL, 0))
    client.settimeout(WAIT)
    yield srv, client, show_dir, outside
    srv.stop()
    client.close()


def _get(srv, client, address: str):
    client.sendto(encode_message("/lj/get", [address]), (LOCAL, srv.port))
    data, _ = client.recvfrom(65535)
    return {m.message.address: m.message.params for m in OscPacket(data).messages}[address][0]


def test_paths_outside_the_show_folders_are_refused_and_never_opened(local):
    """Issue 17.6: /lj/get /lj/state/error told whether a path exists and showed a file's keys."""
    srv, client, show_dir, outside = local
    srv.controls.set_state({"error": ""})
    attempts = [str(outside / "secrets.toml"), "../outside/secrets.toml", "link.toml",
                str(outside / "pipe.toml"),  # a FIFO: opening it would block this thread for good
                str(outside / "missing.toml"), "/etc/passwd", "~/.ssh/id_rsa", ""]
    for n, path in enumerate(attempts, 1):
        client.sendto(encode_message("/lj/mapping/load", [path]), (LOCAL, srv.port))
        wait_for(lambda: srv.stats["messages"] >= n, f"attempt {n}", timeout=WAIT)
        assert srv.controls.snapshot().mapping is None, path
    # a NUL inside an OSC string is no OSC string at all: the packet is malformed, never applied
    bad = srv.stats["bad_packets"]
    client.sendto(encode_message("/lj/mapping/load", ["a\0b"]), (LOCAL, srv.port))
    wait_for(lambda: srv.stats["bad_packets"] > bad, "the NUL path", timeout=WAIT)
    assert srv.controls.snapshot().mapping is None
    assert _get(srv, client, "/lj/state/error") == "refused /lj/mapping/load"
    assert srv.controls.stats["refused_commands"] >= len(attempts) - 2
    # the show's state publication (once a second) keeps the refusal until the show's error changes
    srv.controls.set_state({"error": ""})
    assert _get(srv, client, "/lj/state/error") == "refused /lj/mapping/load"
    srv.controls.set_state({"error": "other.toml:3: bad key"})
    assert _get(srv, client, "/lj/state/error") == "other.toml:3: bad key"
    # inside: relative paths resolve against the show's folder, and reach the session resolved
    client.sendto(encode_message("/lj/mapping/load", ["other.toml"]), (LOCAL, srv.port))
    wait_for(lambda: srv.stats["messages"] >= len(attempts) + 4, "the good load", timeout=WAIT)
    assert srv.controls.snapshot().mapping == str((show_dir / "other.toml").resolve())


def test_generator_specs_name_only_models_inside_the_show_folders(local):
    srv, client, show_dir, outside = local
    (outside / "evil.pkl").write_bytes(b"x")
    folders = srv.folders
    real = str(show_dir.resolve())
    assert folders.generator("builtin:cppn") == "builtin:cppn"
    assert folders.generator("model.pkl#class=3") == f"{real}/model.pkl#class=3"
    assert folders.generator("blend:a.pkl|b.pkl@fine") == f"blend:{real}/a.pkl|{real}/b.pkl@fine"
    for spec in (str(outside / "evil.pkl"), f"blend:a.pkl|{outside}/evil.pkl", "blend:a.pkl",
                 "../outside/evil.pkl#class=1", "#class=1"):
        assert folders.generator(spec) is None, spec
    before = srv.stats["messages"]
    client.sendto(encode_message("/lj/generator", [str(outside / "evil.pkl")]), (LOCAL, srv.port))
    wait_for(lambda: srv.stats["messages"] > before, "the request", timeout=WAIT)
    assert srv.controls.snapshot().generator is None
    assert _get(srv, client, "/lj/state/error") == "refused /lj/generator"


def test_the_running_show_reports_only_refused(tmp_path):
    """The real loop publishes its state once a second; the refusal stays visible in it."""
    from engine.audio.demo import demo_song
    from engine.live import LiveOptions, StopFlag, run_live
    from support import SMALL_MAPPING

    show_dir = tmp_path / "show"
    show_dir.mkdir()
    mapping = show_dir / "show.toml"
    mapping.write_text(SMALL_MAPPING.format(name="show"))
    secret = tmp_path / "secrets.toml"
    secret.write_text('api_key = "hunter2"\n')
    samples, sr, _ = demo_song(seconds=30.0)
    port = free_port()
    opts = LiveOptions(mapping=str(mapping), size=32, headless=True, osc_port=port,
                       oscquery_port=None, max_seconds=25, zeroconf=False,
                       stills_dir=str(tmp_path / "stills"))
    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "stats", run_live(PacedSource(samples, sr), opts, stop)), daemon=True)
    thread.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(1.0)

    def state(key):
        client.sendto(encode_message("/lj/get", [f"/lj/state/{key}"]), (LOCAL, port))
        try:
            data, _ = client.recvfrom(65535)
        except OSError:
            return None
        return OscPacket(data).messages[0].message.params[0]

    try:
        wait_for(lambda: state("frames") not in (None, 0.0), "the show to run", timeout=60)
        client.sendto(encode_message("/lj/mapping/load", [str(secret)]), (LOCAL, port))
        wait_for(lambda: state("error") == "refused /lj/mapping/load", "the refusal", timeout=20)
        frames = state("frames")
        wait_for(lambda: (state("frames") or 0) > frames, "frames to go on", timeout=20)
        assert state("error") == "refused /lj/mapping/load"  # not hidden by the next publication
        assert state("mapping") == "show"
    finally:
        stop()
        thread.join(60)
        client.close()
    assert "hunter2" not in repr(result)


def test_odd_paths_are_refused_not_raised(local):
    srv, client, show_dir, outside = local
    folders = srv.folders
    for text in ("~nosuchuser/x.toml", "x" * 5000, "a/" * 3000 + "x.toml", "\udcff/../../x", "~",
                 "../" * 50):
        assert folders.mapping(text) is None, text[:40]
        assert folders.generator(text) is None, text[:40]
    assert folders.generator("blend:~nosuchuser/a.pkl|b.pkl") is None
    before = srv.stats["messages"]
    for text in ("~nosuchuser/x.toml", "x" * 5000):
        client.sendto(encode_message("/lj/mapping/load", [text]), (LOCAL, srv.port))
    wait_for(lambda: srv.stats["messages"] >= before + 2, "both requests", timeout=WAIT)
    assert srv.stats["bad_packets"] == 0  # refused, not an exception in the handler
    assert _get(srv, client, "/lj/state/error") == "refused /lj/mapping/load"

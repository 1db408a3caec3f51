"""Zeroconf advertisement of the OSC port (_osc._udp) and the OSCQuery server (_oscjson._tcp),
browsed for from this process over real multicast DNS."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

zeroconf = pytest.importorskip("zeroconf")

from engine.control import discovery  # noqa: E402
from engine.control.discovery import (OSC_TYPE, OSCQUERY_TYPE, Advertiser,  # noqa: E402
                                      advertised_addresses)


def test_addresses_follow_what_osc_listens_on():
    assert advertised_addresses("127.0.0.1") == ["127.0.0.1"]
    assert advertised_addresses("localhost") == ["127.0.0.1"]
    every = advertised_addresses("0.0.0.0")
    assert "127.0.0.1" in every and all(socket.inet_aton(a) for a in every)


def test_service_records():
    adv = Advertiser(9000, 9001, "127.0.0.1")
    query, osc = adv.service_infos()
    assert query.type == OSCQUERY_TYPE and query.port == 9001
    assert osc.type == OSC_TYPE and osc.port == 9000
    assert query.name == f"{adv.name}.{OSCQUERY_TYPE}" and adv.name.startswith("Latent Jockey on ")
    assert query.addresses == [socket.inet_aton("127.0.0.1")]
    assert query.properties[b"osc_port"] == b"9000"
    assert [i.type for i in Advertiser(9000, None).service_infos()] == [OSC_TYPE]


def test_browsing_finds_both_services():
    adv = Advertiser(47123, 47124, "127.0.0.1", name="LJ test " + str(time.monotonic_ns())[-6:])
    adv.start()
    try:
        if not adv.registered.wait(20):
            pytest.skip(f"Zeroconf could not announce here ({adv.error or 'timed out'})")
        zc = zeroconf.Zeroconf(ip_version=zeroconf.IPVersion.V4Only)
        try:
            found: dict[str, set] = {OSCQUERY_TYPE: set(), OSC_TYPE: set()}
            lock = threading.Lock()

            def seen(zeroconf, service_type, name, state_change):  # noqa: ANN001 (zeroconf's API)
                with lock:
                    found[service_type].add(name)

            browser = zeroconf.ServiceBrowser(zc, [OSCQUERY_TYPE, OSC_TYPE], handlers=[seen])
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(
                    f"{adv.name}.{t}" in names for t, names in found.items()):
                time.sleep(0.05)
            browser.cancel()
            assert f"{adv.name}.{OSCQUERY_TYPE}" in found[OSCQUERY_TYPE]
            assert f"{adv.name}.{OSC_TYPE}" in found[OSC_TYPE]
            info = zc.get_service_info(OSCQUERY_TYPE, f"{adv.name}.{OSCQUERY_TYPE}", timeout=5000)
            assert info is not None and info.port == 47124
            assert info.parsed_addresses() == ["127.0.0.1"]
        finally:
            zc.close()
    finally:
        adv.stop()


def test_failing_to_advertise_is_one_line(monkeypatch, caplog):
    def no_network(*a, **kw):
        raise OSError("[Errno 19] No such device")

    monkeypatch.setattr(zeroconf, "Zeroconf", no_network)
    adv = Advertiser(9000, 9001)
    with caplog.at_level(logging.WARNING, logger="lj.zeroconf"):
        adv.start()
        adv._thread.join(10)
    adv.stop()
    assert not adv.registered.is_set() and "No such device" in adv.error
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()


def test_stop_during_the_announcement_does_not_wait_or_leak():
    adv = Advertiser(47125, 47126, "127.0.0.1", name="LJ stop " + str(time.monotonic_ns())[-6:])
    adv.start()
    adv.stop()  # does not join; the thread closes Zeroconf when it sees the flag
    adv._thread.join(20)
    assert not adv._thread.is_alive() and adv._zc is None


def test_cli_flag():
    from engine.cli import _live_options, build_parser

    args = build_parser().parse_args(["run", "--no-zeroconf"])
    assert _live_options(args).zeroconf is False
    assert _live_options(build_parser().parse_args(["run"])).zeroconf is True
    assert discovery.OSCQUERY_TYPE == "_oscjson._tcp.local."

"""Zeroconf (mDNS/DNS-SD) advertisement: controllers find the show without typing addresses.

:class:`Advertiser` registers two services with the ``zeroconf`` package:

- ``_oscjson._tcp`` — the OSCQuery HTTP server (VDMX, Chataigne, ossia score, TouchOSC's
  OSCQuery browser list it), port = the OSCQuery port;
- ``_osc._udp`` — the OSC input itself, port = the OSC port.

Both under one instance name, ``Latent Jockey on <host>`` (zeroconf adds `` (2)`` if another
show on the network has it). The addresses advertised follow what OSC listens on: ``127.0.0.1``
when it listens on loopback only (so apps on this machine find it and the LAN learns nothing it
could use), every IPv4 address of the machine for ``0.0.0.0``, else that address.

Registration announces on the network for about 1.5 s, so it runs on a daemon thread and never
delays the first frame; any failure (no multicast, no network, the package missing) is one log
line and the show goes on.
"""

from __future__ import annotations

import logging
import socket
import threading

log = logging.getLogger("lj.zeroconf")

OSCQUERY_TYPE = "_oscjson._tcp.local."
OSC_TYPE = "_osc._udp.local."


def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to advertise for a server listening on ``host``."""
    if host in ("", "0.0.0.0"):
        try:
            import ifaddr

            found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                     if isinstance(ip.ip, str) and not ip.ip.startswith("169.254.")]
        except Exception:  # ifaddr comes with zeroconf; without it, the loopback at least
            found = []
        return sorted(set(found) | {"127.0.0.1"})
    if host == "localhost":
        return ["127.0.0.1"]
    try:
        return [socket.gethostbyname(host)]
    except OSError:
        return []


def instance_name(name: str = "Latent Jockey") -> str:
    """``Latent Jockey on <host>`` (at most 63 bytes, the DNS label limit)."""
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{name} on {host}"[:63]


class Advertiser:
    """Advertise the OSC port (``_osc._udp``) and the OSCQuery port (``_oscjson._tcp``).

    ``oscquery_port`` None advertises OSC only. :meth:`start` returns at once (registration runs
    on a thread); :meth:`stop` unregisters and closes. ``registered`` is set once both services
    are announced; ``error`` holds the one-line reason when advertising failed.
    """

    def __init__(self, osc_port: int, oscquery_port: int | None, host: str = "127.0.0.1",
                 name: str = "Latent Jockey"):
        self.osc_port = int(osc_port)
        self.oscquery_port = oscquery_port
        self.host = host
        self.name = instance_name(name)
        self.registered = threading.Event()
        self.error: str | None = None
        self._zc = None
        self._infos: list = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._done = False  # the thread is past the point where it looks at _stopped

    def service_infos(self) -> list:
        """The ``zeroconf.ServiceInfo`` records to register (built, not yet announced)."""
        from zeroconf import ServiceInfo

        addresses = [socket.inet_aton(a) for a in advertised_addresses(self.host)]
        server = (socket.gethostname().split(".")[0] or "lj") + ".local."
        infos = []
        if self.oscquery_port is not None:
            infos.append(ServiceInfo(OSCQUERY_TYPE, f"{self.name}.{OSCQUERY_TYPE}", port=int(self.oscquery_port),
                                     addresses=addresses, server=server,
                                     properties={"txtvers": "1", "osc_port": str(self.osc_port)}))
        infos.append(ServiceInfo(OSC_TYPE, f"{self.name}.{OSC_TYPE}", port=self.osc_port,
                                 addresses=addresses, server=server,
                                 properties={"txtvers": "1"}))
        return infos

    def start(self) -> None:
        self._thread = threading.Thread(target=self._register, name="lj-zeroconf", daemon=True)
        self._thread.start()

    def _register(self) -> None:
        try:
            from zeroconf import IPVersion, Zeroconf

            infos = self.service_infos()
            if not infos[0].addresses:
                raise OSError(f"no address to advertise for {self.host}")
            zc = Zeroconf(ip_version=IPVersion.V4Only)
            with self._lock:
                if self._stopped:
                    zc.close()
                    return
                self._zc = zc
            for info in infos:
                if self._stopped:
                    break
                zc.register_service(info, allow_name_change=True)
                self._infos.append(info)
            with self._lock:
                if self._stopped:  # stop() came while announcing: clean up here
                    self._zc = None
                    _close(zc)
                    return
                self._done = True
        except Exception as exc:  # no multicast route, no network, no package: the show goes on
            with self._lock:
                zc, self._zc = self._zc, None
                self._done = True
            if zc is not None:
                _close(zc)
            text = str(exc).strip().splitlines()
            self.error = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
            log.warning("Zeroconf advertisement failed (%s); controllers must be given the "
                        "address by hand", self.error)
            return
        self.registered.set()
        log.info("advertised on the network (Zeroconf) as '%s': %s", self.name,
                 ", ".join(f"{i.type.split('.')[0]}.{i.type.split('.')[1]} port {i.port}"
                           for i in self._infos))

    def stop(self) -> None:
        """Unregister and close; never waits for an announcement still in progress (that thread
        cleans up after itself)."""
        with self._lock:
            self._stopped = True
            if self._thread is not None and not self._done:
                return  # still announcing: the thread closes when it sees the flag
            zc, self._zc = self._zc, None
        if zc is not None:
            _close(zc)


def _close(zc) -> None:
    try:
        zc.unregister_all_services()
    except Exception:
        pass
    finally:
        zc.close()

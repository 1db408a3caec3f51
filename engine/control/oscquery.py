"""OSCQuery: the OSC address space as JSON over HTTP, so controllers can discover it.

:class:`OscQueryServer` runs a small HTTP server on its own daemon threads (127.0.0.1 by
default). Written after the ideas of the OSCQuery proposal (Vidvox):

- ``GET /`` (or any container such as ``/lj/param``) answers a JSON node with ``FULL_PATH`` and
  ``CONTENTS``; a method node (``/lj/param/speed``) has ``TYPE`` (OSC type tags), ``ACCESS``
  (0 none, 1 read, 2 write, 3 both), ``VALUE`` (a list) and ``RANGE`` (``[{"MIN", "MAX"}]``) where
  known, and ``DESCRIPTION``;
- ``GET /lj/param/speed?VALUE`` answers only that attribute (``{"VALUE": [0.5]}``); an attribute
  the node does not have answers 204;
- ``GET /?HOST_INFO`` answers the server's name, the OSC port and transport and the extensions
  supported. Unknown paths answer 404; methods other than GET/HEAD answer 405. The HTTP side
  (concurrency, timeouts, limits, the allow-list) is :mod:`engine.control.http`.

The tree is built from :meth:`Controls.describe` on every request, so values are current. Only
JSON is ever sent; nothing received is executed. Parameters and direct targets carry ``CLIPMODE``
``["both"]`` (values outside the range are clamped) and the mapping load ``EXTENDED_TYPE``
``["filepath"]``. The server is advertised with Zeroconf (``_oscjson._tcp``) by
:mod:`engine.control.discovery`. Not done: the WebSocket ``LISTEN`` extension.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from engine.control.http import HttpService, Request, Response, json_response
from engine.control.space import NO_ACCESS, AddressInfo
from engine.control.state import Controls

log = logging.getLogger("lj.oscquery")

#: Attributes a client may ask for one at a time (``?VALUE``).
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "ACCESS", "VALUE", "RANGE", "DESCRIPTION", "CLIPMODE",
              "EXTENDED_TYPE")


def _leaf(info: AddressInfo) -> dict:
    node: dict = {"FULL_PATH": info.address, "ACCESS": info.access}
    if info.type:
        node["TYPE"] = info.type
    if info.value is not None:
        node["VALUE"] = [info.value]
    if info.range is not None:
        node["RANGE"] = [{"MIN": info.range[0], "MAX": info.range[1]}]
    if info.clip is not None:
        node["CLIPMODE"] = [info.clip]
    if info.extended is not None:
        node["EXTENDED_TYPE"] = [info.extended]
    if info.description:
        node["DESCRIPTION"] = info.description
    return node


def build_tree(infos: list[AddressInfo], name: str = "Latent Jockey") -> dict:
    """The OSCQuery JSON tree (as dicts) of the address space ``infos``."""
    root: dict = {"FULL_PATH": "/", "ACCESS": NO_ACCESS, "DESCRIPTION": name, "CONTENTS": {}}
    for info in infos:
        parts = info.address.strip("/").split("/")
        node = root
        for depth, part in enumerate(parts[:-1]):
            contents = node.setdefault("CONTENTS", {})
            node = contents.setdefault(part, {"FULL_PATH": "/" + "/".join(parts[:depth + 1]),
                                              "ACCESS": NO_ACCESS, "CONTENTS": {}})
        contents = node.setdefault("CONTENTS", {})
        leaf = _leaf(info)
        if parts[-1] in contents:  # a method that is also a container (/lj/learn and /lj/learn/cancel)
            leaf["CONTENTS"] = contents[parts[-1]].get("CONTENTS", {})
        contents[parts[-1]] = leaf
    return root


def find_node(tree: dict, path: str) -> dict | None:
    """The node at ``path`` (``/`` is the root) in a tree from :func:`build_tree`, or None."""
    node = tree
    for part in [p for p in path.split("/") if p]:
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


class OscQueryServer(HttpService):
    """Serve the address space of ``controls`` as OSCQuery JSON on ``http://host:port/``.

    ``osc_port`` / ``osc_host`` are where the OSC server listens (reported in ``HOST_INFO``).
    ``port=0`` picks a free port (see :attr:`port`); ``allow`` is the
    :class:`~engine.control.access.AllowList` of peers served (None: all). Usable as a context
    manager. Requests are served concurrently by :class:`~engine.control.http.HttpService`.
    """

    def __init__(self, controls: Controls, osc_port: int, host: str = "127.0.0.1", port: int = 0,
                 osc_host: str | None = None, name: str = "Latent Jockey", allow=None):
        self.controls = controls
        self.osc_port = int(osc_port)
        self.osc_host = osc_host or host
        self.name = name
        super().__init__(host, port, allow)

    def tree(self) -> dict:
        """The current JSON tree (dicts), values included."""
        return build_tree(self.controls.describe(), self.name)

    def host_info(self) -> dict:
        """The ``?HOST_INFO`` answer."""
        return {
            "NAME": self.name,
            "OSC_IP": self.osc_host,
            "OSC_PORT": self.osc_port,
            "OSC_TRANSPORT": "UDP",
            "EXTENSIONS": {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True,
                           "TAGS": False, "CLIPMODE": True, "EXTENDED_TYPE": True, "UNIT": False, "CRITICAL": False,
                           "LISTEN": False, "PATH_CHANGED": False},
        }

    what = "OSCQuery"
    thread_name = "lj-oscquery"
    server_version = "LatentJockey-OSCQuery"

    def respond(self, request: Request) -> Response:
        """One GET/HEAD: the node at the path, one of its attributes, or HOST_INFO."""
        attr = request.query
        if attr == "HOST_INFO":
            return json_response(HTTPStatus.OK, self.host_info())
        node = find_node(self.tree(), request.path)
        if node is None:
            return json_response(HTTPStatus.NOT_FOUND, None)
        if not attr:
            return json_response(HTTPStatus.OK, node)
        if attr not in ATTRIBUTES:
            return json_response(HTTPStatus.BAD_REQUEST, None)
        if attr not in node:
            return json_response(HTTPStatus.NO_CONTENT, None)
        return json_response(HTTPStatus.OK, {attr: node[attr]})

    def start(self) -> None:
        """Bind and serve on a daemon thread. ControlError (one line) if the port is busy."""
        started = self._thread is None
        super().start()
        if started:
            log.info("OSCQuery on http://%s:%d/", self.host, self.port)

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        return f"http://{self.host}:{self.port}/"

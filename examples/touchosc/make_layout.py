"""Write the TouchOSC (mk2) layout examples/touchosc/latent-jockey.tosc for the all-OSC recipe.

    .venv/bin/python examples/touchosc/make_layout.py [--mapping mappings/osc_faders.toml] [-o FILE]

A ``.tosc`` file is the layout's XML (root ``<lexml version='3'>``), zlib-compressed. This script
builds it from the mapping's ``[params]``, so the layout follows the recipe: one fader per
parameter, sending ``/lj/param/<name>`` already scaled to the parameter's ``min..max``; faders for
``/lj/truncation`` and ``/lj/noise`` (0–1); buttons for the triggers, scenes, tap tempo and
release; a label showing the frame rate (``/lj/state/fps``, received when lj runs with
``--osc-out <tablet ip>:<TouchOSC's receive port>``). Node IDs are derived from the names, so
running it again gives the same bytes.

In TouchOSC: File > Open the .tosc, then Connections > OSC: host = the lj machine, send port 9000
(lj's ``--osc-port``), receive port e.g. 9001. Start lj with ``--osc-listen 0.0.0.0 --osc-allow
<tablet ip>`` when the tablet is another device.
"""

from __future__ import annotations

import argparse
import tomllib
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = uuid.UUID("6f1c3c1e-2a51-4c53-9d1c-6c6a1f0f7a11")  # for stable node IDs

#: Colours (r, g, b, a) of the controls.
PARAM_COLOR = (0.29, 0.65, 0.95, 1.0)
LATENT_COLOR = (0.96, 0.62, 0.26, 1.0)
BUTTON_COLOR = (0.55, 0.85, 0.45, 1.0)
SCENE_COLOR = (0.85, 0.45, 0.85, 1.0)
TEXT_COLOR = (1.0, 1.0, 1.0, 1.0)

WIDTH, HEIGHT = 1280, 800

#: Buttons: (label, OSC address, argument or None for the button's own value, colour).
BUTTONS = [
    ("STILL", "/lj/trigger/still", None, BUTTON_COLOR),
    ("TAP", "/lj/tempo/tap", None, BUTTON_COLOR),
    ("BEAT 1", "/lj/tempo/reset", None, BUTTON_COLOR),
    ("RELEASE", "/lj/release", None, BUTTON_COLOR),
    ("REC", "/lj/record/start", None, BUTTON_COLOR),
    ("STOP REC", "/lj/record/stop", None, BUTTON_COLOR),
    ("< SCENE", "/lj/scene/prev", None, SCENE_COLOR),
    ("SCENE >", "/lj/scene/next", None, SCENE_COLOR),
] + [(f"SCENE {i}", "/lj/scene", i, SCENE_COLOR) for i in range(1, 5)]


def read_params(mapping: Path) -> list[tuple[str, float, float, float]]:
    """``(name, default, min, max)`` of the mapping's ``[params]`` (a bare number is 0..1)."""
    params = tomllib.loads(mapping.read_text(encoding="utf-8")).get("params", {})
    out = []
    for name, spec in params.items():
        if isinstance(spec, dict):
            out.append((name, float(spec.get("default", 0.0)), float(spec.get("min", 0.0)),
                        float(spec.get("max", 1.0))))
        else:
            out.append((name, float(spec), 0.0, 1.0))
    return out


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    e = ET.SubElement(parent, tag)
    e.text = text
    return e


def _num(x: float) -> str:
    return repr(float(x)) if x != int(x) else str(int(x))


class Layout:
    """Builds the XML tree node by node."""

    def __init__(self, name: str):
        self.root = ET.Element("lexml", version="3")
        self.page = self._node(self.root, "GROUP", name, (0, 0, WIDTH, HEIGHT), (0.1, 0.1, 0.12, 1.0))
        self.children = ET.SubElement(self.page, "children")

    def _node(self, parent, kind: str, name: str, frame, color, **props) -> ET.Element:
        node = ET.SubElement(parent, "node", ID=str(uuid.uuid5(NAMESPACE, f"{kind}:{name}")), type=kind)
        properties = ET.SubElement(node, "properties")
        self._prop(properties, "b", "background", "1")
        self._prop_color(properties, "color", color)
        self._prop_frame(properties, frame)
        self._prop(properties, "s", "name", name)
        for key, (kind_, value) in props.items():
            if kind_ == "c":
                self._prop_color(properties, key, value)
            else:
                self._prop(properties, kind_, key, value)
        return node

    @staticmethod
    def _prop(properties, kind: str, key: str, value: str) -> None:
        p = ET.SubElement(properties, "property", type=kind)
        _text(p, "key", key)
        _text(p, "value", value)

    @staticmethod
    def _prop_color(properties, key: str, rgba) -> None:
        p = ET.SubElement(properties, "property", type="c")
        _text(p, "key", key)
        v = ET.SubElement(p, "value")
        for k, x in zip("rgba", rgba):
            _text(v, k, _num(x))

    @staticmethod
    def _prop_frame(properties, frame) -> None:
        p = ET.SubElement(properties, "property", type="r")
        _text(p, "key", "frame")
        v = ET.SubElement(p, "value")
        for k, x in zip("xywh", frame):
            _text(v, k, str(int(x)))

    @staticmethod
    def _values(node, x_default: str) -> None:
        values = ET.SubElement(node, "values")
        for key, default in (("x", x_default), ("touch", "false")):
            v = ET.SubElement(values, "value")
            _text(v, "key", key)
            _text(v, "locked", "0")
            _text(v, "lockedDefaultCurrent", "0")
            _text(v, "default", default)
            _text(v, "defaultPull", "0")

    @staticmethod
    def _osc(node, address: str, argument: tuple[str, str, str, str], condition: str = "ANY",
             receive: bool = True) -> None:
        """One OSC message: sent when ``x`` changes (``condition``), path constant, one argument
        ``(type, conversion, value, scaleMin..scaleMax)``."""
        messages = ET.SubElement(node, "messages")
        osc = ET.SubElement(messages, "osc")
        _text(osc, "enabled", "1")
        _text(osc, "send", "1")
        _text(osc, "receive", "1" if receive else "0")
        _text(osc, "feedback", "0")
        _text(osc, "connections", "00001")
        triggers = ET.SubElement(osc, "triggers")
        trigger = ET.SubElement(triggers, "trigger")
        _text(trigger, "var", "x")
        _text(trigger, "condition", condition)
        path = ET.SubElement(osc, "path")
        part = ET.SubElement(path, "partial")
        for tag, text in zip(("type", "conversion", "value", "scaleMin", "scaleMax"),
                             ("CONSTANT", "STRING", address, "0", "1")):
            _text(part, tag, text)
        arguments = ET.SubElement(osc, "arguments")
        part = ET.SubElement(arguments, "partial")
        kind, conversion, value, scale = argument
        lo, hi = scale.split("..")
        for tag, text in zip(("type", "conversion", "value", "scaleMin", "scaleMax"),
                             (kind, conversion, value, lo, hi)):
            _text(part, tag, text)

    def label(self, text: str, frame, name: str | None = None, address: str | None = None) -> None:
        node = self._node(self.children, "LABEL", name or f"label {text}", frame, (0, 0, 0, 0),
                          textColor=("c", TEXT_COLOR), textSize=("i", "14"))
        values = ET.SubElement(node, "values")
        v = ET.SubElement(values, "value")
        _text(v, "key", "text")
        _text(v, "locked", "0")
        _text(v, "lockedDefaultCurrent", "0")
        _text(v, "default", text)
        _text(v, "defaultPull", "0")
        if address:  # receive only: the label shows what lj sends to this address
            messages = ET.SubElement(node, "messages")
            osc = ET.SubElement(messages, "osc")
            for tag, text_ in (("enabled", "1"), ("send", "0"), ("receive", "1"), ("feedback", "0"),
                               ("connections", "00001")):
                _text(osc, tag, text_)
            trigger = ET.SubElement(ET.SubElement(osc, "triggers"), "trigger")
            _text(trigger, "var", "text")
            _text(trigger, "condition", "ANY")
            part = ET.SubElement(ET.SubElement(osc, "path"), "partial")
            for tag, text_ in zip(("type", "conversion", "value", "scaleMin", "scaleMax"),
                                  ("CONSTANT", "STRING", address, "0", "1")):
                _text(part, tag, text_)
            part = ET.SubElement(ET.SubElement(osc, "arguments"), "partial")
            for tag, text_ in zip(("type", "conversion", "value", "scaleMin", "scaleMax"),
                                  ("VALUE", "STRING", "text", "0", "1")):
                _text(part, tag, text_)

    def fader(self, name: str, address: str, lo: float, hi: float, default: float, frame, color) -> None:
        norm = 0.0 if hi <= lo else (default - lo) / (hi - lo)
        node = self._node(self.children, "FADER", name, frame, color,
                          orientation=("i", "0"), response=("i", "0"), cursor=("b", "1"))
        self._values(node, _num(norm))
        self._osc(node, address, ("VALUE", "FLOAT", "x", f"{_num(lo)}..{_num(hi)}"))

    def button(self, name: str, address: str, argument: int | None, frame, color) -> None:
        node = self._node(self.children, "BUTTON", name, frame, color, buttonType=("i", "0"))
        self._values(node, "0")
        if argument is None:  # the button's value: 1 on press, 0 on release
            self._osc(node, address, ("VALUE", "FLOAT", "x", "0..1"))
        else:  # a constant on press only
            self._osc(node, address, ("CONSTANT", "INTEGER", str(argument), "0..1"),
                      condition="RISE", receive=False)

    def tosc(self) -> bytes:
        xml = ET.tostring(self.root, encoding="UTF-8", xml_declaration=True)
        return zlib.compress(xml, 9)


def build(mapping: Path) -> bytes:
    """The .tosc bytes for ``mapping``'s parameters."""
    params = read_params(mapping)
    layout = Layout("Latent Jockey")
    faders = [(name, f"/lj/param/{name}", lo, hi, default, PARAM_COLOR) for name, default, lo, hi in params]
    faders += [("truncation", "/lj/truncation", 0.0, 1.0, 1.0, LATENT_COLOR),
               ("noise", "/lj/noise", 0.0, 1.0, 0.0, LATENT_COLOR)]
    margin, top = 20, 60
    width = (WIDTH - margin * (len(faders) + 1)) // max(1, len(faders))
    height = 460
    layout.label("LATENT JOCKEY", (margin, 10, 400, 40))
    layout.label("fps", (WIDTH - 220, 10, 60, 40), name="fps caption")
    layout.label("-", (WIDTH - 150, 10, 130, 40), name="fps", address="/lj/state/fps")
    for i, (name, address, lo, hi, default, color) in enumerate(faders):
        x = margin + i * (width + margin)
        layout.fader(name, address, lo, hi, default, (x, top, width, height), color)
        caption = name if (lo, hi) == (0.0, 1.0) else f"{name} {lo:g}..{hi:g}"
        layout.label(caption, (x, top + height + 4, width, 30), name=f"label {name}")
    per_row = 6
    bw = (WIDTH - margin * (per_row + 1)) // per_row
    bh = 90
    for i, (label, address, argument, color) in enumerate(BUTTONS):
        row, col = divmod(i, per_row)
        x = margin + col * (bw + margin)
        y = top + height + 50 + row * (bh + margin)
        layout.button(label, address, argument, (x, y, bw, bh), color)
    return layout.tosc()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mapping", default=str(ROOT / "mappings" / "osc_faders.toml"))
    ap.add_argument("-o", "--output", default=str(Path(__file__).with_name("latent-jockey.tosc")))
    args = ap.parse_args()
    data = build(Path(args.mapping))
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")


if __name__ == "__main__":
    main()

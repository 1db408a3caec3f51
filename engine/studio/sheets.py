"""Contact sheets: tile image batches into one PNG and describe each cell for the HTML page."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

GAP = 2  # pixels between cells


def to_uint8(images: torch.Tensor, cell: int | None = None) -> np.ndarray:
    """``[B, 3, h, w]`` in [-1, 1] -> ``[B, cell, cell*w/h, 3]`` uint8 (area-downscaled)."""
    x = images.detach().float()
    if cell is not None and x.shape[-2] != cell:
        size = (cell, max(1, round(cell * x.shape[-1] / x.shape[-2])))
        x = F.interpolate(x, size=size, mode="area" if cell < x.shape[-2] else "bilinear")
    x = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def tile(cells: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``[rows*cols, h, w, 3]`` uint8 -> one ``[H, W, 3]`` image with :data:`GAP` px gaps."""
    n, h, w, _ = cells.shape
    if n != rows * cols:
        raise ValueError(f"{n} cells do not fill {rows}x{cols}")
    out = np.full((rows * (h + GAP) + GAP, cols * (w + GAP) + GAP, 3), 24, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = GAP + r * (h + GAP), GAP + c * (w + GAP)
        out[y:y + h, x:x + w] = cells[i]
    return out


def save_png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path, optimize=False)
    return path


@dataclass
class Sheet:
    """One contact sheet: its name, title, grid, the label of every cell and row."""

    name: str
    title: str
    rows: int
    cols: int
    labels: list[str]                      # one per cell, row-major
    row_labels: list[str] = field(default_factory=list)
    note: str = ""
    cell: tuple[int, int] = (0, 0)         # (h, w) in the PNG


def write_html(sheets: list[Sheet], path: Path, title: str, extra: str = "") -> Path:
    """One page with every sheet; each cell shows its part of the PNG and its label (seed, value),
    so a seed can be read off and typed into ``--pick`` or a mapping."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{background:#111;color:#ddd;font:13px sans-serif;margin:16px}"
             ".g{display:inline-grid;gap:2px;margin:6px 0 18px}.c{position:relative}"
             ".c span{position:absolute;left:2px;bottom:2px;background:#000a;padding:0 3px;"
             "font:11px monospace}.r{font:11px monospace;align-self:center;padding-right:6px}"
             "h2{margin:18px 0 2px}</style>", f"<h1>{html.escape(title)}</h1>", extra]
    for s in sheets:
        h, w = s.cell
        parts.append(f"<h2 id='{s.name}'>{html.escape(s.title)}</h2><p>{html.escape(s.note)} "
                     f"(<a href='{s.name}.png'>{s.name}.png</a>)</p>")
        lead = "max-content " if s.row_labels else ""
        parts.append(f"<div class='g' style='grid-template-columns:{lead}repeat({s.cols},{w}px)'>")
        for i, label in enumerate(s.labels):
            r, c = divmod(i, s.cols)
            if c == 0 and s.row_labels:
                parts.append(f"<div class='r'>{html.escape(s.row_labels[r])}</div>")
            x, y = -(GAP + c * (w + GAP)), -(GAP + r * (h + GAP))
            parts.append(f"<div class='c' style='width:{w}px;height:{h}px;background:url({s.name}.png) "
                         f"{x}px {y}px'><span>{html.escape(label)}</span></div>")
        parts.append("</div>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path

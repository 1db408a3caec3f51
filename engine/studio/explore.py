"""``lj explore MODEL``: contact sheets of a latent space, its principal directions, latent banks.

Everything here runs on any loadable generator (``builtin:cppn``, NVlabs pickles, our exports,
TorchScript): it only uses the protocol's ``mapping(z)`` and ``synthesize(w_plus, noise)``.

Sheets (each a PNG, all shown with their seeds and values on one ``index.html``):

* ``seeds``: one image per seed (``--seeds 0-63``), truncation ``--psi`` applied.
* ``knobs``: "turning the knobs": row *d* sweeps dimension *d* of ``z`` from ``-extent`` to
  ``+extent`` around the base seed's ``z`` (the other dimensions stay put), then maps it.
* ``extremes``: uniform extremes: every dimension of ``z`` at the same magnitude ``extent``, the
  signs from each seed (the corners of the latent cube, where generators break most visibly).
* ``interp``: interpolation strips between consecutive ``--interp`` seeds; per pair one row linear
  in w, one row slerp in z (spherical, the Gaussian shell's natural path).
* ``truncation``: rows of seeds, columns ``psi`` from ``-0.5`` to ``1.5`` around ``w_avg``.
* ``mix-coarse`` / ``mix-middle``: style mixing: the row's seed gives the coarse (or coarse and
  middle) layers of ``w_plus``, the column's seed the rest (the generator's ``layer_groups``).
* ``directions``: each principal direction of w (below) swept from ``-3`` to ``+3`` standard
  deviations around the base seed.

Principal directions (GANSpace-style): PCA over ``--samples`` mapped w; saved as a direction bank
``directions.npy`` ``[K, w_dim]`` (each component times its standard deviation, so 1.0 is one
standard deviation) with ``directions.json``.

Picking (``--pick 3,17,42 --pick-directions 0,2 --bank NAME``): saves a latent bank into
``--latents DIR`` (default ``./latents``, the folder mapping files read saved latents from): one
``NAME-s<seed>.npy`` ``[num_layers, w_dim]`` per seed (``keyframes = { latents = ["NAME-s3"] }``),
one ``NAME-pc<k>.npy`` ``[w_dim]`` per direction (``direction = { latent = "NAME-pc0" }`` on a
``latent.push`` route), and ``NAME.json`` saying what the bank holds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from engine.studio.config import StudioError
from engine.generators.base import z_from_seed
from engine.studio.sheets import Sheet, tile, to_uint8, save_png, write_html

BANK_FORMAT = 1
MAX_SEEDS = 4096


def parse_seeds(text: str, what: str = "--seeds") -> list[int]:
    """``"0-63,70,80-82"`` -> ``[0, ..., 63, 70, 80, 81, 82]``."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        a, dash, b = part.partition("-")
        try:
            lo = int(a)
            hi = int(b) if dash else lo
        except ValueError:
            raise StudioError(f"{what}: expected seeds like 0-63,70, not '{text}'") from None
        if lo < 0 or hi < lo or hi >= 2**32:
            raise StudioError(f"{what}: bad seed range '{part}'")
        if len(out) + hi - lo + 1 > MAX_SEEDS:  # checked before the list is built
            raise StudioError(f"{what}: at most {MAX_SEEDS} seeds")
        out.extend(range(lo, hi + 1))
    if not out:
        raise StudioError(f"{what}: no seeds in '{text}'")
    return out


def grid_shape(n: int) -> tuple[int, int]:
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between ``a`` and ``b`` (falls back to linear when parallel)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(np.dot(a, b) / max(na * nb, 1e-12))
    omega = math.acos(max(-1.0, min(1.0, cos)))
    if omega < 1e-4:
        return (1 - t) * a + t * b
    return (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)


class Explorer:
    """Batched rendering of a generator's latents.

    Parameters
    ----------
    generator:
        Anything that follows :class:`engine.generators.base.Generator`.
    psi:
        Truncation applied to every picture (1 = none), as the runner does.
    batch:
        Images per ``synthesize`` call.
    cell:
        Height of one cell in the sheets (pixels; the model's own size when ``None``).
    """

    def __init__(self, generator, psi: float = 1.0, batch: int = 16, cell: int | None = None,
                 device: str | torch.device | None = None):
        self.gen = generator
        self.device = torch.device(device) if device else generator.w_avg.device
        self.psi = float(psi)
        self.batch = max(1, int(batch))
        self.cell = cell
        self.L, self.W, self.Z = generator.num_layers, generator.w_dim, generator.latent_dim
        self.w_avg = generator.w_avg.detach().float().to(self.device)
        self.noise = 1.0 if getattr(generator, "has_noise", False) else 0.0
        self.params = None
        if getattr(generator, "param_names", ()):
            self.params = generator.default_params().to(self.device)
        self.images_rendered = 0
        self.render_seconds = 0.0

    # latents ------------------------------------------------------------------------------
    def z_of(self, seeds) -> np.ndarray:
        return np.stack([z_from_seed(s, self.Z) for s in seeds])

    @torch.inference_mode()
    def map_z(self, z: np.ndarray) -> torch.Tensor:
        """``z`` ``[N, latent_dim]`` -> w ``[N, w_dim]`` (batched)."""
        zt = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.device)
        return torch.cat([self.gen.mapping(zt[i:i + 256]).float()
                          for i in range(0, len(zt), 256)])

    def w_of(self, seeds) -> torch.Tensor:
        return self.map_z(self.z_of(seeds))

    def truncate(self, w: torch.Tensor, psi: float | None = None) -> torch.Tensor:
        psi = self.psi if psi is None else psi
        return self.w_avg + psi * (w - self.w_avg)

    def plus(self, w: torch.Tensor) -> torch.Tensor:
        """``[N, w_dim]`` -> ``[N, num_layers, w_dim]``."""
        return w[:, None, :].expand(-1, self.L, -1) if w.ndim == 2 else w

    # pixels -------------------------------------------------------------------------------
    @torch.inference_mode()
    def render(self, w_plus: torch.Tensor) -> np.ndarray:
        """``[N, num_layers, w_dim]`` (or ``[N, w_dim]``) -> uint8 cells, ``synthesize`` called
        ``ceil(N / batch)`` times."""
        w_plus = self.plus(w_plus.to(self.device))
        t0 = time.perf_counter()
        out = []
        for i in range(0, len(w_plus), self.batch):
            chunk = w_plus[i:i + self.batch].contiguous()
            img = self.gen.synthesize(chunk, self.noise, self.params)
            out.append(to_uint8(img, self.cell))
        self.render_seconds += time.perf_counter() - t0
        self.images_rendered += len(w_plus)
        return np.concatenate(out)

    # sheets -------------------------------------------------------------------------------
    def seed_sheet(self, seeds: list[int], cols: int | None = None) -> tuple[Sheet, np.ndarray]:
        rows, c = grid_shape(len(seeds)) if cols is None else (math.ceil(len(seeds) / cols), cols)
        cells = self.render(self.truncate(self.w_of(seeds)))
        pad = rows * c - len(seeds)
        if pad:
            cells = np.concatenate([cells, np.zeros((pad,) + cells.shape[1:], np.uint8)])
        labels = [f"seed {s}" for s in seeds] + [""] * pad
        return Sheet("seeds", "Seeds", rows, c, labels,
                     note=f"truncation psi {self.psi:g}"), tile(cells, rows, c)

    def knobs_sheet(self, base: int, dims: list[int], steps: int, extent: float):
        z0 = z_from_seed(base, self.Z)
        values = np.linspace(-extent, extent, steps)
        zs = []
        for d in dims:
            for v in values:
                z = z0.copy()
                z[d] = v
                zs.append(z)
        cells = self.render(self.truncate(self.map_z(np.stack(zs))))
        labels = [f"z[{d}]={v:+.1f}" for d in dims for v in values]
        return (Sheet("knobs", "Turning the knobs", len(dims), steps, labels,
                      [f"z[{d}]" for d in dims],
                      f"base seed {base}; one z dimension per row swept -{extent:g}..+{extent:g}"),
                tile(cells, len(dims), steps))

    def extremes_sheet(self, seeds: list[int], extent: float):
        z = np.sign(self.z_of(seeds)) * extent
        rows, cols = grid_shape(len(seeds))
        pad = rows * cols - len(seeds)
        cells = self.render(self.truncate(self.map_z(z)))
        if pad:
            cells = np.concatenate([cells, np.zeros((pad,) + cells.shape[1:], np.uint8)])
        return (Sheet("extremes", "Uniform extremes", rows, cols,
                      [f"seed {s}" for s in seeds] + [""] * pad,
                      note=f"every z dimension at +-{extent:g}, signs from the seed"),
                tile(cells, rows, cols))

    def interp_sheet(self, seeds: list[int], steps: int):
        if len(seeds) < 2:
            raise StudioError("--interp needs at least two seeds, e.g. 3,17,42")
        z = self.z_of(seeds)
        w = self.w_of(seeds)
        ts = np.linspace(0, 1, steps)
        rows_w, labels, row_labels = [], [], []
        for a, b in zip(range(len(seeds) - 1), range(1, len(seeds))):
            rows_w.append(torch.stack([torch.lerp(w[a], w[b], float(t)) for t in ts]))
            rows_w.append(self.map_z(np.stack([slerp(z[a], z[b], t) for t in ts])))
            for kind in ("linear w", "slerp z"):
                row_labels.append(f"{seeds[a]}->{seeds[b]} {kind}")
                labels += [f"t={t:.2f}" for t in ts]
        cells = self.render(self.truncate(torch.cat(rows_w)))
        n = len(rows_w)
        return (Sheet("interp", "Interpolation", n, steps, labels, row_labels,
                      "per pair: linear in w, then slerp in z"), tile(cells, n, steps))

    def truncation_sheet(self, seeds: list[int], psis: list[float]):
        w = self.w_of(seeds)
        ws = torch.cat([torch.stack([self.truncate(w[i], p) for p in psis]) for i in range(len(seeds))])
        cells = self.render(ws)
        labels = [f"psi {p:g}" for _ in seeds for p in psis]
        return (Sheet("truncation", "Truncation", len(seeds), len(psis), labels,
                      [f"seed {s}" for s in seeds], "w_avg + psi (w - w_avg)"),
                tile(cells, len(seeds), len(psis)))

    def mix_sheet(self, row_seeds: list[int], col_seeds: list[int], upto: str):
        groups = self.gen.layer_groups()
        names = ("coarse",) if upto == "coarse" else ("coarse", "middle")
        stop = max(groups[n].stop for n in names)
        a = self.plus(self.truncate(self.w_of(row_seeds)))
        b = self.plus(self.truncate(self.w_of(col_seeds)))
        ws = []
        for i in range(len(row_seeds)):
            for j in range(len(col_seeds)):
                m = b[j].clone()
                m[:stop] = a[i][:stop]
                ws.append(m)
        cells = self.render(torch.stack(ws))
        labels = [f"{r}/{c}" for r in row_seeds for c in col_seeds]
        return (Sheet(f"mix-{upto}", f"Style mixing: {' + '.join(names)} from the row",
                      len(row_seeds), len(col_seeds), labels, [f"seed {s}" for s in row_seeds],
                      f"rows give layers 0..{stop - 1} ({'+'.join(names)}), columns the rest; "
                      f"labels row/column seed"),
                tile(cells, len(row_seeds), len(col_seeds)))

    @torch.inference_mode()
    def principal_directions(self, samples: int = 4096, k: int = 16, seed: int = 0):
        """PCA of w over ``samples`` random z: ``(directions [k, w_dim], std [k], ratio [k])``;
        each direction is a unit component times its standard deviation."""
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((samples, self.Z)).astype(np.float32)
        w = self.map_z(z).double().cpu().numpy()
        w -= w.mean(0)
        _, s, vt = np.linalg.svd(w, full_matrices=False)
        var = s ** 2 / max(1, samples - 1)
        k = min(k, len(s))
        std = np.sqrt(var[:k])
        # a fixed sign so the bank is reproducible: the largest entry positive
        comps = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(1)])[:, None]
        return ((comps * std[:, None]).astype(np.float32), std.astype(np.float32),
                (var[:k] / max(var.sum(), 1e-12)).astype(np.float32))

    def directions_sheet(self, base: int, directions: np.ndarray, steps: int, extent: float = 3.0):
        w0 = self.w_of([base])[0]
        d = torch.as_tensor(directions, device=self.device)
        values = np.linspace(-extent, extent, steps)
        ws = torch.stack([w0 + float(v) * d[k] for k in range(len(d)) for v in values])
        cells = self.render(self.truncate(ws))
        labels = [f"pc{k} {v:+.1f}" for k in range(len(d)) for v in values]
        return (Sheet("directions", "Principal directions of w", len(d), steps, labels,
                      [f"pc{k}" for k in range(len(d))],
                      f"base seed {base}; each row one direction, -{extent:g}..+{extent:g} std"),
                tile(cells, len(d), steps))


def save_bank(folder: str | Path, name: str, explorer: Explorer, seeds: list[int],
              directions: np.ndarray | None = None, direction_ids: list[int] = (),
              model: str = "") -> Path:
    """Write a latent bank (see the module docstring). Returns ``NAME.json``."""
    from engine.presets import check_name, save_latent

    name = check_name(name, "bank")
    folder = Path(folder)
    items = []
    if seeds:
        w = explorer.plus(explorer.w_of(seeds)).cpu().numpy()
        for s, wp in zip(seeds, w):
            save_latent(folder, f"{name}-s{s}", wp)
            items.append({"name": f"{name}-s{s}", "kind": "w_plus", "seed": int(s),
                          "shape": list(wp.shape)})
    for k in direction_ids:
        if directions is None or not 0 <= k < len(directions):
            raise StudioError(f"--pick-directions: no principal direction {k} "
                              f"(there are {0 if directions is None else len(directions)})")
        save_latent(folder, f"{name}-pc{k}", directions[k])
        items.append({"name": f"{name}-pc{k}", "kind": "direction", "component": int(k),
                      "shape": [int(directions.shape[1])], "units": "one standard deviation"})
    if not items:
        raise StudioError("nothing to pick: give --pick SEEDS and/or --pick-directions K")
    meta = {"latent_jockey_bank": BANK_FORMAT, "name": name, "model": model,
            "num_layers": explorer.L, "w_dim": explorer.W, "items": items}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return path


def explore(spec: str, out: str | Path, *, seeds: str = "0-63", base: int = 0,
            knob_dims: int = 8, steps: int = 9, extent: float = 3.0, interp: str | None = None,
            psi: float = 1.0, samples: int = 4096, components: int = 8, mix: str | None = None,
            sheets: tuple[str, ...] | None = None, cell: int | None = None, batch: int = 16,
            size: int = 256, pick: str | None = None, pick_directions: str | None = None,
            bank: str = "bank", latents: str | Path = "latents", log=print) -> dict:
    """Run ``lj explore``: write the sheets, ``index.html`` and ``directions.npy`` into ``out``;
    with ``pick``/``pick_directions``, a latent bank into ``latents``. Returns a summary."""
    from engine.generators import load_generator

    gen = load_generator(spec, (size, size))
    h = gen.resolution[0]
    ex = Explorer(gen, psi=psi, batch=batch, cell=cell or min(h, 128))
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StudioError(f"cannot create {out}: {e.strerror or e}") from None
    seed_list = parse_seeds(seeds)
    small = seed_list[:8]
    interp_seeds = parse_seeds(interp, "--interp") if interp else small[:4]
    mix_seeds = parse_seeds(mix, "--mix") if mix else small[:6]
    all_sheets = ("seeds", "knobs", "extremes", "interp", "truncation", "mix", "directions")
    chosen = all_sheets if not sheets else sheets
    unknown = set(chosen) - set(all_sheets)
    if unknown:
        raise StudioError(f"unknown sheet '{sorted(unknown)[0]}' (known: {', '.join(all_sheets)})")
    dirs, std, ratio = ex.principal_directions(samples, components)
    np.save(out / "directions.npy", dirs, allow_pickle=False)
    (out / "directions.json").write_text(json.dumps({
        "latent_jockey_directions": 1, "model": spec, "samples": samples,
        "units": "each row is a unit principal component times its standard deviation",
        "std": std.tolist(), "explained_variance_ratio": ratio.tolist()}, indent=1) + "\n")
    done: list[Sheet] = []

    def emit(made):
        sheet, img = made
        sheet.cell = ((img.shape[0] - 2) // sheet.rows - 2, (img.shape[1] - 2) // sheet.cols - 2)
        save_png(img, out / f"{sheet.name}.png")
        done.append(sheet)
        log(f"lj: {out / (sheet.name + '.png')} ({sheet.rows}x{sheet.cols})")

    if "seeds" in chosen:
        emit(ex.seed_sheet(seed_list))
    if "knobs" in chosen:
        emit(ex.knobs_sheet(base, list(range(min(knob_dims, ex.Z))), steps, extent))
    if "extremes" in chosen:
        emit(ex.extremes_sheet(small, extent))
    if "interp" in chosen:
        emit(ex.interp_sheet(interp_seeds, steps))
    if "truncation" in chosen:
        emit(ex.truncation_sheet(small[:6], [-0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]))
    if "mix" in chosen:
        emit(ex.mix_sheet(mix_seeds, mix_seeds, "coarse"))
        emit(ex.mix_sheet(mix_seeds, mix_seeds, "middle"))
    if "directions" in chosen:
        emit(ex.directions_sheet(base, dirs, steps))
    extra = (f"<p>model <code>{spec}</code>, {gen.num_layers} layers, w {gen.w_dim}; "
             f"<a href='directions.npy'>directions.npy</a>: {len(dirs)} principal directions "
             f"(variance {', '.join(f'{r:.1%}' for r in ratio[:6])}...). Pick with "
             f"<code>lj explore MODEL --pick SEEDS --pick-directions K --bank NAME</code>.</p>")
    write_html(done, out / "index.html", f"lj explore {spec}", extra)
    summary = {"out": str(out), "sheets": [s.name for s in done], "images": ex.images_rendered,
               "render_seconds": ex.render_seconds, "directions": str(out / "directions.npy")}
    if pick or pick_directions:
        picked = parse_seeds(pick, "--pick") if pick else []
        ids = parse_seeds(pick_directions, "--pick-directions") if pick_directions else []
        summary["bank"] = str(save_bank(latents, bank, ex, picked, dirs, ids, spec))
        log(f"lj: saved the bank {summary['bank']}")
    log(f"lj: {out / 'index.html'} ({ex.images_rendered} images in {ex.render_seconds:.1f} s)")
    return summary

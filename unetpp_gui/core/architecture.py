"""The nested UNet++ grid of a loaded model, read from its layer graph (no Qt).

Nodes are the layers named ``X_i_j`` (the paper's names, which this project's builders use).
Edges are found by walking each node's inputs back to the nearest other node, and classified
as ``down`` (max pooling from the level above), ``up`` (up-sampling from the level below) or
``skip`` (dense skip connection along a row). A model without such names yields an empty grid
and callers fall back to a plain layer list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE = re.compile(r"^X_(\d+)_(\d+)$")
HEAD = re.compile(r"^head_X_(\d+)_(\d+)$")


@dataclass
class Node:
    i: int
    j: int
    filters: int
    shape: tuple[int | None, ...]
    params: int = 0
    flops: int = 0
    layers: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"X_{self.i}_{self.j}"


@dataclass
class Grid:
    nodes: dict[tuple[int, int], Node]
    edges: list[tuple[tuple[int, int], tuple[int, int], str]]
    heads: list[tuple[str, tuple[int, int]]]
    total_params: int
    total_flops: int  # multiply-adds counted as 2 FLOPs, per slice
    layers: list[str]  # every layer, for the fallback view

    @property
    def is_grid(self) -> bool:
        return bool(self.nodes)


def _inbound(layer: Any) -> list[Any]:
    out = []
    for node in getattr(layer, "_inbound_nodes", []):
        for t in node.input_tensors:
            hist = getattr(t, "_keras_history", None)
            if hist is not None:
                out.append(hist[0])
    return out


def _owner(name: str) -> tuple[int, int] | None:
    m = re.match(r"^X_(\d+)_(\d+)(?:_|$)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def conv_flops(layer: Any) -> int:
    """2 x multiply-adds of a (transposed) convolution for one input slice."""
    cls = type(layer).__name__
    if cls not in ("Conv2D", "Conv2DTranspose"):
        return 0
    kh, kw = layer.kernel_size
    cin = int(layer.input.shape[-1])
    cout = layer.filters
    if cls == "Conv2D":
        h, w = layer.output.shape[1], layer.output.shape[2]
    else:
        h, w = layer.input.shape[1], layer.input.shape[2]
    if h is None or w is None:
        return 0
    return 2 * kh * kw * cin * cout * int(h) * int(w)


def extract_grid(model: Any) -> Grid:
    nodes: dict[tuple[int, int], Node] = {}
    by_name = {l.name: l for l in model.layers}
    total_flops = 0
    for layer in model.layers:
        total_flops += conv_flops(layer)
        m = NODE.match(layer.name)
        if m:
            key = (int(m.group(1)), int(m.group(2)))
            shape = tuple(layer.output.shape)
            nodes[key] = Node(key[0], key[1], int(shape[-1]), shape)
    for layer in model.layers:
        key = _owner(layer.name)
        if key in nodes:
            nodes[key].params += int(layer.count_params())
            nodes[key].flops += conv_flops(layer)
            nodes[key].layers.append(layer.name)
    edges: list[tuple[tuple[int, int], tuple[int, int], str]] = []
    for key in nodes:
        seen: set[str] = set()
        stack = list(_inbound(by_name[nodes[key].name]))
        while stack:
            layer = stack.pop()
            if layer.name in seen:
                continue
            seen.add(layer.name)
            m = NODE.match(layer.name)
            if m and (int(m.group(1)), int(m.group(2))) != key:
                src = (int(m.group(1)), int(m.group(2)))
                kind = "down" if src[0] < key[0] else "up" if src[0] > key[0] else "skip"
                edges.append((src, key, kind))
                continue
            stack.extend(_inbound(layer))
    heads = []
    for layer in model.layers:
        h = HEAD.match(layer.name)
        if h:
            heads.append((layer.name, (int(h.group(1)), int(h.group(2)))))
    return Grid(nodes, sorted(set(edges)), heads, int(model.count_params()), total_flops,
                [l.name for l in model.layers])


def layout(grid: Grid, dx: float = 120.0, dy: float = 90.0) -> dict[tuple[int, int], tuple[float, float]]:
    """Positions like the paper's figure: column j to the right, level i downwards, shifted by i/2."""
    return {k: (dx * (k[1] + k[0] * 0.5), dy * k[0]) for k in grid.nodes}


EDGE_COLORS = {"down": "#3a7bd5", "up": "#2ca25f", "skip": "#999999"}


def to_svg(grid: Grid, title: str = "") -> str:
    """A self-contained SVG of the grid (or of the layer list for foreign models)."""
    if not grid.is_grid:
        lines = [f'<text x="10" y="{20 + 16 * k}" font-size="12">{n}</text>' for k, n in enumerate(grid.layers)]
        h = 30 + 16 * len(grid.layers)
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="{h}">'
                f'<rect width="100%" height="100%" fill="white"/>{"".join(lines)}</svg>\n')
    pos = layout(grid)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ox, oy = 70 - min(xs), 70 - min(ys)
    w, h = max(xs) - min(xs) + 160, max(ys) - min(ys) + 170
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>']
    if title:
        parts.append(f'<text x="10" y="20" font-size="14" font-weight="bold">{title}</text>')
    for src, dst, kind in grid.edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        parts.append(f'<line x1="{x1 + ox:.1f}" y1="{y1 + oy:.1f}" x2="{x2 + ox:.1f}" y2="{y2 + oy:.1f}" '
                     f'stroke="{EDGE_COLORS[kind]}" stroke-width="1.5" marker-end="url(#a)" class="{kind}"/>')
    for key, node in grid.nodes.items():
        x, y = pos[key][0] + ox, pos[key][1] + oy
        parts.append(f'<g class="node" id="{node.name}"><circle cx="{x:.1f}" cy="{y:.1f}" r="24" '
                     f'fill="#fdf1d6" stroke="#b07d2b"/>'
                     f'<text x="{x:.1f}" y="{y - 2:.1f}" font-size="11" text-anchor="middle">{node.name}</text>'
                     f'<text x="{x:.1f}" y="{y + 11:.1f}" font-size="9" text-anchor="middle">{node.filters} ch</text></g>')
    for name, key in grid.heads:
        x, y = pos[key][0] + ox, pos[key][1] + oy - 45
        parts.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="9" text-anchor="middle" class="head">{name}</text>')
    parts.append(f'<text x="10" y="{h - 12:.0f}" font-size="11">{grid.total_params:,} parameters, '
                 f'{grid.total_flops / 1e9:.1f} GFLOP per slice</text></svg>\n')
    return "".join(parts)


def write_diagram(model: Any, path: str | Path) -> None:
    """Write the grid picture as .svg (or .png, drawn with Pillow)."""
    from unetpp_gui.core.atomic import atomic_write_bytes

    path = Path(path)
    grid = extract_grid(model)
    if path.suffix.lower() == ".svg":
        atomic_write_bytes(path, to_svg(grid, model.name).encode())
    elif path.suffix.lower() == ".png":
        atomic_write_bytes(path, _png(grid, model.name))
    else:
        raise ValueError("diagram must be .svg or .png")


def _png(grid: Grid, title: str) -> bytes:
    import io

    from PIL import Image, ImageDraw

    if not grid.is_grid:
        img = Image.new("RGB", (400, 30 + 16 * len(grid.layers)), "white")
        d = ImageDraw.Draw(img)
        for k, n in enumerate(grid.layers):
            d.text((10, 10 + 16 * k), n, fill="black")
    else:
        pos = layout(grid)
        xs = [p[0] for p in pos.values()]
        ys = [p[1] for p in pos.values()]
        ox, oy = 70 - min(xs), 70 - min(ys)
        img = Image.new("RGB", (int(max(xs) - min(xs) + 160), int(max(ys) - min(ys) + 170)), "white")
        d = ImageDraw.Draw(img)
        d.text((10, 8), title, fill="black")
        for src, dst, kind in grid.edges:
            (x1, y1), (x2, y2) = pos[src], pos[dst]
            d.line([(x1 + ox, y1 + oy), (x2 + ox, y2 + oy)], fill=EDGE_COLORS[kind], width=2)
        for key, node in grid.nodes.items():
            x, y = pos[key][0] + ox, pos[key][1] + oy
            d.ellipse([x - 24, y - 24, x + 24, y + 24], fill="#fdf1d6", outline="#b07d2b")
            d.text((x - 18, y - 8), node.name, fill="black")
            d.text((x - 14, y + 4), f"{node.filters}ch", fill="black")
        d.text((10, img.height - 20), f"{grid.total_params:,} parameters, {grid.total_flops / 1e9:.1f} GFLOP/slice",
               fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

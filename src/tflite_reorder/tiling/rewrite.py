"""The tiling rewrite: one region becomes, per output tile, slice → (pad) → VALID ops, and a
concatenation of the tiles.

``plan`` walks the region backwards from each output tile and records which rows and
columns of every tensor the tile needs (``need``: clipped to the tensor, what gets
computed) and which window every op reads (``reads``: unclipped, the part outside the
tensor is padding). ``apply`` emits the ops with the model editor: a STRIDED_SLICE of the
region input, for each op of the region a clone on tile tensors — window ops with VALID
padding behind an explicit PAD (zero point for convolutions, the type's minimum for max
pooling) where the window leaves the tensor, PAD ops with the tile's share of their
padding, pointwise ops as they are — a STRIDED_SLICE where a consumer needs less than a
tensor's tile holds, then CONCATENATION along W per band and along H over the bands.
Weights are shared by all tiles (no new constant data but paddings and slice bounds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ..rewrites.edit import Editor, buffers_in_use, compact
from .region import Region
from .spatial import SpatialOp, describe
from .window import Span, split

Window = tuple[Span, Span]  # rows (H), columns (W)


@dataclass(frozen=True)
class Grid:
    """Tiles of the region output: ``rows`` bands along H, each cut into ``cols`` patches."""

    rows: int
    cols: int = 1

    @property
    def tiles(self) -> int:
        return self.rows * self.cols

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}"


@dataclass
class TilePlan:
    """One output tile: what each tensor of the region must hold and what each op reads."""

    out: Window
    need: dict[int, Window] = field(default_factory=dict)  # tensor -> computed window
    reads: dict[tuple[int, int], Window] = field(default_factory=dict)  # (op, input pos)


@dataclass
class RegionPlan:
    region: Region
    grid: Grid
    tiles: list[TilePlan]


class CannotTile(Exception):
    """This grid does not fit this region (a tile would need an empty window)."""


def _area(w: Window) -> int:
    return w[0].size * w[1].size


def plan(ed: Editor, region: Region, ops: list[SpatialOp], grid: Grid) -> RegionPlan:
    """Windows of every tile; ``ops[i]`` describes op ``region.start + i``."""
    ysh = ed.shape(region.output)
    if grid.tiles < 2:
        raise CannotTile("a 1x1 grid is the region itself")
    if grid.rows > ysh[1] or grid.cols > ysh[2]:
        raise CannotTile(f"grid {grid} finer than the {ysh[1]}x{ysh[2]} output")
    tiles = []
    for rows in split(ysh[1], grid.rows):
        for cols in split(ysh[2], grid.cols):
            tiles.append(_plan_tile(ed, region, ops, (rows, cols)))
    return RegionPlan(region, grid, tiles)


def _plan_tile(ed: Editor, region: Region, ops: list[SpatialOp], out: Window) -> TilePlan:
    tp = TilePlan(out, {region.output: out})
    operators = ed.sg.operators
    for i in reversed(range(len(ops))):
        op = operators[region.start + i]
        o = ed.outputs(op)[0]
        if o not in tp.need:  # nothing in this tile reads it (cannot happen in a cut region)
            raise CannotTile(f"tensor {ed.name(o)!r} unused by the tile")
        want = tp.need[o]
        ins = ed.inputs(op)
        for pos in ops[i].spatial:
            t = ins[pos]
            sh = ed.shape(t)
            r = (ops[i].axes[0].window(want[0]), ops[i].axes[1].window(want[1]))
            c = (r[0].clip(sh[1]), r[1].clip(sh[2]))
            if c[0].size <= 0 or c[1].size <= 0:
                raise CannotTile(f"a tile of {ed.name(o)!r} reads only padding")
            tp.reads[(region.start + i, pos)] = r
            old = tp.need.get(t)
            tp.need[t] = c if old is None else (c[0].hull(old[0]), c[1].hull(old[1]))
    return tp


def halo(rp: RegionPlan) -> tuple[int, int]:
    """Largest overlap, in rows and columns of the region input, of neighbouring tiles."""
    x = rp.region.input
    wins = [t.need[x] for t in rp.tiles]
    g = rp.grid
    rows = max((wins[i * g.cols + j][0].hi - wins[(i + 1) * g.cols + j][0].lo
                for i in range(g.rows - 1) for j in range(g.cols)), default=0)
    cols = max((wins[i * g.cols + j][1].hi - wins[i * g.cols + j + 1][1].lo
                for i in range(g.rows) for j in range(g.cols - 1)), default=0)
    return max(rows, 0), max(cols, 0)


def computed_pixels(rp: RegionPlan, tensor: int) -> int:
    """Output pixels of ``tensor`` computed over all tiles (halos counted every time)."""
    return sum(_area(t.need[tensor]) for t in rp.tiles if tensor in t.need)


# ---------------------------------------------------------------------------------------------
# emitting


class _Emitter:
    def __init__(self, ed: Editor, rp: RegionPlan, ops: list[SpatialOp]) -> None:
        self.ed, self.rp, self.ops = ed, rp, ops
        self.new: list[schema.OperatorT] = []

    def tensor(self, like: int, win: Window, tag: str) -> int:
        sh = self.ed.shape(like)
        t = self.ed.new_tensor(like, (sh[0], win[0].size, win[1].size, sh[3]),
                               f"{self.ed.name(like)}/{tag}")
        self.ed.t(t).quantization = self.ed.t(like).quantization  # shared, never changed
        return t

    def crop(self, src: int, have: Window, want: Window, tag: str) -> int:
        """``src`` holds window ``have``; a tensor holding ``want`` (a sub-window)."""
        if have == want:
            return src
        out = self.tensor(src, want, tag + "_crop")
        sh = self.ed.shape(src)
        begin = [0, want[0].lo - have[0].lo, want[1].lo - have[1].lo, 0]
        end = [sh[0], want[0].hi - have[0].lo, want[1].hi - have[1].lo, sh[3]]
        self.new.append(self.ed.strided_slice_op(src, begin, end, [1, 1, 1, 1], out))
        return out

    def pad(self, src: int, inside: Window, read: Window, sizes, value, tag: str) -> int:
        """``src`` holds ``inside``; pad it out to the (unclipped) window ``read``."""
        pads = [[0, 0], list(read[0].pads(sizes[0])), list(read[1].pads(sizes[1])), [0, 0]]
        if not any(p for pair in pads for p in pair):
            return src
        out = self.tensor(src, read, tag + "_pad")
        self.new.append(self.ed.pad_op(src, pads, out, value))
        return out

    def emit_tile(self, k: int, tp: TilePlan) -> int:
        ed, region = self.ed, self.rp.region
        x = region.input
        xs = ed.shape(x)
        whole = (Span(0, xs[1]), Span(0, xs[2]))
        have = {x: (self.crop(x, whole, tp.need[x], f"tile{k}"), tp.need[x])}
        for i, sop in enumerate(self.ops):
            v = region.start + i
            op = ed.sg.operators[v]
            ins, o = ed.inputs(op), ed.outputs(op)[0]
            new_ins = list(ins)
            for pos in sop.spatial:
                t = ins[pos]
                src, held = have[t]
                read = tp.reads[(v, pos)]
                sh = ed.shape(t)
                inside = (read[0].clip(sh[1]), read[1].clip(sh[2]))
                src = self.crop(src, held, inside, f"tile{k}_op{v}")
                if sop.kind == "window":
                    src = self.pad(src, inside, read, sh[1:3], self._pad_value(t, sop),
                                   f"tile{k}_op{v}")
                new_ins[pos] = src
            if sop.kind == "pad":
                have[o] = (self._pad_op(op, new_ins[0], tp, v, o, k), tp.need[o])
                continue
            out = self.tensor(o, tp.need[o], f"tile{k}")
            clone = ed.clone_op(op, new_ins, [out])
            if sop.kind == "window":
                clone.builtinOptions.padding = schema.Padding.VALID
            self.new.append(clone)
            have[o] = (out, tp.need[o])
        return have[region.output][0]

    def _pad_value(self, t: int, sop: SpatialOp):
        if sop.pad_with == "zero":
            return None  # PAD: the zero point (int8) or 0.0 (float)
        if self.ed.dtype(t) == "INT8":
            return np.int8(-128)
        return np.float32(np.finfo(np.float32).min)  # TFLite's max pool starts at lowest()

    def _pad_op(self, op, src: int, tp: TilePlan, v: int, o: int, k: int) -> int:
        """The tile's share of a PAD op's padding (nothing to do when it has none)."""
        ed = self.ed
        read = tp.reads[(v, 0)]
        sh = ed.shape(ed.inputs(op)[0])
        pads = [[0, 0], list(read[0].pads(sh[1])), list(read[1].pads(sh[2])), [0, 0]]
        if not any(p for pair in pads for p in pair):
            return src
        out = self.tensor(o, tp.need[o], f"tile{k}")
        p = ed.new_int32(np.array(pads, np.int32), f"{ed.name(out)}/paddings")
        ins = ed.inputs(op)
        self.new.append(ed.clone_op(op, [src, p, *ins[2:]], [out]))
        return out

    def emit(self) -> list[schema.OperatorT]:
        ed, rp = self.ed, self.rp
        y = rp.region.output
        g = rp.grid
        bands = []
        groups = _concat_groups(g.rows)
        full = Span(0, ed.shape(y)[2])
        parts: list[int] = []
        start = 0
        for i in range(g.rows):
            patches = [self.emit_tile(i * g.cols + j, rp.tiles[i * g.cols + j])
                       for j in range(g.cols)]
            rows = rp.tiles[i * g.cols].out[0]
            if g.cols == 1:
                bands.append((patches[0], rows))
            else:
                band = y if g.rows == 1 else self.tensor(y, (rows, full), f"band{i}")
                self.new.append(ed.concat_op(patches, band, 2))
                bands.append((band, rows))
            if len(groups) > 1 and i + 1 in groups:  # a group of bands is complete
                mine, done = bands[start:], i + 1
                start = done
                part = Span(mine[0][1].lo, mine[-1][1].hi)
                t = self.tensor(y, (part, full), f"bands{len(parts)}")
                self.new.append(ed.concat_op([b for b, _ in mine], t, 1))
                parts.append(t)
        if g.rows > 1:
            ins = parts if len(groups) > 1 else [b for b, _ in bands]
            self.new.append(ed.concat_op(ins, y, 1))
        return self.new


# TFLM's CONCATENATION takes at most this many inputs (``kMaxInputNum``, concatenation.cc).
MAX_CONCAT_INPUTS = 10


def _concat_groups(n: int) -> list[int]:
    """Where groups of at most ``MAX_CONCAT_INPUTS`` consecutive bands end (as near equal
    as can be), so more bands than one CONCATENATION takes are joined as a tree: each
    group into a tensor of its rows as soon as it is complete, then the groups."""
    k = -(-n // MAX_CONCAT_INPUTS)
    return [round(n * (j + 1) / k) for j in range(k)]


def emit(ed: Editor, rp: RegionPlan, ops: list[SpatialOp]) -> list[schema.OperatorT]:
    """The tiles' ops (new tensors added to the subgraph; its operators left as they are)."""
    return _Emitter(ed, rp, ops).emit()


def apply(ed: Editor, rp: RegionPlan, ops: list[SpatialOp]) -> list[schema.OperatorT]:
    """Replace the region's ops by their tiles (stored order: tile by tile, then concat)."""
    old = [ed.sg.operators[v] for v in rp.region.ops]
    new = emit(ed, rp, ops)
    ed.replace(old, new)
    ed.toposort()
    return new


def tile_region(model: schema.ModelT, region: Region, grid: Grid) -> RegionPlan:
    """Tile ``region`` of subgraph 0 of ``model`` in place; unreferenced tensors dropped.

    Raises ``NotTileable`` or ``CannotTile`` (model unchanged) when it does not apply.
    """
    ed = Editor(model, 0)
    ops = [describe(ed, ed.sg.operators[v]) for v in region.ops]
    rp = plan(ed, region, ops, grid)
    used = buffers_in_use(model)
    apply(ed, rp, ops)
    compact(model, used)
    return rp

"""Tiling and streaming: a scene of any size as overlapping tiles, blended, written row band by row band.

Tiles lie on a lattice fixed on the map (`cogen.tiling.anchored_starts`, from the call's `anchor`), so windows of
one file, neighbouring crops and overlapping granules cut the same tiles. Tiles are processed a row of tiles at a
time; their blended values accumulate in a buffer one tile high, and the rows no later tile can reach are
written and dropped. Memory follows one row of tiles, not the scene.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from rasterio.windows import Window
from tqdm.auto import tqdm

from ..data.dataset import to_model_space
from ..tiling import anchored_starts, blend_weight
from .request import Call
from .sinks import encode_raw, out_type
from .sources import Source, read_mask
from .tiles import acc_channels

INTERP_DISTANCE = 200  # px: fillnodata's search distance for the interpolated start of cloud removal
INTERP_BLOCK = 256  # rows interpolated at a time (plus INTERP_DISTANCE above and below)


def stream(call: Call, sample_tiles: Callable, writers: dict[str, dict[str, Any]], progress: bool = True) -> None:
    """Sample every tile of the call with `sample_tiles(positions) -> (values, info)` (cogen.pipeline.tiles) and
    write the blended rows to `writers` as soon as they are final."""
    H, W, tile = call.height, call.width, call.tile
    rows = anchored_starts(H, tile, call.overlap, call.anchor[0])
    cols = anchored_starts(W, tile, call.overlap, call.anchor[1])
    Wp = max(W, tile)
    wt = blend_weight(tile, call.overlap).astype(np.float32)
    acc = {m: np.zeros((acc_channels(call, m), tile, Wp), np.float32) for m in call.targets}
    wsum = np.zeros((tile, Wp), np.float32)
    info = np.zeros((tile, Wp), np.float32)
    per_batch = max(1, call.options.batch // call.options.samples)
    top = 0
    with tqdm(total=len(rows) * len(cols), desc="tiles", disable=not progress, dynamic_ncols=True) as bar:
        for ri, r in enumerate(rows):
            for i in range(0, len(cols), per_batch):
                cs = cols[i : i + per_batch]
                res, inf = sample_tiles([(r, c) for c in cs])
                rr = r - top
                for j, c in enumerate(cs):
                    wsum[rr : rr + tile, c : c + tile] += wt
                    info[rr : rr + tile, c : c + tile] += wt * inf[j]
                    for m in call.targets:
                        acc[m][:, rr : rr + tile, c : c + tile] += res[m][j] * wt
                bar.update(len(cs))
            nxt = rows[ri + 1] if ri + 1 < len(rows) else H
            n = min(nxt, H) - top  # rows [top, nxt) are final
            if n > 0:
                flush(call, writers, acc, wsum, info, top, n)
            shift = nxt - top
            for a in [*acc.values(), wsum, info]:
                a[..., : tile - shift, :] = a[..., shift:, :] if shift < tile else 0
                a[..., max(tile - shift, 0) :, :] = 0
            top = nxt


def flush(call: Call, writers: dict[str, dict[str, Any]], acc: dict[str, np.ndarray], wsum: np.ndarray,
          info: np.ndarray, top: int, n: int) -> None:
    """Write rows [top, top + n) of every target: the majority class and its agreement, or the first sample (a
    regenerated input keeps its clear pixels bit for bit) and with several samples their mean and spread."""
    W = call.width
    win = Window(0, top, W, n)
    w = wsum[:n, :W]
    has_info = (info[:n, :W] / w) > 1e-6 if call.sources else np.ones((n, W), bool)
    for m in call.targets:
        mod, ws = call.registry[m], writers[m]
        a = acc[m][:, :n, :W] / w[None]
        if mod.is_categorical:
            nodata = mod.nodata if mod.nodata is not None else 0
            ids = np.where(has_info, np.asarray(mod.class_ids)[a.argmax(axis=0)], nodata)
            ws["classes"].write(ids[None].astype(ws["classes"].dtype), win)
            conf = a.max(axis=0)
            if call.novelty is not None:  # an unfamiliar pixel's class is less sure than its samples agree
                conf = conf * call.novelty.familiarity(top, n)
            ws["confidence"].write(np.where(has_info, conf, np.nan)[None].astype(np.float32), win)
            continue
        C = mod.num_bands
        s0, mean, sq = a[:C], a[C : 2 * C], a[2 * C :]
        src = call.sources.get(m)
        dtype, _, nodata = out_type(mod, "sample", src)
        out = encode_raw(mod, s0, dtype, nodata, has_info)
        if m in call.regenerate:
            raw_in, ok = src.read(top, 0, n, W)
            keep = ok & ~read_mask(call.regenerate[m], top, 0, n, W)
            out = np.where(keep[None], raw_in.astype(out.dtype), out)  # clear pixels: the input, bit for bit
        ws["sample"].write(out, win)
        if "mean" in ws:
            std = np.sqrt(np.maximum(sq - mean**2, 0.0))
            ws["mean"].write(np.where(has_info[None], mod.from_physical(mean), np.nan).astype(np.float32), win)
            ws["std"].write(np.where(has_info[None], mod.spread_from_physical(std), np.nan).astype(np.float32), win)


def interpolated_starts(call: Call) -> dict[str, Any]:
    """{target: its interpolated start} when every target is regenerated in part and the options start from the
    interpolation (strength < 1); {} otherwise (pure noise). The start is interpolated in time from the target's
    other dates where the call gives some (`TemporalStart`), in space from its kept pixels otherwise."""
    if (call.options.strength >= 1 or not set(call.targets) <= set(call.regenerate)
            or any(call.registry[m].is_categorical for m in call.targets)):
        return {}
    out: dict[str, Any] = {}
    for m in call.targets:
        spatial = InterpolatedStart(call.sources[m], call.regenerate[m], call.height, call.width)
        others = {s: src for s, src in call.sources.items() if s.startswith(m + "@")}
        dated = call.dates is not None and call.dates.target_date is not None
        out[m] = (TemporalStart(call, m, others, spatial) if others and dated else spatial)
    return out


class TemporalStart:
    """The masked pixels of a target from its other dates: each other date mapped band by band onto the target's
    radiometry by a linear fit on the pixels clear in both (the change of season and atmosphere between the dates),
    then, pixel by pixel, interpolated linearly in time between the nearest valid dates before and after the target
    (the nearest valid one where there is one side only); pixels no other date holds take the spatial
    interpolation. Model space, like `InterpolatedStart`. The fits read the scene once, in row blocks."""

    def __init__(self, call: Call, m: str, others: dict[str, Source], spatial: "InterpolatedStart",
                 block: int = INTERP_BLOCK):
        self.m, self.spatial, self.mask = m, spatial, call.regenerate[m]
        self.target, self.src = call.dates.target_date, call.sources[m]
        self.others = sorted(((call.dates.dates[s], src) for s, src in others.items()), key=lambda o: o[0])
        C = self.src.modality.num_bands
        # per other date: sums for the least-squares fit target = a * other + b, per band
        n = np.zeros((len(self.others), C)); sx = np.zeros_like(n); sy = np.zeros_like(n)
        sxx = np.zeros_like(n); sxy = np.zeros_like(n)
        for top in range(0, call.height, block):
            h = min(block, call.height - top)
            y, vy = self._read(self.src, top, 0, h, call.width, masked=True)
            for i, (_, src) in enumerate(self.others):
                x, vx = self._read(src, top, 0, h, call.width)
                both = vy & vx
                xs, ys = x[:, both].astype(np.float64), y[:, both].astype(np.float64)
                n[i] += both.sum(); sx[i] += xs.sum(1); sy[i] += ys.sum(1)
                sxx[i] += (xs * xs).sum(1); sxy[i] += (xs * ys).sum(1)
        var = sxx - sx * sx / np.maximum(n, 1)
        self.a = np.where((n > 16) & (var > 1e-9), (sxy - sx * sy / np.maximum(n, 1)) / np.maximum(var, 1e-9), 1.0)
        self.b = np.where(n > 16, (sy - self.a * sx) / np.maximum(n, 1), 0.0)

    def _read(self, src: Source, r: int, c: int, h: int, w: int, masked: bool = False):
        raw, ok = src.read(r, c, h, w)
        if masked:
            ok = ok & ~read_mask(self.mask, r, c, h, w)
        x, v = to_model_space(src.modality, raw, ok, src.given)
        return x.numpy(), v.numpy() & np.asarray(src.given).all()

    def window(self, r: int, c: int, tile: int) -> np.ndarray:
        """(C, tile, tile) at (r, c); the spatial start where no other date is valid, zeros beyond the scene."""
        out = self.spatial.window(r, c, tile)
        h, w = max(0, min(tile, self.spatial.H - r)), max(0, min(tile, self.spatial.W - c))
        if not h or not w:
            return out
        before_d = np.full((h, w), np.inf); after_d = np.full((h, w), np.inf)
        before = np.zeros((out.shape[0], h, w)); after = np.zeros_like(before)
        for i, (d, src) in enumerate(self.others):
            x, v = self._read(src, r, c, h, w)
            fit = self.a[i][:, None, None] * x + self.b[i][:, None, None]
            days = (d - self.target).days
            side_d, side = (before_d, before) if days <= 0 else (after_d, after)
            closer = v & (abs(days) < side_d)
            side[:, closer] = fit[:, closer]
            side_d[closer] = abs(days)
        has_b, has_a = np.isfinite(before_d), np.isfinite(after_d)
        both = has_b & has_a
        wa = np.divide(before_d, before_d + after_d, out=np.zeros((h, w)), where=both)  # the after date's weight
        est = np.where(both[None], (1 - wa) * before + wa * after, np.where(has_b[None], before, after))
        have = has_b | has_a
        out[:, :h, :w] = np.where(have[None], est, out[:, :h, :w]).astype(np.float32)
        return out


class InterpolatedStart:
    """The masked pixels of a target filled from its kept ones (`rasterio.fill.fillnodata`, model space),
    computed block of rows by block of rows with INTERP_DISTANCE rows of context on each side (all that
    fillnodata's search can reach), so memory stays bounded on large scenes; two blocks are kept. Pixels out of
    reach of any kept pixel get the band mean of the kept pixels in the block's context (0, the normalised mean,
    when there are none)."""

    def __init__(self, source: Source, mask, H: int, W: int, block: int = INTERP_BLOCK,
                 distance: int = INTERP_DISTANCE):
        self.src, self.mask, self.H, self.W = source, mask, H, W
        self.block, self.distance = block, distance
        self.cache: dict[int, np.ndarray] = {}

    def _compute(self, k: int) -> np.ndarray:
        from rasterio.fill import fillnodata

        r0, r1 = k * self.block, min((k + 1) * self.block, self.H)
        a, b = max(0, r0 - self.distance), min(self.H, r1 + self.distance)
        raw, ok = self.src.read(a, 0, b - a, self.W)
        ok = ok & ~read_mask(self.mask, a, 0, b - a, self.W)
        x, v = to_model_space(self.src.modality, raw, ok)
        x, v = x.numpy(), v.numpy()
        if not v.any():
            return np.zeros((x.shape[0], r1 - r0, self.W), np.float32)
        keep = v.astype(np.uint8)
        filled = np.stack([fillnodata(band.copy(), mask=keep, max_search_distance=self.distance) for band in x])
        reached = fillnodata(v.astype(np.float32), mask=keep, max_search_distance=self.distance) > 0
        means = np.array([band[v].mean() for band in x], np.float32)[:, None, None]
        out = np.where((reached | v)[None], filled, means).astype(np.float32)
        return out[:, r0 - a : r1 - a]

    def rows(self, k: int) -> np.ndarray:
        if k not in self.cache:
            if len(self.cache) >= 2:
                self.cache.pop(min(self.cache))
            self.cache[k] = self._compute(k)
        return self.cache[k]

    def window(self, r: int, c: int, tile: int) -> np.ndarray:
        """(C, tile, tile) at (r, c); zeros beyond the scene."""
        out = np.zeros((self.src.modality.num_bands, tile, tile), np.float32)
        parts, row = [], r
        end = min(r + tile, self.H)
        while row < end:
            k = row // self.block
            stop = min(end, (k + 1) * self.block)
            parts.append(self.rows(k)[:, row - k * self.block : stop - k * self.block, c : c + tile])
            row = stop
        if parts:
            got = np.concatenate(parts, axis=1)
            out[:, : got.shape[1], : got.shape[2]] = got
        return out

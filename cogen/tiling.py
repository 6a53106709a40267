"""Overlapping tiles over scenes of any size, and blend weights that sum to one over every pixel."""
from __future__ import annotations

import numpy as np

from .errors import UsageError


def anchored_starts(size: int, tile: int, overlap: int, anchor: int = 0) -> list[int]:
    """Start offsets of tiles of `tile` px along an axis of `size` px with at least `overlap` px of overlap, on a
    lattice fixed on the map rather than on the scene: `anchor` is the index of the scene's first pixel on its
    CRS's pixel lattice (`Grid.anchor`), and every tile but the first and last starts at a multiple of the stride
    (tile - overlap) on that lattice; an axis shorter than a tile gets one tile at 0 (padded). Two scenes on one lattice (windows of one file,
    neighbouring crops, overlapping granules) then cut the same tiles wherever both hold them whole, so with the
    same seed they generate the same values there. The first tile starts at 0 and the last ends at the border;
    they overlap their neighbours by at least `overlap`."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise UsageError(f"tile {tile} / overlap {overlap}: need tile > 0 and 0 <= overlap < tile")
    if size <= tile:
        return [0]
    stride = tile - overlap
    first = (-anchor) % stride  # the first pixel of the scene that lies on the lattice's stride
    starts = ([0] if first else []) + list(range(first, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: int,
              anchor: tuple[int, int] = (0, 0)) -> list[tuple[int, int]]:
    """(row, col) of every tile, row-major (rows in increasing order, as the streaming writer needs)."""
    return [(r, c) for r in anchored_starts(height, tile, overlap, anchor[0])
            for c in anchored_starts(width, tile, overlap, anchor[1])]


def ramp(tile: int, overlap: int) -> np.ndarray:
    """1-D weights: linear ramps over `overlap` px at both ends, 1 in the middle, strictly positive."""
    i = np.arange(tile, dtype=np.float64)
    if overlap == 0:
        return np.ones(tile)
    return np.clip(np.minimum(i + 0.5, tile - i - 0.5) / overlap, 1.0 / (2 * overlap), 1.0)


def blend_weight(tile: int, overlap: int) -> np.ndarray:
    """(tile, tile) separable weight; normalising the weighted sum by the summed weights blends tiles."""
    r = ramp(tile, overlap)
    return np.outer(r, r)


def coverage_weights(height: int, width: int, tile: int, overlap: int,
                     anchor: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Normalised weights' sum per pixel (all ones when blending is right); for tests and checks."""
    w = blend_weight(tile, overlap)
    acc = np.zeros((max(height, tile), max(width, tile)))
    parts = []
    for r, c in tile_grid(height, width, tile, overlap, anchor):
        acc[r : r + tile, c : c + tile] += w
        parts.append((r, c))
    total = np.zeros_like(acc)
    for r, c in parts:
        total[r : r + tile, c : c + tile] += w / acc[r : r + tile, c : c + tile]
    return total[:height, :width]

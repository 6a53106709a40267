"""Overlapping tiles over scenes of any size, and blend weights that sum to one over every pixel."""
from __future__ import annotations

import numpy as np

from .errors import UsageError


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` px along an axis of `size` px with at least `overlap` px of overlap.

    The last tile is aligned to the end; an axis shorter than a tile gets one tile at 0 (padded)."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise UsageError(f"tile {tile} / overlap {overlap}: need tile > 0 and 0 <= overlap < tile")
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def tile_grid(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(row, col) of every tile, row-major (rows in increasing order, as the streaming writer needs)."""
    return [(r, c) for r in tile_starts(height, tile, overlap) for c in tile_starts(width, tile, overlap)]


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


def coverage_weights(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    """Normalised weights' sum per pixel (all ones when blending is right); for tests and checks."""
    w = blend_weight(tile, overlap)
    acc = np.zeros((max(height, tile), max(width, tile)))
    parts = []
    for r, c in tile_grid(height, width, tile, overlap):
        acc[r : r + tile, c : c + tile] += w
        parts.append((r, c))
    total = np.zeros_like(acc)
    for r, c in parts:
        total[r : r + tile, c : c + tile] += w / acc[r : r + tile, c : c + tile]
    return total[:height, :width]

"""The sampling settings: one validated, immutable dataclass, saved with a checkpoint and passed per call.

    from cogen.options import SampleOptions
    opts = pipe.options.replace(samples=8, seed=1)   # the checkpoint's defaults, two of them changed
    pipe({"S2L2A": "s2.tif"}, ["LULC"], options=opts)  # or pipe(..., samples=8, seed=1)

A checkpoint's `sample:` config section is a `SampleOptions`; a call never changes the pipeline, so one pipeline
serves many threads. Kept free of torch, so that building a parser (and `--help`) stays fast. Every field here
earned its place by a measured gain on the project's own scores; what was tried and dropped is listed in
docs/SAMPLING.md ("Tried and removed").
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

SAMPLERS = ("ddim", "dpm++", "ddpm", "euler")


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class SampleOptions:
    steps: int = 10  # denoising steps of the sampler
    sampler: str = "ddim"  # a diffusers scheduler (cogen.diffusion.schedule): ddim | dpm++ | ddpm | euler (flow models)
    samples: int = 1  # samples per pixel; with more than one, continuous targets also get a mean and a std
    seed: int = 0  # every random draw of a call follows from it (noise is fixed on the map: cogen.pipeline.tiles)
    batch: int = 64  # tile-samples per forward pass (at most one row of tiles x samples goes at once)
    # (tile, overlap) in pixels: `tiles["default"]`, or a target modality's own entry when it is every target of a
    # call and an image (a continuous modality of two or more bands) is among the inputs, or `tiles["regenerate"]`
    # when part of a target is regenerated (cloud removal); see `tiling`
    tiles: dict[str, list[int]] = field(default_factory=lambda: {"default": [32, 8]})
    tile: int | None = None  # a call's own tile size (None: by `tiles`)
    overlap: int | None = None  # a call's own overlap (None: by `tiles`; with `tile` given alone, a quarter of it)
    # 0 = off; else a model time in (0, 1): after the last step, one more call treats the result as noised to
    # that level and keeps the model's clean estimate, removing noise the last step left (docs/SAMPLING.md)
    final_denoise: float = 0.0
    # regenerated targets (cloud removal): the masked pixels start from an interpolation of the clear ones
    # (rasterio's fillnodata) noised to this level, and only this share of the steps runs (SDEdit); 1 = pure noise
    strength: float = 1.0
    # cloud removal: each generated pixel of a regenerated continuous target becomes the mean of the K clear
    # pixels of the scene whose spectra are nearest to its generated one (cogen.pipeline.post); 0 = off
    library_neighbours: int = 0
    library_size: int = 16384  # at most this many clear pixels, drawn at random (seeded), form that library

    def __post_init__(self) -> None:
        checks = [
            ("steps", _whole(self.steps) and self.steps >= 1, "a whole number >= 1", "5"),
            ("sampler", self.sampler in SAMPLERS, f"one of {', '.join(SAMPLERS)}", "ddim"),
            ("samples", _whole(self.samples) and self.samples >= 1, "a whole number >= 1", "8"),
            ("seed", _whole(self.seed) and self.seed >= 0, "a whole number >= 0", "0"),
            ("batch", _whole(self.batch) and self.batch >= 1, "a whole number >= 1", "16"),
            ("tile", self.tile is None or (_whole(self.tile) and self.tile >= 1), "a number of pixels >= 1", "64"),
            ("overlap", self.overlap is None or (_whole(self.overlap) and self.overlap >= 0), "a number of pixels >= 0",
             "16"),
            ("final_denoise", _number(self.final_denoise) and 0 <= self.final_denoise < 1,
             "a model time from 0 (off) to below 1", "0.08"),
            ("strength", _number(self.strength) and 0 < self.strength <= 1, "above 0, at most 1 (1 = pure noise)",
             "0.2"),
            ("library_neighbours", _whole(self.library_neighbours) and 0 <= self.library_neighbours <= 1024,
             "a whole number from 0 (off) to 1024", "32"),
            ("library_size", _whole(self.library_size) and self.library_size >= 1, "a whole number >= 1", "16384"),
        ]
        for name, ok, rule, example in checks:
            if not ok:
                raise ConfigError(f"sample option {name}={getattr(self, name)!r}: must be {rule} (e.g. {name}={example})")
        if self.tile is not None and self.overlap is None:  # a tile given alone overlaps its neighbours by a quarter
            object.__setattr__(self, "overlap", self.tile // 4)
        if self.overlap is not None and self.tile is not None and self.overlap >= self.tile:
            raise ConfigError(f"sample option overlap={self.overlap} must be smaller than tile={self.tile}")
        if not isinstance(self.tiles, dict) or "default" not in self.tiles:
            raise ConfigError(f"sample option tiles={self.tiles!r}: needs a 'default' entry [TILE, OVERLAP], "
                              f"e.g. {{default: [32, 8], S2L2A: [64, 16], regenerate: [32, 8]}}")
        for k, v in self.tiles.items():
            if (not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_whole(x) for x in v)
                    or v[0] < 1 or not 0 <= v[1] < v[0]):
                raise ConfigError(f"sample option tiles.{k}={v!r}: expected [TILE, OVERLAP] in pixels with "
                                  f"0 <= OVERLAP < TILE, e.g. [32, 8]")

    def replace(self, **changes: Any) -> "SampleOptions":
        """A copy with `changes` (None values are ignored, so unset command-line flags change nothing)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown sample option {unknown[0]}; known: "
                              f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def tiling(self, targets: list[str] | tuple[str, ...], regenerate: bool, image_given: bool) -> tuple[int, int]:
        """(tile, overlap) of a call. The call's own `tile` first; else `tiles["regenerate"]` when part of a target
        is regenerated; else a target's own entry when every target has the same one, used only when an image is
        given or it is no larger than the default (without an image a tile beyond the model's training crops comes
        out in stripes: docs/SAMPLING.md); else `tiles["default"]`."""
        default = tuple(self.tiles["default"])
        if self.tile is not None:
            return self.tile, self.overlap
        if regenerate and "regenerate" in self.tiles:
            t, o = self.tiles["regenerate"]
        else:
            per = {tuple(self.tiles[m]) if m in self.tiles else None for m in targets}
            t, o = default
            if len(per) == 1 and None not in per:
                tt, oo = per.pop()
                if image_given or tt <= default[0]:
                    t, o = tt, oo
        return int(t), int(o if self.overlap is None else self.overlap)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

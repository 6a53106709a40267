"""The sampling options shared by `sample.py` and `cogen.evaluate`: declared once (`add_sampling_flags`) and
applied over a bundle's defaults (`apply_sampling_flags`). Kept free of torch, so that building a parser (and
`--help`) stays fast."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import CogenPipeline


def add_sampling_flags(g) -> None:
    """Declare, on a parser or argument group, the sampling options that `apply_sampling_flags` applies (shared by
    `sample.py` and `cogen.evaluate`)."""
    g.add_argument("--no-grid-shift", action="store_true",
                   help="keep the model's patch grid fixed across steps (default: moved at every step)")
    g.add_argument("--shift-ensemble", type=int, default=None, metavar="N",
                   help="average every step over N patch-grid offsets (N times the model calls; default: the "
                        "checkpoint's sample.shift_ensemble)")
    g.add_argument("--final-denoise", type=float, default=None, metavar="T",
                   help="after the last step, one more model call at model time T (0-1) that removes the noise "
                        "the last step left; 0 = off (default: the checkpoint's sample.final_denoise)")
    g.add_argument("--orientations", type=int, default=None, metavar="N",
                   help="draw sample s turned by dihedral element s mod N (1 = off, 8 = 4 rotations x 2 flips), "
                        "then turn it back, so a mean or vote of samples averages orientation-bound errors at no "
                        "extra cost; for every call, cloud removal included (default: the checkpoint's "
                        "sample.orientations, and sample.orientations_regenerate for cloud removal)")
    g.add_argument("--library-neighbours", type=int, default=None, metavar="K",
                   help="cloud removal: each generated pixel becomes the mean of the K clear pixels of the scene "
                        "whose spectra are nearest to its generated one; 0 = off (default: the checkpoint's "
                        "sample.library_neighbours)")
    g.add_argument("--vote-sigma", type=float, default=None, metavar="PX",
                   help="class maps: smooth each pixel's vote of the samples with its neighbours' (Gaussian, sigma "
                        "in pixels) before the majority is taken; 0 = off (default: the checkpoint's "
                        "sample.vote_sigma)")
    g.add_argument("--no-co-targets", action="store_true",
                   help="generate the targets alone, about 3x faster for land cover from S2L2A (default: the "
                        "checkpoint's sample.co_targets rules add modalities generated beside a target and dropped; "
                        "the demo model adds S2L1C, S1RTC, DEM and NDVI to land cover from S2L2A alone)")
    g.add_argument("--interpolate-positions", action="store_true",
                   help="tiles larger than the training crops get their token positions squeezed into the trained "
                        "range instead of extended beyond it: no stripes there, at some PSNR (docs/SAMPLING.md; "
                        "default: the checkpoint's sample.interpolate_positions)")
    g.add_argument("--no-native-blocks", action="store_true",
                   help="leave generated 20 m / 60 m Sentinel-2 bands at 10 m detail (default: one value per native "
                        "2x2 / 6x6 block, as the bands are stored; see the registry's native_blocks)")


def apply_sampling_flags(pipe: "CogenPipeline", args) -> "CogenPipeline":
    """The sampling options of `add_sampling_flags` applied over the bundle's defaults."""
    if args.no_grid_shift:
        pipe.grid_shift = False
    if args.shift_ensemble is not None:
        pipe.shift_ensemble = args.shift_ensemble
    if args.final_denoise is not None:
        pipe.final_denoise = args.final_denoise
    if args.no_native_blocks:
        pipe.native_blocks = False
    if args.no_co_targets:
        pipe.co_targets = []
    if args.orientations is not None:  # every call, cloud removal included
        pipe.orientations = args.orientations
        pipe.orientations_regenerate = 0
    if args.library_neighbours is not None:
        pipe.library_neighbours = args.library_neighbours
    if args.vote_sigma is not None:
        pipe.vote_sigma = args.vote_sigma
    if args.interpolate_positions:
        pipe.interpolate_positions = True
    return pipe

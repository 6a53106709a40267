"""The sampling flags shared by the `cogen` command and `cogen.evaluate`: each sets one field of the checkpoint's
`SampleOptions` for a run; an unset flag keeps the checkpoint's value. Kept free of torch, so that building a
parser (and `--help`) stays fast."""
from __future__ import annotations

from typing import Any

FLAGS = {  # SampleOptions field -> (type, help)
    "steps": (int, "denoising steps"),
    "samples": (int, "samples per pixel; with more than one, also a mean and a spread (class maps: the agreement)"),
    "seed": (int, "seed of every random draw"),
    "tile": (int, "tile size in pixels; the checkpoint's depends on the targets (cogen info)"),
    "overlap": (int, "overlap of neighbouring tiles in pixels"),
    "batch": (int, "tile-samples per forward pass"),
}


def add_sampling_flags(g, defaults: dict[str, Any] | None = None) -> None:
    """Declare --steps, --samples, --seed, --tile, --overlap and --batch on a parser or argument group; `defaults`
    replaces the checkpoint's value for some of them (e.g. {"samples": 8})."""
    for name, (tp, text) in FLAGS.items():
        d = (defaults or {}).get(name)
        shown = d if d is not None else "the checkpoint's"
        g.add_argument(f"--{name}", type=tp, default=d, help=f"{text} (default: {shown})")


def sampling_overrides(args) -> dict[str, Any]:
    """{field: value} of the sampling flags given (None ones are left to the checkpoint)."""
    return {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}

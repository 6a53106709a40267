"""How much noise does the model leave? Noise the true S2L2A to a level, denoise it with S1RTC given, and
compare the high-frequency power of the result with the truth's (1 = same texture).

A perfect denoiser started close to the truth (strength 0.1: the last of 10 DDIM steps, noise std 0.16 in
model units) returns about the truth; a ratio well above 1 there means the model leaves part of the noise,
which then shows as excess texture in every sample. Training columns 96-159, 64 px tiles, seed 0.

    python scripts/denoise_floor.py --checkpoint checkpoints/demo
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.data.dataset import to_model_space  # noqa: E402
from cogen.diffusion.sampling import denoise  # noqa: E402
from cogen.evaluate import Split  # noqa: E402
from cogen.metrics import hf_power_per_band  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--strength", type=float, action="append", default=[])
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    reg, toks = pipe.registry, pipe.bundle.tokenizers
    c0, c1 = (int(v) for v in a.cols.split(","))
    split = Split(a.data, reg, None, None, ["S1RTC", "S2L2A"], cols=(c0, c1))
    xs, cs = [], []
    full = np.ones((64, 64), bool)
    for sid in split.scenes:
        arr = split.arrays[sid]
        for r in range(0, arr["S2L2A"].shape[1] - 63, 64):
            for c in range(0, arr["S2L2A"].shape[2] - 63, 64):
                win = np.s_[:, r:r + 64, c:c + 64]
                xs.append(to_model_space(reg["S2L2A"], arr["S2L2A"][win], full)[0])
                cs.append(to_model_space(reg["S1RTC"], arr["S1RTC"][win], full)[0])
    z0, zc = toks["S2L2A"].encode(torch.stack(xs)), toks["S1RTC"].encode(torch.stack(cs))

    def hf(z):
        img = reg["S2L2A"].denormalize(toks["S2L2A"].decode(z)).numpy()
        return np.stack([hf_power_per_band(x).sum() for x in img])

    truth_hf = hf(z0).sum()
    unit = max(pipe.model.patch_size(m) for m in pipe.model.names)
    print(f"{len(xs)} tiles of 64 px, {a.steps} DDIM steps")
    for st in a.strength or [0.1, 0.3, 1.0]:
        g = torch.Generator().manual_seed(0)
        z = denoise(pipe.model, pipe.diffusion, {"S1RTC": zc}, {"S2L2A": (tuple(z0.shape), None, None)}, a.steps,
                    "ddim", 1.0, None, g, unit, False, {"S2L2A": z0} if st < 1 else None, st)["S2L2A"]
        mse = float(((z - z0) ** 2).mean())
        print(f"  strength {st:g}: HF power ratio {hf(z).sum() / truth_hf:.2f}, model-space MSE to the truth {mse:.4f}")


if __name__ == "__main__":
    main()

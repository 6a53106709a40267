"""Reconstruction quality of a tokenizer on a split, against bicubic resampling at the same storage.

    python -m cogen.tokenizers.evaluate --tokenizer runs/vae_s2l2a/tokenizer --modality S2L2A \
        --data data/terramind-examples --split test --out docs/TOKENIZERS.md

Continuous: PSNR, SSIM, SAM (degrees, spectral modalities), MAE in physical units, and the compression ratio
(input values / stored latent values). References at the same number of stored values per pixel: bicubic
downsampling then upsampling of every band, and the best *linear* code of the same shape (PCA of the
f x f x bands blocks, fit on the training split, keeping as many components as the latent has channels): a
learned tokenizer is worth its training only where it beats both. Categorical: exact-match rate.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import cli_exit
from ..io import atomic_path
from ..metrics import mae_np, psnr_np, sam_np, ssim_np
from ..registry import default_registry
from . import Tokenizer, tokenizer_for
from .linear import BlockPCA


def bicubic_same_storage(x: torch.Tensor, values_per_pixel: float) -> tuple[torch.Tensor, float]:
    """(1,C,H,W) -> bicubic down to C*h*w ~ values_per_pixel*H*W stored values, then back up."""
    C, H, W = x.shape[1:]
    f = math.sqrt(C / values_per_pixel)
    h, w = max(1, round(H / f)), max(1, round(W / f))
    small = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False), C * H * W / (C * h * w)


def scores(mod, pred_phys: np.ndarray, true_phys: np.ndarray) -> dict:
    rng = mod.data_range or float(true_phys.max() - true_phys.min())
    s = {"PSNR": psnr_np(pred_phys, true_phys, rng), "SSIM": ssim_np(pred_phys, true_phys, rng),
         "MAE": mae_np(pred_phys, true_phys)}
    if mod.spectral:
        s["SAM"] = sam_np(pred_phys, true_phys)
    return s


@cli_exit
def main(argv=None) -> None:
    from ..evaluate import Split

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the registry's choice)")
    p.add_argument("--modality", required=True)
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--split-file", default="configs/split.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--train-split", default="train", help="split the linear (block PCA) reference is fit on")
    p.add_argument("--out", default=None, help="Markdown report")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    reg = default_registry()
    mod = reg[a.modality]
    tok = Tokenizer.load(a.tokenizer, mod.name) if a.tokenizer else tokenizer_for(mod)
    tok.eval()
    split = Split(a.data, reg, a.split_file, a.split)
    rows_t, rows_b, rows_p, exact, ratio_t, ratio_b = [], [], [], [], None, None
    from ..data.dataset import to_model_space

    pca = None
    if not mod.is_categorical:
        train = Split(a.data, reg, a.split_file, a.train_split)
        pca = BlockPCA([to_model_space(mod, train.arrays[s][mod.name], train.valid[s][mod.name])[0]
                        for s in train.with_all([mod.name])], tok.downsample, tok.latent_channels)

    with torch.no_grad():
        for sid in split.with_all([mod.name]):
            raw, ok = split.arrays[sid][mod.name], split.valid[sid][mod.name]
            x, _ = to_model_space(mod, raw, ok)
            if mod.is_categorical:
                rec = tok.decode(tok.encode(x[None]))[0]
                exact.append(float((rec[x >= 0] == x[x >= 0]).float().mean()))
                continue
            z = tok.encode(x[None])
            rec = tok.decode(z)[..., : x.shape[-2], : x.shape[-1]] if tok.downsample > 1 else tok.decode(z)
            ratio_t = x.numel() / z.numel()
            bic, ratio_b = bicubic_same_storage(x[None], z.numel() / (x.shape[-2] * x.shape[-1]))
            true = mod.denormalize(x.double()).numpy()
            rows_t.append(scores(mod, mod.denormalize(rec[0].double()).numpy(), true))
            rows_b.append(scores(mod, mod.denormalize(bic[0].double()).numpy(), true))
            rows_p.append(scores(mod, mod.denormalize(pca.round_trip(x).double()).numpy(), true))
    if mod.is_categorical:
        res = {"modality": mod.name, "tokenizer": tok.kind, "exact_match": float(np.mean(exact))}
    else:
        avg = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        res = {"modality": mod.name, "tokenizer": tok.kind, "config": tok.config(), "split": a.split, "scenes": len(rows_t),
               "tokenizer_scores": avg(rows_t), "bicubic_scores": avg(rows_b), "block_pca_scores": avg(rows_p),
               "compression_tokenizer": ratio_t,
               "compression_bicubic": ratio_b}
    print(json.dumps(res, indent=2))
    if a.json:
        from ..io import write_json

        write_json(a.json, res)
    if a.out and not mod.is_categorical:
        t, b, q = res["tokenizer_scores"], res["bicubic_scores"], res["block_pca_scores"]
        name = f"{tok.kind} tokenizer" + (" with the linear path" if getattr(tok, "linear", False) else "")
        cmd = "python -m cogen.tokenizers.evaluate " + " ".join(argv or __import__("sys").argv[1:])
        L = [f"# Tokenizer reconstruction: {mod.name}", "",
             f"Generated by `{cmd}`. Split `{a.split}` ({res['scenes']} strips of the shipped scenes), physical "
             "units (PSNR of reflectance with data range 1), mean over strips.", "",
             "| method | compression (values in / stored) | PSNR dB | SSIM | SAM deg | MAE |", "|---|---|---|---|---|---|",
             f"| {name} ({tok.latent_channels} ch, /{tok.downsample}) | {ratio_t:.1f}x | {t['PSNR']:.2f} | "
             f"{t['SSIM']:.3f} | {t.get('SAM', float('nan')):.2f} | {t['MAE']:.4f} |",
             f"| bicubic down/up, same storage | {ratio_b:.1f}x | {b['PSNR']:.2f} | {b['SSIM']:.3f} | "
             f"{b.get('SAM', float('nan')):.2f} | {b['MAE']:.4f} |",
             f"| linear: PCA of {tok.downsample}x{tok.downsample} blocks, {tok.latent_channels} components (fit on "
             f"`{a.train_split}`) | {ratio_t:.1f}x | {q['PSNR']:.2f} | {q['SSIM']:.3f} | {q.get('SAM', float('nan')):.2f} | "
             f"{q['MAE']:.4f} |", "",
             f"PSNR gain over bicubic: {t['PSNR'] - b['PSNR']:+.2f} dB; over the linear code: {t['PSNR'] - q['PSNR']:+.2f} dB."]
        with atomic_path(Path(a.out)) as tmp:
            tmp.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()

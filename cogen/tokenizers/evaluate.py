"""Reconstruction quality of a tokenizer on a split, against bicubic resampling at the same storage.

    python -m cogen.tokenizers.evaluate --tokenizer runs/vae_s2l2a/tokenizer --modality S2L2A \
        --data data/terramind-examples --split test --out report.md [--tokenizer OTHER ...]

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
import os
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
    """(1,C,H,W) -> bicubic down to C*h*w >= values_per_pixel*H*W stored values (sizes rounded up, so the
    reference never stores less than the tokenizer), then back up."""
    C, H, W = x.shape[1:]
    f = math.sqrt(C / values_per_pixel)
    h, w = min(H, math.ceil(H / f)), min(W, math.ceil(W / f))
    small = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False), C * H * W / (C * h * w)


def scores(mod, pred_phys: np.ndarray, true_phys: np.ndarray) -> dict:
    rng = mod.data_range or float(true_phys.max() - true_phys.min())
    s = {"PSNR": psnr_np(pred_phys, true_phys, rng), "SSIM": ssim_np(pred_phys, true_phys, rng),
         "MAE": mae_np(pred_phys, true_phys)}
    if mod.spectral:
        s["SAM"] = sam_np(pred_phys, true_phys)
    return s


def _label(tok: Tokenizer) -> str:
    if tok.kind != "vae":
        return f"{tok.kind} tokenizer"
    extra = " with the linear path" if getattr(tok, "linear", False) else ""
    return f"VAE{extra} ({tok.latent_channels} ch, /{tok.downsample})"


def evaluate_tokenizer(tok: Tokenizer, mod, split, train, previews: list | None = None) -> dict:
    """Scores of one tokenizer on `split` (a cogen.evaluate.Split), with its references (continuous modalities:
    bicubic and block PCA of the tokenizer's shape, PCA fit on `train`), mean over the split's strips.
    `previews` (a list) receives {truth, tokenizer, bicubic, block PCA: (C,H,W) physical} per strip."""
    from ..data.dataset import to_model_space

    tok.eval()
    scenes = split.with_all([mod.name])
    if not scenes:
        raise ValueError(f"no scene of the split has {mod.name}")
    data = [to_model_space(mod, split.arrays[s][mod.name], split.valid[s][mod.name])[0] for s in scenes]
    res = {"modality": mod.name, "tokenizer": tok.kind, "label": _label(tok), "config": tok.config(),
           "scenes": len(scenes)}
    with torch.no_grad():
        if mod.is_categorical:
            exact = [float((r[x >= 0] == x[x >= 0]).float().mean())
                     for x in data for r in [tok.decode(tok.encode(x[None]))[0]]]
            return {**res, "exact_match": float(np.mean(exact))}
        pca = BlockPCA([to_model_space(mod, train.arrays[s][mod.name], train.valid[s][mod.name])[0]
                        for s in train.with_all([mod.name])], tok.downsample, tok.latent_channels)
        rows = {"tokenizer_scores": [], "bicubic_scores": [], "block_pca_scores": []}
        for x in data:
            z = tok.encode(x[None])
            rec = tok.decode(z)[..., : x.shape[-2], : x.shape[-1]]
            res["compression_tokenizer"] = x.numel() / z.numel()
            bic, res["compression_bicubic"] = bicubic_same_storage(x[None], z.numel() / (x.shape[-2] * x.shape[-1]))
            true = mod.denormalize(x.double()).numpy()
            phys = {"truth": true}
            for key, pred in (("tokenizer_scores", rec[0]), ("bicubic_scores", bic[0]),
                              ("block_pca_scores", pca.round_trip(x))):
                phys[key] = mod.denormalize(pred.double()).numpy()
                rows[key].append(scores(mod, phys[key], true))
            if previews is not None:
                previews.append(phys)
    return {**res, **{k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in rows.items()}}


def report(results: list[dict], cmd: str, split: str, train_split: str) -> str:
    """The Markdown table of continuous tokenizers' results: each tokenizer, then its references."""
    mod = results[0]["modality"]
    fmt = lambda name, ratio, s: (f"| {name} | {ratio:.1f}x | {s['PSNR']:.2f} | {s['SSIM']:.3f} | "
                                  f"{s.get('SAM', float('nan')):.2f} | {s['MAE']:.4f} |")
    L = [f"# Tokenizer reconstruction: {mod}", "",
         f"Generated by `{cmd}`. Split `{split}` ({results[0]['scenes']} strips of the shipped scenes), physical "
         "units (PSNR of reflectance with data range 1), mean over strips. Each tokenizer is followed by its "
         f"references at the same storage: bicubic down/up, and the linear code of its shape (PCA of its f x f "
         f"blocks with as many components as it has latent channels, fit on `{train_split}`).", "",
         "| method | compression (values in / stored) | PSNR dB | SSIM | SAM deg | MAE |", "|---|---|---|---|---|---|"]
    gains = []
    for r in results:
        t, b, q, f = r["tokenizer_scores"], r["bicubic_scores"], r["block_pca_scores"], r["config"]["downsample"]
        L += [fmt(f"**{r['label']}**", r["compression_tokenizer"], t),
              fmt("bicubic down/up", r["compression_bicubic"], b),
              fmt(f"linear: PCA of {f}x{f} blocks, {r['config']['latent_channels']} components",
                  r["compression_tokenizer"], q)]
        gains.append(f"{r['label']}: {t['PSNR'] - b['PSNR']:+.2f} dB over bicubic, {t['PSNR'] - q['PSNR']:+.2f} dB "
                     "over the linear code")
    return "\n".join(L + ["", "PSNR gains: " + "; ".join(gains) + "."]) + "\n"


def figure(path: str, mod, results: list[dict], previews: list[list[dict]], strips: int = 2,
           err_max: float = 0.05) -> None:
    """Rows of strips: truth, each tokenizer, bicubic and the first tokenizer's linear code (RGB), then the
    mean absolute error over bands of each (0 .. err_max physical units)."""
    from ..quicklook import render, save_grid

    rgb = lambda phys: render(mod, (phys - mod.offset) / mod.scale)
    err = lambda phys, true: np.clip(np.abs(phys - true).mean(axis=0) / err_max, 0, 1)
    rows = []
    for i in range(min(strips, len(previews[0]))):
        true = previews[0][i]["truth"]
        cols = [("truth", rgb(true))]
        cols += [(r["label"], rgb(pv[i]["tokenizer_scores"])) for r, pv in zip(results, previews)]
        cols += [("bicubic, same storage", rgb(previews[0][i]["bicubic_scores"])),
                 ("linear code (1st)", rgb(previews[0][i]["block_pca_scores"]))]
        rows.append(cols)
        rows.append([("|error| 0-%.2f" % err_max, None)] +
                    [(f"|error| {r['label']}", err(pv[i]["tokenizer_scores"], true)) for r, pv in zip(results, previews)] +
                    [("|error| bicubic", err(previews[0][i]["bicubic_scores"], true)),
                     ("|error| linear", err(previews[0][i]["block_pca_scores"], true))])
    save_grid(path, rows, cell=2.0)


@cli_exit
def main(argv=None) -> None:
    from ..evaluate import Split

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", action="append", default=None,
                   help="tokenizer folder; repeat to compare several (default: the registry's choice)")
    p.add_argument("--modality", required=True)
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--split-file", default="configs/split.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--train-split", default="train", help="split the linear (block PCA) reference is fit on")
    p.add_argument("--out", default=None, help="Markdown report")
    p.add_argument("--json", default=None)
    p.add_argument("--figure", default=None, help="PNG: truth, reconstructions and error maps of two strips")
    p.add_argument("--notes", default=None, help="a Markdown file of analysis to include in the report")
    a = p.parse_args(argv)
    reg = default_registry()
    mod = reg[a.modality]
    toks = [Tokenizer.load(t, mod.name) for t in a.tokenizer] if a.tokenizer else [tokenizer_for(mod)]
    split = Split(a.data, reg, a.split_file, a.split)
    train = Split(a.data, reg, a.split_file, a.train_split)
    previews = [[] for _ in toks]
    results = [evaluate_tokenizer(t, mod, split, train, pv) for t, pv in zip(toks, previews)]
    for r in results:
        r["split"] = a.split
    print(json.dumps(results, indent=2))
    if a.json:
        from ..io import write_json

        write_json(a.json, results)
    if a.figure and not mod.is_categorical:
        figure(a.figure, mod, results, previews)
    if a.out and not mod.is_categorical:
        cmd = "python -m cogen.tokenizers.evaluate " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
        with atomic_path(Path(a.out)) as tmp:
            text = report(results, cmd, a.split, a.train_split)
            if a.figure:
                text += f"\n![reconstructions]({os.path.relpath(a.figure, Path(a.out).parent)})\n"
            tmp.write_text(text + ("\n" + Path(a.notes).read_text().strip() + "\n" if a.notes else ""))


if __name__ == "__main__":
    main()

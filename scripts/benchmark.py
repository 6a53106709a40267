"""Training throughput, achieved FLOP/s against a matmul peak measured in the same run (MFU), peak memory.

    python scripts/benchmark.py [--size small] [--tiles 32,64,128] [--modalities 1,2,3,4,5,6] [--device cpu]
    python scripts/benchmark.py --device cuda --dtype bf16         # on a GPU

FLOPs are counted analytically (matmuls of attention and MLP, forward x 3 for forward + backward); the peak is
the best of a few square matmuls of the same dtype on the same device and threads, measured first.
"""
from __future__ import annotations

import argparse
import gc
import resource
import time

import torch

from cogen.diffusion import Diffusion, RoleConfig
from cogen.diffusion.loss import diffusion_loss
from cogen.models.transformer import build_model
from cogen.registry import default_registry

ORDER = ["S2L2A", "S1RTC", "DEM", "LULC", "S2L1C", "NDVI"]


def matmul_peak(device, dtype, n=2048, reps=5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        for _ in range(4):
            (a @ b)
        sync(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t))
    return best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(size, tile, n_mod, batch, device, dtype, steps=3, patch=4) -> dict:
    reg = default_registry()
    mods = ORDER[:n_mod]
    spec = {m: {"channels": reg[m].channels, "patch_size": patch} for m in mods}
    model = build_model(size, spec).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    z = {m: torch.randn(batch, reg[m].channels, tile, tile, generator=g).to(device) for m in mods}
    ok = {m: torch.ones(batch, tile, tile, dtype=torch.bool, device=device) for m in mods}
    present = {m: torch.ones(batch, dtype=torch.bool) for m in mods}
    d = Diffusion()
    tokens = n_mod * (tile // patch) ** 2
    in_out = sum(reg[m].channels * patch * patch for m in mods) / n_mod
    flops_step = 3 * batch * model.flops_per_sample(tokens, in_out)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        sync(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss, _ = diffusion_loss(model, z, ok, present, d, RoleConfig(p_uncond=0, w_absent=0), g.manual_seed(i))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i:  # the first step warms up
            times.append(time.perf_counter() - t)
    dt = sorted(times)[len(times) // 2]
    # GPU: peak allocated in this config; CPU: the process's peak RSS so far (monotonic over the run)
    mem = (torch.cuda.max_memory_allocated() if device.type == "cuda"
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    del model, opt
    gc.collect()
    return {"tile": tile, "modalities": n_mod, "batch": batch, "tokens/sample": tokens, "s/step": dt,
            "samples/s": batch / dt, "tokens/s": batch * tokens / dt, "GFLOP/s": flops_step / dt / 1e9,
            "peak_mem_MB": mem / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small")
    ap.add_argument("--tiles", default="32,64,128")
    ap.add_argument("--modalities", default="1,2,3,4,5,6")
    ap.add_argument("--batch", type=int, default=16, help="batch at tile 32 (scaled by (32/tile)^2)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    device = torch.device(a.device)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    peak = matmul_peak(device, dtype)
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {a.dtype}, model {a.size}")
    print(f"matmul peak measured now: {peak / 1e9:.1f} GFLOP/s")
    hdr = f"{'tile':>4} {'mods':>4} {'batch':>5} {'tok/smp':>7} {'s/step':>7} {'smp/s':>7} {'tok/s':>9} {'GFLOP/s':>8} {'MFU':>5} {'peak MB':>7}"
    print(hdr)
    for tile in (int(t) for t in a.tiles.split(",")):
        for n in (int(m) for m in a.modalities.split(",")):
            b = max(1, int(a.batch * (32 / tile) ** 2))
            r = bench(a.size, tile, n, b, device, dtype, a.steps)
            print(f"{tile:>4} {n:>4} {b:>5} {r['tokens/sample']:>7} {r['s/step']:>7.3f} {r['samples/s']:>7.2f} "
                  f"{r['tokens/s']:>9.0f} {r['GFLOP/s']:>8.1f} {r['GFLOP/s'] * 1e9 / peak:>5.0%} {r['peak_mem_MB']:>7.0f}",
                  flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Scores the shipped demo model (and the baselines) on the test split; writes docs/results.json and docs/RESULTS.md.
# The deterministic baseline comes from `python train.py --config configs/regression.yaml` (same backbone,
# data, batch and steps) shipped with scripts/ship_model.py as checkpoints/regression.
# On two CPU cores the page takes about 35 minutes; it can also be scored part by part, each part its own
# process with these flags (one --direction or --cloud-removal each), joined with scripts/merge_results.py
# PARTS --out docs/results.json, then rendered with --reuse docs/results.json. Quality against steps:
# add --sweep "S1RTC->S2L2A" --sweep-steps 2,5,10,20 (about 20 minutes more).
# A baseline trained again is scored alone (--baselines-only) and merged over the page's figures with
# `--replace "deterministic (same backbone)"`; the page names the checkpoint (and its sha256) of each baseline.
# Sampling is the checkpoint's own (its config's sample section: steps, sampler, clean-up call, batch, tiles by
# target, cloud removal's strength and clear-pixel library) with 8 samples instead of 1. The tiles are the
# checkpoint's too: S2L2A on 64 px tiles (overlap 16) as the page had before, but land cover and cloud removal
# on 32 px tiles with overlap 8 instead of 0 (the page before: --tile-for LULC=32,0 --tile-regenerate 32,0).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BASE=()
[ -d checkpoints/regression ] && BASE=(--baseline-checkpoint checkpoints/regression)
$PY -m cogen.evaluate --checkpoint checkpoints/demo --data data/terramind-examples --split test \
  --direction "S1RTC->S2L2A" --direction "S1RTC,DEM->S2L2A" --direction "S2L2A->LULC" --direction "S1RTC->LULC" \
  --direction "S2L2A,S1RTC,DEM->LULC" --samples 8 \
  --baseline mean "${BASE[@]}" --robustness "LULC:S2L2A,S1RTC,DEM" --cloud-removal --out-of-place data/more-real --out-of-place-samples 4 \
  --time-series data/more-real --time-series-samples 4 \
  --out docs/results.json --report docs/RESULTS.md --notes docs/results_notes.md --overwrite "$@"

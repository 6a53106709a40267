#!/usr/bin/env bash
# GPU readiness in one run, under 8 minutes on one H200: the CUDA tests (pytest -m cuda), the training benchmark
# in bf16 (tokens/s, MFU against a matmul peak measured in the same run, peak memory), sampling throughput
# (tiles/s) and the CPU-vs-GPU agreement of one seeded sample, into OUT/gpu_check.json (scripts/gpu_check.py).
#
#   bash scripts/gpu_check.sh [OUT]        # default OUT: outputs/gpu_check; Python: $PYTHON, else .venv/bin/python
#
# Stops at once, exit 2, on a machine where torch sees no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-outputs/gpu_check}"
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
if ! version=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null); then
    echo "error: $PY cannot import torch; install the project (make install, with your CUDA torch first) or set PYTHON=/path/to/python" >&2
    exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "error: torch $version (from $PY) sees no CUDA device; run scripts/gpu_check.sh on a CUDA machine with a CUDA build of torch" >&2
    exit 2
fi
# 480 s in all; the training configs stop being started at 420 s (--budget), and the JSON is rewritten after
# every section, so a run cut by the limit keeps what it measured
exec timeout --kill-after=10 480 "$PY" scripts/gpu_check.py --device cuda --out "$OUT" --budget 420

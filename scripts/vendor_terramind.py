"""Re-encode the TerraMind example scenes compactly (float64 -> float32, deflate) into data/terramind-examples.

Usage: python scripts/vendor_terramind.py SRC_DIR [DST_DIR]
Values are kept as they are (int16 and uint8 untouched; float64 rounded to float32). S2RGB is a display
product derived from S2 and is not vendored.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cogen.io import read_raster, write_raster
from cogen.registry import default_registry


def main() -> None:
    src = Path(sys.argv[1])
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("data/terramind-examples")
    reg = default_registry()
    for mdir in sorted(p for p in src.iterdir() if p.is_dir() and p.name in reg):
        mod = reg[mdir.name]
        for f in sorted(mdir.glob("*.tif")):
            arr, prof = read_raster(f)
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            write_raster(dst / mdir.name / f.name, arr, prof["crs"], prof["transform"], nodata=prof["nodata"],
                         descriptions=list(mod.bands))
            print(dst / mdir.name / f.name)


if __name__ == "__main__":
    main()

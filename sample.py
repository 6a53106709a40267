r"""Generate missing modalities with a trained cogen model; every output is a georeferenced GeoTIFF.

    python sample.py demo --out outputs/demo
    python sample.py impute --input S1RTC=s1.tif --input DEM=dem.tif --target S2L2A --out out/impute
    python sample.py cloud-removal --input S2L2A=s2.tif --mask scl.tif --mask-values 8,9,10,3 \
        --input S1RTC=s1.tif --out out/clouds
    python sample.py segment --input S2L2A=s2.tif --samples 8 --out out/seg
    python sample.py impute --manifest scenes.csv --target S2L2A --out out/many   # one row per scene
    python sample.py synth --n 4 --input LULC=layout.tif --target S2L2A --out out/synth
    python sample.py info [--checkpoint CKPT] [--json]
    python sample.py parts s1.tif --rows 4       # one --window per line, for parts that join into one run
    python sample.py join part1/S2L2A.tif part2/S2L2A.tif --out S2L2A.tif

The same CLI is installed as the `cogen` command (cogen/cli.py).

Each command writes into --out (an existing non-empty folder needs --overwrite) the rasters, a run.json
(arguments, checkpoint hash, versions, seed, timings) and a quicklook.png.
"""
import sys

from cogen.cli import main

if __name__ == "__main__":
    sys.exit(main())

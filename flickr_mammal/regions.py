"""Country -> UN M49 sub-region -> region table (docs/reference.md §1, geo hierarchy decision).

Continent = the UN M49 region (Africa, Americas, Asia, Europe, Oceania); subcontinent = one of the
22 sub-regions of the UN geoscheme. M49 nests "Latin America and the Caribbean" between Americas
and its sub-regions Caribbean / Central America / South America; we skip that intermediate level
so Americas has four sub-regions (with Northern America), as in the geoscheme's 22.

The per-country data is not typed here: it is read from the table that ``country_converter``
ships (``country_data.tsv``: ISO2, short name, ``UNregion`` = M49 sub-region). Only the fixed
22 -> 5 sub-region/region nesting of M49 is written out below (it is the standard, not country
data). Territories keep their own M49 sub-region (Hong Kong -> Eastern Asia, Puerto Rico ->
Caribbean, Greenland -> Northern America, Réunion -> Eastern Africa). Antarctica (AQ) has no
region: it is kept apart by the geocoder.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Final

import pandas as pd

UNKNOWN: Final = "unknown"

# UN M49 geoscheme: the 22 sub-regions and the region (our "continent") each belongs to.
SUBCONTINENT_TO_CONTINENT: Final[dict[str, str]] = {
    "Eastern Africa": "Africa",
    "Middle Africa": "Africa",
    "Northern Africa": "Africa",
    "Southern Africa": "Africa",
    "Western Africa": "Africa",
    "Caribbean": "Americas",
    "Central America": "Americas",
    "South America": "Americas",
    "Northern America": "Americas",
    "Central Asia": "Asia",
    "Eastern Asia": "Asia",
    "South-eastern Asia": "Asia",
    "Southern Asia": "Asia",
    "Western Asia": "Asia",
    "Eastern Europe": "Europe",
    "Northern Europe": "Europe",
    "Southern Europe": "Europe",
    "Western Europe": "Europe",
    "Australia and New Zealand": "Oceania",
    "Melanesia": "Oceania",
    "Micronesia": "Oceania",
    "Polynesia": "Oceania",
}
SUBCONTINENTS: Final[tuple[str, ...]] = tuple(sorted(SUBCONTINENT_TO_CONTINENT))
CONTINENTS: Final[tuple[str, ...]] = tuple(sorted(set(SUBCONTINENT_TO_CONTINENT.values())))

COUNTRY_TABLE_COLUMNS: Final = ("country", "subcontinent", "continent")


def _country_data_path() -> Path:
    """country_converter's packaged table, found without importing the package (pandas 3 safe)."""
    spec = importlib.util.find_spec("country_converter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "country_converter is not installed; `pip install country_converter` (its packaged "
            "country_data.tsv is the source of the country -> UN region table)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "country_data.tsv"


def _iso2_aliases(cell: str) -> list[str]:
    # A few rows hold a regex instead of a code (United Kingdom "^GB$|^UK$", Greece "^GR$|^EL$").
    return [part.strip("^$ ") for part in cell.split("|") if part.strip("^$ ")]


@functools.cache
def country_table() -> pd.DataFrame:
    """One row per ISO-3166 alpha-2 code (index ``country_code``): country, subcontinent, continent.

    Obsolete entries (e.g. Netherlands Antilles) are dropped; codes with no M49 sub-region
    (Antarctica) are absent, so looking them up yields "not found" rather than a guess.
    """
    raw = pd.read_csv(
        _country_data_path(), sep="\t", dtype=str, keep_default_na=False,  # "NA" is Namibia
        usecols=["name_short", "ISO2", "UNregion", "obsolete"],
    )
    raw = raw[(raw["obsolete"] == "") & raw["UNregion"].isin(list(SUBCONTINENT_TO_CONTINENT))]
    raw = raw.assign(country_code=raw["ISO2"].map(_iso2_aliases)).explode("country_code")
    table = pd.DataFrame({
        "country_code": raw["country_code"].to_numpy(),
        "country": raw["name_short"].to_numpy(),
        "subcontinent": raw["UNregion"].to_numpy(),
    }).dropna(subset=["country_code"])
    table = table[table["country_code"].str.fullmatch(r"[A-Z]{2}")]
    table["continent"] = table["subcontinent"].map(SUBCONTINENT_TO_CONTINENT)
    table = table.drop_duplicates("country_code").set_index("country_code").sort_index()
    return table[list(COUNTRY_TABLE_COLUMNS)]

"""Benchmark: reverse_geocode on 1M land-biased points against the 10 s limit (brief H1).

Also times, in the same run, the floor (reverse_geocoder's raw single-process KD-tree query,
no country/region lookup) and reverse_geocoder's own bulk ``rg.search`` (mode=1), which returns
a list of dicts without regions.

    python benchmarks/bench_geocode.py [--n 1000000] [--seed 0] [--skip-rg-search]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import reverse_geocoder as rg

from flickr_mammal.geocode import _place_index, reverse_geocode

LIMIT_S = 10.0


def land_biased_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """90% jittered GeoNames places (land, dense where people are), 9% uniform, 1% invalid."""
    rng = np.random.default_rng(seed)
    idx = _place_index()
    n_land, n_uniform = int(n * 0.90), int(n * 0.09)
    pick = rng.integers(0, idx.lat.size, n_land)
    lat = np.concatenate([np.clip(idx.lat[pick] + rng.normal(0, 0.3, n_land), -90, 90),
                          rng.uniform(-90, 90, n_uniform),
                          np.full(n - n_land - n_uniform, np.nan)])
    lon = np.concatenate([(idx.lon[pick] + rng.normal(0, 0.3, n_land) + 180) % 360 - 180,
                          rng.uniform(-180, 180, n_uniform),
                          rng.uniform(-180, 180, n - n_land - n_uniform)])
    order = rng.permutation(n)
    return lat[order], lon[order]


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-rg-search", action="store_true",
                        help="skip timing rg.search (builds 1M Python dicts)")
    args = parser.parse_args(argv)

    load_s, _ = _timed(_place_index)                       # one-off: read CSV, build 3-D tree
    lat, lon = land_biased_points(args.n, args.seed)
    ours_s, table = _timed(reverse_geocode, lat, lon)

    geocoder = rg.RGeocoder(mode=1, verbose=False)
    valid = np.isfinite(lat)
    coords = np.column_stack([lat[valid], lon[valid]])
    floor_s, _ = _timed(geocoder.tree.query, coords, k=1)

    print(f"points: {args.n:,} ({valid.sum():,} valid); one-off index load {load_s:.2f} s")
    print(f"reverse_geocode:               {ours_s:6.2f} s  {args.n / ours_s:>12,.0f} points/s  "
          f"= {ours_s / LIMIT_S:.2f} x the {LIMIT_S:.0f} s limit")
    print(f"floor, rg KD-tree query only:  {floor_s:6.2f} s  {valid.sum() / floor_s:>12,.0f} "
          f"points/s  (ours / floor = {ours_s / floor_s:.2f})")
    if not args.skip_rg_search:
        tuples = [tuple(p) for p in coords.tolist()]
        search_s, _ = _timed(rg.search, tuples, mode=1, verbose=False)
        print(f"rg.search(mode=1), no regions: {search_s:6.2f} s  {len(tuples) / search_s:>12,.0f} "
              f"points/s  (ours / rg.search = {ours_s / search_s:.2f})")
    print("geo_status:", table["geo_status"].value_counts().to_dict())
    return 0 if ours_s < LIMIT_S else 1


if __name__ == "__main__":
    raise SystemExit(main())

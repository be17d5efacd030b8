"""benchmarks/skewscout_margins.py: margins in images, the Oracle's sensitivity to its threshold,
and SkewScout's misses against BSP's spread, on rows written by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from skewscout_margins import main, parse_seeds, report, validation_images  # noqa: E402

from training.study.results import ResultsStore  # noqa: E402

N = 200


def row(alg, seed, images, knob=None, mode="fixed", nbytes=1.0):
    return {"run_id": f"{alg}-{knob}-{mode}-{seed}", "mode": mode, "model": "m",
            "algorithm": alg, "knob": knob, "noniid_fraction": 0.8, "seed": seed,
            "final_acc": images / N, "acc_at_half": images / N, "bytes_per_iteration": nbytes,
            "bsp_bytes_per_iteration": 4.0, "curve": []}


ROWS = [
    # BSP 192 / 196 / 194 images of 200: sd 2.0; a 3-point target: thresholds 186 / 190 / 188
    row("bsp", 0, 192), row("bsp", 1, 196), row("bsp", 2, 194),
    # IterLocal 10 (4 bytes) always meets, by 4; 50 (1 byte): +6, -1 and -3 images
    *[row("fedavg", s, a, 10, nbytes=4.0) for s, a in [(0, 190), (1, 194), (2, 192)]],
    *[row("fedavg", s, a, 50) for s, a in [(0, 192), (1, 189), (2, 185)]],
    # SkewScout: +2 on seed 0, one image short on seed 1 (within the sd), three on 2 (beyond)
    *[row("fedavg", s, a, mode="skewscout") for s, a in [(0, 188), (1, 189), (2, 185)]],
]


def test_the_validation_size_is_the_smallest_that_makes_whole_images():
    assert validation_images([{"final_acc": a} for a in (343 / 360, 350 / 360, 0.5)]) == 360
    assert validation_images([{"final_acc": 0.5}]) == 2


def test_margins_oracle_sensitivity_and_misses_by_hand():
    text = "\n".join(report(ROWS, 0.03, None))
    assert "BSP: 194.0 +- 2.0 images of 200 over 3 seeds" in text
    assert "knob 10: meets on 3/3; margin +4.0 to +4.0, within +-2.0 of the threshold on 0" in text
    assert "knob 50: meets on 1/3; margin -3.0 to +6.0, within +-2.0 of the threshold on 1" in text
    # seed 1's Oracle is 10; with its threshold two images lower, 50 (189) would do
    assert "one sd on 1/3 seeds: s1 (10 or 50)" in text
    assert "SkewScout s1: misses by 1.0 images (within one sd of BSP); Oracle 10" in text
    assert "SkewScout s2: misses by 3.0 images (beyond one sd of BSP); Oracle 10" in text
    assert "SkewScout meets on 1/3" in text


def test_the_command_reads_study_folders(tmp_path, capsys):
    store = ResultsStore(tmp_path / "out")
    for r in ROWS:
        store.add({**r})
    assert main([str(tmp_path / "out"), "--algorithm", "fedavg"]) == 0
    assert "m fedavg at 80% non-IID" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])


def test_each_knob_and_skewscout_judged_as_a_policy_by_the_per_seed_goal():
    # Oracles by hand: seed 0 -> 50 (1 byte), seeds 1 and 2 -> 10 (4 bytes)
    text = "\n".join(report(ROWS, 0.03, None))
    assert "over the 3 seeds where some knob meets the target" in text
    # 10 everywhere: on target on all three, 4/1, 4/4, 4/4 the Oracle's bytes
    assert "knob 10 on every seed: meets on 3/3, 2.00 +- 1.73x the Oracle\n" in text
    assert "knob 50 on every seed: meets on 1/3, 0.50 +- 0.43x the Oracle\n" in text
    assert "SkewScout: meets on 1/3, 0.50 +- 0.43x the Oracle\n" in text
    assert "a single knob, chosen knowing every seed's outcome, does not meet the goal" in text


def test_a_policy_meets_the_goal_on_every_seed_within_its_limit():
    rows = [r for r in ROWS if r["knob"] != 50 and r["mode"] != "skewscout"]
    rows += [row("fedavg", s, 191, mode="skewscout", nbytes=4.8) for s in (0, 1, 2)]
    text = "\n".join(report(rows, 0.03, None))
    assert "knob 10 on every seed: meets on 3/3, 1.00 +- 0.00x the Oracle  (meets the goal)" in text
    assert "SkewScout: meets on 3/3, 1.20 +- 0.00x the Oracle  (meets the goal)" in text
    assert "a single knob, chosen knowing every seed's outcome, meets the goal" in text
    # 5% more bytes than the limit: on target everywhere, still not the goal
    rows = [r for r in rows if r["mode"] != "skewscout"]
    rows += [row("fedavg", s, 191, mode="skewscout", nbytes=5.04) for s in (0, 1, 2)]
    assert "SkewScout: meets on 3/3, 1.26 +- 0.00x the Oracle\n" in "\n".join(
        report(rows, 0.03, None)) + "\n"


def test_seeds_pick_a_subset_and_bad_ranges_say_how_to_write_them(tmp_path, capsys):
    assert parse_seeds("22-27") == set(range(22, 28))
    assert parse_seeds("0-1, 5") == {0, 1, 5}
    for bad in ("3-1", "a-b", ""):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)
    text = "\n".join(report(ROWS, 0.03, None, seeds={0, 1}))
    assert "over 2 seeds" in text and "s2" not in text
    store = ResultsStore(tmp_path / "out")
    for r in ROWS:
        store.add({**r})
    assert main([str(tmp_path / "out"), "--seeds", "0-1"]) == 0
    assert "SkewScout meets on 1/2" in capsys.readouterr().out
    for bad in ("7-9", "x"):
        with pytest.raises(SystemExit):
            main([str(tmp_path / "out"), "--seeds", bad])


def test_uneven_shards_need_the_validation_size_and_say_so(tmp_path, capsys):
    # 5 partitions on 719 images: shards of 144 and 143, so means are not whole images of 719
    uneven = [{**r, "final_acc": r["final_acc"] * 0.999 + 0.5 / 1437} for r in ROWS]
    with pytest.raises(ValueError, match="--val-images"):
        validation_images(uneven)
    store = ResultsStore(tmp_path / "out")
    for r in uneven:
        store.add({**r})
    with pytest.raises(SystemExit):
        main([str(tmp_path / "out")])
    assert "give --val-images N" in capsys.readouterr().err
    assert main([str(tmp_path / "out"), "--val-images", "200"]) == 0
    assert "images of 200 over 3 seeds" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "out"), "--val-images", "0"])

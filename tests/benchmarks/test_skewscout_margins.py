"""benchmarks/skewscout_margins.py: margins in images, the Oracle's sensitivity to its threshold,
and SkewScout's misses against BSP's spread, on rows written by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from skewscout_margins import main, report, validation_images  # noqa: E402

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

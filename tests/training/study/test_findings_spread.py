"""Findings over seeds: each cell is mean ± sd over its seeds (paired seed by seed), and a claim
holds or does not hold only when its margin exceeds that spread (training/study/spread.py)."""

from __future__ import annotations

import math

import pytest

from tests.training.study.studies import experiment, fake_rows, study_doc
from training.study.config import study_from_dict
from training.study.findings import all_claims, markdown_table, runs_frame, summary_markdown
from training.study.spread import Spread, Verdict, all_of, judge, mean_of

SEEDS = [0, 1, 2]
DOC = study_doc(experiment("n", "noniid", ["bsp", "fedavg"], [0.0, 1.0]),
                experiment("s", "skewscout", ["fedavg"], [1.0]),
                target=0.05, seeds=SEEDS, train={"iterations": 10},
                algorithms={"fedavg": {"iter_local": 5}}, grids={"fedavg": [5, 10]})


def rows_for(study, acc_of):
    """Hand-made rows: ``acc_of(spec) -> (final_acc, bytes/iteration)``."""
    return fake_rows(study, acc_of)


def test_spread_mean_sd_and_seed_pairing():
    a = Spread.of({0: 0.9, 1: 0.8, 2: 0.7})
    assert a.n == 3 and a.mean == pytest.approx(0.8) and a.sd == pytest.approx(0.1)
    assert math.isnan(Spread.of({4: 1.0}).sd)
    # paired on the seeds both have: what the seeds share cancels
    b = Spread.of({0: 0.8, 1: 0.7, 3: 0.1})
    assert (a - b).by_seed == pytest.approx({0: 0.1, 1: 0.1}) and (a - b).sd == pytest.approx(0)
    assert mean_of([a, b]).by_seed == pytest.approx({0: 0.85, 1: 0.75})
    assert mean_of([]) is None and mean_of([a, Spread.of({9: 1.0})]) is None
    assert a.map(lambda v: 100 * v).fmt() == "80.0 ± 10.0"
    assert Spread.of({0: 3.0}).fmt(sign=True) == "+3.0"


@pytest.mark.parametrize("values, above, verdict", [
    ({0: 8.0, 1: 9.0, 2: 10.0}, True, Verdict.HOLDS),          # margin 6 > sd 1
    ({0: 8.0, 1: 9.0, 2: 10.0}, False, Verdict.FAILS),         # the other side, by as much
    ({0: 1.0, 1: 3.5, 2: 6.0}, True, Verdict.INCONCLUSIVE),    # margin 0.5 <= sd 2.5
    ({0: 3.2, 1: 3.2}, True, Verdict.HOLDS),                   # sd 0: any margin decides
    ({0: 10.0}, True, Verdict.HOLDS),                          # one seed: margin 7 > floor 3
    ({0: 5.0}, True, Verdict.INCONCLUSIVE),                    # one seed: margin 2 <= floor 3
    ({0: -1.0}, True, Verdict.FAILS),                          # one seed: 4 below, > floor 3
])
def test_a_verdict_needs_a_margin_beyond_the_spread(values, above, verdict):
    got, evidence = judge(Spread.of(values), 3.0, above=above, floor=3.0)
    assert got is verdict
    assert f"over {len(values)} seed" in evidence


def test_one_seed_rank_correlations_are_inconclusive_and_parts_combine():
    got, evidence = judge(Spread.of({0: 1.0}), 0.8, above=True, floor=None, digits=2)
    assert got is Verdict.INCONCLUSIVE and "1 seed: no spread" in evidence
    H, F, U = Verdict.HOLDS, Verdict.FAILS, Verdict.INCONCLUSIVE
    assert all_of([H, H]) is H and all_of([H, U]) is U and all_of([U, F, H]) is F
    assert all_of([]) is U


def test_cells_are_means_over_seeds_with_their_sd_and_count():
    study = study_from_dict(DOC)
    # FedAvg's skewed accuracy differs by seed: 0.60, 0.70, 0.80; its IID run is 0.90 on all
    spread = {0: 0.60, 1: 0.70, 2: 0.80}

    def acc_of(spec):
        if spec.algorithm == "fedavg" and spec.noniid_fraction == 1.0 and spec.mode == "fixed":
            return spread[spec.seed], 2.0
        return (0.95 if spec.algorithm == "bsp" else 0.90), 100.0
    df = runs_frame(study, study.experiments[0], rows_for(study, acc_of))
    row = df[(df["algorithm"] == "fedavg") & (df["noniid_fraction"] == 1.0)].iloc[0]
    assert row["final_acc"] == pytest.approx(0.70) and row["final_acc_sd"] == pytest.approx(0.1)
    assert row["seeds"] == 3 and row["final_acc_by_seed"] == pytest.approx(spread)
    claims, tables = all_claims(study, rows_for(study, acc_of))
    t = tables["n"]
    assert t.loc[("gn-lenet", "fedavg"), "loss@100%"] == pytest.approx(20.0)
    assert t.loc[("gn-lenet", "fedavg"), "loss@100% sd"] == pytest.approx(10.0)
    assert t.loc[("gn-lenet", "fedavg"), "loss@100% n"] == 3
    assert "| gn-lenet | fedavg | 90 ± 0 | 70 ± 10 | 20 ± 10 |" in markdown_table(t)
    verdict = {c.text: c for c in claims}
    # 20 ± 10 against a 5-point target: margin 15 > sd 10
    every = verdict["gn-lenet: every decentralized algorithm loses > 5.0 points under label skew"]
    assert every.verdict is Verdict.HOLDS and "fedavg +20.0 ± 10.0" in every.evidence
    text = summary_markdown(study, claims, tables)
    assert "3 seeds (0, 1, 2): each cell is the mean ± sd" in text


def test_a_margin_within_the_spread_is_inconclusive_and_says_so():
    study = study_from_dict(DOC)

    def acc_of(spec):     # FedAvg loses 2, 6 and 10 points (mean 6 vs the 5-point target)
        if spec.algorithm == "fedavg" and spec.noniid_fraction == 1.0 and spec.mode == "fixed":
            return 0.90 - (0.02, 0.06, 0.10)[spec.seed], 2.0
        return (0.95 if spec.algorithm == "bsp" else 0.90), 100.0
    claims, _ = all_claims(study, rows_for(study, acc_of))
    c = {c.text: c for c in claims}[
        "gn-lenet: every decentralized algorithm loses > 5.0 points under label skew"]
    assert c.verdict is Verdict.INCONCLUSIVE and not c.holds
    assert "fedavg: 6.0 ± 4.0 vs 5 over 3 seeds: margin 1.0 <= sd 4.0" in c.evidence
    assert "**inconclusive**" in c.line()


def test_skewscout_claims_pair_each_seed_with_its_own_bsp():
    study = study_from_dict(DOC)
    bsp = {0: 0.95, 1: 0.85, 2: 0.75}      # seeds differ a lot, SkewScout follows 1 point under

    def acc_of(spec):
        if spec.algorithm == "bsp":
            return bsp[spec.seed], 100.0
        if spec.mode == "skewscout":
            return bsp[spec.seed] - 0.01, 11.0
        return bsp[spec.seed] - (0.02 if spec.knob == 5 else 0.30), 20.0 / spec.knob * 5
    claims, tables = all_claims(study, rows_for(study, acc_of))
    row = tables["s"].iloc[0]
    assert row["seeds"] == 3 and row["bsp_acc sd"] == pytest.approx(10.0)
    assert row["oracle_knob"] == 5 and row["vs_oracle"] == pytest.approx(0.55)
    # seed by seed: each seed's Oracle is 5 (20 bytes); SkewScout on target on all three at 11
    assert row["seeds_on_target"] == "3/3" and row["fixed_in_hindsight"] == "5"
    assert (row["vs_own_oracle"], row["vs_own_oracle sd"]) == pytest.approx((0.55, 0.0))
    verdict = {c.text: c.verdict for c in claims}
    # paired: SkewScout - BSP is -1 on every seed (sd 0), 4 points inside the 5-point target;
    # unpaired, BSP's 10-point sd would have swamped it
    tag = "gn-lenet 100% fedavg"
    assert verdict[f"{tag}: SkewScout stays within the target of BSP's accuracy"] is Verdict.HOLDS
    assert verdict[f"{tag}: SkewScout within 1.2x the Oracle (our goal)"] is Verdict.HOLDS


def test_the_skewscout_table_judges_the_goal_seed_by_seed():
    study = study_from_dict(DOC)        # FedAvg's grid: IterLocal 5 and 10; a 5-point target

    def acc_of(spec):
        if spec.algorithm == "bsp":
            return 0.95, 100.0
        if spec.mode == "skewscout":     # 1, 6 and 4 points under BSP: seed 1 misses
            return 0.95 - (0.01, 0.06, 0.04)[spec.seed], 10.0
        if spec.knob == 5:               # 20 bytes, on target on every seed
            return 0.93, 20.0
        return (0.94 if spec.seed == 0 else 0.80), 2.0   # 10: on target on seed 0 only
    _, tables = all_claims(study, rows_for(study, acc_of))
    row = tables["s"].iloc[0]
    # Oracles: 10 on seed 0 (2 bytes), 5 on seeds 1 and 2 (20): SkewScout at 5, 0.5 and 0.5x
    assert row["seeds_on_target"] == "2/3"
    assert (row["vs_own_oracle"], row["vs_own_oracle sd"]) == pytest.approx((2.0, 2.6))
    # 5 everywhere is on target but 10x seed 0's Oracle; 10 misses seeds 1 and 2
    assert row["fixed_in_hindsight"] == "none"
    assert "| 2/3 | 2 ± 2.6 | none |" in markdown_table(tables["s"])


def test_a_cell_missing_a_seed_says_so():
    study = study_from_dict(DOC)
    rows = rows_for(study, lambda spec: (0.9, 100.0))
    lost = next(k for k, r in rows.items() if r["algorithm"] == "fedavg" and r["seed"] == 2
                and r["noniid_fraction"] == 0.0)
    del rows[lost]
    _, tables = all_claims(study, rows)
    t = tables["n"]
    assert t.loc[("gn-lenet", "fedavg"), "acc@0% n"] == 2
    assert t.loc[("gn-lenet", "fedavg"), "loss@100% n"] == 2     # the seeds both cells have
    assert "| gn-lenet | fedavg | 90 ± 0 (n=2) | 90 ± 0 | 0 ± 0 (n=2) |" in markdown_table(t)

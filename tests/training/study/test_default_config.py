"""The default study means what it claims: >= 3 seeds, a strict schedule that no check flags
(DGC's residual drains within every LR phase, every FedAvg knob divides the iterations), DGC's
warm-up scaled with the run, every finding (F1-F4) covered; digits_full.toml is its full grid
at the paper's DGC sparsity, also unflagged."""

from __future__ import annotations

from training.study.config import DEFAULT_CONFIG, load_study
from training.study.groups import units

FINDINGS = {"noniid", "norm", "skew_degree", "skewscout"}


def _regime(study) -> None:
    iterations = study.train["iterations"]
    assert study.strict and not study.schedule_problems()
    assert len(study.seeds) >= 3
    # DGC's warm-up keeps its share of the run (15 of 300 iterations at the paper-scale ratio)
    assert study.algorithms["dgc"]["warmup_epoch_iterations"] / iterations == 15 / 300
    assert all(iterations % knob == 0 for knob in study.grids["fedavg"])
    assert iterations % study.algorithms["fedavg"]["iter_local"] == 0


def test_default_study_runs_seeds_where_every_run_means_what_it_claims() -> None:
    study = load_study()
    _regime(study)
    assert FINDINGS <= {e.kind for e in study.experiments}
    # every fixed-knob run trains in a seed group of all the seeds
    grouped = [u for u in units(study.all_runs()) if len(u) > 1]
    assert grouped and {len(group) for group in grouped} == {len(study.seeds)}


def test_digits_full_is_the_full_grid_at_the_papers_dgc_sparsity() -> None:
    default, full = load_study(), load_study(DEFAULT_CONFIG.parent / "digits_full.toml")
    _regime(full)
    assert full.algorithms["dgc"]["sparsity"] == 0.999 and full.seeds == default.seeds
    assert {e.kind for e in full.experiments} == FINDINGS | {"partitions"}

"""The study's figures: what the communication figure plots, and frames computed once."""

from __future__ import annotations

import pytest

from tests.training.study.studies import fake_rows
from training.study import figures
from training.study.config import study_from_dict
from training.study.figures import comm_points, draw_all, plot_comm_vs_accuracy
from training.study.findings import experiment_frames, runs_frame, skewscout_table

DOC = {
    "name": "two_models",
    "num_partitions": 2,
    "target": 0.05,
    "dataset": {"name": "digits", "image_size": 8},
    "train": {"iterations": 10},
    "grids": {"fedavg": [5, 50]},
    "experiments": [
        {"name": "s", "kind": "skewscout", "models": ["gn-lenet", "bn-lenet"],
         "algorithms": ["fedavg"], "noniid_fractions": [1.0]},
    ],
}

# (model, algorithm, mode, knob) -> (final_acc, bytes/iteration); the two BSPs differ a lot
OUTCOMES = {
    ("gn-lenet", "bsp", "fixed", None): (0.94, 100.0),
    ("gn-lenet", "fedavg", "fixed", 50): (0.60, 2.0),
    ("gn-lenet", "fedavg", "fixed", 5): (0.92, 20.0),
    ("gn-lenet", "fedavg", "skewscout", None): (0.91, 22.0),
    ("bn-lenet", "bsp", "fixed", None): (0.70, 400.0),
    ("bn-lenet", "fedavg", "fixed", 50): (0.66, 4.0),
    ("bn-lenet", "fedavg", "fixed", 5): (0.69, 40.0),
    ("bn-lenet", "fedavg", "skewscout", None): (0.68, 50.0),
}


def rows_of(study) -> dict[str, dict]:
    return fake_rows(study, lambda spec: OUTCOMES[(spec.model, spec.algorithm, spec.mode,
                                                   spec.knob)])


def point(points, model: str, series: str) -> tuple[float, float]:
    row = points[(points["model"] == model) & (points["series"] == series)]
    assert len(row) == 1, row
    return float(row["comm_vs_bsp"].iloc[0]), float(row["final_acc"].iloc[0])


def test_comm_points_pair_each_point_with_the_bsp_of_its_own_model():
    study = study_from_dict(DOC)
    exp = study.experiments[0]
    points = comm_points(runs_frame(study, exp, rows_of(study)), exp, study.target)
    assert point(points, "gn-lenet", "bsp") == (1.0, 0.94)
    assert point(points, "bn-lenet", "bsp") == (1.0, 0.70)
    # bn-lenet against its own BSP (0.70, 400 B): knob 50 meets 0.65, so it is the Oracle
    assert point(points, "bn-lenet", "oracle") == pytest.approx((4 / 400, 0.66))
    assert point(points, "bn-lenet", "skewscout") == pytest.approx((50 / 400, 0.68))
    assert point(points, "gn-lenet", "oracle") == pytest.approx((20 / 100, 0.92))
    assert point(points, "gn-lenet", "skewscout") == pytest.approx((22 / 100, 0.91))
    grid = points[(points["model"] == "bn-lenet") & (points["series"] == "grid")]
    assert sorted(grid["comm_vs_bsp"]) == pytest.approx([4 / 400, 40 / 400])
    assert set(points.loc[points["model"] == "bn-lenet", "bsp_acc"]) == {0.70}


def test_comm_points_agree_with_the_skewscout_table():
    study = study_from_dict(DOC)
    exp = study.experiments[0]
    df = runs_frame(study, exp, rows_of(study))
    points, table = comm_points(df, exp, study.target), skewscout_table(df, exp, study.target)
    for r in table.itertuples():
        scout_comm, scout_acc = point(points, r.model, "skewscout")
        oracle_comm, _ = point(points, r.model, "oracle")
        assert 1 / scout_comm == pytest.approx(r.saving_vs_bsp, abs=0.01)
        assert scout_comm / oracle_comm == pytest.approx(r.vs_oracle, abs=0.01)
        assert 100 * scout_acc == pytest.approx(r.skewscout_acc)


def test_comm_figure_draws_one_panel_per_model_and_nothing_without_bsp(tmp_path):
    study = study_from_dict(DOC)
    exp = study.experiments[0]
    rows = rows_of(study)
    path = plot_comm_vs_accuracy(study, exp, runs_frame(study, exp, rows), tmp_path)
    assert path == tmp_path / "s_comm_vs_accuracy.png" and path.stat().st_size > 0
    no_bsp = {k: r for k, r in rows.items() if r["algorithm"] != "bsp"}
    assert plot_comm_vs_accuracy(study, exp, runs_frame(study, exp, no_bsp),
                                 tmp_path / "none") is None


def test_many_panels_wrap_into_rows(tmp_path, monkeypatch):
    # 2 models x 2 fractions = 4 panels: 2 rows of at most 3, the last row's spare cell off
    doc = {**DOC, "experiments": [{**DOC["experiments"][0], "noniid_fractions": [1.0, 0.5]}]}
    study = study_from_dict(doc)
    exp = study.experiments[0]
    rows = rows_of(study)                  # the outcomes do not depend on the fraction
    grids = []
    real = figures.plt.subplots
    monkeypatch.setattr(figures.plt, "subplots", lambda r, c, **kw: grids.append((r, c)) or
                        real(r, c, **kw))
    plot_comm_vs_accuracy(study, exp, runs_frame(study, exp, rows), tmp_path)
    assert grids == [(2, 3)]


def test_draw_all_uses_the_frames_it_is_given(tmp_path, monkeypatch):
    study = study_from_dict(DOC)
    rows = rows_of(study)
    frames = experiment_frames(study, rows)

    def no_recompute(*args, **kwargs):
        raise AssertionError("draw_all recomputed the frames it was given")

    monkeypatch.setattr(figures, "experiment_frames", no_recompute)
    assert draw_all(study, rows, tmp_path, frames) == [tmp_path / "s_comm_vs_accuracy.png"]
    assert draw_all(study, rows, tmp_path / "empty", {}) == []


def test_skewscout_seeds_that_end_at_different_knobs_average_into_one_point():
    """A SkewScout row's knob is where its run ended: seeds ending apart are still one setting."""
    study = study_from_dict({**DOC, "seeds": [0, 1]})
    exp = study.experiments[0]
    rows = rows_of(study)
    for r in rows.values():
        if r["mode"] == "skewscout":      # seed 0 ends at 50 and sends 10 B less than seed 1
            r["knob"] = 50.0 if r["seed"] == 0 else 5.0
            r["bytes_per_iteration"] += -5 if r["seed"] == 0 else 5
    df = runs_frame(study, exp, rows)
    points = comm_points(df, exp, study.target)
    assert point(points, "gn-lenet", "skewscout") == pytest.approx((22 / 100, 0.91))
    table = skewscout_table(df, exp, study.target).set_index("model")
    assert table.loc["bn-lenet", "saving_vs_bsp"] == pytest.approx(400 / 50, abs=0.01)


def test_points_and_figures_carry_the_spread_over_seeds(tmp_path):
    study = study_from_dict({**DOC, "seeds": [0, 1], "algorithms": {"fedavg": {"iter_local": 50}},
                             "experiments": [
        *DOC["experiments"], {"name": "n", "kind": "noniid", "models": ["gn-lenet"],
                              "algorithms": ["bsp", "fedavg"], "noniid_fractions": [0.0, 1.0]}]})
    rows = rows_of(study)
    for row in rows.values():        # seed 1 scores 4 points lower than seed 0 everywhere
        if row["seed"] == 1:
            row["final_acc"] -= 0.04
        row["curve"] = [[5, row["final_acc"] / 2], [10, row["final_acc"]]]
    exp = study.experiments[0]
    points = comm_points(runs_frame(study, exp, rows), exp, study.target)
    scout = points[(points["model"] == "gn-lenet") & (points["series"] == "skewscout")]
    # the sample sd of two values 0.04 apart
    assert scout["final_acc_sd"].tolist() == pytest.approx([0.04 / 2 ** 0.5])
    assert (points["final_acc_sd"] > 0).all()
    made = draw_all(study, rows, tmp_path)
    assert sorted(p.name for p in made) == ["n_curves.png", "n_loss_bars.png",
                                            "s_comm_vs_accuracy.png"]


def test_summary_links_figures_and_titles_are_words(tmp_path):
    from training.study.findings import all_claims, summary_markdown
    from training.study.results_doc import results_markdown

    study = study_from_dict(DOC)
    rows = rows_of(study)
    claims, tables = all_claims(study, rows)
    paths = draw_all(study, rows, tmp_path / "figures")
    assert all(figures.title_of(e) != e.name for e in study.experiments)
    text = summary_markdown(study, claims, tables, [str(p.relative_to(tmp_path)) for p in paths])
    assert all(f"](figures/{p.name})" in text for p in paths)
    # the results page links its own copies only, once each
    page = results_markdown(text, [f"results/{p.name}" for p in paths], source="s", command="c")
    assert page.count("## Figures") == 1 and "](figures/" not in page


def test_loss_bars_draw_every_algorithm_the_paper_ones_first():
    from training.study.figures import algorithm_order

    assert algorithm_order(["scaffold", "fedavg", "bsp", "ef_topk"]) == [
        "bsp", "fedavg", "ef_topk", "scaffold"]

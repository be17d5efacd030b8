"""Report tables on a hand-counted manifest; the DATASET.md section markers."""

import pandas as pd
import pytest

from flickr_mammal import report
from flickr_mammal.report import (
    SECTION_BEGIN,
    SECTION_END,
    ReportTables,
    count_table,
    datasheet_section,
    replace_section,
    top3_markdown,
    top3_per_continent,
    write_report,
)

STATS = {
    "search": {"candidates": 12, "ambiguous": 1},
    "download": {"downloaded": 11, "failed": 1, "failures": {"http_404": 1}, "duplicates": 0},
    "clean": {"classifier": "none", "kept": 11, "rejected": 0, "failed": 0},
    "geocode": {"geo_status": {"ok": 10, "unknown": 1}},
}


def manifest() -> pd.DataFrame:
    rows = (
        [("cat", 6, "Western Europe", "Europe")] * 3 + [("cat", 6, "Eastern Asia", "Asia")]
        + [("dog", 10, "Western Europe", "Europe")] * 2 + [("dog", 10, "unknown", "unknown")]
        + [("zebra", 41, "Eastern Africa", "Africa")] * 4
    )
    return pd.DataFrame(rows, columns=["class_name", "label", "subcontinent", "continent"])


def test_count_table_by_continent():
    table = count_table(manifest(), "continent")
    assert table.index.tolist() == ["cat", "dog", "zebra"]  # label order
    assert table.loc["cat"].to_dict() == {"Africa": 0, "Americas": 0, "Asia": 1, "Europe": 3,
                                          "Oceania": 0, "unplaced": 0, "total": 4}
    assert table.loc["dog", "unplaced"] == 1 and table.loc["dog", "total"] == 3


def test_count_table_by_subcontinent_has_all_22_columns():
    table = count_table(manifest(), "subcontinent")
    assert len(table.columns) == 22 + 2
    assert table.loc["zebra", "Eastern Africa"] == 4


def test_top3_share_is_of_the_mammals_placed_images():
    top3 = top3_per_continent(count_table(manifest(), "continent"))
    europe = top3[top3["continent"] == "Europe"]
    assert europe[["class_name", "images", "global_images", "share"]].values.tolist() == [
        ["cat", 3, 4, 0.75], ["dog", 2, 2, 1.0]]  # dog's unplaced photo is not counted
    assert top3[top3["continent"] == "Africa"]["class_name"].tolist() == ["zebra"]
    assert "| Europe | 1 | cat | 3 | 75% |" in top3_markdown(top3)


def test_write_report_files(tmp_path):
    paths = write_report(manifest(), tmp_path)
    assert all(p.stat().st_size > 0 for p in paths.values())
    write_report(manifest().iloc[:0], tmp_path / "empty")  # an empty build still reports


def test_replace_section():
    doc = f"intro\n{SECTION_BEGIN}\nold\n{SECTION_END}\noutro\n"
    new = f"{SECTION_BEGIN}\nnew\n{SECTION_END}"
    assert replace_section(doc, new) == f"intro\n{new}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        replace_section("no markers", new)


def test_datasheet_section_uses_the_tables_it_is_given(monkeypatch):
    built = datasheet_section(manifest(), STATS, "Build")
    assert "| cat | 0 | 0 | 1 | 3 | 0 | 0 | 4 |" in built
    assert "| Europe | 1 | cat | 3 | 75% |" in built
    tables = ReportTables.from_manifest(manifest())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the tables were rebuilt")

    monkeypatch.setattr(report, "count_table", no_rebuild)
    assert datasheet_section(manifest(), STATS, "Build", tables) == built


def test_write_report_uses_the_tables_it_is_given(tmp_path, monkeypatch):
    tables = ReportTables.from_manifest(manifest())
    monkeypatch.setattr(report, "count_table", lambda *a, **k: pytest.fail("rebuilt"))
    paths = write_report(manifest(), tmp_path, tables)
    assert pd.read_csv(paths["class_by_continent"], index_col=0).loc["cat", "Europe"] == 3

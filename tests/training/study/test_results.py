"""The results store checks every row it reads: a file that is not a valid row (wrong types, a
missing field, NaN, a directory in its place) is reported with its reason and its run redone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.training.study.studies import experiment, fake_row, study_doc
from training.study.config import study_from_dict
from training.study.results import InvalidRow, ResultsStore, check_row

SPEC = study_from_dict(study_doc(experiment("n", "noniid", ["bsp"], [1.0]))).all_runs()[0]
RUN = SPEC.run_id
GOOD = fake_row(SPEC, 0.9)


def _write(out: Path, text: str) -> Path:
    (out / "runs").mkdir(parents=True, exist_ok=True)
    path = out / "runs" / f"{RUN}.json"
    path.write_text(text)
    return path


def test_a_valid_row_is_read():
    assert check_row(GOOD, RUN) is None
    assert check_row({**GOOD, "bytes_curve": [[6, 60.0]], "num_partitions": 2}) is None


@pytest.mark.parametrize("text, reason", [
    (json.dumps({**GOOD, "final_acc": "abc"}), "final_acc is 'abc', expected an accuracy"),
    (json.dumps({"run_id": RUN}), "no 'mode'"),
    (json.dumps({**GOOD, "curve": "x"}), "curve is 'x', expected a list of [iteration"),
    (json.dumps({**GOOD, "final_acc": math.nan}), "final_acc is nan"),
    (json.dumps({**GOOD, "bytes_sent": [1.0, "2"]}), "bytes_sent is"),
    (json.dumps({**GOOD, "run_id": "ba9876543210"}), "holds run 'ba9876543210'"),
    (json.dumps([GOOD]), "a row is a JSON object, got list"),
    (json.dumps(GOOD)[:30], "not JSON"),
])
def test_an_invalid_row_is_reported_and_its_run_left_to_redo(text, reason, tmp_path, caplog):
    path = _write(tmp_path, text)
    store = ResultsStore(tmp_path)
    assert RUN not in store and not store.finished(RUN)
    assert reason in store.invalid[path]
    assert f"{path} is not a valid result row ({store.invalid[path]})" in caplog.text
    store.add(GOOD)                       # the redone run's row replaces it
    assert store.finished(RUN) and not store.invalid
    assert RUN in ResultsStore(tmp_path)


def test_a_directory_in_a_rows_place_is_reported_and_moved_aside_by_the_redo(tmp_path):
    path = tmp_path / "runs" / f"{RUN}.json"
    path.mkdir(parents=True)
    store = ResultsStore(tmp_path)
    assert store.invalid == {path: "a directory, not a row file"} and RUN not in store
    store.add(GOOD)
    assert path.is_file() and (tmp_path / "runs" / f"{RUN}.json.invalid-0").is_dir()
    assert RUN in ResultsStore(tmp_path)


def test_a_row_that_is_not_valid_is_never_written(tmp_path):
    with pytest.raises(InvalidRow, match="final_acc is nan"):
        ResultsStore(tmp_path).add({**GOOD, "final_acc": math.nan})
    assert not (tmp_path / "runs" / f"{RUN}.json").exists()


def test_an_older_results_json_keeps_its_valid_rows_and_reports_the_others(tmp_path):
    other = {**GOOD, "run_id": "ba9876543210", "final_acc": "abc"}
    (tmp_path / "results.json").write_text(json.dumps([GOOD, other]))
    store = ResultsStore(tmp_path)
    assert RUN in store and "ba9876543210" not in store
    assert "row 1 (run ba9876543210): final_acc is 'abc'" in store.invalid[
        tmp_path / "results.json"]


@pytest.mark.parametrize("record", [
    "[1]", json.dumps({"run_id": RUN, "time": "x"}),
    json.dumps({"run_id": RUN, "error": "e", "time": math.nan})])
def test_a_failure_record_that_is_not_one_is_ignored(record, tmp_path, caplog):
    (tmp_path / "runs").mkdir()
    path = tmp_path / "runs" / f"{RUN}.error.json"
    path.write_text(record)
    assert ResultsStore(tmp_path).failure(RUN) is None
    assert f"{path} is not a failure record" in caplog.text
    path.unlink()
    path.mkdir()
    assert ResultsStore(tmp_path).failure(RUN) is None


def test_directories_where_failure_records_go_are_moved_aside(tmp_path):
    store = ResultsStore(tmp_path)
    failed = tmp_path / "runs" / f"{RUN}.error.json"
    failed.mkdir(parents=True)
    store.add_failure({"run_id": RUN, "error": "E: x", "time": 1.0})
    assert store.failure(RUN)[0]["error"] == "E: x"
    failed.unlink()
    failed.mkdir()
    store.add(GOOD)                      # a success forgets the failure, whatever is there
    assert not failed.exists() and store.finished(RUN)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        f"{RUN}.error.json.invalid-0", f"{RUN}.error.json.invalid-1", f"{RUN}.json"]

from __future__ import annotations

import pytest

from pipelines import results_doc
from training.study.results_doc import write_results_doc


def _study_folder(tmp_path):
    run = tmp_path / "runs" / "demo"
    (run / "figures").mkdir(parents=True)
    (run / "summary.md").write_text("# Study `demo`\n\n## noniid (noniid)\n\n| a |\n|---|\n| 1 |\n"
                                    "\n## Findings\n\n- **F1** x: **holds**\n")
    (run / "figures" / "b_curves.png").write_bytes(b"png-b")
    (run / "figures" / "a_bars.png").write_bytes(b"png-a")
    return run


def test_page_holds_the_summary_and_the_figures(tmp_path):
    run = _study_folder(tmp_path)
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    (tmp_path / "docs" / "results").mkdir()
    (tmp_path / "docs" / "results" / "stale.png").write_bytes(b"old")
    write_results_doc(run, out, note="CPU note.")
    text = out.read_text()
    assert text.startswith("# Results\n")
    assert "## Study `demo`" in text and "### noniid (noniid)" in text and "| 1 |" in text
    assert "- **F1** x: **holds**" in text and "CPU note." in text
    assert text.index("a_bars.png") < text.index("b_curves.png")     # sorted, stable
    assert "](results/a_bars.png)" in text                             # relative links
    assert (tmp_path / "docs" / "results" / "a_bars.png").read_bytes() == b"png-a"
    assert not (tmp_path / "docs" / "results" / "stale.png").exists()


def test_command_refuses_a_folder_without_a_summary(tmp_path, capsys):
    assert results_doc.main([str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run the study first" in err


def test_same_input_same_page(tmp_path):
    run = _study_folder(tmp_path)
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    write_results_doc(run, a)
    write_results_doc(run, b)
    assert b.read_text().replace("b.md", "a.md").replace("](b/", "](a/") == a.read_text()
    with pytest.raises(FileNotFoundError):
        write_results_doc(tmp_path / "nope", a)

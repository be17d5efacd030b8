"""Every python block of docs/ecosystem.md runs against a small real build."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("datasets")
pytest.importorskip("flwr_datasets")

NOTES = Path(__file__).resolve().parents[2] / "docs" / "ecosystem.md"
BLOCKS = re.findall(r"```python\n(.*?)```", NOTES.read_text(encoding="utf-8"), re.S)


def test_the_notes_have_snippets():
    assert len(BLOCKS) == 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_snippet_runs(default_build, index, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path))
    code = BLOCKS[index].replace('"DIR"', repr(str(default_build)))
    code = code.replace('"EXPORT"', repr(str(tmp_path / "export")))
    exec(compile(code, f"ecosystem.md block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()

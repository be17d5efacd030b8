"""pipelines.dataset_report: the build folder is a positional argument (``--build`` still read)."""

from __future__ import annotations

import pytest

from pipelines.dataset_report import main


def test_the_build_folder_is_positional(built, capsys):
    assert main([str(built)]) == 0
    positional = capsys.readouterr().out
    assert "<!-- build-stats:begin -->" in positional
    assert main(["--build", str(built)]) == 0           # the older spelling
    assert capsys.readouterr().out == positional


@pytest.mark.parametrize("argv", [[], ["a", "--build", "b"]])
def test_the_folder_must_be_given_once(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "DIR" in capsys.readouterr().err


def test_export_help_shows_the_real_order(capsys):
    from pipelines.export_dataset import main as export_main

    with pytest.raises(SystemExit):
        export_main(["--help"])
    help_text = capsys.readouterr().out
    assert "DIR OUT" in help_text and "DIR --format hf-parquet OUT" not in help_text

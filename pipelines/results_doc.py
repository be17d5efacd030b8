"""Regenerate the documentation's results page from a finished study folder.

    python -m pipelines.run_study --out runs/default
    python -m pipelines.results_doc runs/default --out docs/results.md
"""

from __future__ import annotations

import argparse
import sys

from training.study.results_doc import write_results_doc

CPU_NOTE = ("Numbers depend on the CPU and its thread count: training sums in an order that "
            "depends on them, so accuracies on another machine differ, by up to about a point "
            "where training is stable and by several points where it is not (DGC under strong "
            "skew). The study fixes `threads` per run; each cell is a mean ± sd over the study's "
            "seeds, and a verdict whose margin does not exceed that spread reads inconclusive "
            "(docs/training.md, Findings and their spread).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.results_doc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a study's output folder (holding summary.md, figures/)")
    ap.add_argument("--out", default="docs/results.md", help="the page to write")
    ap.add_argument("--note", default=CPU_NOTE, help="a paragraph under the page's title")
    args = ap.parse_args(argv)
    try:
        path = write_results_doc(args.run_dir, args.out, note=args.note)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

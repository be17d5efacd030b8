"""Export a build for sharing.

    python -m pipelines.export_dataset DIR OUT [--format hf-parquet] [--splits train,val]

``hf-parquet``: the Hugging Face Hub's layout, OUT/data/{split}-NNNNN-of-NNNNN.parquet (image
bytes embedded; splits train and validation) and OUT/README.md (dataset card: licences,
features, splits, the datasheet). Load it with ``datasets.load_dataset("OUT")`` or upload OUT
as a dataset repository. Needs the ``hf`` extra. A damaged or edited build is refused (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flickr_mammal.integrity import DatasetIntegrityError

FORMATS = ("hf-parquet",)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.export_dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, metavar="DIR",
                   help="a build's --out folder or its shards/ folder")
    p.add_argument("out", type=Path, metavar="OUT", help="new, empty output folder")
    p.add_argument("--format", choices=FORMATS, default="hf-parquet")
    p.add_argument("--max-shard-mb", type=int, default=500, help="parquet file size (MB)")
    p.add_argument("--datasheet", type=Path, default=None,
                   help="datasheet for the card body (default: the repository's DATASET.md)")
    p.add_argument("--splits", default="", help="comma-separated splits (default: all)")
    args = p.parse_args(argv)
    try:
        from flickr_mammal.export import DATASHEET, ExportConfig, export_hf_parquet

        config = ExportConfig(root=args.root, out=args.out,
                              max_shard_bytes=args.max_shard_mb * 1_000_000,
                              datasheet=args.datasheet or DATASHEET,
                              splits=tuple(s for s in args.splits.split(",") if s))
        result = export_hf_parquet(config)
    except (ImportError, ValueError, OSError, DatasetIntegrityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split, names in result["files"].items():
        print(f"{split}: {result['rows'][split]} rows in {len(names)} files")
    print(f"wrote {args.out}/README.md and {args.out}/data/")
    return 0


if __name__ == "__main__":
    sys.exit(main())

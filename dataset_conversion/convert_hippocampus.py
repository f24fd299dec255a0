#!/usr/bin/env python3
"""MSD Task04_Hippocampus -> $nnUNet_raw/Dataset<ID>_Hippocampus (same code as ``spcl_nnunet convert hippocampus``).

    python dataset_conversion/convert_hippocampus.py -i /data/Task04_Hippocampus -d 504 [--overwrite] [--seed 0]

``-i``: the unpacked task folder ``Task04_Hippocampus/`` or the folder holding it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.conversion.hippocampus import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, help="Task04_Hippocampus/ or the folder holding it")
    parser.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_Hippocampus folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    args = parser.parse_args(argv)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set (run: eval \"$(spcl_nnunet env)\")", file=sys.stderr)
        return 2
    try:
        folder, table = convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    print(table.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

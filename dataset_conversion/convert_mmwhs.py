#!/usr/bin/env python3
"""MM-WHS 2017 CT training data -> $nnUNet_raw/Dataset<ID>_MMWHS (same code as ``spcl_nnunet convert mmwhs``).

    python dataset_conversion/convert_mmwhs.py -i /data/MM-WHS -d 503 [--overwrite] [--seed 0]

``-i``: the unpacked download holding ``ct_train/`` (or ``ct_train/`` itself).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.conversion.mmwhs import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, help="the folder you unpacked MM-WHS into (holding ct_train/)")
    parser.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_MMWHS folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    parser.add_argument("--unknown-labels-as-background", action="store_true",
                        help="map label values other than the seven MM-WHS structures (e.g. stray 421 voxels) to "
                             "background instead of stopping (each file is reported)")
    args = parser.parse_args(argv)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set (run: eval \"$(spcl_nnunet env)\")", file=sys.stderr)
        return 2
    try:
        folder, table = convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed,
                                unknown_labels_as_background=args.unknown_labels_as_background)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    print(table.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

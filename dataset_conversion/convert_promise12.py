#!/usr/bin/env python3
"""Convert a PROMISE12 download into ``$nnUNet_raw/Dataset<ID>_PROMISE12`` (same code as
``spcl_nnunet convert promise12``; see ``spcl_nnunet/conversion/promise12.py`` and the README).

    python dataset_conversion/convert_promise12.py -i /data/PROMISE12 -d 502 [--overwrite] [--seed 0] [--with-unlabeled]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.conversion.promise12 import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, help="the folder the PROMISE12 download was unpacked into "
                                                  "(holding TrainingData_Part1..3 and TestData)")
    parser.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_PROMISE12 folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    parser.add_argument("--with-unlabeled", action="store_true",
                        help="add TestData (no segmentations) to imagesTr as label-less cases unlabeled_CaseXX "
                             "(SP-Con pre-training only)")
    args = parser.parse_args(argv)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set (export nnUNet_raw=/path/to/nnUNet_raw, or run: "
              "eval \"$(spcl_nnunet env)\")", file=sys.stderr)
        return 2
    try:
        folder, table = convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed,
                                with_unlabeled=args.with_unlabeled)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    print(table.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Convert an ACDC download into ``$nnUNet_raw/Dataset<ID>_ACDC`` (same code as
``spcl_nnunet convert acdc``; see ``spcl_nnunet/conversion/acdc.py`` and the README).

    python dataset_conversion/convert_acdc.py -i /data/ACDC -d 501 [--overwrite] [--seed 0] [--include-official-test]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.conversion.acdc import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, help="the folder the ACDC download was unpacked into "
                                                  "(holding training/ + testing/, or database/training/ ...)")
    parser.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_ACDC folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    parser.add_argument("--include-official-test", action="store_true",
                        help="also convert the official testing patients (101-150, ground truth required) into "
                             "imagesTs as official_patientXXX_ED/ES, outside the paper's test set")
    args = parser.parse_args(argv)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set (export nnUNet_raw=/path/to/nnUNet_raw, or run: "
              "eval \"$(spcl_nnunet env)\")", file=sys.stderr)
        return 2
    try:
        folder, table = convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed,
                                include_official_test=args.include_official_test)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    print(table.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

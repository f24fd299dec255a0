#!/usr/bin/env python3
"""MSD Task09_Spleen -> $nnUNet_raw/Dataset<ID>_Spleen (same code as ``spcl_nnunet convert spleen``).

    python dataset_conversion/convert_spleen.py -i /data/Task09_Spleen -d 505 [--overwrite] [--seed 0] [--no-clip]

``-i``: the unpacked task folder ``Task09_Spleen/`` or the folder holding it. Images are clipped to
[-100, 400] HU (the paper's window; ``--no-clip`` keeps the original values).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spcl_nnunet.conversion.spleen import INTENSITY_CLIP, convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", required=True, help="Task09_Spleen/ or the folder holding it")
    parser.add_argument("-d", type=int, required=True, help="nnU-Net dataset id")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DatasetXXX_Spleen folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/val/test and labeled splits")
    parser.add_argument("--no-clip", action="store_true",
                        help=f"keep the original HU values (default: clip to {list(INTENSITY_CLIP)} as in the paper)")
    args = parser.parse_args(argv)
    raw = os.environ.get("nnUNet_raw")
    if not raw:
        print("error: nnUNet_raw is not set (run: eval \"$(spcl_nnunet env)\")", file=sys.stderr)
        return 2
    try:
        folder, table = convert(Path(args.i), Path(raw), args.d, overwrite=args.overwrite, seed=args.seed,
                                intensity_clip=None if args.no_clip else INTENSITY_CLIP)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    print(table.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())

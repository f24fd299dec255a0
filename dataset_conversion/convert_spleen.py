#!/usr/bin/env python3
"""MSD Task09_Spleen -> $nnUNet_raw/Dataset<ID>_Spleen (same code as ``spcl_nnunet convert spleen``).

    python dataset_conversion/convert_spleen.py -i /data/Task09_Spleen -d 505 [--overwrite] [--seed 0] [--no-clip]

``-i``: the unpacked task folder ``Task09_Spleen/`` or the folder holding it. Images are clipped to
[-100, 400] HU (the paper's window; ``--no-clip`` keeps the original values).

Same code and options as ``spcl_nnunet convert spleen`` (--help lists them).
"""

import sys

from spcl_nnunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "spleen", *sys.argv[1:]]))

#!/usr/bin/env python3
"""MM-WHS 2017 CT training data -> $nnUNet_raw/Dataset<ID>_MMWHS (same code as ``spcl_nnunet convert mmwhs``).

    python dataset_conversion/convert_mmwhs.py -i /data/MM-WHS -d 503 [--overwrite] [--seed 0]

``-i``: the unpacked download holding ``ct_train/`` (or ``ct_train/`` itself).

Same code and options as ``spcl_nnunet convert mmwhs`` (--help lists them).
"""

import sys

from spcl_nnunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "mmwhs", *sys.argv[1:]]))

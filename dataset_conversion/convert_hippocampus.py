#!/usr/bin/env python3
"""MSD Task04_Hippocampus -> $nnUNet_raw/Dataset<ID>_Hippocampus (same code as ``spcl_nnunet convert hippocampus``).

    python dataset_conversion/convert_hippocampus.py -i /data/Task04_Hippocampus -d 504 [--overwrite] [--seed 0]

``-i``: the unpacked task folder ``Task04_Hippocampus/`` or the folder holding it.

Same code and options as ``spcl_nnunet convert hippocampus`` (--help lists them).
"""

import sys

from spcl_nnunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "hippocampus", *sys.argv[1:]]))

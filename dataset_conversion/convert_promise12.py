#!/usr/bin/env python3
"""Convert a PROMISE12 download into ``$nnUNet_raw/Dataset<ID>_PROMISE12`` (same code as
``spcl_nnunet convert promise12``; see ``spcl_nnunet/conversion/promise12.py`` and the README).

    python dataset_conversion/convert_promise12.py -i /data/PROMISE12 -d 502 [--overwrite] [--seed 0] [--with-unlabeled]

Same code and options as ``spcl_nnunet convert promise12`` (--help lists them).
"""

import sys

from spcl_nnunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "promise12", *sys.argv[1:]]))

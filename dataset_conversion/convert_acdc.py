#!/usr/bin/env python3
"""Convert an ACDC download into ``$nnUNet_raw/Dataset<ID>_ACDC`` (same code as
``spcl_nnunet convert acdc``; see ``spcl_nnunet/conversion/acdc.py`` and the README).

    python dataset_conversion/convert_acdc.py -i /data/ACDC -d 501 [--overwrite] [--seed 0] [--include-official-test]

Same code and options as ``spcl_nnunet convert acdc`` (--help lists them).
"""

import sys

from spcl_nnunet.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", "acdc", *sys.argv[1:]]))

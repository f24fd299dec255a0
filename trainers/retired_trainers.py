"""Retired trainer names (the schedule-carrying ``*_smoke``, ``*_demo`` and ``*_quality`` classes):
nnU-Net still finds each one here, and training under it stops with a message that names the
replacement trainer and ``SPCL_SCHEDULE``; stubs made from ``RETIRED_TRAINERS`` in
``spcl_nnunet.training.retired``."""

from spcl_nnunet.training.retired import retired_trainers

globals().update(retired_trainers())
